// Two clusters, two meshfeds, two CAs: a proxyless gRPC client abc/foo (cluster-a.local, fed by its
// own `meshfed agent` against meshfed A) calls an xDS-enabled gRPC server xyz/bar (cluster-b.local,
// its agent against meshfed B) over mTLS. Trust comes only from the roots each mesh model holds.
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CertificateAuthority, memoryCaStore } from '../../src/pki/index.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { ECHO_SERVICE } from '../helpers/grpc-echo.js';
import { freePort, MtlsClient, startFederatedPair, startXdsEchoServer, type Workload } from '../helpers/grpc-mtls.js';
import { startTlsMesh, type TlsMesh } from '../helpers/mesh-tls.js';

const A = { id: 'cluster-a', domain: 'cluster-a.local' };
const B = { id: 'cluster-b', domain: 'cluster-b.local' };
const BAR_TARGET = 'xds:///bar.xyz.svc.cluster-b.local:9000';
const FOO_TARGET = 'xds:///foo.abc.svc.cluster-a.local:9000';

interface Roots {
  a: string;
  b: string;
}

function service(name: string, ns: string, cluster: string, port: number): Record<string, unknown> {
  return {
    name,
    namespace: ns,
    cluster,
    ports: [{ name: 'grpc', port: 9000, protocol: 'GRPC' }],
    endpoints: [{ address: '127.0.0.1', port, serviceAccount: name, locality: { region: 'r', zone: 'z' }, health: 'HEALTHY', mtls: true }],
  };
}

/**
 * Each model holds the other's root only once exchanged. A federated service is reached through its
 * cluster's gateway; on loopback cluster B's "gateway" is the bar server itself (proxyless gRPC dials
 * the gateway address directly, so the handshake is with bar's own certificate).
 */
function doc(local: typeof A, roots: Roots, services: Record<string, unknown>[]): Record<string, unknown> {
  const other = local === A ? B : A;
  const gateways = (c: typeof A) => (c === B ? [{ address: '127.0.0.1', port: barPort }] : []);
  return {
    clusters: [
      { id: local.id, network: 'net', domain: local.domain, rootCaPem: '', gateways: gateways(local) },
      { id: other.id, network: 'net', domain: other.domain, rootCaPem: local === A ? roots.b : roots.a, gateways: gateways(other) },
    ],
    services,
  };
}

let apiA: FakeApiServer;
let apiB: FakeApiServer;
let meshA: TlsMesh;
let meshB: TlsMesh;
let client: Workload;
let serverWl: Workload;
let barServer: grpc.Server;
let rogue: grpc.Server;
let barPort: number;
let roguePort: number;
const caStoreB = memoryCaStore();
const channels: MtlsClient[] = [];

beforeAll(async () => {
  [apiA, apiB] = await Promise.all([startFakeApiServer({ clusterName: A.id }), startFakeApiServer({ clusterName: B.id })]);
  [barPort, roguePort] = [await freePort(), await freePort()];
  const none = { a: '', b: '' };
  meshA = await startTlsMesh({
    trustDomain: A.domain,
    apiserver: apiA,
    doc: doc(A, none, [service('bar', 'xyz', B.id, barPort), service('foo', 'abc', A.id, roguePort)]),
  });
  meshB = await startTlsMesh({
    trustDomain: B.domain,
    apiserver: apiB,
    caStore: caStoreB,
    doc: doc(B, none, [service('bar', 'xyz', B.id, barPort)]),
  });
  [client, serverWl] = await startFederatedPair({ mesh: meshA, api: apiA, ...A }, { mesh: meshB, api: apiB, ...B });
  barServer = await startXdsEchoServer(await serverWl.bootstrap(), barPort, 'bar@cluster-b');
}, 40_000);

afterAll(async () => {
  for (const c of channels) c.close();
  barServer?.forceShutdown();
  rogue?.forceShutdown();
  await Promise.all([client?.stop(), serverWl?.stop()]);
  await Promise.all([meshA?.stop(), meshB?.stop()]);
  await Promise.all([apiA?.close(), apiB?.close()]);
});

async function channel(target: string): Promise<MtlsClient> {
  const c = new MtlsClient(target, await client.bootstrap());
  channels.push(c);
  return c;
}

