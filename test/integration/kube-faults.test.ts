// How meshfed serves a remote cluster that misbehaves: unreachable (kept → demoted → withdrawn, then
// back), 410 Gone (relist without duplicates or losses), credentials rotated (no gap), a mass
// withdrawal (held until confirmed) and garbage objects (rejected alone). Bounds are short here; the
// defaults are minutes.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Meshfed } from '../../src/app.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import {
  backends,
  clusterStatus,
  type ClusterSpec,
  endpointSlice,
  endpointsOf,
  expectEqual,
  remoteSecret,
  seedCluster,
  startKubeMeshfed,
} from '../helpers/kube-cluster.js';
import { RawXdsClient, type RawXdsStream, type SotwResponse } from '../helpers/raw-client.js';

const WAIT = { timeout: 10_000, interval: 20 }; // for meshfed to follow the apiservers, polled every 20 ms

const FOO: ClusterSpec = { namespace: 'abc', service: 'foo', portName: 'grpc-echo', port: 8080, targetPort: 9000 };
const HOST = 'foo.abc.svc.cluster.local';
const EDS_NAME = `outbound|8080||${HOST}`;
const SECRET = 'istio-remote-secret-remote';
const LOCAL_EPS = ['local 10.1.0.1'];
const remoteEps = (n: number, from = 1): string[] => backends('10.2.0', n, from).map((b) => `remote ${b.ip}`);
/** What endpointsOf() gives for these: sorted as strings. */
const all = (...lists: string[][]): string[] => lists.flat().sort();

async function twoClusters(remoteBackends: number): Promise<{ local: FakeApiServer; remote: FakeApiServer }> {
  const [local, remote] = await Promise.all([startFakeApiServer({ clusterName: 'local' }), startFakeApiServer({ clusterName: 'remote' })]);
  seedCluster(local, FOO, backends('10.1.0', 1));
  seedCluster(remote, FOO, backends('10.2.0', remoteBackends));
  local.upsert(remoteSecret(SECRET, 'remote', remote.kubeconfig()));
  return { local, remote };
}

const metric = async (m: Meshfed, line: string): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${m.adminPort}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(line + ' '));
  return found ? Number(found.slice(line.length + 1)) : NaN;
};

describe('remote unreachable: kept, demoted, withdrawn, then back', () => {
  let local: FakeApiServer;
  let remote: FakeApiServer;
  let meshfed: Meshfed;
  const STALE_MS = 800;
  const WITHDRAW_MS = 1600;

  beforeAll(async () => {
    ({ local, remote } = await twoClusters(2));
    meshfed = await startKubeMeshfed(local, {
      remote: { staleAfterMs: STALE_MS, withdrawAfterMs: WITHDRAW_MS, maxDropShare: 0.5, confirmAfterMs: 60_000, dropWindowMs: 10_000 },
    });
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), all(LOCAL_EPS, remoteEps(2))), WAIT); // both clusters
  });
  afterAll(async () => {
    await meshfed?.stop(100);
    await Promise.all([local?.close(), remote?.close()]);
  });

  it('keeps the last known endpoints, then demotes, then withdraws them at the configured bounds', async () => {
    const downAt = Date.now();
    await remote.stop();
    await vi.waitFor(async () => expectEqual((await clusterStatus(meshfed, 'remote')).state, 'unreachable'), WAIT); // unreachable
    // Inside the staleness window nothing changes for proxies.
    expect(Date.now() - downAt).toBeLessThan(STALE_MS);
    expect(endpointsOf(meshfed, HOST)).toEqual(all(LOCAL_EPS, remoteEps(2)));

    await vi.waitFor(
      () =>
        expectEqual(
          endpointsOf(meshfed, HOST),
          all(
            LOCAL_EPS,
            remoteEps(2).map((e) => `${e} !p1`),
          ),
        ),
      WAIT,
    ); // demoted
    expect(Date.now() - downAt).toBeGreaterThanOrEqual(STALE_MS);
    const stale = await clusterStatus(meshfed, 'remote');
    expect(stale.state).toBe('stale');
    expect(stale.stalenessSeconds).toBeGreaterThan(0);
    expect(await metric(meshfed, 'meshfed_remote_cluster_state{cluster="remote",state="stale"}')).toBe(1);

    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), LOCAL_EPS), WAIT); // withdrawn
    expect(Date.now() - downAt).toBeGreaterThanOrEqual(WITHDRAW_MS);
    expect((await clusterStatus(meshfed, 'remote')).state).toBe('withdrawn');
    // The service stays (the local cluster still serves it).
    expect(meshfed.registry.snapshot.services.get(HOST)?.clusters).toEqual(['local', 'remote']);
  });

  it('converges on what the remote holds once it answers again', async () => {
    // Changed while meshfed could not see it.
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 3)));
    await remote.restart();
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), all(LOCAL_EPS, remoteEps(3))), WAIT); // back
    const c = await clusterStatus(meshfed, 'remote');
    expect(c).toMatchObject({ state: 'synced', stalenessSeconds: 0, endpoints: 3 });
  });
});

