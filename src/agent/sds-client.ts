// The agent's SDS client: one ADS stream to meshfed (TLS, service-account token), subscribed to
// `default` and `ROOTCA`; every response is decoded, handed over and ACKed. The stream is
// re-opened with backoff after any failure, re-reading the token (kubelet rotates it).
import * as grpc from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { DiscoveryRequest, DiscoveryResponse, messageType, TypeUrl } from '../envoy/protos.js';
import { DEFAULT_SECRET, ROOTCA_SECRET } from '../envoy/names.js';
import { stringStruct } from '../xds/struct.js';

const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const SPIFFE_CONFIG = messageType('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig');
const SECRET = messageType(TypeUrl.Secret);

export interface WorkloadCert {
  readonly certChainPem: string;
  readonly privateKeyPem: string;
}

export interface SdsUpdate {
  readonly cert?: WorkloadCert;
  /** Trust domain → its roots (PEM blob). */
  readonly bundles?: ReadonlyMap<string, string>;
}

export interface SdsClientOptions {
  /** meshfed's xDS address, host:port. */
  readonly address: string;
  /** PEM roots that meshfed's serving certificate chains to; undefined: plaintext (development). */
  readonly caPem: string | undefined;
  /** The name meshfed's certificate is checked against, when it is not the address's host. */
  readonly serverName?: string;
  /** Service-account token file, read at every connect. */
  readonly tokenFile?: string;
  readonly node: { id: string; cluster?: string; metadata: Record<string, string> };
  /** Secrets to subscribe to; default `default` and `ROOTCA` (`--csr`: ROOTCA only, no key from meshfed). */
  readonly names?: readonly string[];
  readonly log: Logger;
  readonly onUpdate: (u: SdsUpdate) => void | Promise<void>;
}

export class SdsClient {
  private client: grpc.Client;
  /** Roots of meshfed's own trust domain learnt from the bundle: they follow a root rotation. */
  private learntRoots = '';
  private clientRoots: string;
  private call: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  private closed = false;
  private backoffMs = 250;
  private retry: NodeJS.Timeout | undefined;
  /** The last failure, for callers waiting on the first secrets. */
  lastError: string | undefined;

  constructor(private readonly opts: SdsClientOptions) {
    this.clientRoots = '';
    this.client = this.newClient();
  }

  /** After a root rotation meshfed's serving certificate chains to the new root, learnt from ROOTCA. */
  trust(rootsPem: string): void {
    this.learntRoots = rootsPem;
  }

  private newClient(): grpc.Client {
    const o = this.opts;
    this.clientRoots = this.learntRoots;
    const creds = o.caPem ? grpc.credentials.createSsl(Buffer.from(o.caPem + this.learntRoots)) : grpc.credentials.createInsecure();
    return new grpc.Client(o.address, creds, o.serverName ? { 'grpc.ssl_target_name_override': o.serverName } : {});
  }

  start(): void {
    void this.connect();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.call?.cancel();
    this.client.close();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const md = new grpc.Metadata();
    if (this.opts.tokenFile) {
      try {
        md.set('authorization', `Bearer ${(await readFile(this.opts.tokenFile, 'utf8')).trim()}`);
      } catch (err) {
        return this.failed(`cannot read the token file ${this.opts.tokenFile}: ${(err as Error).message}`);
      }
    }
    if (this.clientRoots !== this.learntRoots) {
      this.client.close();
      this.client = this.newClient();
    }
    const call = this.client.makeBidiStreamRequest<Buffer, Buffer>(
      ADS_PATH,
      (b) => b,
      (b) => b,
      md,
    );
    this.call = call;
    let first = true;
    call.on('data', (bytes: Buffer) => {
      void this.receive(call, bytes).then(() => {
        if (first) this.backoffMs = 250; // a stream that delivered something was healthy
        first = false;
      });
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (this.call === call) this.failed(`SDS stream failed: ${grpc.status[err.code]}: ${err.details}`);
    });
    call.on('end', () => {
      if (this.call === call) this.failed('SDS stream ended');
    });
    this.send(call, '', '');
  }

  private failed(reason: string): void {
    this.call = undefined;
    if (this.closed) return;
    this.lastError = reason;
    this.opts.log.warn({ retryInMs: this.backoffMs }, reason);
    this.retry = setTimeout(() => void this.connect(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
  }

  private send(call: grpc.ClientDuplexStream<Buffer, Buffer>, version: string, nonce: string, error?: string): void {
    const n = this.opts.node;
    const req = DiscoveryRequest.fromObject({
      node: { id: n.id, cluster: n.cluster ?? '', metadata: stringStruct(n.metadata) },
      type_url: TypeUrl.Secret,
      resource_names: [...(this.opts.names ?? [DEFAULT_SECRET, ROOTCA_SECRET])],
      version_info: version,
      response_nonce: nonce,
      ...(error ? { error_detail: { code: grpc.status.INVALID_ARGUMENT, message: error } } : {}),
    });
    call.write(Buffer.from(DiscoveryRequest.encode(req).finish()));
  }

  private async receive(call: grpc.ClientDuplexStream<Buffer, Buffer>, bytes: Buffer): Promise<void> {
    const res = DiscoveryResponse.decode(bytes) as unknown as {
      version_info: string;
      nonce: string;
      resources: Array<{ value: Uint8Array }>;
    };
    try {
      const update = decodeSecrets(res.resources.map((r) => r.value));
      await this.opts.onUpdate(update);
      this.lastError = undefined;
      this.send(call, res.version_info, res.nonce);
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'rejecting an SDS response');
      this.send(call, '', res.nonce, (err as Error).message);
    }
  }
}

interface DataSource {
  inline_bytes?: Uint8Array;
  inline_string?: string;
}

function text(d: DataSource | undefined | null): string {
  if (d?.inline_bytes?.length) return Buffer.from(d.inline_bytes).toString('utf8');
  return d?.inline_string ?? '';
}

export function decodeSecrets(values: readonly Uint8Array[]): SdsUpdate {
  let cert: WorkloadCert | undefined;
  let bundles: Map<string, string> | undefined;
  for (const value of values) {
    const s = SECRET.decode(value) as unknown as {
      name: string;
      tls_certificate?: { certificate_chain?: DataSource; private_key?: DataSource };
      validation_context?: { custom_validator_config?: { name: string; typed_config?: { value: Uint8Array } } };
    };
    if (s.name === DEFAULT_SECRET) {
      const certChainPem = text(s.tls_certificate?.certificate_chain);
      const privateKeyPem = text(s.tls_certificate?.private_key);
      if (!certChainPem || !privateKeyPem) throw new Error('secret "default" has no certificate chain or key');
      cert = { certChainPem, privateKeyPem };
    } else if (s.name === ROOTCA_SECRET) {
      const v = s.validation_context?.custom_validator_config;
      if (!v?.typed_config) throw new Error('secret "ROOTCA" has no SPIFFE validator config');
      const config = SPIFFE_CONFIG.decode(v.typed_config.value) as unknown as {
        trust_domains: Array<{ name: string; trust_bundle?: DataSource }>;
      };
      bundles = new Map(config.trust_domains.map((td) => [td.name, text(td.trust_bundle)]));
    }
  }
  return { cert, bundles };
}