describe('mTLS between two federated clusters with their own CAs', () => {
  it('each agent holds its own identity, signed by its own cluster root', async () => {
    const { readFile } = await import('node:fs/promises');
    const leafA = new X509Certificate(await readFile(client.agent.files.certChain, 'utf8'));
    const leafB = new X509Certificate(await readFile(serverWl.agent.files.certChain, 'utf8'));
    expect(leafA.subjectAltName).toContain('URI:spiffe://cluster-a.local/ns/abc/sa/foo');
    expect(leafB.subjectAltName).toContain('URI:spiffe://cluster-b.local/ns/xyz/sa/bar');
    expect(leafA.verify(new X509Certificate(meshA.rootPem).publicKey)).toBe(true);
    expect(leafB.verify(new X509Certificate(meshB.rootPem).publicKey)).toBe(true);
  });

  it('each meshfed publishes its own root at the SPIFFE bundle endpoint (what a peer would fetch)', async () => {
    const res = await fetch(`http://127.0.0.1:${meshB.meshfed.adminPort}/.well-known/spiffe-bundle`);
    const bundle = (await res.json()) as { keys: Array<{ use: string; x5c: string[] }>; spiffe_sequence: number };
    expect(bundle.keys.map((k) => k.use)).toEqual(['x509-svid']);
    expect(new X509Certificate(Buffer.from(bundle.keys[0]!.x5c[0]!, 'base64')).fingerprint256).toBe(
      new X509Certificate(meshB.rootPem).fingerprint256,
    );
    expect(res.headers.get('cache-control')).toMatch(/^max-age=\d+$/);
    const post = await fetch(`http://127.0.0.1:${meshB.meshfed.adminPort}/.well-known/spiffe-bundle`, { method: 'POST' });
    expect(post.status).toBe(405);
  });

  it('before the roots are exchanged the handshake fails; after, RPCs succeed', async () => {
    const c = await channel(BAR_TARGET);
    const before = await c.call(3000);
    expect(before.ok).toBe(false);
    expect(before.value).toMatch(/^UNAVAILABLE: .*certificate/); // the TLS handshake, not missing config

    const roots = { a: meshA.rootPem, b: meshB.rootPem };
    await meshA.write(doc(A, roots, [service('bar', 'xyz', B.id, barPort), service('foo', 'abc', A.id, roguePort)]));
    await meshB.write(doc(B, roots, [service('bar', 'xyz', B.id, barPort)]));
    let last = before;
    const ok = await vi.waitFor(
      async () => {
        last = await c.call(2000);
        if (!last.ok) throw new Error(last.value);
        return last;
      },
      { timeout: 20_000, interval: 200 },
    );
    expect(ok.value).toBe('bar@cluster-b');
    for (let i = 0; i < 5; i++) expect(await c.call()).toEqual({ ok: true, value: 'bar@cluster-b' });
  }, 30_000);

  it("a certificate signed by cluster B's root that claims a cluster-A identity is rejected", async () => {
    // Cluster B's CA key, used to mint spiffe://cluster-a.local/ns/abc/sa/foo.
    const bMaterial = (await caStoreB.load())!;
    const forger = await CertificateAuthority.open({ trustDomain: A.domain, store: memoryCaStore(bMaterial) });
    const forged = forger.issue({ trustDomain: A.domain, namespace: 'abc', serviceAccount: 'foo' });
    // The client trusts B's root (the exchange above), so a merged root pool would accept this certificate.
    expect(new X509Certificate(forged.certChainPem).verify(new X509Certificate(meshB.rootPem).publicKey)).toBe(true);
    rogue = new grpc.Server();
    rogue.addService(ECHO_SERVICE, { Whoami: (_c: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from('rogue')) });
    await new Promise<void>((resolve, reject) =>
      rogue.bindAsync(
        `127.0.0.1:${roguePort}`,
        grpc.ServerCredentials.createSsl(
          null,
          [{ cert_chain: Buffer.from(forged.certChainPem), private_key: Buffer.from(forged.privateKeyPem) }],
          false,
        ),
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    const c = await channel(FOO_TARGET);
    for (let i = 0; i < 3; i++) {
      const r = await c.call(2000);
      expect(r.ok, `call ${i} reached the forged server: ${r.value}`).toBe(false);
      expect(r.value).toMatch(/^UNAVAILABLE: .*certificate/);
    }
    // The genuine cluster-B service still works through the same client.
    expect(await (await channel(BAR_TARGET)).call(5000)).toEqual({ ok: true, value: 'bar@cluster-b' });
  }, 30_000);
});
