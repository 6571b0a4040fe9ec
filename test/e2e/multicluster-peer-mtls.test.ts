// A multicluster peer end to end with a real proxyless gRPC client (issue 10, must-show 1's mTLS call): meshfed A
// (--kube, a mesh file with a `multiclusters:` entry) joins cluster B by its metadata and its api-proxy, and the
// client abc/client in cluster-a calls foo.abc.svc.cluster.local, which only B runs, over mTLS through B's gateway.
// Same trust domain, two roots: the client verifies B's server against B's root, which joined A's cluster.local
// bundle by the exchange; the SAN is the account of B's pods, learned through B's api-proxy.
import client from 'prom-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ApiProxy } from '../../src/alliance/api-proxy/server.js';
import { StaticPeerDirectory } from '../../src/alliance/static-peers.js';
import { type Meshfed, startMeshfed } from '../../src/app.js';
import { createLogger } from '../../src/log.js';
import { memoryCaStore } from '../../src/pki/index.js';
import { localKubeConfig } from '../../src/sources/kube/transport.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { testPki } from '../fixtures/kube-apiserver/pki.js';
import { meshFile } from '../helpers/grpc-mesh.js';
import { freePort, MtlsClient, startWorkload, startXdsEchoServer, type Workload } from '../helpers/grpc-mtls.js';
import { backends, type ClusterSpec, namespace, seedCluster } from '../helpers/kube-cluster.js';
import { SERVER_NAME, startTlsMesh, type TlsMesh } from '../helpers/mesh-tls.js';
import { localIdentity, type PeerServer, startPeerServer } from '../helpers/peer-metadata.js';

const FOO: ClusterSpec = { namespace: 'abc', service: 'foo', portName: 'grpc', port: 8080, targetPort: 9000 };
const TARGET = 'xds:///foo.abc.svc.cluster.local:8080';
const A_UUID = '11111111-1111-4111-8111-111111111111';
const B_UUID = '22222222-2222-4222-8222-222222222222';
const idA = localIdentity(A_UUID);
const silent = createLogger(process.env['MESHFED_E2E_LOG'] ?? 'silent');

let apiA: FakeApiServer;
let apiB: FakeApiServer;
let meshA: Meshfed;
let meshB: TlsMesh;
let proxy: ApiProxy;
let peerB: PeerServer;
let clientWl: Workload;
let serverWl: Workload;
let fooServer: { forceShutdown(): void } | undefined;
const channels: MtlsClient[] = [];

