// `meshfed serve --kubeconfig` as an operator runs it: two replicas against one apiserver discover
// its services and share one mesh CA, kept in a Secret that the first replica creates.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { endpointSlice, namespace, pod, service, type ClusterSpec } from '../helpers/kube-cluster.js';
import { freePort } from '../helpers/ports.js';
import { RawXdsClient } from '../helpers/raw-client.js';

const repo = path.resolve(import.meta.dirname, '../..');
const FOO: ClusterSpec = { namespace: 'abc', service: 'foo', portName: 'grpc', port: 8080, targetPort: 8080 };


interface Replica {
  proc: ChildProcess;
  xds: number;
  admin: number;
  output: () => string;
}

async function replica(kubeconfig: string): Promise<Replica> {
  const [xds, admin] = [await freePort(), await freePort()];
  const args = ['serve', '--kubeconfig', kubeconfig, '--namespace', 'meshfed', '--cluster-id', 'c1', '--xds-address', `127.0.0.1:${xds}`, '--admin-address', `127.0.0.1:${admin}`, '--debug-address', '127.0.0.1:0'];
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, xds, admin, output: () => out };
}

async function ready(r: Replica): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (r.proc.exitCode !== null) throw new Error(`meshfed exited ${r.proc.exitCode}: ${r.output()}`);
    if (Date.now() > deadline) throw new Error(`meshfed did not become ready: ${r.output()}`);
    if (await fetch(`http://127.0.0.1:${r.admin}/readyz`).then((x) => x.ok, () => false)) return;
    await new Promise((res) => setTimeout(res, 100));
  }
}

let api: FakeApiServer;
const replicas: Replica[] = [];

beforeAll(async () => {
  api = await startFakeApiServer({ clusterName: 'c1' });
  api.upsert(namespace('meshfed'));
  api.upsert(namespace('abc'));
  api.upsert(service(FOO));
  api.upsert(pod(FOO, { ip: '10.1.0.7', pod: 'foo-1' }));
  api.upsert(endpointSlice(FOO, 'foo-1', [{ ip: '10.1.0.7', pod: 'foo-1' }]));
  const kubeconfig = api.writeKubeconfig(mkdtempSync(path.join(os.tmpdir(), 'meshfed-kube-')));
  // Started together, so both race to create the CA Secret.
  replicas.push(await replica(kubeconfig), await replica(kubeconfig));
  await Promise.all(replicas.map(ready));
}, 60_000);

afterAll(async () => {
  for (const r of replicas) r.proc.kill('SIGKILL');
  await api?.close();
});

describe('meshfed serve --kubeconfig, two replicas', () => {
  it('serve the apiserver\'s services', async () => {
    for (const r of replicas) {
      const c = new RawXdsClient(`127.0.0.1:${r.xds}`);
      const s = c.sotw();
      s.send({ node: { id: 'sidecar~10.1.0.9~bar-1.abc~abc.svc.cluster.local' }, type_url: TypeUrl.Cluster, resource_names: [] });
      expect((await s.next()).resources.map((x) => x.name)).toEqual(['outbound|8080||foo.abc.svc.cluster.local']);
      c.close();
    }
  });

  it('end with one root, stored once in meshfed\'s namespace and published as the same SPIFFE bundle', async () => {
    const secrets = api.list('v1', 'Secret', 'meshfed');
    expect(secrets.map((s) => s.metadata.name)).toEqual(['meshfed-ca']);
    const bundles = await Promise.all(
      replicas.map(async (r) => (await (await fetch(`http://127.0.0.1:${r.admin}/.well-known/spiffe-bundle`)).json()) as { keys: Array<{ use: string; x5c: string[] }> }),
    );
    expect(bundles[0]!.keys).toHaveLength(1);
    expect(bundles[0]!.keys[0]!.use).toBe('x509-svid');
    expect(bundles[1]!.keys.map((k) => k.x5c)).toEqual(bundles[0]!.keys.map((k) => k.x5c));
  });
});
