// Harness for end-to-end tests with real gRPC clients: a mesh file on disk served by an
// in-process meshfed, atomic edits of that file, /debug/syncz, and bounded polling.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { type Meshfed, startMeshfed } from '../../src/app.js';

export const DOMAIN = 'cluster-a.local';

export interface MeshEndpoint {
  readonly address: string;
  readonly port: number;
  /** Default HEALTHY. */
  readonly health?: 'HEALTHY' | 'UNHEALTHY' | 'TERMINATING';
}

export interface EchoServiceSpec {
  readonly name: string;
  readonly namespace: string;
  /** The service port the client dials (`xds:///<hostname>:<port>`); endpoints listen on their own port. */
  readonly port: number;
  readonly endpoints: readonly MeshEndpoint[];
}

/** A one-cluster mesh of gRPC services, plus raw Envoy resources (each with "@type"). */
export function meshDocument(services: readonly EchoServiceSpec[], resources: readonly object[] = []): Record<string, unknown> {
  return {
    clusters: [{ id: 'cluster-a', network: 'network-a', domain: DOMAIN, rootCaPem: '' }],
    services: services.map((s) => ({
      name: s.name,
      namespace: s.namespace,
      cluster: 'cluster-a',
      ports: [{ name: 'grpc', port: s.port, protocol: 'GRPC' }],
      endpoints: s.endpoints.map((e) => ({
        address: e.address,
        port: e.port,
        serviceAccount: s.name,
        locality: { region: 'region-a', zone: 'zone-a1' },
        health: e.health ?? 'HEALTHY',
      })),
    })),
    ...(resources.length ? { resources } : {}),
  };
}

export function hostnameOf(s: Pick<EchoServiceSpec, 'name' | 'namespace'>): string {
  return `${s.name}.${s.namespace}.svc.${DOMAIN}`;
}

export function targetOf(s: EchoServiceSpec): string {
  return `xds:///${hostnameOf(s)}:${s.port}`;
}

export function clusterNameOf(s: EchoServiceSpec): string {
  return `outbound|${s.port}||${hostnameOf(s)}`;
}

export interface MeshHarness {
  readonly meshfed: Meshfed;
  readonly file: string;
  /** Replaces the mesh file atomically (write + rename), as editors and ConfigMap volumes do. */
  write(doc: Record<string, unknown>): Promise<void>;
  syncz(): Promise<SynczEntry[]>;
  stop(): Promise<void>;
}

export interface SynczType {
  type: string;
  state: 'SYNCED' | 'STALE' | 'NOT_SENT' | 'ERROR';
  versionSent?: string;
  versionAcked?: string;
  subscribed?: string[];
  lastNack?: { message: string; nonce: string };
}

export interface SynczEntry {
  proxy: string;
  stream: number;
  kind: string;
  view?: { role: string };
  types: SynczType[];
}

/** A mesh file in a fresh temporary directory, replaced atomically (write + rename) on each write. */
export async function meshFile(
  prefix: string,
  doc: Record<string, unknown>,
): Promise<{ dir: string; file: string; write(d: Record<string, unknown>): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  const file = path.join(dir, 'mesh.yaml');
  let seq = 0;
  const write = async (d: Record<string, unknown>): Promise<void> => {
    const tmp = path.join(dir, `.mesh.yaml.${++seq}`);
    await writeFile(tmp, stringify(d));
    await rename(tmp, file);
  };
  await write(doc);
  return { dir, file, write };
}

export async function startMeshHarness(doc: Record<string, unknown>): Promise<MeshHarness> {
  const { dir, file, write } = await meshFile('meshfed-e2e-', doc);
  const meshfed = await startMeshfed({
    config: file,
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 20,
    log: pino({ level: process.env['MESHFED_E2E_LOG'] ?? 'silent' }),
  });
  return {
    meshfed,
    file,
    write,
    async syncz() {
      const res = await fetch(`http://127.0.0.1:${meshfed.debugPort}/debug/syncz`);
      if (!res.ok) throw new Error(`/debug/syncz: HTTP ${res.status}`);
      return (await res.json()) as SynczEntry[];
    },
    async stop() {
      await meshfed.stop(500);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
