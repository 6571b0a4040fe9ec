// The peer directory tokens are checked against (PeerController.publicMetadata): a token's scope is accepted only
// from a peer of the kind it is for, and a clusterUUID belongs to one peer (the one declared first).
import { testPeerController } from '../helpers/peer-controller.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { PeerController } from '../../src/alliance/peers/controller.js';
import { verifyPeerToken } from '../../src/alliance/tokens/tokens.js';
import type { PeerDirectory, TokenScope } from '../../src/alliance/types.js';
import type { ClusterStatus } from '../../src/sources/kube/kube-source.js';
import type { PeerRemote } from '../../src/sources/kube/remote-secrets.js';
import { localIdentity, type PeerServer, startPeerServer } from '../helpers/peer-metadata.js';

const A_UUID = '11111111-1111-4111-8111-111111111111';
const B_UUID = '22222222-2222-4222-8222-222222222222';
const F_UUID = '33333333-3333-4333-8333-333333333333';
const idA = localIdentity(A_UUID);
let mc: PeerServer;
let fed: PeerServer;
let ctl: PeerController;
let handed: PeerRemote[][];

function controller(clusterStatus: PeerControllerStatus = () => undefined): PeerController {
  const c = testPeerController({ mintToken: idA.mint });
  handed = [];
  c.useRemoteClusters({ setPeerRemotes: (r) => handed.push([...r]), clusterStatus });
  return c;
}
type PeerControllerStatus = (id: string) => ClusterStatus | undefined;
const row = (name: string) => ctl.rows().find((r) => r.name === name);

beforeAll(async () => {
  mc = await startPeerServer(
    {
      uuid: B_UUID,
      rootCA: 'root-b',
      ingressGateways: [{ address: '192.0.2.20', port: 15443 }],
      publicServices: [],
      multicluster: { apiHost: '127.0.0.1:1', networkName: 'network-b' },
    },
    () => [idA],
  );
  fed = await startPeerServer(
    { uuid: F_UUID, rootCA: 'root-f', ingressGateways: [{ address: '192.0.2.30', port: 15443 }], publicServices: [] },
    () => [idA],
  );
});
afterEach(() => ctl?.stop());
afterAll(async () => {
  await Promise.all([mc?.close(), fed?.close()]);
});

describe('token scopes by peer kind', () => {
  it('accepts api and private-multicluster only from multicluster peers, private-federation only from federation peers', async () => {
    ctl = controller();
    ctl.setPeers(
      'file',
      [{ name: 'b', metadataEndpoint: mc.endpoint, metadata: { ca: mc.caPem }, enableIngressGateway: true }],
      'multicluster',
    );
    ctl.setPeers('file', [{ name: 'f', trustDomain: 'f.example', metadataEndpoint: fed.endpoint, metadata: { ca: fed.caPem } }]);
    await vi.waitFor(
      () => {
        expect(row('b')?.private.status).toBe('True');
        expect(row('f')?.private.status).toBe('True');
      },
      { timeout: 10_000, interval: 20 },
    ); // both polled
    const scopes = (uuid: string): TokenScope[] =>
      (['api', 'private-multicluster', 'private-federation'] as const).filter((s) => ctl.publicMetadata(uuid, s));
    expect(scopes(B_UUID)).toEqual(['api', 'private-multicluster']);
    expect(scopes(F_UUID)).toEqual(['private-federation']);
  });

  it("verifyPeerToken asks the directory for the token's scope", async () => {
    const peers: PeerDirectory = {
      publicMetadata: (uuid, scope) => (scope === 'api' ? { clusterUUID: uuid, authnKeyPub: idA.publicPem, rootCA: '' } : undefined),
    };
    const token = (scope: string) => idA.mint(B_UUID, scope, 60);
    await expect(verifyPeerToken(`Bearer ${await token('api')}`, { clusterUuid: B_UUID, scope: 'api', peers })).resolves.toEqual({
      peer: A_UUID,
    });
    await expect(
      verifyPeerToken(`Bearer ${await token('private-federation')}`, { clusterUuid: B_UUID, scope: 'private-federation', peers }),
    ).rejects.toMatchObject({ reason: 'unknown_peer' });
  });
});

describe('one clusterUUID, two peers', () => {
  it('the peer declared first keeps it; the other is refused (DuplicateClusterUUID) and gets no remote cluster', async () => {
    ctl = controller();
    // aaa sorts first but was declared after bbb: it claims bbb's UUID (the same metadata here).
    ctl.setPeers(
      'file',
      [
        { name: 'aaa', metadataEndpoint: mc.endpoint, metadata: { ca: mc.caPem }, enableIngressGateway: true, createdAt: 2000 },
        { name: 'bbb', metadataEndpoint: mc.endpoint, metadata: { ca: mc.caPem }, enableIngressGateway: true, createdAt: 1000 },
      ],
      'multicluster',
    );
    await vi.waitFor(
      () => {
        expect(row('aaa')?.public).toMatchObject({
          status: 'False',
          reason: 'DuplicateClusterUUID',
          message: `clusterUUID ${B_UUID} is already held by multicluster peer bbb, declared first`,
        });
        expect(row('bbb')?.private.status).toBe('True');
        expect(handed.at(-1)?.map((r) => r.name)).toEqual(['bbb']);
      },
      { timeout: 10_000, interval: 20 },
    ); // aaa refused
    expect(row('aaa')?.clusterUUID).toBeUndefined();
    expect(ctl.publicMetadata(B_UUID, 'api')).toEqual({ clusterUUID: B_UUID, authnKeyPub: 'peer key', rootCA: 'root-b' });
  });
});

