// Kubernetes objects for tests against the fake apiserver, and a meshfed that watches fake clusters.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Meshfed, type MeshfedOptions, startMeshfed } from '../../src/app.js';
import type { Endpoint } from '../../src/model/mesh.js';
import type { ClusterStatus, KubeSourceOptions } from '../../src/sources/kube/index.js';
import { createLogger } from '../../src/log.js';
import type { FakeApiServer, KubeObject } from '../fixtures/kube-apiserver/index.js';

export interface Backend {
  readonly ip: string;
  readonly pod: string;
  readonly ready?: boolean;
}

export interface ClusterSpec {
  readonly namespace: string;
  readonly service: string;
  /** Service port name and number; the endpoints listen on `targetPort`. */
  readonly portName: string;
  readonly port: number;
  readonly targetPort: number;
  readonly region?: string;
  /** Pods labelled sidecar.istio.io/inject=false, so their endpoints are plaintext. */
  readonly plaintext?: boolean;
}

export const namespace = (name: string, labels: Record<string, string> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, labels },
});

export const node = (name: string, region: string, zone: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels: { 'topology.kubernetes.io/region': region, 'topology.kubernetes.io/zone': zone } },
});

export const service = (s: ClusterSpec): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: s.service, namespace: s.namespace },
  spec: { type: 'ClusterIP', ports: [{ name: s.portName, port: s.port, targetPort: s.targetPort, protocol: 'TCP' }] },
});

export const pod = (s: ClusterSpec, b: Backend): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: b.pod,
    namespace: s.namespace,
    labels: { app: s.service, ...(s.plaintext ? { 'sidecar.istio.io/inject': 'false' } : {}) },
  },
  spec: { serviceAccountName: `${s.service}-sa`, nodeName: 'node-1' },
  status: { podIP: b.ip },
});

export const endpointSlice = (s: ClusterSpec, name: string, backends: readonly Backend[]): KubeObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: s.namespace, labels: { 'kubernetes.io/service-name': s.service } },
  addressType: 'IPv4',
  endpoints: backends.map((b) => ({
    addresses: [b.ip],
    conditions: { ready: b.ready ?? true },
    nodeName: 'node-1',
    targetRef: { kind: 'Pod', name: b.pod, namespace: s.namespace },
  })),
  ports: [{ name: s.portName, port: s.targetPort, protocol: 'TCP' }],
});

/** Namespace, node, service, pods and one EndpointSlice holding `backends`. */
export function seedCluster(api: FakeApiServer, s: ClusterSpec, backends: readonly Backend[], slice = `${s.service}-1`): void {
  api.upsert(namespace(s.namespace));
  api.upsert(node('node-1', s.region ?? 'region-1', 'zone-a'));
  api.upsert(service(s));
  for (const b of backends) api.upsert(pod(s, b));
  api.upsert(endpointSlice(s, slice, backends));
}

/** A remote Secret in Istio's format naming `clusterId`, stored in the local apiserver. */
export function remoteSecret(
  name: string,
  clusterId: string,
  kubeconfig: string,
  ns = 'meshfed',
  annotations: Record<string, string> = {},
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: ns, labels: { 'istio/multiCluster': 'true' }, annotations },
    type: 'Opaque',
    data: { [clusterId]: Buffer.from(kubeconfig).toString('base64') },
  };
}

export const backends = (prefix: string, n: number, from = 1): Backend[] =>
  Array.from({ length: n }, (_, i) => ({ ip: `${prefix}.${from + i}`, pod: `pod-${prefix.replaceAll('.', '-')}-${from + i}` }));

/** meshfed watching `local` through a kubeconfig file, with short bounds unless given. */
export async function startKubeMeshfed(
  local: FakeApiServer,
  kube: Partial<KubeSourceOptions> = {},
  meshfed: Partial<MeshfedOptions> = {},
): Promise<Meshfed> {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-kube-'));
  return startMeshfed({
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 20,
    debounceMaxMs: 200,
    log: createLogger(process.env['MESHFED_TEST_LOG'] ?? 'silent'),
    kube: {
      kubeconfig: local.writeKubeconfig(dir),
      clusterId: 'local',
      namespace: 'meshfed',
      remoteSyncTimeoutMs: 5000,
      backoff: { initialMs: 50, maxMs: 300 },
      ...kube,
    },
    ...meshfed,
  });
}

/** A page of the admin address, or of the debug address for /debug/*. */
export async function admin<T>(m: Meshfed, path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://127.0.0.1:${path.startsWith('/debug/') ? m.debugPort : m.adminPort}${path}`);
  return { status: res.status, body: (await res.json()) as T };
}

export async function clusterStatus(m: Meshfed, id: string): Promise<ClusterStatus> {
  const { body } = await admin<{ clusters: ClusterStatus[] }>(m, '/debug/clusters');
  const c = body.clusters.find((x) => x.cluster === id);
  if (!c) throw new Error(`no cluster ${id} at /debug/clusters: ${JSON.stringify(body)}`);
  return c;
}

/** Published endpoints of a hostname, as `clusterId address` (+ `!p<priority>` when demoted), sorted. */
export function endpointsOf(m: Meshfed, hostname: string): string[] {
  return (m.registry.snapshot.endpoints.get(hostname) ?? []).map(describe).sort();
}

function describe(e: Endpoint): string {
  return `${e.clusterId} ${e.address}${e.priority ? ` !p${e.priority}` : ''}`;
}

export function expectEqual<T>(got: T, want: T): T {
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  return got;
}