beforeAll(async () => {
  [apiA, apiB] = await Promise.all([startFakeApiServer({ clusterName: 'cluster-a' }), startFakeApiServer({ clusterName: 'cluster-b' })]);
  for (const ns of ['kube-system', 'meshfed']) apiA.upsert(namespace(ns));
  // Only B runs foo; its pods run as abc/foo-sa with sidecars (mTLS).
  seedCluster(apiB, FOO, backends('10.2.0', 1));
  const fooPort = await freePort();

  // A: --kube on apiA, the mesh CA for cluster.local, xDS over TLS (the agent's SDS) and plaintext (proxyless config).
  const { dir, file, write } = await meshFile('meshfed-mc-mtls-', { clusters: [] });
  meshA = await startMeshfed({
    config: file,
    kube: {
      kubeconfig: apiA.writeKubeconfig(dir),
      clusterId: 'cluster-a',
      network: 'net-a',
      namespace: 'meshfed',
      remoteSyncTimeoutMs: 5000,
      backoff: { initialMs: 50, maxMs: 300 },
    },
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    xdsPlaintextHost: '127.0.0.1',
    xdsPlaintextPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 20,
    pki: { trustDomain: 'cluster.local', caStore: memoryCaStore() },
    xdsTls: { dnsNames: [SERVER_NAME] },
    tokenReview: { kubeConfig: localKubeConfig(apiA.writeKubeconfig(dir)) },
    federation: { mintToken: idA.mint, pollIntervalMs: 3_600_000 },
    log: silent,
  });
  const rootA = meshA.pki!.ca.roots.join('');

  // B: its own root; foo's server gets its certificate and listener from B's meshfed, which trusts A's root.
  meshB = await startTlsMesh({
    trustDomain: 'cluster.local',
    apiserver: apiB,
    doc: {
      clusters: [
        { id: 'cluster-b', network: 'net-b', domain: 'cluster.local' },
        { id: 'cluster-a', network: 'net-a', domain: 'cluster.local', rootCaPem: rootA }, // B's side of the exchange, outside this test
      ],
      services: [
        {
          name: 'foo',
          namespace: 'abc',
          cluster: 'cluster-b',
          ports: [{ name: 'grpc', port: 8080, protocol: 'GRPC' }],
          endpoints: [{ address: '127.0.0.1', port: fooPort, serviceAccount: 'foo-sa', mtls: true }],
        },
      ],
    },
  });
  proxy = new ApiProxy({
    clusterUuid: B_UUID,
    peers: new StaticPeerDirectory([{ clusterUUID: A_UUID, authnKeyPub: idA.publicPem, rootCA: rootA }]),
    kubeConfig: localKubeConfig(apiB.writeKubeconfig(dir)),
    tls: { cert: testPki().serverCertPem, key: testPki().serverKeyPem },
    metrics: new client.Registry(),
    log: silent,
  });
  const proxyPort = await proxy.listen('127.0.0.1', 0);
  // On loopback B's "gateway" is foo's server itself: proxyless gRPC dials the gateway address directly.
  peerB = await startPeerServer(
    {
      uuid: B_UUID,
      rootCA: meshB.rootPem,
      ingressGateways: [{ address: '127.0.0.1', port: fooPort }],
      publicServices: [],
      multicluster: { apiHost: `127.0.0.1:${proxyPort}`, networkName: 'net-b', clusterID: 'cluster-b' },
    },
    () => [idA],
  );

  const token = (api: FakeApiServer, ns: string, sa: string) => api.issueServiceAccountToken(ns, sa, { audiences: ['istio-ca'] });
  const tlsMeshA: TlsMesh = {
    meshfed: meshA,
    rootPem: rootA,
    plaintextPort: meshA.xdsPlaintextPort!,
    write: () => Promise.resolve(),
    stop: () => meshA.stop(300),
  };
  [clientWl, serverWl] = await Promise.all([
    startWorkload({
      mesh: tlsMeshA,
      token: token(apiA, 'abc', 'client'),
      clusterId: 'cluster-a',
      network: 'net-a',
      namespace: 'abc',
      serviceAccount: 'client',
    }),
    startWorkload({
      mesh: meshB,
      token: token(apiB, 'abc', 'foo-sa'),
      clusterId: 'cluster-b',
      network: 'net-b',
      namespace: 'abc',
      serviceAccount: 'foo-sa',
    }),
  ]);
  fooServer = await startXdsEchoServer(await serverWl.bootstrap(), fooPort, 'foo@cluster-b');

  // The exchange, declared the way a mesh file does it.
  await write({ clusters: [], multiclusters: [{ name: 'cluster-b', metadataEndpoint: peerB.endpoint, metadata: { ca: peerB.caPem } }] });
}, 60_000);

afterAll(async () => {
  for (const c of channels) c.close();
  fooServer?.forceShutdown();
  await Promise.all([clientWl?.stop(), serverWl?.stop()]);
  await Promise.all([meshA?.stop(300), meshB?.stop()]);
  await Promise.all([proxy?.close(), peerB?.close()]);
  await Promise.all([apiA?.close(), apiB?.close()]);
});

describe('a multicluster peer joined by metadata exchange', () => {
  it("a proxyless gRPC client in A calls foo, which only B runs, over mTLS through B's gateway", async () => {
    await vi.waitFor(() => expect(meshA.peers.rows()[0]?.api?.status, 'the api probe').toBe('True'), { timeout: 20_000, interval: 100 });
    expect(meshA.pki!.bundles.byDomain().get('cluster.local')).toContain(meshB.rootPem);
    const c = new MtlsClient(TARGET, await clientWl.bootstrap());
    channels.push(c);
    const ok = await vi.waitFor(
      async () => {
        const r = await c.call(2000);
        if (!r.ok) throw new Error(r.value);
        return r;
      },
      { timeout: 20_000, interval: 200 },
    );
    expect(ok.value).toBe('foo@cluster-b');
  }, 60_000);
});
