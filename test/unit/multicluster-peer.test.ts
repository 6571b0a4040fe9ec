// The peer controller's multicluster path on its own: multicluster.json checks, the api token rule (366 days, kept
// until fewer than 30 are left), the api-proxy probe's RemoteAPIServerReady reasons, Deckhouse's pending
// conditions, and the remote cluster handed to the kube source (a flat network when enableIngressGateway is false).
import { testPeerController } from '../helpers/peer-controller.js';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import client from 'prom-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { apiToken, DECKHOUSE_API_TOKEN, keepApiToken } from '../../src/alliance/peers/api-token.js';
import { PeerController, type PeerRow } from '../../src/alliance/peers/controller.js';
import { apiServerUrl, checkMulticluster } from '../../src/alliance/peers/metadata.js';
import { registerPeerMetrics } from '../../src/alliance/peers/metrics.js';
import { peerTable } from '../../src/cli/status.js';
import { addPeerRemotes, type PeerRemote } from '../../src/sources/kube/remote-secrets.js';
import { parse } from 'yaml';
import { testPki } from '../fixtures/kube-apiserver/pki.js';
import { localIdentity, type PeerServer, startPeerServer } from '../helpers/peer-metadata.js';

const DAY = 24 * 3600;
const A_UUID = '11111111-1111-4111-8111-111111111111';
const B_UUID = '22222222-2222-4222-8222-222222222222';

describe('multicluster.json checks', () => {
  const ok = { ingressGateways: [{ address: '192.0.2.1', port: 15443 }], apiHost: 'api.b.example.com', networkName: 'network-b' };
  it('requires networkName, apiHost and ingressGateways, as Deckhouse does', () => {
    for (const bad of [{ ...ok, networkName: '' }, { ...ok, apiHost: undefined }, { ...ok, ingressGateways: undefined }, 'x']) {
      expect(checkMulticluster(bad, true)).toMatchObject({ ok: false });
    }
    expect(checkMulticluster({ ...ok, networkName: '' }, true)).toEqual({
      ok: false,
      message: 'networkName, apiHost must be non-empty and ingressGateways must be set',
    });
  });
  it('needs a gateway only when the peer is reached through one (MissingIngressGateways)', () => {
    expect(checkMulticluster({ ...ok, ingressGateways: [] }, true)).toEqual({
      ok: false,
      reason: 'MissingIngressGateways',
      message: 'enableIngressGateway is true but ingressGateways list is empty',
    });
    expect(checkMulticluster({ ...ok, ingressGateways: [] }, false)).toMatchObject({ ok: true });
  });
  it('refuses an apiHost meshfed would not dial as https, and a clusterID that is no cluster id', () => {
    expect(checkMulticluster({ ...ok, apiHost: 'http://api.b.example.com' }, true)).toMatchObject({
      ok: false,
      message: expect.stringContaining('must be https'),
    });
    expect(checkMulticluster({ ...ok, apiHost: 'https://u:p@api.b.example.com' }, true)).toMatchObject({ ok: false });
    expect(checkMulticluster({ ...ok, clusterID: 'a/b' }, true)).toMatchObject({ ok: false });
    expect(checkMulticluster({ ...ok, networkName: 'net\nwork' }, true)).toMatchObject({
      ok: false,
      message: expect.stringContaining('networkName'),
    });
    expect(checkMulticluster({ ...ok, clusterID: 'cluster-local-123' }, true)).toMatchObject({
      ok: true,
      value: { clusterID: 'cluster-local-123' },
    });
  });
  it('caps ingressGateways and requires an IP or DNS name and a port 1-65535 for each', () => {
    const gw = (address: string, port = 15443) => ({ ...ok, ingressGateways: [{ address, port }] });
    expect(
      checkMulticluster(
        { ...ok, ingressGateways: Array.from({ length: 257 }, (_, i) => ({ address: `192.0.2.${i % 250}`, port: 15443 })) },
        true,
      ),
    ).toEqual({ ok: false, message: 'multicluster.json: 257 ingressGateways, more than 256' });
    for (const bad of [
      gw('a b'),
      gw('http://x'),
      gw('-x.example.com'),
      gw('x'.repeat(64) + '.com'),
      gw('192.0.2.1', 0),
      gw('192.0.2.1', 65536),
    ]) {
      expect(checkMulticluster(bad, true)).toMatchObject({
        ok: false,
        message: expect.stringMatching(/^multicluster.json: ingressGateways\[0\]/),
      });
    }
    for (const good of [gw('192.0.2.1'), gw('2001:db8::1'), gw('gw.b.example.com'), gw('gw-1.b.example.com', 65535)])
      expect(checkMulticluster(good, true)).toMatchObject({ ok: true });
  });
  it("probes https://<apiHost>/api unless apiHost names its scheme (Deckhouse's rule)", () => {
    expect(apiServerUrl('api.b.example.com:8443/')).toBe('https://api.b.example.com:8443');
    expect(apiServerUrl('https://api.b.example.com/prefix')).toBe('https://api.b.example.com/prefix');
  });
});

