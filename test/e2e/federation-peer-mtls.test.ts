// A federation peer found by metadata exchange, end to end with a real proxyless gRPC client: meshfed A
// knows nothing of cluster B but a `federations:` entry; it fetches B's Deckhouse-shaped metadata (root,
// gateway, public service), and the client abc/foo in cluster-a.local then calls bar.xyz.svc.cluster-b.local
// over mTLS, verifying bar's identity against B's root bound to cluster-b.local and the SAN prefix of xyz.
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority, memoryCaStore } from '../../src/pki/index.js';
import { ECHO_SERVICE } from '../helpers/grpc-echo.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { freePort, MtlsClient, startFederatedPair, startXdsEchoServer, type Workload } from '../helpers/grpc-mtls.js';
import { startTlsMesh, type TlsMesh } from '../helpers/mesh-tls.js';
import { localIdentity, type PeerServer, startPeerServer } from '../helpers/peer-metadata.js';

const WAIT = { timeout: 10_000, interval: 50 }; // for the peer exchange to move

const A = { id: 'cluster-a', domain: 'cluster-a.local' };
const B = { id: 'cluster-b', domain: 'cluster-b.local' };
const BAR = 'bar.xyz.svc.cluster-b.local';
const idA = localIdentity('11111111-1111-4111-8111-111111111111');

let apiA: FakeApiServer;
let apiB: FakeApiServer;
let meshA: TlsMesh;
let meshB: TlsMesh;
let peerB: PeerServer;
let client: Workload;
let serverWl: Workload;
let barServer: grpc.Server;
let barPort: number;
const channels: MtlsClient[] = [];
const caStoreB = memoryCaStore();
let rogue: grpc.Server | undefined;

beforeAll(async () => {
  [apiA, apiB] = await Promise.all([startFakeApiServer({ clusterName: A.id }), startFakeApiServer({ clusterName: B.id })]);
  barPort = await freePort();
  // B's metadata server answers 500 until B's root is known.
  peerB = await startPeerServer(
    { uuid: '22222222-2222-4222-8222-222222222222', rootCA: '', ingressGateways: [], publicServices: [] },
    () => [idA],
  );
  peerB.fault = 'status500';
  meshA = await startTlsMesh({
    trustDomain: A.domain,
    apiserver: apiA,
    doc: {
      clusters: [{ id: A.id, network: 'net', domain: A.domain }],
      federations: [{ name: 'cluster-b', trustDomain: B.domain, metadataEndpoint: peerB.endpoint, metadata: { ca: peerB.caPem } }],
    },
    federation: { mintToken: idA.mint, pollIntervalMs: 3_600_000 },
  });
  meshB = await startTlsMesh({
    trustDomain: B.domain,
    apiserver: apiB,
    caStore: caStoreB,
    doc: {
      clusters: [
        { id: B.id, network: 'net', domain: B.domain, gateways: [{ address: '127.0.0.1', port: barPort }] },
        { id: A.id, network: 'net', domain: A.domain, rootCaPem: meshA.rootPem }, // B trusts A (its own exchange, outside this test)
      ],
      services: [
        {
          name: 'bar',
          namespace: 'xyz',
          cluster: B.id,
          ports: [{ name: 'grpc', port: 9000, protocol: 'GRPC' }],
          endpoints: [{ address: '127.0.0.1', port: barPort, serviceAccount: 'bar', mtls: true }],
        },
      ],
    },
  });
  [client, serverWl] = await startFederatedPair({ mesh: meshA, api: apiA, ...A }, { mesh: meshB, api: apiB, ...B });
  barServer = await startXdsEchoServer(await serverWl.bootstrap(), barPort, 'bar@cluster-b');
}, 60_000);

afterAll(async () => {
  for (const c of channels) c.close();
  barServer?.forceShutdown();
  rogue?.forceShutdown();
  await Promise.all([client?.stop(), serverWl?.stop()]);
  await Promise.all([meshA?.stop(), meshB?.stop()]);
  await peerB?.close();
  await Promise.all([apiA?.close(), apiB?.close()]);
});

describe('a federation peer imported by metadata exchange', () => {
  it("serves nothing of B before the exchange, and mTLS calls to B's public service after it", async () => {
    const c = new MtlsClient(`xds:///${BAR}:9000`, await client.bootstrap());
    channels.push(c);
    expect((await c.call(2000)).ok).toBe(false);

    // On loopback B's "gateway" is bar itself: proxyless gRPC dials the gateway address directly.
    peerB.doc = {
      ...peerB.doc,
      rootCA: meshB.rootPem,
      ingressGateways: [{ address: '127.0.0.1', port: barPort }],
      publicServices: [{ hostname: BAR, ports: [{ name: 'grpc', port: 9000 }] }],
    };
    peerB.fault = 'none';
    meshA.meshfed.peers.pollAll();
    await vi.waitFor(() => expect(meshA.meshfed.peers.rows()[0]?.private.status, 'the exchange').toBe('True'), WAIT);
    expect(meshA.meshfed.pki!.bundles.byDomain().get(B.domain)).toEqual([meshB.rootPem]);
    const ok = await vi.waitFor(
      async () => {
        const r = await c.call(2000);
        expect(r.ok, `an RPC over mTLS to the import: ${r.value}`).toBe(true);
        return r;
      },
      { timeout: 20_000, interval: 200 },
    );
    expect(ok.value).toBe('bar@cluster-b');

    // The peer goes away: the last good import keeps serving.
    peerB.fault = 'down';
    meshA.meshfed.peers.pollAll();
    await vi.waitFor(() => expect(meshA.meshfed.peers.rows()[0]?.public.reason, 'the failed fetch').toBe('FetchFailed'), WAIT);
    expect(await c.call(5000)).toEqual({ ok: true, value: 'bar@cluster-b' });
  }, 60_000);

  it("refuses a server with a cluster-b identity outside the service's namespace (the SAN prefix is enforced)", async () => {
    const material = (await caStoreB.load())!;
    const ca = await CertificateAuthority.open({ trustDomain: B.domain, store: memoryCaStore(material) });
    const cert = ca.issue({ trustDomain: B.domain, namespace: 'evil', serviceAccount: 'x' });
    ca.close();
    const roguePort = await freePort();
    const server = (rogue = new grpc.Server());
    server.addService(ECHO_SERVICE, { Whoami: (_c: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from('rogue')) });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(
        `127.0.0.1:${roguePort}`,
        grpc.ServerCredentials.createSsl(
          null,
          [{ cert_chain: Buffer.from(cert.certChainPem), private_key: Buffer.from(cert.privateKeyPem) }],
          false,
        ),
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    // The peer now points bar at the rogue server (signed by B's genuine root, identity ns/evil).
    peerB.fault = 'none';
    peerB.doc = { ...peerB.doc, ingressGateways: [{ address: '127.0.0.1', port: roguePort }] };
    meshA.meshfed.peers.pollAll();
    await vi.waitFor(() => expect(meshA.meshfed.peers.rows()[0]?.gateways[0], 'the new gateway').toBe(`127.0.0.1:${roguePort}`), WAIT);
    const c = new MtlsClient(`xds:///${BAR}:9000`, await client.bootstrap());
    channels.push(c);
    for (let i = 0; i < 3; i++) {
      const r = await c.call(2000);
      expect(r.ok, `call ${i} reached the rogue server: ${r.value}`).toBe(false);
    }
  }, 60_000);
});
