// A multicluster peer joined by an IstioMulticluster (issue 10): meshfed --kube fetches the peer's public.json and
// multicluster.json, probes its api-proxy, and watches the peer's apiserver through that api-proxy as a remote
// cluster — the same watches, guard and make-before-break swaps as a remote Secret's. The peer here is the
// Deckhouse-shaped metadata server of test/helpers and meshfed's real api-proxy in front of a second fake apiserver.
// Faults (must-show 3): the api-proxy restarts, the peer's apiserver stalls, the api token is rotated, the
// metadata's apiHost changes — with a 1 ms registry poll that must never see the peer's endpoints missing.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import client from 'prom-client';
import { decodeJwt } from 'jose';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Meshfed } from '../../src/app.js';
import { ApiProxy } from '../../src/alliance/api-proxy/server.js';
import type { PeerRow } from '../../src/alliance/peers/controller.js';
import { StaticPeerDirectory } from '../../src/alliance/static-peers.js';
import { createLogger } from '../../src/log.js';
import { CertificateAuthority, memoryCaStore } from '../../src/pki/index.js';
import { localKubeConfig } from '../../src/sources/kube/transport.js';
import { type FakeApiServer, type KubeObject, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { testPki } from '../fixtures/kube-apiserver/pki.js';
import {
  admin,
  backends,
  clusterStatus,
  type ClusterSpec,
  endpointSlice,
  endpointsOf,
  expectEqual,
  seedCluster,
  startKubeMeshfed,
} from '../helpers/kube-cluster.js';
import { localIdentity, type PeerServer, startPeerServer } from '../helpers/peer-metadata.js';

const run = promisify(execFile);
const KUBECTL = execFileSync('which', ['kubectl'], { encoding: 'utf8' }).trim();
const CRDS = path.resolve(import.meta.dirname, '../../deploy/kubernetes/crds');
const DH = 'deckhouse.io/v1alpha1';
const A_UUID = '11111111-1111-4111-8111-111111111111';
const B_UUID = '22222222-2222-4222-8222-222222222222';
const FOO: ClusterSpec = { namespace: 'abc', service: 'foo', portName: 'grpc', port: 8080, targetPort: 9000 };
const HOST = 'foo.abc.svc.cluster.local';
const DAY = 24 * 3600;

const idA = localIdentity(A_UUID);
const dir = mkdtempSync(path.join(tmpdir(), 'meshfed-mc-'));
let local: FakeApiServer;
let remote: FakeApiServer;
let peer: PeerServer;
let proxy: ApiProxy;
let proxyPort: number;
let rootB: string;
let m: Meshfed;
/** Mutable, so a test can make the next poll re-mint the api token. */
const tokenPolicy = { ttlSeconds: 366 * DAY, renewBeforeSeconds: 30 * DAY };

function startProxy(): ApiProxy {
  const pki = testPki();
  return new ApiProxy({
    clusterUuid: B_UUID,
    peers: new StaticPeerDirectory([{ clusterUUID: A_UUID, authnKeyPub: idA.publicPem, rootCA: 'unused' }]),
    kubeConfig: localKubeConfig(remote.writeKubeconfig(dir)),
    tls: { cert: pki.serverCertPem, key: pki.serverKeyPem },
    metrics: new client.Registry(),
    log: createLogger('silent'),
  });
}

async function kubectl(args: string[], input?: object): Promise<string> {
  let file: string | undefined;
  if (input) {
    file = path.join(dir, `in-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, stringify(input));
  }
  const { stdout } = await run(KUBECTL, [...args, ...(file ? ['-f', file] : [])], {
    env: { ...process.env, KUBECONFIG: local.writeKubeconfig(dir) },
    timeout: 20_000,
  });
  return stdout;
}

const statusOf = (name: string): { conditions?: Array<Record<string, string>>; metadataCache?: Record<string, unknown> } | undefined =>
  local.get(DH, 'IstioMulticluster', undefined, name)?.['status'] as never;
const conditionOf = (name: string, type: string): Record<string, string> | undefined =>
  statusOf(name)?.conditions?.find((c) => c['type'] === type);
const row = async (): Promise<PeerRow> =>
  (await admin<{ peers: PeerRow[] }>(m, '/debug/peers')).body.peers.find((r) => r.kind === 'multicluster')!;
const remoteEndpoints = (): string[] => endpointsOf(m, HOST).filter((e) => e.startsWith('cluster-b '));
const probed = (): Promise<void> =>
  new Promise((resolve) => {
    const off = m.peers.onProbe(() => (off(), resolve()));
    m.peers.pollAll();
  });

beforeAll(async () => {
  [local, remote] = await Promise.all([startFakeApiServer({ clusterName: 'cluster-a' }), startFakeApiServer({ clusterName: 'cluster-b' })]);
  seedCluster(local, FOO, backends('10.1.0', 1));
  seedCluster(remote, FOO, backends('10.2.0', 10));
  await kubectl(['apply', '-f', CRDS]);
  proxy = startProxy();
  proxyPort = await proxy.listen('127.0.0.1', 0);
  const caB = await CertificateAuthority.open({ trustDomain: 'cluster.local', store: memoryCaStore() });
  rootB = caB.roots[0]!;
  caB.close();
  peer = await startPeerServer(
    {
      uuid: B_UUID,
      rootCA: rootB,
      ingressGateways: [{ address: '192.0.2.20', port: 15443 }],
      publicServices: [],
      multicluster: { apiHost: `127.0.0.1:${proxyPort}`, networkName: 'network-b', clusterID: 'cluster-b' },
    },
    () => [idA],
  );
  m = await startKubeMeshfed(
    local,
    // A stalled apiserver is noticed when a request overruns its deadline: short here, 30 s by default.
    {
      clusterId: 'cluster-a',
      network: 'network-a',
      limits: { maxObjectBytes: 1_572_864, requestTimeoutMs: 1000, watchTimeoutSec: 300 },
      remote: { staleAfterMs: 800, withdrawAfterMs: 60_000, maxDropShare: 0.5, confirmAfterMs: 60_000, dropWindowMs: 10_000 },
    },
    {
      pki: { trustDomain: 'cluster.local', caStore: memoryCaStore() },
      federation: { mintToken: idA.mint, pollIntervalMs: 3_600_000, apiToken: tokenPolicy, writeRemoteSecrets: 'meshfed' },
    },
  );
  await kubectl(['apply'], {
    apiVersion: DH,
    kind: 'IstioMulticluster',
    metadata: { name: 'cluster-b' },
    spec: { metadataEndpoint: peer.endpoint, metadata: { ca: peer.caPem } },
  });
}, 30_000);

afterAll(async () => {
  await m?.stop(100);
  await Promise.all([proxy?.close(), peer?.close(), local?.close(), remote?.close()]);
});

describe('an IstioMulticluster peer', () => {
  it("reaches all three conditions True with Deckhouse's reasons, and caches the metadata in status", async () => {
    await vi.waitFor(() => expectEqual(conditionOf('cluster-b', 'RemoteAPIServerReady')?.['status'], 'True'), {
      timeout: 15_000,
      interval: 20,
    }); // conditions
    const t = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(statusOf('cluster-b')).toEqual({
      metadataCache: {
        public: { clusterUUID: B_UUID, authnKeyPub: 'peer key', rootCA: rootB },
        private: {
          ingressGateways: [{ address: '192.0.2.20', port: 15443 }],
          apiHost: `127.0.0.1:${proxyPort}`,
          networkName: 'network-b',
          clusterID: 'cluster-b',
        },
      },
      conditions: [
        {
          type: 'PublicMetadataExchangeReady',
          status: 'True',
          reason: 'Succeeded',
          message: 'Public metadata exchange succeeded.',
          lastTransitionTime: t,
          lastProbeTime: t,
        },
        {
          type: 'PrivateMetadataExchangeReady',
          status: 'True',
          reason: 'Succeeded',
          message: 'Private metadata exchange succeeded.',
          lastTransitionTime: t,
          lastProbeTime: t,
        },
        {
          type: 'RemoteAPIServerReady',
          status: 'True',
          reason: 'RemoteAPIReachable',
          message: `GET https://127.0.0.1:${proxyPort}/api returned HTTP 200 with kind APIVersions`,
          lastTransitionTime: t,
          lastProbeTime: t,
        },
      ],
    });
  });

  it('keeps every lastTransitionTime while nothing changes (lastProbeTime moves)', async () => {
    const before = statusOf('cluster-b')!.conditions!;
    await new Promise((r) => setTimeout(r, 1100)); // the next second: a rewritten time would differ
    await probed();
    await vi.waitFor(() => expect(statusOf('cluster-b')!.conditions![0]!['lastProbeTime']).not.toBe(before[0]!['lastProbeTime']), {
      timeout: 10_000,
      interval: 20,
    }); // probed again
    expect(statusOf('cluster-b')!.conditions!.map((c) => c['lastTransitionTime'])).toEqual(before.map((c) => c['lastTransitionTime']));
  });

  it("joins the peer's cluster by itself: its endpoints on its network behind its gateway, its root in the local bundle", async () => {
    await vi.waitFor(() => expectEqual(remoteEndpoints().length, 10), { timeout: 10_000, interval: 20 }); // remote endpoints
    const c = await clusterStatus(m, 'cluster-b');
    expect(c).toMatchObject({
      role: 'remote',
      state: 'synced',
      peer: 'cluster-b',
      secret: 'multicluster/cluster-b',
      server: `https://127.0.0.1:${proxyPort}`,
      network: 'network-b',
      domain: 'cluster.local',
    });
    expect(c.gateways).toEqual([{ network: 'network-b', address: '192.0.2.20', port: 15443, service: 'multicluster.json' }]);
    m.registry.flush();
    expect(
      m.registry.snapshot.endpoints
        .get(HOST)!
        .filter((e) => e.clusterId === 'cluster-b')
        .every((e) => e.network === 'network-b'),
    ).toBe(true);
    // Same trust domain: the peer's root joins cluster.local's roots (no second domain).
    expect([...m.pki!.bundles.byDomain().keys()]).toEqual(['cluster.local']);
    expect(m.pki!.bundles.byDomain().get('cluster.local')).toContain(rootB);
    const r = await row();
    expect(r).toMatchObject({
      name: 'cluster-b',
      kind: 'multicluster',
      trustDomain: 'cluster.local',
      api: { status: 'True', reason: 'RemoteAPIReachable' },
    });
    // Nothing imported, as a federation peer's services are: its endpoints are the remote cluster's.
    expect(r.imports).toBeUndefined();
    expect(r.servicesImported).toBeUndefined();
    expect(r.remoteCluster).toMatchObject({ id: 'cluster-b', state: 'synced', endpoints: 10, rotating: false, network: 'network-b' });
    // The token is a credential: never on the debug pages.
    const pages = JSON.stringify([(await admin(m, '/debug/peers')).body, (await admin(m, '/debug/clusters')).body]);
    expect(pages).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
  });

  it("writes Istio's remote Secret for an istiod beside (--write-remote-secrets), which meshfed itself does not follow twice", async () => {
    const secret = await vi.waitFor(
      () => {
        const s = local.get('v1', 'Secret', 'meshfed', 'istio-remote-secret-cluster-b');
        if (!s) throw new Error('not yet');
        return s as KubeObject & { data: Record<string, string> };
      },
      { timeout: 10_000, interval: 20 },
    ); // the Secret
    expect(secret.metadata).toMatchObject({
      labels: { 'istio/multiCluster': 'true' },
      annotations: { 'networking.istio.io/cluster': 'cluster-b' },
    });
    const kubeconfig = parse(Buffer.from(secret.data['cluster-b']!, 'base64').toString()) as {
      clusters: Array<{ cluster: Record<string, string> }>;
      users: Array<{ user: { token: string } }>;
    };
    expect(kubeconfig.clusters[0]!.cluster).toEqual({
      server: `https://127.0.0.1:${proxyPort}`,
      'certificate-authority-data': Buffer.from(peer.caPem).toString('base64'),
    });
    expect(decodeJwt(kubeconfig.users[0]!.user.token)).toMatchObject({ scope: 'api', aud: B_UUID, sub: A_UUID });
    // The Secret sits where meshfed reads remote Secrets: still one cluster, joined by the peer.
    await new Promise((r) => setTimeout(r, 200));
    const { body } = await admin<{ clusters: Array<{ cluster: string; secret?: string }>; refusedSecretKeys: unknown[] }>(
      m,
      '/debug/clusters',
    );
    expect(body.clusters.filter((c) => c.cluster === 'cluster-b')).toEqual([expect.objectContaining({ secret: 'multicluster/cluster-b' })]);
    expect(body.refusedSecretKeys).toEqual([]);
  });

  it("follows the peer's endpoints through the api-proxy watch", async () => {
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 11)));
    await vi.waitFor(() => expectEqual(remoteEndpoints().length, 11), { timeout: 10_000, interval: 20 }); // 11 endpoints
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 10)));
    await vi.waitFor(() => expectEqual(remoteEndpoints().length, 10), { timeout: 10_000, interval: 20 }); // 10 endpoints
  });
});

