// Two clusters federate with no hand work (issue 9, must-show 1): two fake apiservers with the CRDs applied by kubectl,
// two `meshfed serve --kube` processes, and in each cluster an IstioFederation for the other. Both CRs reach
// Public/PrivateMetadataExchangeReady=True; unlabelling B's Service withdraws the import from A; deleting A's CR drops
// B's root from A's trust bundle.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { startFakeApiServer, type FakeApiServer, type KubeObject } from '../fixtures/kube-apiserver/index.js';
import { waitFor } from '../helpers/grpc-mesh.js';
import { namespace } from '../helpers/kube-cluster.js';
import { freePort } from '../helpers/ports.js';
import { RawXdsClient, type SotwResponse } from '../helpers/raw-client.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../..');
const KUBECTL = execFileSync('which', ['kubectl'], { encoding: 'utf8' }).trim();
const CRDS = path.join(repo, 'deploy/kubernetes/crds');
const FED = 'deckhouse.io/v1alpha1';
const BAR_CLUSTER = 'outbound|9090||bar.xyz.svc.cluster-b.local';

interface Side {
  readonly name: 'cluster-a' | 'cluster-b';
  readonly dir: string;
  api: FakeApiServer;
  kubeconfig: string;
  xds: number;
  metadata: number;
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
  ((s.api.get(FED, 'IstioFederation', undefined, peer)?.['status'] as { conditions?: Array<Record<string, string>> } | undefined)?.conditions ?? []).find((c) => c['type'] === type)?.['status'];

const bar: KubeObject = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'bar', namespace: 'xyz', labels: { 'meshfed.io/exported': 'true' } },
  spec: { type: 'ClusterIP', ports: [{ name: 'grpc', port: 9090, targetPort: 9090, protocol: 'TCP' }] },
};

function start(s: Side, gateway: string): void {
  const args = [
    'serve', '--kubeconfig', s.kubeconfig, '--namespace', 'meshfed', '--cluster-id', s.name, '--cluster-domain', `${s.name}.local`,
    '--xds-address', `127.0.0.1:${s.xds}`, '--admin-address', '127.0.0.1:0', '--debug-address', '127.0.0.1:0',
    '--metadata-address', `127.0.0.1:${s.metadata}`, '--federation', '--advertise-gateway', gateway, '--peer-poll-interval', '1',
  ];
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  s.proc = proc;
  proc.stdout!.on('data', (d: Buffer) => (s.out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (s.out += d.toString()));
}

const node = {
  id: 'sidecar~10.1.0.9~client-1.abc~abc.svc.cluster-a.local',
  metadata: { fields: { CLUSTER_ID: { string_value: 'cluster-a' }, NAMESPACE: { string_value: 'abc' }, SERVICE_ACCOUNT: { string_value: 'client' } } },
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

async function trustDomainsOfA(): Promise<string[]> {
  const sds = await askA(TypeUrl.Secret, ['ROOTCA']);
  const vc = sds.resources.find((r) => r.name === 'ROOTCA')!.body['validation_context'] as Record<string, Record<string, unknown>>;
  return (vc['custom_validator_config']!['typed_config'] as { trust_domains: Array<{ name: string }> }).trust_domains.map((d) => d.name).sort();
}

beforeAll(async () => {
  for (const name of ['cluster-a', 'cluster-b'] as const) {
    const dir = mkdtempSync(path.join(os.tmpdir(), `meshfed-fedkube-${name}-`));
    const api = await startFakeApiServer({ clusterName: name });
    const s: Side = { name, dir, api, kubeconfig: api.writeKubeconfig(dir), xds: await freePort(), metadata: await freePort(), out: '' };
    sides.push(s);
    for (const ns of ['kube-system', 'meshfed', 'xyz']) api.upsert(namespace(ns));
    await kubectl(s, ['apply', '-f', CRDS]);
  }
  await kubectl(B(), ['apply'], bar);
  start(A(), '198.51.100.1:15443');
  start(B(), '192.0.2.20:15443');
  await kubectl(A(), ['apply'], { apiVersion: FED, kind: 'IstioFederation', metadata: { name: 'cluster-b' }, spec: { trustDomain: 'cluster-b.local', metadataEndpoint: `http://127.0.0.1:${B().metadata}/metadata/` } });
  await kubectl(B(), ['apply'], { apiVersion: FED, kind: 'IstioFederation', metadata: { name: 'cluster-a' }, spec: { trustDomain: 'cluster-a.local', metadataEndpoint: `http://127.0.0.1:${A().metadata}/metadata/` } });
}, 30_000);

afterAll(async () => {
  sides.forEach((s) => s.proc?.kill('SIGKILL'));
  await Promise.all(sides.map((s) => s.api.close()));
});

describe('two meshfed --kube processes federated by IstioFederation resources', () => {
  it('both CRs reach Public and Private MetadataExchangeReady=True, and A serves B\'s exported service over B\'s gateway', async () => {
    await waitFor('conditions True on both CRs', () => {
      for (const s of sides) if (s.proc!.exitCode !== null) throw new Error(`${s.name} exited: ${s.out}`);
      return ([[A(), 'cluster-b'], [B(), 'cluster-a']] as const).every(([s, peer]) =>
        ['PublicMetadataExchangeReady', 'PrivateMetadataExchangeReady'].every((t) => condition(s, peer, t) === 'True'));
    }, 20_000, 200).catch((err: Error) => {
      throw new Error(`${err.message}\n--- A:\n${A().out.slice(-3000)}\n--- B:\n${B().out.slice(-3000)}`);
    });
    await waitFor('bar in A\'s CDS', async () => (await askA(TypeUrl.Cluster, [])).resources.some((r) => r.name === BAR_CLUSTER), 5_000, 200);
    const eds = JSON.stringify((await askA(TypeUrl.Endpoint, [BAR_CLUSTER])).resources[0]?.body);
    expect(eds).toContain('"address":"192.0.2.20"');
    expect(await trustDomainsOfA()).toEqual(['cluster-a.local', 'cluster-b.local']);
  });

  it('unlabelling the Service in B removes the import from A', async () => {
    expect((await askA(TypeUrl.Cluster, [])).resources.map((r) => r.name)).toContain(BAR_CLUSTER);
    await kubectl(B(), ['label', 'service', 'bar', '-n', 'xyz', 'meshfed.io/exported-']);
    await waitFor('bar gone from A\'s CDS', async () => !(await askA(TypeUrl.Cluster, [])).resources.some((r) => r.name === BAR_CLUSTER), 10_000, 200);
  });

  it("deleting A's IstioFederation removes B's root from A's bundle", async () => {
    expect(await trustDomainsOfA()).toEqual(['cluster-a.local', 'cluster-b.local']);
    await kubectl(A(), ['delete', 'istiofederation', 'cluster-b']);
    await waitFor('cluster-b.local gone from ROOTCA', async () => (await trustDomainsOfA()).join() === 'cluster-a.local', 10_000, 200);
  });
});
