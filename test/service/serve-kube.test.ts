// `meshfed serve --kubeconfig` as an operator runs it: two replicas against one apiserver discover
// its services and share one mesh CA, kept in a Secret that the Lease-elected leader creates; a killed
// leader is replaced, and a root rotation with `meshfed ca` reaches a running follower without a restart.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { endpointSlice, namespace, pod, service, type ClusterSpec } from '../helpers/kube-cluster.js';
import { waitForHttpOk } from '../helpers/child-process.js';
import { freePort } from '../helpers/ports.js';
import { dataText } from '../helpers/mesh-tls.js';
import { RawXdsClient, type SotwResponse } from '../helpers/raw-client.js';
import { splitPems } from '../../src/pki/x509.js';

const repo = path.resolve(import.meta.dirname, '../..');
const FOO: ClusterSpec = { namespace: 'abc', service: 'foo', portName: 'grpc', port: 8080, targetPort: 8080 };

interface Replica {
  name: string;
  proc: ChildProcess;
  xds: number;
  admin: number;
  output: () => string;
}

const LEASE_DURATION_S = 2;

async function replica(kubeconfig: string, name: string): Promise<Replica> {
  const [xds, admin] = [await freePort(), await freePort()];
  const args = [
    'serve',
    '--kubeconfig',
    kubeconfig,
    '--namespace',
    'meshfed',
    '--cluster-id',
    'c1',
    '--xds-address',
    `127.0.0.1:${xds}`,
    '--admin-address',
    `127.0.0.1:${admin}`,
    '--debug-address',
    '127.0.0.1:0',
    '--lease-duration',
    String(LEASE_DURATION_S),
    '--insecure-dev-identity', // plaintext SDS for the node's claimed identity: the test reads certificates without tokens
  ];
  // POD_NAME as the Deployment's downward API sets it: the Lease's holderIdentity.
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, POD_NAME: name },
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { name, proc, xds, admin, output: () => out };
}

const lease = () =>
  api.get('coordination.k8s.io/v1', 'Lease', 'meshfed', 'meshfed-leader')?.['spec'] as
    | { holderIdentity?: string; leaseTransitions?: number }
    | undefined;
const leads = (r: Replica): boolean => r.output().includes('"msg":"leading: holds the Lease"');

/** An SDS stream of a workload abc/foo (its identity from node metadata): `default` and ROOTCA_PEM, each response ACKed. */
function sds(r: Replica) {
  const c = new RawXdsClient(`127.0.0.1:${r.xds}`);
  const s = c.sotw();
  const node = {
    id: 'sidecar~10.1.0.7~foo-1.abc~abc.svc.cluster.local',
    metadata: { fields: { NAMESPACE: { stringValue: 'abc' }, SERVICE_ACCOUNT: { stringValue: 'foo' } } },
  };
  const names = ['default', 'ROOTCA_PEM'];
  s.send({ node, type_url: TypeUrl.Secret, resource_names: names });
  let last: { roots: string[]; leaf: X509Certificate } | undefined;
  const latest = new Map<string, Record<string, unknown>>();
  return {
    /** The latest secrets, after waiting for a response that satisfies ok. */
    async next(
      what: string,
      ok: (x: { roots: string[]; leaf: X509Certificate }) => boolean,
    ): Promise<{ roots: string[]; leaf: X509Certificate }> {
      while (!last || !ok(last)) {
        const res: SotwResponse = await s.next(20_000).catch((err: Error) => {
          throw new Error(`${what}: ${err.message}`);
        });
        s.send({ node, type_url: TypeUrl.Secret, resource_names: names, version_info: res.version_info, response_nonce: res.nonce });
        // A response carries the secrets that changed (SDS is not a state-of-the-world type for Envoy).
        for (const x of res.resources) latest.set(x.name, x.body);
        const tls = latest.get('default')?.['tls_certificate'] as { certificate_chain: unknown } | undefined;
        const vc = latest.get('ROOTCA_PEM')?.['validation_context'] as { trusted_ca: unknown } | undefined;
        if (tls && vc) last = { roots: splitPems(dataText(vc.trusted_ca)), leaf: new X509Certificate(dataText(tls.certificate_chain)) };
      }
      return last;
    },
    close: () => c.close(),
  };
}

const signedBy = (leaf: X509Certificate, rootPem: string): boolean => leaf.verify(new X509Certificate(rootPem).publicKey);

const ready = (r: Replica): Promise<void> => waitForHttpOk(r.proc, `http://127.0.0.1:${r.admin}/readyz`, r.output, 30_000);

let api: FakeApiServer;
let kubeconfig: string;
const replicas: Replica[] = [];