describe('the api token rule', () => {
  const now = 1_800_000_000;
  const held = { token: 't', audience: B_UUID, exp: now + 30 * DAY };
  it('keeps a token with 30 days or more left, for the same peer UUID only', () => {
    expect(keepApiToken(held, B_UUID, now, DECKHOUSE_API_TOKEN)).toBe(true);
    expect(keepApiToken(held, B_UUID, now + 1, DECKHOUSE_API_TOKEN)).toBe(false);
    expect(keepApiToken(held, A_UUID, now, DECKHOUSE_API_TOKEN)).toBe(false);
    expect(keepApiToken(undefined, B_UUID, now, DECKHOUSE_API_TOKEN)).toBe(false);
  });
  it('mints a 366-day `api` token for the peer, and reuses it until the rule says otherwise', async () => {
    const id = localIdentity(A_UUID);
    let mints = 0;
    const mint = (aud: string, scope: string, ttl: number): Promise<string> => (mints++, id.mint(aud, scope, ttl));
    const first = await apiToken(undefined, B_UUID, mint, DECKHOUSE_API_TOKEN);
    const claims = decodeJwt(first.token);
    expect(claims).toMatchObject({ aud: B_UUID, sub: A_UUID, scope: 'api' });
    expect(claims.exp! - claims.nbf!).toBe(366 * DAY);
    expect(first.exp).toBe(claims.exp);
    expect(await apiToken(first, B_UUID, mint, DECKHOUSE_API_TOKEN, (first.exp - 31 * DAY) * 1000)).toBe(first);
    const renewed = await apiToken(first, B_UUID, mint, DECKHOUSE_API_TOKEN, (first.exp - 29 * DAY) * 1000);
    expect(renewed).not.toBe(first);
    expect(mints).toBe(2);
  });
});

