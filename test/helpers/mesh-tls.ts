// Harness for the trust tests: a meshfed with its own CA serving xDS over TLS (plus a plaintext
// port for proxyless gRPC configuration), TokenReview against a fake apiserver, a mesh file the
// test edits, raw SDS streams over TLS, and a log the test can read.
import { KubeConfig } from '@kubernetes/client-node';
import * as grpc from '@grpc/grpc-js';
import { rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { type FederationOptions, type Meshfed, startMeshfed } from '../../src/app.js';
import { type CaStore, memoryCaStore } from '../../src/pki/index.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import type { FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { meshFile } from './grpc-mesh.js';
import { RawXdsStream, type SotwResponse } from './raw-client.js';

export const SERVER_NAME = 'meshfed.test';

export interface CapturedLog {
  readonly log: Logger;
  readonly lines: Array<Record<string, unknown>>;
}

export function captureLog(): CapturedLog {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

export interface TlsMeshOptions {
  readonly trustDomain: string;
  readonly doc: Record<string, unknown>;
  readonly apiserver?: FakeApiServer;
  readonly workloadTtlMs?: number;
  readonly caStore?: CaStore;
  readonly log?: Logger;
  /** Federation peers (the doc's `federations:`): token minting, poll interval. */
  readonly federation?: FederationOptions;
}

export interface TlsMesh {
  readonly meshfed: Meshfed;
  readonly rootPem: string;
  readonly plaintextPort: number;
  write(doc: Record<string, unknown>): Promise<void>;
  stop(): Promise<void>;
}

export async function startTlsMesh(o: TlsMeshOptions): Promise<TlsMesh> {
  const { dir, file, write } = await meshFile('meshfed-tls-', o.doc);
  let kubeConfig: KubeConfig | undefined;
  if (o.apiserver) {
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(o.apiserver.kubeconfig());
  }
  const meshfed = await startMeshfed({
    config: file,
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    xdsPlaintextHost: '127.0.0.1',
    xdsPlaintextPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 20,
    pki: { trustDomain: o.trustDomain, caStore: o.caStore ?? memoryCaStore(), workloadTtlMs: o.workloadTtlMs },
    xdsTls: { dnsNames: [SERVER_NAME] },
    tokenReview: kubeConfig && { kubeConfig },
    federation: o.federation,
    log: o.log ?? pino({ level: process.env['MESHFED_E2E_LOG'] ?? 'silent' }),
  });
  return {
    meshfed,
    rootPem: meshfed.pki!.ca.roots.join(''),
    plaintextPort: meshfed.xdsPlaintextPort!,
    write,
    async stop() {
      await meshfed.stop(300);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface SdsStreamOptions {
  readonly token?: string;
  /** A client certificate (chain and key, PEM). */
  readonly cert?: { certChainPem: string; privateKeyPem: string };
  readonly names: readonly string[];
  readonly typeUrl?: string;
}

/** A SotW ADS stream over TLS that asks for `names` of one type (SDS by default). */
export function tlsStream(port: number, rootPem: string, o: SdsStreamOptions): { stream: RawXdsStream<SotwResponse>; close(): void } {
  const creds = o.cert
    ? grpc.credentials.createSsl(Buffer.from(rootPem), Buffer.from(o.cert.privateKeyPem), Buffer.from(o.cert.certChainPem))
    : grpc.credentials.createSsl(Buffer.from(rootPem));
  const client = new grpc.Client(`127.0.0.1:${port}`, creds, { 'grpc.ssl_target_name_override': SERVER_NAME });
  const md = new grpc.Metadata();
  if (o.token) md.set('authorization', `Bearer ${o.token}`);
  const stream = new RawXdsStream<SotwResponse>(
    client,
    '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
    'sotw',
    md,
  );
  stream.send({ node: { id: 'test-node', user_agent_name: 'envoy' }, type_url: o.typeUrl ?? TypeUrl.Secret, resource_names: [...o.names] });
  return {
    stream,
    close() {
      stream.close();
      client.close();
    },
  };
}

/** The text of a DataSource as decoded by the raw client. */
export function dataText(d: unknown): string {
  const ds = d as { inline_bytes?: string | Uint8Array; inline_string?: string } | undefined;
  const b = ds?.inline_bytes;
  if (typeof b === 'string') return Buffer.from(b, 'base64').toString('utf8');
  if (b) return Buffer.from(b).toString('utf8');
  return ds?.inline_string ?? '';
}
