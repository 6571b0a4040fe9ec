// A cluster's gateway may lead into another network than the cluster's own (a Service labelled
// topology.istio.io/network with another network): like Istio, gateways are keyed by (network, cluster),
// so an endpoint is sent through a gateway only when that gateway leads into the endpoint's network.
import { describe, expect, it } from 'vitest';
import { networkGateways, planEndpoints } from '../../src/generate/split-horizon.js';
import type { Endpoint, MeshCluster, MeshSnapshot, Service } from '../../src/model/mesh.js';
import { proxyOf } from '../../src/model/proxy.js';

const cluster = (id: string, network: string, gateways: MeshCluster['gateways']): MeshCluster => ({
  id,
  network,
  domain: 'cluster.local',
  rootCaPem: '',
  gateways,
});
const ep = (address: string, clusterId: string, network: string): Endpoint => ({
  address,
  ports: { grpc: 9000 },
  serviceAccount: 'foo',
  labels: {},
  locality: { region: '', zone: '', subzone: '' },
  health: 'HEALTHY',
  weight: 1,
  mtls: true,
  clusterId,
  network,
  provenance: { source: 'test' },
});
const PORT = { name: 'grpc', port: 8080, protocol: 'GRPC', targetPort: 9000 } as const;
const SVC: Service = {
  hostname: 'foo.abc.svc.cluster.local',
  name: 'foo',
  namespace: 'abc',
  ports: [PORT],
  exported: false,
  clusters: ['c1', 'c2'],
  origin: 'local',
};

describe('gateways keyed by the network they lead into', () => {
  it('sends an endpoint through a gateway of its own network only', () => {
    const mesh: MeshSnapshot = {
      clusters: new Map([
        ['c1', cluster('c1', 'net-1', [{ address: '192.0.2.3', port: 15443, network: 'net-3' }])],
        ['c2', cluster('c2', 'net-2', [{ address: '192.0.2.2', port: 15443 }])],
      ]),
      services: new Map([[SVC.hostname, SVC]]),
      endpoints: new Map([[SVC.hostname, [ep('10.1.0.1', 'c1', 'net-1'), ep('10.3.0.1', 'c1', 'net-3'), ep('10.2.0.1', 'c2', 'net-2')]]]),
      raw: new Map(),
    };
    const plan = (clusterId: string, network: string): string[] => {
      const view = proxyOf({
        id: 'sidecar~10.9.0.9~client.abc~abc.svc.cluster.local',
        metadata: { CLUSTER_ID: clusterId, NETWORK: network },
      }).view;
      return planEndpoints(mesh, view, SVC, PORT, networkGateways(mesh))
        .map((p) => `${p.address}:${p.port} ${p.clusterId} w${p.weight}`)
        .sort();
    };
    // 10.1.0.1 is on net-1, into which no gateway leads: unreachable from elsewhere, so dropped, not
    // sent to c1's gateway (which leads into net-3 and stands for 10.3.0.1 alone).
    expect(plan('c2', 'net-2')).toEqual(['10.2.0.1:9000 c2 w1', '192.0.2.3:15443 c1 w1']);
    expect(plan('c2', 'net-3')).toEqual(['10.3.0.1:9000 c1 w1', '192.0.2.2:15443 c2 w1']);
  });
});
