// meshfed watching a local fake apiserver and a remote one named by a remote Secret: the model it builds
// (hostnames, ports, health, identity, locality, network), aggregation, and the remote's lifecycle.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Meshfed } from '../../src/app.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import {
  admin,
  backends,
  clusterStatus,
  type ClusterSpec,
  endpointSlice,
  endpointsOf,
  expectEqual,
  namespace,
  remoteSecret,
  seedCluster,
  service,
  startKubeMeshfed,
} from '../helpers/kube-cluster.js';
import { RawXdsClient } from '../helpers/raw-client.js';

const WAIT = { timeout: 10_000, interval: 20 }; // for meshfed to follow the apiservers, polled every 20 ms

const FOO: ClusterSpec = { namespace: 'abc', service: 'foo', portName: 'grpc-echo', port: 8080, targetPort: 9000 };
const HOST = 'foo.abc.svc.cluster.local';

describe('Kubernetes discovery across a local and a remote cluster', () => {
  let local: FakeApiServer;
  let remote: FakeApiServer;
  let meshfed: Meshfed;

  beforeAll(async () => {
    [local, remote] = await Promise.all([startFakeApiServer({ clusterName: 'local' }), startFakeApiServer({ clusterName: 'remote' })]);
    seedCluster(local, FOO, backends('10.1.0', 2));
    seedCluster(remote, { ...FOO, region: 'region-2' }, backends('10.2.0', 2));
    remote.upsert(namespace('meshfed', { 'topology.istio.io/network': 'net-2' }));
    local.upsert(remoteSecret('istio-remote-secret-remote', 'remote', remote.kubeconfig()));
    meshfed = await startKubeMeshfed(local, { network: 'net-1' });
  });

  afterAll(async () => {
    await meshfed?.stop(100);
    await Promise.all([local?.close(), remote?.close()]);
  });

  it('is ready once both clusters synced, and merges the same hostname from both', async () => {
    await vi.waitFor(async () => expectEqual((await admin(meshfed, '/readyz')).status, 200), WAIT); // readyz
    // endpoints from both clusters
    await vi.waitFor(
      () => expectEqual(endpointsOf(meshfed, HOST), ['local 10.1.0.1', 'local 10.1.0.2', 'remote 10.2.0.1', 'remote 10.2.0.2']),
      WAIT,
    );
    const svc = meshfed.registry.snapshot.services.get(HOST)!;
    expect(svc.clusters).toEqual(['local', 'remote']);
    expect(svc.ports).toEqual([{ name: 'grpc-echo', port: 8080, protocol: 'GRPC', targetPort: 9000 }]);
  });

  it('maps pod, node and namespace data onto endpoints', () => {
    const eps = meshfed.registry.snapshot.endpoints.get(HOST)!;
    const l = eps.find((e) => e.address === '10.1.0.1')!;
    const r = eps.find((e) => e.address === '10.2.0.1')!;
    expect(l).toMatchObject({
      ports: { 'grpc-echo': 9000 },
      serviceAccount: 'foo-sa',
      health: 'HEALTHY',
      mtls: true,
      network: 'net-1',
      clusterId: 'local',
    });
    expect(l.locality).toEqual({ region: 'region-1', zone: 'zone-a', subzone: '' });
    // The remote's network comes from the label on its meshfed namespace.
    expect(r).toMatchObject({ network: 'net-2', clusterId: 'remote', locality: { region: 'region-2', zone: 'zone-a', subzone: '' } });
  });

  it('reports both clusters at /debug/clusters', async () => {
    const r = await clusterStatus(meshfed, 'remote');
    expect(r).toMatchObject({
      role: 'remote',
      state: 'synced',
      endpoints: 2,
      secret: 'meshfed/istio-remote-secret-remote',
      network: 'net-2',
      rotating: false,
    });
    expect((await clusterStatus(meshfed, 'local')).state).toBe('synced');
  });

  it('reports conflicting port definitions and resolves them by cluster id', async () => {
    remote.upsert(service({ ...FOO, portName: 'http-echo', targetPort: 9001 }));
    await vi.waitFor(async () => {
      const { body } = await admin<{ portConflicts: string[] }>(meshfed, '/debug/mesh');
      expect(body.portConflicts.join('\n')).toContain('cluster remote says http-echo');
    }, WAIT); // conflict reported
    expect(meshfed.registry.snapshot.services.get(HOST)!.ports[0]!.name).toBe('grpc-echo');
    remote.upsert(service(FOO));
    await vi.waitFor(
      async () => expectEqual((await admin<{ portConflicts: string[] }>(meshfed, '/debug/mesh')).body.portConflicts, []),
      WAIT,
    ); // conflict gone
  });

  it('turns EndpointSlice conditions into health, and drops what a slice removes', async () => {
    remote.upsert(endpointSlice(FOO, 'foo-1', [{ ...backends('10.2.0', 1)[0]!, ready: false }]));
    await vi.waitFor(() => {
      const eps = meshfed.registry.snapshot.endpoints.get(HOST)!.filter((e) => e.clusterId === 'remote');
      expectEqual(
        eps.map((e) => `${e.address} ${e.health}`),
        ['10.2.0.1 UNHEALTHY'],
      );
    }, WAIT); // unhealthy remote endpoint
    remote.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 2)));
  });

  it('stops watching a remote when its Secret goes, and starts again when it comes back', async () => {
    local.remove('v1', 'Secret', 'meshfed', 'istio-remote-secret-remote');
    await vi.waitFor(() => expectEqual(endpointsOf(meshfed, HOST), ['local 10.1.0.1', 'local 10.1.0.2']), WAIT); // remote endpoints gone
    const { body } = await admin<{ clusters: { cluster: string }[] }>(meshfed, '/debug/clusters');
    expect(body.clusters.map((c) => c.cluster)).toEqual(['local']);
    local.upsert(remoteSecret('istio-remote-secret-remote', 'remote', remote.kubeconfig({ user: 'client-cert' })));
    // remote endpoints back
    await vi.waitFor(
      () => expectEqual(endpointsOf(meshfed, HOST), ['local 10.1.0.1', 'local 10.1.0.2', 'remote 10.2.0.1', 'remote 10.2.0.2']),
      WAIT,
    );
  });

  it('refuses a remote Secret with an exec plugin, with a visible error, and keeps serving', async () => {
    const exec = remote
      .kubeconfig()
      .replace(/token: .*/, 'exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ["-c", "echo pwned"]}');
    local.upsert(remoteSecret('istio-remote-secret-evil', 'evil', exec));
    await vi.waitFor(async () => {
      const c = await clusterStatus(meshfed, 'evil');
      expectEqual(c.state, 'error');
      expect(c.lastError).toMatch(/exec credential plugins are refused/);
    }, WAIT); // error state
    expect((await admin(meshfed, '/readyz')).status).toBe(200);
    expect(endpointsOf(meshfed, HOST)).toHaveLength(4);
    const metrics = await (await fetch(`http://127.0.0.1:${meshfed.adminPort}/metrics`)).text();
    expect(metrics).toContain('meshfed_remote_cluster_state{cluster="evil",state="error"} 1');
    expect(metrics).toContain('meshfed_remote_cluster_endpoints{cluster="remote"} 2');
    local.remove('v1', 'Secret', 'meshfed', 'istio-remote-secret-evil');
  });
});

