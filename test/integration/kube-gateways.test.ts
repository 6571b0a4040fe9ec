// East-west gateways discovered from Kubernetes: a remote cluster on another network has a Service
// labelled topology.istio.io/network, and a sidecar on the local network gets, for the remote's
// endpoints, only that gateway's load balancer address; moving the load balancer moves EDS. A gateway
// whose LoadBalancer is still <PENDING> gives no gateway and says so at /debug/clusters.
import { lookup } from 'node:dns/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Meshfed } from '../../src/app.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import { type FakeApiServer, type KubeObject, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import {
  backends,
  clusterStatus,
  type ClusterSpec,
  expectEqual,
  namespace,
  remoteSecret,
  seedCluster,
  startKubeMeshfed,
} from '../helpers/kube-cluster.js';
import { RawXdsClient, type RawXdsStream, type SotwResponse } from '../helpers/raw-client.js';

const WAIT = { timeout: 10_000, interval: 20 }; // for meshfed to follow the apiservers, polled every 20 ms

const FOO: ClusterSpec = { namespace: 'abc', service: 'foo', portName: 'grpc-echo', port: 8080, targetPort: 9000 };
const EDS_NAME = 'outbound|8080||foo.abc.svc.cluster.local';
const GW = 'istio-eastwestgateway';

/** An east-west gateway Service as Istio's samples/multicluster make it, with the load balancer's state. */
function gatewayService(network: string, ingress: { ip?: string; hostname?: string }[] | undefined): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: GW, namespace: 'istio-system', labels: { app: GW, 'topology.istio.io/network': network } },
    spec: { type: 'LoadBalancer', ports: [{ name: 'tls', port: 15443, targetPort: 15443, protocol: 'TCP' }] },
    status: { loadBalancer: ingress ? { ingress } : {} },
  };
}

/** `address:port` of every LbEndpoint of a ClusterLoadAssignment, sorted. */
function addresses(r: SotwResponse): string[] {
  const cla = r.resources.find((x) => x.name === EDS_NAME)?.body as
    | { endpoints?: { lb_endpoints?: { endpoint: { address: { socket_address: { address: string; port_value: number } } } }[] }[] }
    | undefined;
  const out: string[] = [];
  for (const l of cla?.endpoints ?? [])
    for (const e of l.lb_endpoints ?? [])
      out.push(`${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`);
  return out.sort();
}

describe('east-west gateways from Kubernetes Services', () => {
  let local: FakeApiServer;
  let remote: FakeApiServer;
  let meshfed: Meshfed;
  let xds: RawXdsClient;
  let eds: RawXdsStream<SotwResponse>;
  const node = {
    id: 'sidecar~10.1.0.99~client.abc~abc.svc.cluster.local',
    metadata: { fields: { CLUSTER_ID: { stringValue: 'local' }, NETWORK: { stringValue: 'net-1' } } },
  };

  /** The next EDS response whose addresses equal `want` (acking each one on the way). */
  async function edsUntil(want: string[]): Promise<void> {
    let got: string[] = [];
    await vi.waitFor(async () => {
      const r = await eds.next(1000).catch(() => undefined);
      if (r) {
        got = addresses(r);
        eds.send({ node, type_url: TypeUrl.Endpoint, resource_names: [EDS_NAME], version_info: r.version_info, response_nonce: r.nonce });
      }
      expectEqual(got, want);
    }, WAIT);
  }

  beforeAll(async () => {
    [local, remote] = await Promise.all([startFakeApiServer({ clusterName: 'local' }), startFakeApiServer({ clusterName: 'remote' })]);
    seedCluster(local, FOO, backends('10.1.0', 2));
    seedCluster(remote, FOO, backends('10.2.0', 2));
    remote.upsert(namespace('meshfed', { 'topology.istio.io/network': 'net-2' }));
    remote.upsert(namespace('istio-system'));
    remote.upsert(gatewayService('net-2', [{ ip: '198.51.100.10' }]));
    local.upsert(namespace('istio-system'));
    local.upsert(gatewayService('net-1', undefined)); // its LoadBalancer is still <PENDING>
    local.upsert(remoteSecret('istio-remote-secret-remote', 'remote', remote.kubeconfig()));
    meshfed = await startKubeMeshfed(local, { network: 'net-1' });
    xds = new RawXdsClient(`127.0.0.1:${meshfed.xdsPort}`);
    eds = xds.sotw('ads');
    eds.send({ node, type_url: TypeUrl.Endpoint, resource_names: [EDS_NAME] });
  });

  afterAll(async () => {
    eds?.close();
    xds?.close();
    await meshfed?.stop(100);
    await Promise.all([local?.close(), remote?.close()]);
  });

  it("sends a local sidecar the remote network's gateway instead of its pods, and local pods directly", async () => {
    await edsUntil(['10.1.0.1:9000', '10.1.0.2:9000', '198.51.100.10:15443']);
    const r = await clusterStatus(meshfed, 'remote');
    expect(r.gateways).toEqual([{ network: 'net-2', address: '198.51.100.10', port: 15443, service: `istio-system/${GW}` }]);
    expect(r.pendingGateways).toEqual([]);
    expect(meshfed.registry.snapshot.clusters.get('remote')?.gateways).toEqual([{ address: '198.51.100.10', port: 15443 }]);
  });

  it('moves EDS to the new address when the load balancer moves', async () => {
    remote.upsert(gatewayService('net-2', [{ ip: '198.51.100.11' }]));
    await edsUntil(['10.1.0.1:9000', '10.1.0.2:9000', '198.51.100.11:15443']);
  });

  it("resolves a load balancer's hostname to the gateway addresses", async () => {
    const resolved = (await lookup('localhost', { all: true })).map((a) => `${a.address}:15443`);
    remote.upsert(gatewayService('net-2', [{ hostname: 'localhost' }]));
    await edsUntil(['10.1.0.1:9000', '10.1.0.2:9000', ...resolved].sort());
    const r = await clusterStatus(meshfed, 'remote');
    expect(r.gateways.map((g) => `${g.address}:${g.port} ${g.hostname}`)).toEqual(resolved.sort().map((a) => `${a} localhost`));
  });

  it('shows a <PENDING> load balancer at /debug/clusters, and uses it once it has an address', async () => {
    const l = await clusterStatus(meshfed, 'local');
    expect(l.gateways).toEqual([]);
    expect(l.pendingGateways).toEqual([
      `istio-system/${GW}: LoadBalancer has no ingress address yet (<PENDING>): no gateway into network net-1 from it`,
    ]);
    local.upsert(gatewayService('net-1', [{ ip: '198.51.100.20' }]));
    await vi.waitFor(async () => {
      const c = await clusterStatus(meshfed, 'local');
      expectEqual(c.pendingGateways, []);
      expectEqual(
        c.gateways.map((g) => `${g.network} ${g.address}:${g.port}`),
        ['net-1 198.51.100.20:15443'],
      );
    }, WAIT); // local gateway
    // The sidecar is on net-1 itself: its own network's gateway changes nothing for it.
    await eds.none(300);
  });
});
