// Split horizon as a table, in the manner of Istio's ep_filters_test.go (EndpointsByNetworkFilter):
// for a proxy on a given network, which endpoints of one service port it is sent, directly or as
// the gateways standing for them, with which weights. Beside the goldens, which pin the bytes;
// these pin the rules, one case each.
//
// The mesh: c1/net1 has gateway 1.1.1.1; c2/net2 has two (2.2.2.2, 2.2.2.3); c3/net3 none;
// c4/net4 one (4.4.4.4). The least common multiple of the gateway counts is 2, so every weight
// is scaled by 2 and a split over net2's two gateways stays whole.
import { describe, expect, it } from 'vitest';
import { networkGateways, planEndpoints } from '../../src/generate/split-horizon.js';
import type { Endpoint, MeshCluster, MeshSnapshot, Service } from '../../src/model/mesh.js';
import { proxyOf } from '../../src/model/proxy.js';
import { endpoint } from '../helpers/model.js';

const PORT = { name: 'http', port: 80, protocol: 'HTTP', targetPort: 8080 } as const;
const GW = 15443;
const cluster = (id: string, network: string, gateways: string[], domain = 'cluster.local'): MeshCluster => ({
  id,
  network,
  domain,
  rootCaPem: '',
  gateways: gateways.map((address) => ({ address, port: GW })),
});
const CLUSTERS = [
  cluster('c1', 'net1', ['1.1.1.1']),
  cluster('c2', 'net2', ['2.2.2.2', '2.2.2.3']),
  cluster('c3', 'net3', []),
  cluster('c4', 'net4', ['4.4.4.4']),
];

/** An mTLS, healthy endpoint of weight 1 in cluster cN on netN. */
const ep = (address: string, n: number, over: Partial<Endpoint> = {}): Endpoint =>
  endpoint(address, { clusterId: `c${n}`, network: `net${n}`, mtls: true, ...over });

interface Case {
  readonly name: string;
  /** Proxy id's role and metadata. */
  readonly proxy: { role?: 'sidecar' | 'router'; cluster?: string; network?: string };
  readonly endpoints: readonly Endpoint[];
  readonly hostname?: string;
  /** `address:port wWEIGHT`, then ` unhealthy`, ` pPRIORITY`, ` ZONE` where they apply, in the order sent. */
  readonly want: readonly string[];
}