beforeAll(async () => {
  api = await startFakeApiServer({ clusterName: 'c1' });
  api.upsert(namespace('meshfed'));
  api.upsert(namespace('abc'));
  api.upsert(service(FOO));
  api.upsert(pod(FOO, { ip: '10.1.0.7', pod: 'foo-1' }));
  api.upsert(endpointSlice(FOO, 'foo-1', [{ ip: '10.1.0.7', pod: 'foo-1' }]));
  kubeconfig = api.writeKubeconfig(mkdtempSync(path.join(os.tmpdir(), 'meshfed-kube-')));
  // Started together: both race for the Lease, and the winner creates the CA Secret.
  replicas.push(await replica(kubeconfig, 'meshfed-0'), await replica(kubeconfig, 'meshfed-1'));
  await Promise.all(replicas.map(ready));
}, 60_000);

afterAll(async () => {
  for (const r of replicas) r.proc.kill('SIGKILL');
  await api?.close();
});

describe('meshfed serve --kubeconfig, two replicas', () => {
  it("serve the apiserver's services", async () => {
    for (const r of replicas) {
      const c = new RawXdsClient(`127.0.0.1:${r.xds}`);
      const s = c.sotw();
      s.send({ node: { id: 'sidecar~10.1.0.9~bar-1.abc~abc.svc.cluster.local' }, type_url: TypeUrl.Cluster, resource_names: [] });
      expect((await s.next()).resources.map((x) => x.name)).toEqual(['outbound|8080||foo.abc.svc.cluster.local']);
      c.close();
    }
  });

  it("end with one root, stored once in meshfed's namespace and published as the same SPIFFE bundle", async () => {
    const secrets = api.list('v1', 'Secret', 'meshfed');
    expect(secrets.map((s) => s.metadata.name)).toEqual(['meshfed-ca']);
    const bundles = await Promise.all(
      replicas.map(
        async (r) =>
          (await (await fetch(`http://127.0.0.1:${r.admin}/.well-known/spiffe-bundle`)).json()) as {
            keys: Array<{ use: string; x5c: string[] }>;
          },
      ),
    );
    expect(bundles[0]!.keys).toHaveLength(1);
    expect(bundles[0]!.keys[0]!.use).toBe('x509-svid');
    expect(bundles[1]!.keys.map((k) => k.x5c)).toEqual(bundles[0]!.keys.map((k) => k.x5c));
  });

  it('elect exactly one leader on the Lease, the replica that holds it', async () => {
    await vi.waitFor(() => expect(lease()?.holderIdentity, 'the Lease holder').toBeTruthy(), { timeout: 30_000, interval: 100 });
    const holder = lease()!.holderIdentity;
    expect(replicas.map((r) => r.name)).toContain(holder);
    expect(replicas.filter(leads).map((r) => r.name)).toEqual([holder]);
  });

  it('a killed leader is replaced by the other replica within the lease duration', async () => {
    const leader = replicas.find((r) => r.name === lease()!.holderIdentity)!;
    const other = replicas.find((r) => r !== leader)!;
    const transitions = lease()!.leaseTransitions ?? 0;
    leader.proc.kill('SIGKILL'); // no chance to hand the Lease back
    await vi.waitFor(
      () => {
        expect(lease()?.holderIdentity).toBe(other.name);
        expect(leads(other), other.output()).toBe(true);
      },
      { timeout: (LEASE_DURATION_S + 10) * 1000, interval: 100 },
    );
    expect(lease()!.leaseTransitions).toBe(transitions + 1);
    replicas.splice(replicas.indexOf(leader), 1);
  });

  it('a root rotation with `meshfed ca` reaches a running follower: trusted at rotate, signing at activate, no restart', async () => {
    const follower = await replica(kubeconfig, 'meshfed-2');
    replicas.push(follower);
    await ready(follower);
    expect(lease()!.holderIdentity).not.toBe(follower.name);
    const secrets = sds(follower);
    try {
      const [oldRoot] = (await secrets.next('the first secrets', () => true)).roots;
      const run = (step: string) =>
        promisify(execFile)(
          process.execPath,
          ['--import', 'tsx', 'src/cli/main.ts', 'ca', step, '--kubeconfig', kubeconfig, '--namespace', 'meshfed'],
          { cwd: repo },
        );
      await run('rotate');
      const rotated = await secrets.next('ROOTCA_PEM with the next root', (x) => x.roots.length === 2);
      const newRoot = rotated.roots.find((r) => r !== oldRoot)!;
      expect(signedBy(rotated.leaf, oldRoot!)).toBe(true); // the next root signs nothing yet
      await run('activate');
      const activated = await secrets.next('a certificate signed by the new root', (x) => signedBy(x.leaf, newRoot));
      expect(activated.roots.sort()).toEqual([oldRoot, newRoot].sort()); // the old root stays trusted meanwhile
      expect(follower.proc.exitCode).toBeNull();
    } finally {
      secrets.close();
    }
  }, 90_000);
});