describe("a peer's remote cluster beside the remote Secrets", () => {
  const remote = (over: Partial<PeerRemote> = {}): PeerRemote => ({
    name: 'b',
    clusterId: 'cluster-b',
    server: 'https://api.b.example.com',
    ca: 'CA',
    token: 'tok',
    network: 'network-b',
    rootCaPem: 'root-b',
    gateways: [{ address: '192.0.2.1', port: 15443 }],
    ...over,
  });
  const view = (peers: PeerRemote[], secrets: Map<string, unknown> = new Map()) =>
    addPeerRemotes({ remotes: secrets as never, refused: [] }, peers, 'local', 'cluster.local', 'net-local');

  it("is the kubeconfig Deckhouse writes: the CR's CA, the api token", () => {
    const spec = view([remote()]).remotes.get('cluster-b')!;
    expect(spec).toMatchObject({
      id: 'cluster-b',
      secret: 'multicluster/b',
      network: 'network-b',
      domain: 'cluster.local',
      peer: { name: 'b', rootCaPem: 'root-b' },
    });
    const kc = parse(spec.kubeconfig) as {
      clusters: Array<{ cluster: Record<string, unknown> }>;
      users: Array<{ user: Record<string, unknown> }>;
    };
    expect(kc.clusters[0]!.cluster).toEqual({
      server: 'https://api.b.example.com',
      'certificate-authority-data': Buffer.from('CA').toString('base64'),
    });
    expect(kc.users[0]!.user).toEqual({ token: 'tok' });
    expect(parse(view([remote({ ca: undefined, insecureSkipVerify: true })]).remotes.get('cluster-b')!.kubeconfig)).toMatchObject({
      clusters: [{ cluster: { 'insecure-skip-tls-verify': true } }],
    });
  });

  it('needs new watches for a new token, server or network, not for a new root or gateways', () => {
    const hash = (r: PeerRemote) => view([r]).remotes.get('cluster-b')!.hash;
    const h = hash(remote());
    expect(hash(remote({ token: 'tok2' }))).not.toBe(h);
    expect(hash(remote({ server: 'https://api2.b.example.com' }))).not.toBe(h);
    expect(hash(remote({ network: undefined }))).not.toBe(h);
    expect(hash(remote({ rootCaPem: 'root-b2', gateways: [] }))).toBe(h);
  });

  it('is on the local network when flat, and refused for an id the local cluster or a Secret already has', () => {
    expect(view([remote({ network: undefined })]).remotes.get('cluster-b')!.network).toBe('net-local');
    expect(view([remote({ clusterId: 'local' })]).refused).toEqual([
      { secret: 'multicluster/b', id: 'local', reason: "this is the local cluster's own id" },
    ]);
    const bySecret = view([remote()], new Map([['cluster-b', { secret: 'meshfed/istio-remote-secret-x' }]]));
    expect(bySecret.refused).toEqual([
      { secret: 'multicluster/b', id: 'cluster-b', reason: 'already named by meshfed/istio-remote-secret-x' },
    ]);
    expect(bySecret.remotes.get('cluster-b')).toEqual({ secret: 'meshfed/istio-remote-secret-x' });
  });

  it('gives a cluster id two peers name to the one handed first (declared first), not the one whose name sorts first', () => {
    const v = view([remote({ name: 'z' }), remote({ name: 'a', server: 'https://api.a.example.com' })]);
    expect(v.remotes.get('cluster-b')!.peer!.name).toBe('z');
    expect(v.refused).toEqual([{ secret: 'multicluster/a', id: 'cluster-b', reason: 'already named by multicluster/z' }]);
  });
});