describe('one clusterUUID, after a restart', () => {
  it("a peer declared later is refused before any token is minted for the UUID an earlier one's CR status caches, while that one's endpoint is down", async () => {
    ctl = controller();
    const cache = { public: { clusterUUID: B_UUID, authnKeyPub: 'peer key', rootCA: 'root-b' } };
    ctl.useStatusSink(
      { conditions: () => undefined, metadataCache: (name) => (name === 'bbb' ? cache : undefined), patch: () => Promise.resolve() },
      'multicluster',
    );
    const before = mc.privateRequests.length;
    ctl.setPeers(
      'kube',
      [
        { name: 'aaa', metadataEndpoint: mc.endpoint, metadata: { ca: mc.caPem }, enableIngressGateway: true, createdAt: 2000 },
        { name: 'bbb', metadataEndpoint: 'https://127.0.0.1:1/metadata/', enableIngressGateway: true, createdAt: 1000 },
      ],
      'multicluster',
    );
    await vi.waitFor(
      () =>
        expect(row('aaa')?.public).toMatchObject({
          status: 'False',
          reason: 'DuplicateClusterUUID',
          message: `clusterUUID ${B_UUID} is already held by multicluster peer bbb, declared first`,
        }),
      { timeout: 10_000, interval: 20 },
    ); // aaa refused
    expect(mc.privateRequests.length).toBe(before);
    expect(ctl.publicMetadata(B_UUID)).toBeUndefined();
  });
});

describe('one cluster id, two multicluster peers', () => {
  let other: PeerServer;
  beforeAll(async () => {
    other = await startPeerServer(
      {
        uuid: F_UUID,
        rootCA: 'root-c',
        ingressGateways: [{ address: '192.0.2.40', port: 15443 }],
        publicServices: [],
        multicluster: { apiHost: '127.0.0.2:1', networkName: 'network-c', clusterID: 'cluster-b' },
      },
      () => [idA],
    );
    mc.doc = { ...mc.doc, multicluster: { ...mc.doc.multicluster!, clusterID: 'cluster-b' } };
  });
  afterAll(async () => {
    mc.doc = { ...mc.doc, multicluster: { apiHost: '127.0.0.1:1', networkName: 'network-b' } };
    await other?.close();
  });

  it('the peer declared first keeps the cluster; the other, though its name sorts first, is refused (DuplicateClusterID)', async () => {
    const status = (id: string): ClusterStatus =>
      ({ cluster: id, role: 'remote', state: 'synced', peer: 'bbb', server: 'https://127.0.0.1:1', endpoints: 3 }) as ClusterStatus;
    ctl = controller(status);
    ctl.setPeers(
      'file',
      [
        { name: 'aaa', metadataEndpoint: other.endpoint, metadata: { ca: other.caPem }, enableIngressGateway: true, createdAt: 2000 },
        { name: 'bbb', metadataEndpoint: mc.endpoint, metadata: { ca: mc.caPem }, enableIngressGateway: true, createdAt: 1000 },
      ],
      'multicluster',
    );
    await vi.waitFor(
      () => {
        expect(row('aaa')?.api).toEqual({
          status: 'False',
          reason: 'DuplicateClusterID',
          message: 'clusterID cluster-b is already held by multicluster peer bbb, declared first',
        });
        expect(row('bbb')?.private.status).toBe('True');
        expect(handed.at(-1)?.map((r) => `${r.name} ${r.server}`)).toEqual(['bbb https://127.0.0.1:1']);
      },
      { timeout: 10_000, interval: 20 },
    ); // aaa refused
    // Only the peer whose cluster it is shows it as its remote cluster.
    expect(row('bbb')?.remoteCluster).toMatchObject({ id: 'cluster-b', state: 'synced' });
    expect(row('aaa')?.remoteCluster).toBeUndefined();
  });

  it('a peer does not show a cluster a remote Secret holds as its own', async () => {
    ctl = controller(
      (id) => ({ cluster: id, role: 'remote', state: 'synced', secret: 'meshfed/istio-remote-secret-x', endpoints: 3 }) as ClusterStatus,
    );
    ctl.setPeers(
      'file',
      [{ name: 'bbb', metadataEndpoint: mc.endpoint, metadata: { ca: mc.caPem }, enableIngressGateway: true }],
      'multicluster',
    );
    await vi.waitFor(() => expect(row('bbb')?.private.status).toBe('True'), { timeout: 10_000, interval: 20 }); // polled
    expect(row('bbb')?.remoteCluster).toBeUndefined();
  });
});
