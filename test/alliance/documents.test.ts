// Which gateways the exporter publishes: the advertised ones when given, else the local cluster's own gateways into
// its own network (not those it has into other networks, nor other clusters'), sorted and without duplicates.
import { describe, expect, it } from 'vitest';
import { ingressGateways } from '../../src/alliance/exporter/documents.js';
import { EMPTY_SNAPSHOT, type MeshCluster, type MeshSnapshot } from '../../src/model/mesh.js';

const cluster = (id: string, network: string, gateways: MeshCluster['gateways']): MeshCluster => ({
  id,
  network,
  domain: `${id}.local`,
  rootCaPem: '',
  gateways,
});
const snapshot: MeshSnapshot = {
  ...EMPTY_SNAPSHOT,
  clusters: new Map([
    [
      'b',
      cluster('b', 'net-b', [
        { address: '192.0.2.9', port: 15443 },
        { address: '192.0.2.1', port: 15443, network: 'net-b' },
        { address: '192.0.2.1', port: 15443 },
        { address: '198.51.100.1', port: 15443, network: 'net-x' },
      ]),
    ],
    ['a', cluster('a', 'net-a', [{ address: '203.0.113.1', port: 15443 }])],
  ]),
};

describe('ingressGateways', () => {
  it("are the local cluster's gateways into its own network, sorted by address then port, once each", () => {
    expect(ingressGateways(snapshot, 'b')).toEqual([
      { address: '192.0.2.1', port: 15443 },
      { address: '192.0.2.9', port: 15443 },
    ]);
    expect(ingressGateways(snapshot, 'nope')).toEqual([]);
  });

  it('are the advertised ones when given (addresses or names), instead of the discovered ones', () => {
    const advertise = [
      { address: 'gw.example.com', port: 443 },
      { address: '203.0.113.7', port: 15443 },
      { address: 'gw.example.com', port: 443 },
    ];
    expect(ingressGateways(snapshot, 'b', advertise)).toEqual([
      { address: '203.0.113.7', port: 15443 },
      { address: 'gw.example.com', port: 443 },
    ]);
  });
});
