// `meshfed agent --csr`: the workload's key pair is made here and never leaves the pod. The agent
// sends only a CSR to meshfed's CA API (istio.v1.auth.IstioCertificateService, as istio-agent
// does), with the service-account token and the ClusterID header, and renews at half-life with
// a fresh key each time. The trust bundle still comes over SDS (ROOTCA only, never `default`).
import { caRequestCodec, caResponseCodec, ISTIO_CA_METHOD } from '../istio/ca-api.js';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { generateKeyPair, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { IstioCertificateRequestSchema, type IstioCertificateResponse } from '../gen/istio/v1/auth/ca_pb.js';
import { buildCsr } from '../pki/csr.js';
import type { WorkloadCert } from './sds-client.js';

export interface CsrClientOptions {
  /** meshfed's TLS xDS address, host:port (the CA API is served there). */
  readonly address: string;
  /** Roots meshfed's serving certificate chains to; called at every connect (they follow a rotation). */
  readonly roots: () => string;
  readonly serverName?: string;
  readonly tokenFile?: string;
  readonly clusterId: string;
  /** Requested lifetime; meshfed caps it at its --workload-cert-ttl. */
  readonly ttlSec?: number;
  readonly log: Logger;
  readonly onCert: (cert: WorkloadCert) => void | Promise<void>;
}

export class CsrClient {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private backoffMs = 250;
  private client: grpc.Client | undefined;
  private clientRoots = '';
  lastError: string | undefined;

  constructor(private readonly opts: CsrClientOptions) {}

  start(): void {
    void this.renew();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.client?.close();
  }

  private async renew(): Promise<void> {
    if (this.closed) return;
    try {
      const { privateKey, spki, keyPem } = await newKey();
      const chain = await this.request(buildCsr(privateKey, spki));
      if (chain.length < 2)
        throw new Error(`meshfed returned a chain of ${chain.length} certificate(s); a leaf and the roots were expected`);
      const leaf = new X509Certificate(chain[0]!);
      if (!leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(spki))
        throw new Error('the certificate is not for the key this agent sent');
      // The leaf and its CA chain; the last element is the root bundle, which goes to root-cert.pem via SDS.
      await this.opts.onCert({ certChainPem: chain.slice(0, -1).join(''), privateKeyPem: keyPem });
      this.lastError = undefined;
      this.backoffMs = 250;
      const notBefore = Date.parse(leaf.validFrom);
      const due = Math.max(1000, notBefore + (Date.parse(leaf.validTo) - notBefore) / 2 - Date.now());
      this.schedule(due);
      this.opts.log.info({ notAfter: new Date(leaf.validTo).toISOString() }, 'workload certificate issued for a locally made key');
    } catch (err) {
      this.lastError = (err as Error).message;
      this.opts.log.warn({ retryInMs: this.backoffMs }, `certificate request failed: ${this.lastError}`);
      this.schedule(this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
    }
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => void this.renew(), Math.min(ms, 2 ** 31 - 1));
  }

  private async request(csr: string): Promise<string[]> {
    const o = this.opts;
    const md = new grpc.Metadata();
    if (o.tokenFile) md.set('authorization', `Bearer ${(await readFile(o.tokenFile, 'utf8')).trim()}`);
    md.set('ClusterID', o.clusterId);
    const roots = o.roots();
    if (!this.client || roots !== this.clientRoots) {
      this.client?.close();
      this.clientRoots = roots;
      this.client = new grpc.Client(
        o.address,
        grpc.credentials.createSsl(Buffer.from(roots)),
        o.serverName ? { 'grpc.ssl_target_name_override': o.serverName } : {},
      );
    }
    const req = create(IstioCertificateRequestSchema, { csr, validityDuration: BigInt(o.ttlSec ?? 0), metadata: { CertSigner: '' } });
    const client = this.client;
    const res = await new Promise<IstioCertificateResponse>((resolve, reject) =>
      client.makeUnaryRequest(
        ISTIO_CA_METHOD,
        caRequestCodec.serialize,
        caResponseCodec.deserialize,
        req,
        md,
        { deadline: Date.now() + 10_000 },
        (err, value) => (err ? reject(new Error(`${grpc.status[err.code]}: ${err.details}`)) : resolve(value!)),
      ),
    );
    return res.certChain;
  }
}

/** EC P-256, made on the thread pool. */
function newKey(): Promise<{ privateKey: KeyObject; spki: Buffer; keyPem: string }> {
  return new Promise((resolve, reject) =>
    generateKeyPair('ec', { namedCurve: 'P-256' }, (err, publicKey, privateKey) => {
      if (err) return reject(err);
      resolve({
        privateKey,
        spki: publicKey.export({ type: 'spki', format: 'der' }),
        keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      });
    }),
  );
}