describe('the controller with a multicluster peer', () => {
  const idA = localIdentity(A_UUID);
  let peer: PeerServer;
  let api: https.Server;
  let apiPort: number;
  /** What the peer's "api-proxy" answers to GET /api. */
  let answer: { status: number; body: string } = { status: 200, body: JSON.stringify({ kind: 'APIVersions', versions: ['v1'] }) };
  const seen: string[] = [];
  const remotes: PeerRemote[][] = [];
  let ctl: PeerController;

  const probe = (): Promise<PeerRow> =>
    new Promise((resolve) => {
      const off = ctl.onProbe(() => (off(), resolve(ctl.rows()[0]!)));
      ctl.pollAll();
    });
  const apiCondition = async (): Promise<PeerRow['api']> => (await probe()).api;
  const metrics = new client.Registry();
  const apiCheckError = async (): Promise<number | undefined> =>
    (await metrics.getSingleMetric('meshfed_multicluster_api_host_check_error_count')!.get()).values[0]?.value;

  beforeAll(async () => {
    const pki = testPki();
    api = https.createServer({ cert: pki.serverCertPem, key: pki.serverKeyPem }, (req, res) => {
      seen.push(`${req.url} ${req.headers.authorization?.slice(0, 7) ?? ''}`);
      res.writeHead(answer.status).end(answer.body);
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    apiPort = (api.address() as AddressInfo).port;
    peer = await startPeerServer(
      {
        uuid: B_UUID,
        rootCA: 'root-b',
        ingressGateways: [{ address: '192.0.2.20', port: 15443 }],
        publicServices: [],
        multicluster: { apiHost: `127.0.0.1:${apiPort}`, networkName: 'network-b' },
      },
      () => [idA],
    );
    ctl = testPeerController({ mintToken: idA.mint });
    ctl.useRemoteClusters({ setPeerRemotes: (r) => remotes.push([...r]), clusterStatus: () => undefined });
    registerPeerMetrics(metrics, () => ctl.rows());
    ctl.setPeers(
      'file',
      [{ name: 'b', metadataEndpoint: peer.endpoint, metadata: { ca: peer.caPem }, enableIngressGateway: true }],
      'multicluster',
    );
  });
  afterAll(async () => {
    ctl.stop();
    await peer.close();
    api.closeAllConnections();
    await new Promise((r) => api.close(r));
  });

  it('probes the api-proxy with an `api` token and hands over the remote cluster (server, CA, token, network, gateways, root)', async () => {
    const r = await probe();
    expect(r).toMatchObject({
      kind: 'multicluster',
      trustDomain: 'cluster.local',
      public: { status: 'True', reason: 'Succeeded', message: 'Public metadata exchange succeeded.' },
      private: { status: 'True', reason: 'Succeeded', message: 'Private metadata exchange succeeded.' },
      api: {
        status: 'True',
        reason: 'RemoteAPIReachable',
        message: `GET https://127.0.0.1:${apiPort}/api returned HTTP 200 with kind APIVersions`,
      },
      gateways: ['192.0.2.20:15443'],
    });
    expect(seen.at(-1)).toBe('/api Bearer ');
    expect(peer.privateRequests.at(-1)).toBe(''); // the private-multicluster token was accepted
    const handed = remotes.at(-1)!;
    expect(handed).toHaveLength(1);
    const { token, ...rest } = handed[0]!;
    // No clusterID in the metadata: Deckhouse's formula from the peer's UUID and the (shared) cluster domain.
    expect(rest).toEqual({
      name: 'b',
      clusterId: `cluster-local-${adler(B_UUID)}`,
      server: `https://127.0.0.1:${apiPort}`,
      ca: peer.caPem,
      insecureSkipVerify: undefined,
      network: 'network-b',
      rootCaPem: 'root-b',
      gateways: [{ address: '192.0.2.20', port: 15443 }],
    });
    expect(decodeJwt(token)).toMatchObject({ scope: 'api', aud: B_UUID });
  });

  it('keeps the token (and hands nothing new) while nothing changes', async () => {
    const n = remotes.length;
    await new Promise((r) => setTimeout(r, 1100)); // a new second: a re-minted token would differ
    await probe();
    expect(remotes.length).toBe(n);
  });

  it("maps the probe's outcome to Deckhouse's reasons", async () => {
    answer = { status: 403, body: 'forbidden' };
    expect(await apiCondition()).toMatchObject({ status: 'False', reason: 'RemoteAPIBadResponse' });
    expect(await apiCheckError()).toBe(1);
    answer = { status: 200, body: '<html>' };
    expect(await apiCondition()).toMatchObject({ status: 'False', reason: 'RemoteAPIInvalidResponse' });
    answer = { status: 200, body: JSON.stringify({ kind: 'Status' }) };
    expect(await apiCondition()).toMatchObject({
      status: 'False',
      reason: 'RemoteAPIUnexpectedResponse',
      message: expect.stringContaining('expected kind APIVersions, got "Status"'),
    });
    answer = { status: 200, body: JSON.stringify({ kind: 'APIVersions' }) };
    expect(await apiCondition()).toMatchObject({ status: 'True', reason: 'RemoteAPIReachable' });
  });

  it('writes Unknown/AwaitingPublic and Unknown/AwaitingPrivate while the exchange fails, and keeps the remote cluster', async () => {
    const n = remotes.length;
    peer.fault = 'status500';
    try {
      const r = await probe();
      expect(r.public).toMatchObject({ status: 'False', reason: 'NonOKResponse' });
      expect(r.private).toEqual({
        status: 'Unknown',
        reason: 'AwaitingPublic',
        message: 'Public metadata exchange has not succeeded yet.',
      });
      expect(r.api).toEqual({ status: 'Unknown', reason: 'AwaitingPrivate', message: 'Private metadata exchange has not succeeded yet.' });
      expect(await apiCheckError()).toBe(0); // not probed: no probe failed
    } finally {
      peer.fault = 'none';
    }
    peer.doc = { ...peer.doc, ingressGateways: [] };
    try {
      const r = await probe();
      expect(r.private).toMatchObject({ status: 'False', reason: 'MissingIngressGateways' });
      expect(r.api).toMatchObject({ status: 'Unknown', reason: 'AwaitingPrivate' });
    } finally {
      peer.doc = { ...peer.doc, ingressGateways: [{ address: '192.0.2.20', port: 15443 }] };
    }
    expect(remotes.length).toBe(n); // nothing withdrawn: the cluster keeps its watches
    expect((await probe()).api).toMatchObject({ status: 'True' });
  });

  it('enableIngressGateway: false is a flat network: no network of its own, no gateways', async () => {
    ctl.setPeers(
      'file',
      [{ name: 'b', metadataEndpoint: peer.endpoint, metadata: { ca: peer.caPem }, enableIngressGateway: false }],
      'multicluster',
    );
    await probe();
    expect(remotes.at(-1)![0]).toMatchObject({ network: undefined, gateways: [] });
  });

  it('takes up the api token kept from before a restart (its remote Secret) instead of minting one', async () => {
    const kept = await idA.mint(B_UUID, 'api', 300 * DAY);
    const asked: string[] = [];
    const handed: PeerRemote[][] = [];
    const c = testPeerController({
      mintToken: idA.mint,
      storedApiToken: (name, aud) => (
        asked.push(`${name} ${aud}`), Promise.resolve({ token: kept, audience: aud, exp: decodeJwt(kept).exp! })
      ),
    });
    try {
      c.useRemoteClusters({ setPeerRemotes: (r) => handed.push([...r]), clusterStatus: () => undefined });
      await new Promise<void>((resolve) => {
        const off = c.onProbe(() => (off(), resolve()));
        c.setPeers(
          'file',
          [{ name: 'b', metadataEndpoint: peer.endpoint, metadata: { ca: peer.caPem }, enableIngressGateway: true }],
          'multicluster',
        );
      });
      expect(handed.at(-1)![0]!.token).toBe(kept);
      expect(asked).toEqual([`b ${B_UUID}`]);
    } finally {
      c.stop();
    }
  });

  it('refuses the peer when the cluster domain is not the trust domain: its root would be filed under the wrong one', async () => {
    const handed: PeerRemote[][] = [];
    const c = testPeerController({ localTrustDomain: 'td.example', localClusterDomain: 'cluster.local', mintToken: idA.mint });
    try {
      c.useRemoteClusters({ setPeerRemotes: (r) => handed.push([...r]), clusterStatus: () => undefined });
      await new Promise<void>((resolve) => {
        const off = c.onProbe(() => (off(), resolve()));
        c.setPeers(
          'file',
          [{ name: 'b', metadataEndpoint: peer.endpoint, metadata: { ca: peer.caPem }, enableIngressGateway: true }],
          'multicluster',
        );
      });
      expect(c.rows()[0]!.public).toEqual({
        status: 'False',
        reason: 'ClusterDomainNotTrustDomain',
        message: expect.stringContaining('domain cluster.local is not its trust domain td.example'),
      });
      expect(handed.flat()).toEqual([]);
    } finally {
      c.stop();
    }
  });

  it("refuses a networkName that is the local network or another cluster's (InvalidPrivateMetadata), keeping the remote cluster as it was", async () => {
    ctl.setPeers(
      'file',
      [{ name: 'b', metadataEndpoint: peer.endpoint, metadata: { ca: peer.caPem }, enableIngressGateway: true }],
      'multicluster',
    );
    await vi.waitFor(() => expect(remotes.at(-1)?.[0]).toMatchObject({ network: 'network-b' }), { timeout: 10_000, interval: 20 }); // through its gateways
    await probe();
    const owners: Record<string, string> = { 'network-b': 'the local cluster cluster-a' };
    ctl.useRemoteClusters({
      setPeerRemotes: (r) => remotes.push([...r]),
      clusterStatus: () => undefined,
      networkOwner: (net) => owners[net],
    });
    const n = remotes.length;
    try {
      expect((await probe()).private).toEqual({
        status: 'False',
        reason: 'InvalidPrivateMetadata',
        message:
          'multicluster.json: networkName network-b is the network of the local cluster cluster-a; a peer reached through its gateways needs its own; the remote cluster keeps being watched with the last good metadata',
      });
      expect(remotes.length).toBe(n);
    } finally {
      delete owners['network-b'];
    }
    expect((await probe()).private).toMatchObject({ status: 'True' });
  });

  it("after a restart with the peer's metadata endpoint down, watches its remote cluster from the metadata its CR's status caches", async () => {
    const handed: PeerRemote[][] = [];
    const c = testPeerController({ mintToken: idA.mint });
    const cache = {
      public: { clusterUUID: B_UUID, authnKeyPub: 'peer key', rootCA: 'root-b' },
      private: {
        ingressGateways: [{ address: '192.0.2.20', port: 15443 }],
        apiHost: 'api.b.example.com',
        networkName: 'network-b',
        clusterID: 'cluster-b',
      },
    };
    c.useStatusSink({ conditions: () => undefined, metadataCache: () => cache, patch: () => Promise.resolve() }, 'multicluster');
    try {
      c.useRemoteClusters({ setPeerRemotes: (r) => handed.push([...r]), clusterStatus: () => undefined });
      await new Promise<void>((resolve) => {
        const off = c.onProbe(() => (off(), resolve()));
        c.setPeers('kube', [{ name: 'b', metadataEndpoint: 'https://127.0.0.1:1/metadata/', enableIngressGateway: true }], 'multicluster');
      });
      expect(c.rows()[0]!.public).toMatchObject({
        status: 'False',
        reason: 'FetchFailed',
        message: expect.stringContaining('the remote cluster keeps being watched with the last good metadata'),
      });
      expect(handed.at(-1)).toEqual([
        expect.objectContaining({
          name: 'b',
          clusterId: 'cluster-b',
          server: 'https://api.b.example.com',
          network: 'network-b',
          rootCaPem: 'root-b',
        }),
      ]);
      expect(decodeJwt(handed.at(-1)![0]!.token)).toMatchObject({ scope: 'api', aud: B_UUID });
    } finally {
      c.stop();
    }
  });

  it('removing the peer removes its remote cluster', () => {
    ctl.setPeers('file', [], 'multicluster');
    expect(remotes.at(-1)).toEqual([]);
  });
});

function adler(s: string): number {
  let a = 1;
  let b = 0;
  for (const c of Buffer.from(s)) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  return b * 65536 + a;
}

describe('meshfed status with a multicluster peer', () => {
  it("shows the API probe and the remote cluster's sync state, and why a condition is not True", () => {
    const cond = (status: string, reason: string, message = '') => ({ status, reason, message });
    const table = peerTable([
      {
        name: 'cluster-b',
        kind: 'multicluster',
        origin: 'kube',
        trustDomain: 'cluster.local',
        metadataEndpoint: 'https://m.b/metadata/',
        clusterUUID: B_UUID,
        public: cond('True', 'Succeeded'),
        private: cond('True', 'Succeeded'),
        api: cond('False', 'RemoteAPIUnreachable', 'GET https://api.b/api: connect ECONNREFUSED'),
        remoteCluster: { id: 'cluster-b', server: 'https://api.b', network: 'network-b', state: 'stale', endpoints: 10, rotating: true },
        lastSuccess: '2026-12-03T13:00:00Z',
        fetchError: 0,
        gateways: ['192.0.2.20:15443'],
      },
    ]);
    const [head, row, , problem] = table.split('\n');
    expect(head).toMatch(
      /^NAME\s+KIND\s+TRUST DOMAIN\s+UUID\s+PUBLIC\s+PRIVATE\s+API\s+LAST SUCCESS\s+SERVICES\s+GATEWAYS\s+REMOTE CLUSTER\s+IMPORTS$/,
    );
    expect(row).toMatch(
      new RegExp(
        `^cluster-b\\s+multicluster\\s+cluster.local\\s+${B_UUID}\\s+Ready\\s+Ready\\s+RemoteAPIUnreachable\\s+\\S+\\s+-\\s+192.0.2.20:15443\\s+cluster-b stale \\(rotating\\) 10 endpoints\\s+-$`,
      ),
    );
    expect(problem).toBe('  cluster-b: RemoteAPIUnreachable: GET https://api.b/api: connect ECONNREFUSED');
  });
});
