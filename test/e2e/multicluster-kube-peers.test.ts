// Two clusters join with no hand work (issue 10, must-show 1): two fake apiservers with the same domain
// cluster.local on different networks, the CRDs applied by kubectl, two `meshfed serve --kube` processes, each with
// its own root, its metadata exporter and its api-proxy, and in each cluster an IstioMulticluster for the other.
// Both CRs reach Public/PrivateMetadataExchangeReady and RemoteAPIServerReady True; A's EDS for foo holds B's
// endpoints as B's gateway (split horizon), B's root joins A's cluster.local bundle, and when B's endpoints change A
// follows, through B's api-proxy, within a second.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { testPki } from '../fixtures/kube-apiserver/pki.js';
import { backends, type ClusterSpec, endpointSlice, namespace, pod, seedCluster } from '../helpers/kube-cluster.js';
import { freePort } from '../helpers/ports.js';
import { RawXdsClient, type SotwResponse } from '../helpers/raw-client.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../..');
const KUBECTL = execFileSync('which', ['kubectl'], { encoding: 'utf8' }).trim();
const CRDS = path.join(repo, 'deploy/kubernetes/crds');
const DH = 'deckhouse.io/v1alpha1';
const FOO: ClusterSpec = { namespace: 'abc', service: 'foo', portName: 'grpc', port: 8080, targetPort: 9000 };
const FOO_EDS = 'outbound|8080||foo.abc.svc.cluster.local';
const GATEWAY = { 'cluster-a': '198.51.100.1', 'cluster-b': '192.0.2.20' } as const;

interface Side {
  readonly name: 'cluster-a' | 'cluster-b';
  readonly dir: string;
  api: FakeApiServer;
  kubeconfig: string;
  xds: number;
  debug: number;
  metadata: number;
  apiProxy: number;
  proc?: ChildProcess;
  out: string;
}

const sides: Side[] = [];
const [A, B] = [() => sides[0]!, () => sides[1]!];

async function kubectl(s: Side, args: string[], input?: object): Promise<string> {
  let file: string | undefined;
  if (input) {
    file = path.join(s.dir, `in-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, stringify(input));
  }
  const { stdout } = await run(KUBECTL, [...args, ...(file ? ['-f', file] : [])], { env: { ...process.env, KUBECONFIG: s.kubeconfig }, timeout: 20_000 });
  return stdout;
}

const condition = (s: Side, peer: string, type: string): string | undefined =>
  ((s.api.get(DH, 'IstioMulticluster', undefined, peer)?.['status'] as { conditions?: Array<Record<string, string>> } | undefined)?.conditions ?? []).find((c) => c['type'] === type)?.['status'];

function start(s: Side): void {
  const pki = testPki();
  const cert = path.join(s.dir, 'api-proxy.crt');
  const key = path.join(s.dir, 'api-proxy.key');
  writeFileSync(cert, pki.serverCertPem);
  writeFileSync(key, pki.serverKeyPem, { mode: 0o600 });
  const args = [
    'serve', '--kubeconfig', s.kubeconfig, '--namespace', 'meshfed', '--cluster-id', s.name, '--network', `network-${s.name}`,
    '--xds-address', `127.0.0.1:${s.xds}`, '--admin-address', '127.0.0.1:0', '--debug-address', `127.0.0.1:${s.debug}`,
    '--metadata-address', `127.0.0.1:${s.metadata}`, '--advertise-gateway', `${GATEWAY[s.name]}:15443`, '--peer-poll-interval', '1',
    // The api-proxy with a certificate from files (as behind an Ingress), and its address published in multicluster.json.
    '--api-proxy-address', `127.0.0.1:${s.apiProxy}`, '--api-proxy-tls-cert', cert, '--api-proxy-tls-key', key, '--multicluster-api-host', `127.0.0.1:${s.apiProxy}`,
  ];
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  s.proc = proc;
  proc.stdout!.on('data', (d: Buffer) => (s.out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (s.out += d.toString()));
}

const node = {
  id: 'sidecar~10.1.0.9~client-1.abc~abc.svc.cluster.local',
  metadata: { fields: { CLUSTER_ID: { string_value: 'cluster-a' }, NETWORK: { string_value: 'network-cluster-a' }, NAMESPACE: { string_value: 'abc' }, SERVICE_ACCOUNT: { string_value: 'client' } } },
};

/** One SotW answer from A's xDS for a sidecar of cluster-a. */
async function askA(typeUrl: string, names: string[]): Promise<SotwResponse> {
  const client = new RawXdsClient(`127.0.0.1:${A().xds}`);
  try {
    const s = client.sotw();
    s.send({ node, type_url: typeUrl, resource_names: names });
    return await s.next(10_000);
  } finally {
    client.close();
  }
}

/** A's EDS for foo as `address:port weight`, sorted. */
async function fooEndpointsOfA(): Promise<string[]> {
  const cla = (await askA(TypeUrl.Endpoint, [FOO_EDS])).resources[0]?.body as { endpoints?: Array<{ lb_endpoints: Array<Record<string, unknown>> }> } | undefined;
  const out: string[] = [];
  for (const group of cla?.endpoints ?? []) {
    for (const e of group.lb_endpoints) {
      const sa = ((e['endpoint'] as Record<string, unknown>)['address'] as { socket_address: { address: string; port_value: number } }).socket_address;
      out.push(`${sa.address}:${sa.port_value} ${String((e['load_balancing_weight'] as { value?: number } | undefined)?.value ?? 1)}`);
    }
  }
  return out.sort();
}

async function rootsOfA(): Promise<string[]> {
  const sds = await askA(TypeUrl.Secret, ['ROOTCA']);
  const vc = sds.resources.find((r) => r.name === 'ROOTCA')!.body['validation_context'] as Record<string, Record<string, unknown>>;
  const domains = (vc['custom_validator_config']!['typed_config'] as { trust_domains: Array<{ name: string; trust_bundle: { inline_bytes: Uint8Array } }> }).trust_domains;
  return domains.map((d) => `${d.name} ${Buffer.from(d.trust_bundle.inline_bytes).toString().split('BEGIN CERTIFICATE').length - 1}`);
}

beforeAll(async () => {
  for (const name of ['cluster-a', 'cluster-b'] as const) {
    const dir = mkdtempSync(path.join(os.tmpdir(), `meshfed-mckube-${name}-`));
    const api = await startFakeApiServer({ clusterName: name });
    const s: Side = { name, dir, api, kubeconfig: api.writeKubeconfig(dir), xds: await freePort(), debug: await freePort(), metadata: await freePort(), apiProxy: await freePort(), out: '' };
    sides.push(s);
    for (const ns of ['kube-system', 'meshfed']) api.upsert(namespace(ns));
    await kubectl(s, ['apply', '-f', CRDS]);
  }
  seedCluster(A().api, FOO, backends('10.1.0', 2));
  seedCluster(B().api, FOO, backends('10.2.0', 3));
  start(A());
  start(B());
  const ca = testPki().caPem;
  for (const [s, peer] of [[A(), B()], [B(), A()]] as const) {
    await kubectl(s, ['apply'], { apiVersion: DH, kind: 'IstioMulticluster', metadata: { name: peer.name }, spec: { metadataEndpoint: `http://127.0.0.1:${peer.metadata}/metadata/`, metadata: { ca } } });
  }
}, 30_000);