describe('faults: nothing lost from the registry meanwhile', () => {
  const gaps: string[] = [];
  let poll: NodeJS.Timeout;
  beforeAll(async () => {
    await vi.waitFor(() => expectEqual(remoteEndpoints().length, 10), { timeout: 10_000, interval: 20 }); // remote endpoints
    poll = setInterval(() => {
      const n = remoteEndpoints().length;
      if (n !== 10) gaps.push(`${new Date().toISOString()}: ${n} endpoints of cluster-b`);
    }, 1);
  });
  afterAll(() => clearInterval(poll));

  it('the api-proxy restarts: the cluster is kept (unreachable meanwhile), then synced again', async () => {
    await proxy.close();
    await vi.waitFor(async () => expectEqual((await clusterStatus(m, 'cluster-b')).state, 'unreachable'), {
      timeout: 10_000,
      interval: 20,
    }); // unreachable
    await probed();
    expect(conditionOf('cluster-b', 'RemoteAPIServerReady')).toMatchObject({ status: 'False', reason: 'RemoteAPIUnreachable' });
    proxy = startProxy();
    await proxy.listen('127.0.0.1', proxyPort);
    await vi.waitFor(async () => expectEqual((await clusterStatus(m, 'cluster-b')).state, 'synced'), { timeout: 10_000, interval: 20 }); // synced again
    await probed();
    expect(conditionOf('cluster-b', 'RemoteAPIServerReady')).toMatchObject({ status: 'True', reason: 'RemoteAPIReachable' });
    expect(gaps).toEqual([]);
  });

  it("the peer's apiserver stalls: its endpoints are kept, then marked stale (demoted), and fresh again after", async () => {
    remote.faults.set({ kind: 'drop', path: /watch=true/ });
    remote.faults.set({ kind: 'stall' });
    try {
      await vi.waitFor(async () => expectEqual((await clusterStatus(m, 'cluster-b')).state, 'stale'), { timeout: 15_000, interval: 20 }); // stale
      await vi.waitFor(() => expectEqual(remoteEndpoints().filter((e) => e.endsWith(' !p1')).length, 10), {
        timeout: 10_000,
        interval: 20,
      }); // demoted
      expect((await row()).remoteCluster?.state).toBe('stale');
    } finally {
      remote.faults.set(null);
    }
    await vi.waitFor(() => expectEqual(remoteEndpoints().filter((e) => e.endsWith(' !p1')).length, 0), { timeout: 40_000, interval: 20 }); // fresh
    expect(gaps).toEqual([]);
  }, 60_000);

  it('the api token is rotated: the cluster is watched with the new one beside the old, then swapped', async () => {
    const before = await clusterStatus(m, 'cluster-b');
    // The next poll finds the token too close to expiry and mints a new one (another lifetime: another token).
    Object.assign(tokenPolicy, { ttlSeconds: 365 * DAY, renewBeforeSeconds: 400 * DAY });
    await probed();
    Object.assign(tokenPolicy, { renewBeforeSeconds: 30 * DAY });
    await vi.waitFor(
      async () => {
        const c = await clusterStatus(m, 'cluster-b');
        expect(c.rotating).toBe(false);
        expect(c.syncedAt).not.toBe(before.syncedAt);
      },
      { timeout: 10_000, interval: 20 },
    ); // swapped
    expect(await clusterStatus(m, 'cluster-b')).toMatchObject({ state: 'synced', endpoints: 10 });
    expect(gaps).toEqual([]);
  });

  it('the metadata names another apiHost: a dead one leaves the old watches serving; a live one is swapped to', async () => {
    peer.doc = { ...peer.doc, multicluster: { ...peer.doc.multicluster!, apiHost: '127.0.0.1:1' } };
    await probed();
    expect(conditionOf('cluster-b', 'RemoteAPIServerReady')).toMatchObject({ status: 'False', reason: 'RemoteAPIUnreachable' });
    await vi.waitFor(
      async () =>
        expect(await clusterStatus(m, 'cluster-b')).toMatchObject({
          rotating: true,
          state: 'synced',
          server: `https://127.0.0.1:${proxyPort}`,
        }),
      { timeout: 10_000, interval: 20 },
    ); // new watches pending
    const second = startProxy();
    const port2 = await second.listen('127.0.0.1', 0);
    try {
      peer.doc = { ...peer.doc, multicluster: { ...peer.doc.multicluster!, apiHost: `127.0.0.1:${port2}` } };
      await probed();
      await vi.waitFor(
        async () =>
          expect(await clusterStatus(m, 'cluster-b')).toMatchObject({
            rotating: false,
            state: 'synced',
            server: `https://127.0.0.1:${port2}`,
          }),
        { timeout: 10_000, interval: 20 },
      ); // swapped to the new apiHost
      // The old api-proxy going away now changes nothing.
      await proxy.close();
      await new Promise((r) => setTimeout(r, 300));
      expect(await clusterStatus(m, 'cluster-b')).toMatchObject({ state: 'synced', endpoints: 10 });
      expect(gaps).toEqual([]);
    } finally {
      proxy = second;
    }
  });

  it("the peer's root changes: the local bundle follows, with no new watches", async () => {
    const before = await clusterStatus(m, 'cluster-b');
    const caB2 = await CertificateAuthority.open({ trustDomain: 'cluster.local', store: memoryCaStore() });
    const rootB2 = caB2.roots[0]!;
    caB2.close();
    peer.doc = { ...peer.doc, rootCA: rootB + rootB2 };
    await probed();
    await vi.waitFor(() => expectEqual(m.pki!.bundles.byDomain().get('cluster.local')?.includes(rootB2), true), {
      timeout: 10_000,
      interval: 20,
    }); // both roots
    expect(m.pki!.bundles.byDomain().get('cluster.local')).toContain(rootB);
    expect(await clusterStatus(m, 'cluster-b')).toMatchObject({ syncedAt: before.syncedAt, rotating: false });
    expect(gaps).toEqual([]);
  });

  it("enableIngressGateway: false puts the peer's pods on the local network (flat), swapped make-before-break", async () => {
    await kubectl([
      'patch',
      'istiomulticluster',
      'cluster-b',
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { enableIngressGateway: false } }),
    ]);
    await vi.waitFor(
      async () =>
        expect(await clusterStatus(m, 'cluster-b')).toMatchObject({ network: 'network-a', gateways: [], rotating: false, endpoints: 10 }),
      { timeout: 10_000, interval: 20 },
    ); // flat
    await vi.waitFor(
      () =>
        expectEqual(
          m.registry.snapshot.endpoints
            .get(HOST)!
            .filter((e) => e.clusterId === 'cluster-b')
            .every((e) => e.network === 'network-a'),
          true,
        ),
      { timeout: 10_000, interval: 20 },
    ); // registry
    expect(gaps).toEqual([]);
  });

  it("deleting the IstioMulticluster removes the cluster and the peer's root", async () => {
    clearInterval(poll);
    await kubectl(['delete', 'istiomulticluster', 'cluster-b']);
    await vi.waitFor(() => expectEqual(remoteEndpoints().length, 0), { timeout: 10_000, interval: 20 }); // cluster gone
    await vi.waitFor(() => expectEqual(m.pki!.bundles.byDomain().get('cluster.local')?.includes(rootB), false), {
      timeout: 10_000,
      interval: 20,
    }); // root gone
    await vi.waitFor(() => expectEqual(local.get('v1', 'Secret', 'meshfed', 'istio-remote-secret-cluster-b'), undefined), {
      timeout: 10_000,
      interval: 20,
    }); // remote Secret gone
    expect(m.peers.rows()).toEqual([]);
  });
});