describe('readiness', () => {
  it('a proxy that connects the moment /readyz turns ok gets every synced service, even with a long debounce', async () => {
    const api = await startFakeApiServer({ clusterName: 'local' });
    seedCluster(api, FOO, backends('10.1.0', 2));
    const meshfed = await startKubeMeshfed(api, {}, { debounceMs: 5000, debounceMaxMs: 20_000 });
    try {
      await vi.waitFor(async () => expectEqual((await admin(meshfed, '/readyz')).status, 200), { timeout: 5000, interval: 5 }); // readyz
      const xds = new RawXdsClient(`127.0.0.1:${meshfed.xdsPort}`);
      const s = xds.sotw();
      s.send({ node: { id: 'sidecar~10.1.0.9~bar-1.abc~abc.svc.cluster.local' }, type_url: TypeUrl.Cluster, resource_names: [] });
      expect((await s.next()).resources.map((r) => r.name)).toEqual([`outbound|8080||${HOST}`]);
      xds.close();
    } finally {
      await meshfed.stop(100);
      await api.close();
    }
  });

  it('publishes a synced cluster that has no services yet: its network is known', async () => {
    const api = await startFakeApiServer({ clusterName: 'local' });
    api.upsert(namespace('abc'));
    const meshfed = await startKubeMeshfed(api, { network: 'net-1' });
    try {
      await vi.waitFor(async () => expectEqual((await admin(meshfed, '/readyz')).status, 200), WAIT); // readyz
      expect(meshfed.registry.snapshot.clusters.get('local')?.network).toBe('net-1');
    } finally {
      await meshfed.stop(100);
      await api.close();
    }
  });
});