afterAll(async () => {
  sides.forEach((s) => s.proc?.kill('SIGKILL'));
  await Promise.all(sides.map((s) => s.api.close()));
});

describe('two meshfed --kube processes joined by IstioMulticluster resources', () => {
  it('both CRs reach all three conditions True', async () => {
    await vi.waitFor(() => {
      for (const s of sides) if (s.proc!.exitCode !== null) throw new Error(`${s.name} exited: ${s.out}`);
      for (const [s, peer] of [[A(), 'cluster-b'], [B(), 'cluster-a']] as const) {
        for (const t of ['PublicMetadataExchangeReady', 'PrivateMetadataExchangeReady', 'RemoteAPIServerReady']) expect(condition(s, peer, t), `${s.name}'s ${peer} ${t}`).toBe('True');
      }
    }, { timeout: 30_000, interval: 200 }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- A:\n${A().out.slice(-3000)}\n--- B:\n${B().out.slice(-3000)}`);
    });
  });

  it('A serves B\'s endpoints of foo as B\'s gateway (split horizon), beside its own pods', async () => {
    await vi.waitFor(async () => expect((await fooEndpointsOfA()).some((e) => e.startsWith(`${GATEWAY['cluster-b']}:15443 `)), 'B behind its gateway in A\'s EDS').toBe(true), { timeout: 15_000, interval: 200 }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- A:\n${A().out.slice(-3000)}`);
    });
    expect(await fooEndpointsOfA()).toEqual(['10.1.0.1:9000 1', '10.1.0.2:9000 1', `${GATEWAY['cluster-b']}:15443 3`]);
    // One trust domain, two roots: A's own and B's.
    expect(await rootsOfA()).toEqual(['cluster.local 2']);
    const peers = JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'status', '--debug-url', `http://127.0.0.1:${A().debug}`, '-o', 'json'], { cwd: repo, encoding: 'utf8' })) as Array<Record<string, unknown>>;
    expect(peers).toMatchObject([{ name: 'cluster-b', kind: 'multicluster', api: { status: 'True' }, remoteCluster: { state: 'synced', endpoints: 3 } }]);
  });

  it('B\'s endpoints change and A follows within a second', async () => {
    // Pods first (with sidecars, so reachable through the gateway), then the slice: the change A must follow.
    for (const b of backends('10.2.0', 5)) B().api.upsert(pod(FOO, b));
    B().api.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 5)));
    // Bounded: the watch event crosses B's api-proxy to A's watch, then A's debounce (100 ms).
    await vi.waitFor(async () => expect(await fooEndpointsOfA()).toContain(`${GATEWAY['cluster-b']}:15443 5`), { timeout: 1000, interval: 20 });
    // Fewer, but not so many fewer that the remote guard holds them back as a mass withdrawal.
    B().api.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 3, 3)));
    await vi.waitFor(async () => expect(await fooEndpointsOfA()).toContain(`${GATEWAY['cluster-b']}:15443 3`), { timeout: 1000, interval: 20 });
  });
});
