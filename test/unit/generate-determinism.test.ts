// Generation is pure and deterministic: the same mesh gives the same bytes, and a change to one
// service's endpoints changes that service's EDS and nothing else (no CDS version moves, so no
// proxy drains a connection pool).
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { createGenerators } from '../../src/generate/index.js';
import { proxyOf } from '../../src/model/proxy.js';
import { Registry } from '../../src/registry/registry.js';
import { parseMeshText } from '../../src/sources/file/parse.js';
import { meshToSource } from '../../src/sources/file/to-model.js';
import { NO_OBSERVER } from '../../src/xds/observer.js';
import { XdsStore } from '../../src/xds/store.js';

function meshText(fooAddress: string, fooAccount = 'foo'): string {
  return JSON.stringify({
    clusters: [
      { id: 'a', network: 'na', domain: 'cluster.local', gateways: [{ address: '192.0.2.1', port: 15443 }] },
      { id: 'b', network: 'nb', domain: 'cluster.local', gateways: [{ address: '192.0.2.2', port: 15443 }] },
    ],
    services: ['foo', 'bar', 'baz'].map((name, i) => ({
      name,
      namespace: 'abc',
      cluster: i === 2 ? 'b' : 'a',
      exported: true,
      ports: [{ name: 'grpc', port: 8080, protocol: 'GRPC' }],
      endpoints: [{ address: name === 'foo' ? fooAddress : `10.0.${i}.1`, serviceAccount: name === 'foo' ? fooAccount : name }],
    })),
  });
}

const VIEWS = [
  proxyOf({ id: 'sidecar~10.9.0.1~c.abc~abc.svc.cluster.local', metadata: { CLUSTER_ID: 'a', NETWORK: 'na' } }).view,
  proxyOf({ id: 'router~10.9.0.2~gw.istio-system~istio-system.svc.cluster.local', metadata: { CLUSTER_ID: 'a', NETWORK: 'na' } }).view,
  proxyOf({ id: 'grpc-1', user_agent_name: 'gRPC Go', metadata: { CLUSTER_ID: 'a', NETWORK: 'na' } }).view,
];

function setup(): { store: XdsStore; apply(text: string): void; clusterEncodes: () => number } {
  let clusterEncodes = 0;
  const store = new XdsStore(createGenerators(), { ...NO_OBSERVER, encoded: (t) => void (t === TypeUrl.Cluster && clusterEncodes++) });
  const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s, c) => store.update(s, c), pino({ level: 'silent' }));
  const apply = (text: string): void => {
    registry.setSource('t', meshToSource(parseMeshText(text, 'mesh.json'), 't'));
    registry.flush();
  };
  return { store, apply, clusterEncodes: () => clusterEncodes };
}

/** Every (type, view, name) → version the store holds. */
function versions(store: XdsStore): Map<string, string> {
  const out = new Map<string, string>();
  for (const view of VIEWS)
    for (const t of [TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route]) {
      for (const e of store.table(t, view).entries()) out.set(`${view.role} ${t.split('.').pop()} ${e.name}`, e.version);
    }
  return out;
}

describe('deterministic generation', () => {
  it('gives the same bytes for the same mesh, in another store', () => {
    const one = setup();
    one.apply(meshText('10.0.0.1'));
    const two = setup();
    two.apply(meshText('10.0.0.1'));
    const v = versions(one.store);
    expect(v.size).toBeGreaterThan(10);
    expect(versions(two.store)).toEqual(v);
  });

  it("changes only the moved service's EDS when its endpoints change; every CDS version stays", () => {
    const { store, apply, clusterEncodes } = setup();
    apply(meshText('10.0.0.1'));
    const before = versions(store);
    const encodesBefore = clusterEncodes();
    apply(meshText('10.0.0.7'));
    expect(clusterEncodes()).toBe(encodesBefore); // the same account serves it: clusters are not even re-derived
    const after = versions(store);
    const changed = [...after]
      .filter(([k, v]) => before.get(k) !== v)
      .map(([k]) => k)
      .sort();
    // The gateway sees foo's pod (same network); the sidecar and gRPC client too. A proxyless gRPC
    // server is named by the address it binds, so the moved pod's server listener moves with it.
    const serverListener = (ip: string): string => `grpc Listener grpc/server?xds.resource.listening_address=${ip}:8080`;
    expect(changed).toEqual([
      'grpc ClusterLoadAssignment outbound|8080||foo.abc.svc.cluster.local',
      serverListener('10.0.0.7'),
      'router ClusterLoadAssignment outbound_.8080_._.foo.abc.svc.cluster.local',
      'sidecar ClusterLoadAssignment outbound|8080||foo.abc.svc.cluster.local',
    ]);
    expect(after.has(serverListener('10.0.0.1'))).toBe(false);
    const others = (keys: Iterable<string>): string[] =>
      [...keys].filter((k) => k !== serverListener('10.0.0.1') && k !== serverListener('10.0.0.7')).sort();
    expect(others(after.keys())).toEqual(others(before.keys()));
  });

  it("re-derives a service's clusters when the identity serving it changes", () => {
    const { store, apply } = setup();
    apply(meshText('10.0.0.1'));
    const before = versions(store);
    apply(meshText('10.0.0.1', 'foo-v2'));
    const after = versions(store);
    const changed = [...after]
      .filter(([k, v]) => before.get(k) !== v)
      .map(([k]) => k)
      .sort();
    // The SAN lists name foo's new account; the gateway's SNI cluster has no TLS of its own.
    expect(changed).toEqual([
      'grpc Cluster outbound|8080||foo.abc.svc.cluster.local',
      'sidecar Cluster outbound|8080||foo.abc.svc.cluster.local',
    ]);
  });
});