describe('remote faults while reachable', () => {
  let local: FakeApiServer;
  let remote: FakeApiServer;
  let meshfed: Meshfed;
  let xds: RawXdsClient;

  beforeAll(async () => {
    ({ local, remote } = await twoClusters(10));
    meshfed = await startKubeMeshfed(local, {
      remote: { staleAfterMs: 60_000, withdrawAfterMs: 120_000, maxDropShare: 0.5, confirmAfterMs: 1500, dropWindowMs: 10_000 },
    });
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), all(LOCAL_EPS, remoteEps(10))), WAIT); // both clusters
    xds = new RawXdsClient(`127.0.0.1:${meshfed.xdsPort}`);
  });
  afterEach(() => {
    remote.faults.set(null);
    local.faults.set(null);
  });
  afterAll(async () => {
    xds?.close();
    await meshfed?.stop(100);
    await Promise.all([local?.close(), remote?.close()]);
  });

  it('holds a 90 % drop until it has been stable for the confirmation period', async () => {
    const heldAt = Date.now();
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 1)));
    await vi.waitFor(async () => {
      const c = await clusterStatus(meshfed, 'remote');
      expectEqual(c.heldUpdates.services, 1);
      expectEqual(c.heldUpdates.endpoints, 10);
    }, WAIT); // hold visible
    expect(await metric(meshfed, 'meshfed_remote_cluster_held_updates{cluster="remote"}')).toBe(1);
    expect(endpointsOf(meshfed, HOST)).toEqual(all(LOCAL_EPS, remoteEps(10)));
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), all(LOCAL_EPS, remoteEps(1))), { timeout: 5000, interval: 20 }); // confirmed
    expect(Date.now() - heldAt).toBeGreaterThanOrEqual(1500);
    expect((await clusterStatus(meshfed, 'remote')).heldUpdates.services).toBe(0);
  });

  it('lets a drop undone before confirmation pass without ever serving it', async () => {
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 10)));
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), all(LOCAL_EPS, remoteEps(10))), WAIT); // grown
    await new Promise((r) => setTimeout(r, 50));
    remote.upsert(endpointSlice(FOO, 'foo-1', []));
    await vi.waitFor(async () => expectEqual((await clusterStatus(meshfed, 'remote')).heldUpdates.services, 1), WAIT); // held
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 10)));
    await vi.waitFor(async () => expectEqual((await clusterStatus(meshfed, 'remote')).heldUpdates.services, 0), WAIT); // released
    expect(endpointsOf(meshfed, HOST)).toEqual(all(LOCAL_EPS, remoteEps(10)));
  });

  it('relists after 410 Gone with no duplicate or lost endpoint', async () => {
    const lists = (): number =>
      remote.requests.filter((r) => r.path.startsWith('/apis/discovery.k8s.io/v1/endpointslices') && !r.path.includes('watch=true')).length;
    const listsBefore = lists();
    // Cut the slice watch, change things meanwhile, and forget the history it would resume from.
    remote.faults.set({ kind: 'drop', path: /endpointslices.*watch=true/ });
    await vi.waitFor(async () => expect((await clusterStatus(meshfed, 'remote')).lastError).toBeTruthy(), WAIT); // watch cut
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 8, 3))); // .1 and .2 gone
    remote.upsert(endpointSlice(FOO, 'foo-2', backends('10.2.0', 2, 9))); // .9 and .10 also in a second slice: counted once
    remote.compact();
    remote.faults.set(null);
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), all(LOCAL_EPS, remoteEps(8, 3))), WAIT); // relisted
    expect(lists()).toBeGreaterThan(listsBefore);
    expect(meshfed.registry.snapshot.endpoints.get(HOST)!.filter((e) => e.clusterId === 'remote')).toHaveLength(8);
    remote.remove('discovery.k8s.io/v1', 'EndpointSlice', 'abc', 'foo-2');
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 10)));
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), all(LOCAL_EPS, remoteEps(10))), WAIT); // reset
  });

  it('rejects garbage objects one by one and keeps serving the rest', async () => {
    const rejected = async (): Promise<number> => (await clusterStatus(meshfed, 'remote')).rejectedObjects;
    const before = await rejected();
    remote.faults.set({ kind: 'garbage', path: /endpointslices/ });
    await vi.waitFor(async () => expect(await rejected()).toBeGreaterThan(before), WAIT); // garbage rejected
    remote.faults.set({ kind: 'oversized', path: /endpointslices/ });
    await vi.waitFor(
      async () =>
        expect(
          await metric(meshfed, 'meshfed_kube_rejected_objects_total{cluster="remote",kind="EndpointSlice",reason="oversized"}'),
        ).toBeGreaterThan(0),
      WAIT,
    ); // oversized rejected
    // A good change still goes through while garbage keeps coming.
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 9)));
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), all(LOCAL_EPS, remoteEps(9))), WAIT); // good change applied
    expect((await clusterStatus(meshfed, 'remote')).state).toBe('synced');
    expect(
      await metric(meshfed, 'meshfed_kube_rejected_objects_total{cluster="remote",kind="EndpointSlice",reason="wrong_kind"}'),
    ).toBeGreaterThan(0);
    remote.faults.set(null);
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 10)));
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), all(LOCAL_EPS, remoteEps(10))), WAIT); // reset
  });

  it("rotates the remote Secret with no moment without the remote's endpoints", async () => {
    const gaps: string[] = [];
    // Watch the merged mesh as often as the event loop allows, and EDS as a proxy sees it.
    const poll = setInterval(() => {
      const eps = endpointsOf(meshfed, HOST).filter((e) => e.startsWith('remote '));
      if (eps.length !== 10) gaps.push(`registry: ${eps.length} remote endpoints`);
    }, 1);
    const eds = edsWatch(xds);
    try {
      await eds.first;
      // The new credentials cannot list at first: the old watches must keep serving meanwhile.
      remote.faults.set({ kind: 'status500', path: /^\/api\/v1\/services\?(?!.*watch=true)/ });
      local.upsert(remoteSecret(SECRET, 'remote', remote.kubeconfig({ user: 'client-cert' })));
      await vi.waitFor(async () => expectEqual((await clusterStatus(meshfed, 'remote')).rotating, true), WAIT); // rotation pending
      await new Promise((r) => setTimeout(r, 300));
      expect((await clusterStatus(meshfed, 'remote')).state).toBe('synced');
      remote.faults.set(null);
      await vi.waitFor(async () => expectEqual((await clusterStatus(meshfed, 'remote')).rotating, false), { timeout: 5000, interval: 20 }); // rotation done
      // A rotation to credentials the remote refuses never takes the old ones down either.
      local.upsert(remoteSecret(SECRET, 'remote', remote.kubeconfig({ token: 'revoked' })));
      await vi.waitFor(async () => expect((await clusterStatus(meshfed, 'remote')).lastError ?? '').toMatch(/401/), WAIT); // bad rotation visible
      await new Promise((r) => setTimeout(r, 300));
      const c = await clusterStatus(meshfed, 'remote');
      expect(c).toMatchObject({ state: 'synced', rotating: true, endpoints: 10 });
    } finally {
      clearInterval(poll);
      eds.stop();
    }
    expect(gaps).toEqual([]);
    expect(eds.responses()).toBeGreaterThan(0);
    expect(eds.gaps).toEqual([]);
    local.upsert(remoteSecret(SECRET, 'remote', remote.kubeconfig()));
  });
});