const CASES: readonly Case[] = [
  {
    name: 'a local endpoint goes direct, its weight scaled',
    proxy: { cluster: 'c1' },
    endpoints: [ep('10.1.0.1', 1)],
    want: ['10.1.0.1:8080 w2'],
  },
  {
    name: "remote endpoints are replaced by their network's gateways, weight split across them and summed",
    proxy: { cluster: 'c1' },
    endpoints: [ep('10.1.0.1', 1), ep('10.2.0.1', 2), ep('10.2.0.2', 2)],
    want: ['10.1.0.1:8080 w2', `2.2.2.2:${GW} w2`, `2.2.2.3:${GW} w2`],
  },
  { name: 'a network without a gateway is unreachable', proxy: { cluster: 'c1' }, endpoints: [ep('10.3.0.1', 3)], want: [] },
  {
    name: 'a plaintext remote endpoint cannot be reached through a gateway',
    proxy: { cluster: 'c1' },
    endpoints: [ep('10.2.0.1', 2, { mtls: false })],
    want: [],
  },
  {
    name: 'an unhealthy local endpoint is sent unhealthy; a gateway never stands for one',
    proxy: { cluster: 'c1' },
    endpoints: [ep('10.1.0.1', 1, { health: 'UNHEALTHY' }), ep('10.2.0.1', 2, { health: 'UNHEALTHY' })],
    want: ['10.1.0.1:8080 w2 unhealthy'],
  },
  {
    name: 'terminating endpoints are not sent',
    proxy: { cluster: 'c1' },
    endpoints: [ep('10.1.0.1', 1, { health: 'TERMINATING' })],
    want: [],
  },
  {
    name: "the NETWORK metadata wins over the cluster's network",
    proxy: { cluster: 'c1', network: 'net2' },
    endpoints: [ep('10.1.0.1', 1), ep('10.2.0.1', 2)],
    want: [`1.1.1.1:${GW} w2`, '10.2.0.1:8080 w2'],
  },
  {
    name: 'weights of the endpoints behind one gateway are summed',
    proxy: { cluster: 'c1' },
    endpoints: [ep('10.4.0.1', 4, { weight: 3 }), ep('10.4.0.2', 4)],
    want: [`4.4.4.4:${GW} w8`],
  },
  {
    name: 'a proxy that does not know its network goes through a gateway where there is one',
    proxy: { cluster: 'unknown' },
    endpoints: [ep('10.1.0.1', 1), ep('10.3.0.1', 3)],
    want: [`1.1.1.1:${GW} w2`, '10.3.0.1:8080 w2'],
  },
  {
    name: 'a gateway entry per locality',
    proxy: { cluster: 'c1' },
    endpoints: [
      ep('10.4.0.1', 4, { locality: { region: 'r', zone: 'z1', subzone: '' } }),
      ep('10.4.0.2', 4, { locality: { region: 'r', zone: 'z2', subzone: '' } }),
    ],
    want: [`4.4.4.4:${GW} w2 z1`, `4.4.4.4:${GW} w2 z2`],
  },
  {
    name: "a gateway entry per priority: a stale cluster's demoted endpoints stay demoted behind it",
    proxy: { cluster: 'c1' },
    endpoints: [ep('10.4.0.1', 4, { priority: 1 }), ep('10.4.0.2', 4)],
    want: [`4.4.4.4:${GW} w2 p1`, `4.4.4.4:${GW} w2`],
  },
  {
    name: 'a router sees only the mTLS endpoints of its own network (SNI passthrough)',
    proxy: { role: 'router', cluster: 'c1' },
    endpoints: [ep('10.1.0.1', 1), ep('10.1.0.2', 1, { mtls: false }), ep('10.2.0.1', 2)],
    want: ['10.1.0.1:8080 w2'],
  },
  {
    name: 'a federated import (another trust domain) is reached only through its gateway, even on the same network',
    proxy: { cluster: 'c1' },
    hostname: 'svc.ns.svc.other.example',
    endpoints: [ep('10.1.0.1', 1)],
    want: [`1.1.1.1:${GW} w2`],
  },
];

describe('split horizon (EndpointsByNetworkFilter)', () => {
  it.each(CASES)('$name', (c) => {
    const hostname = c.hostname ?? 'svc.ns.svc.cluster.local';
    const svc: Service = { hostname, name: 'svc', namespace: 'ns', ports: [PORT], exported: true, clusters: ['c1'], origin: 'local' };
    const mesh: MeshSnapshot = {
      clusters: new Map(CLUSTERS.map((cl) => [cl.id, cl])),
      services: new Map([[hostname, svc]]),
      endpoints: new Map([[hostname, c.endpoints]]),
      raw: new Map(),
    };
    const metadata: Record<string, string> = {};
    if (c.proxy.cluster) metadata['CLUSTER_ID'] = c.proxy.cluster;
    if (c.proxy.network) metadata['NETWORK'] = c.proxy.network;
    const { view } = proxyOf({ id: `${c.proxy.role ?? 'sidecar'}~10.9.0.9~client.ns~ns.svc.cluster.local`, metadata });
    const got = planEndpoints(mesh, view, svc, PORT, networkGateways(mesh)).map(
      (p) =>
        `${p.address}:${p.port} w${p.weight}${p.healthy ? '' : ' unhealthy'}${p.priority ? ` p${p.priority}` : ''}${p.locality.zone ? ` ${p.locality.zone}` : ''}`,
    );
    expect(got).toEqual(c.want);
  });
});