/** An ADS stream subscribed to foo's EDS, acking every response and recording any without the remote's endpoints. */
function edsWatch(xds: RawXdsClient): { first: Promise<void>; gaps: string[]; responses: () => number; stop: () => void } {
  const node = { id: 'kube-faults-eds', user_agent_name: 'test' };
  const stream: RawXdsStream<SotwResponse> = xds.sotw('ads');
  stream.send({ node, type_url: TypeUrl.Endpoint, resource_names: [EDS_NAME] });
  const gaps: string[] = [];
  let stopped = false;
  let count = 0;
  let resolveFirst!: () => void;
  const first = new Promise<void>((r) => (resolveFirst = r));
  void (async () => {
    while (!stopped) {
      let r: SotwResponse;
      try {
        r = await stream.next(500);
      } catch {
        continue;
      }
      count++;
      const addrs = JSON.stringify(r.resources.map((x) => x.body));
      const remoteCount = backends('10.2.0', 10).filter((b) => addrs.includes(`"${b.ip}"`)).length;
      if (remoteCount !== 10) gaps.push(`EDS ${r.version_info}: ${remoteCount} remote endpoints`);
      stream.send({ node, type_url: TypeUrl.Endpoint, resource_names: [EDS_NAME], version_info: r.version_info, response_nonce: r.nonce });
      resolveFirst();
    }
  })();
  return {
    first,
    gaps,
    responses: () => count,
    stop: () => {
      stopped = true;
      stream.close();
    },
  };
}
