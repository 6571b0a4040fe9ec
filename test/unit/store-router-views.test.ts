// Gateways of different networks connected to one meshfed: each gets the SNI clusters of the services
// its own network serves, whichever gateway connected first.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { createGenerators } from '../../src/generate/index.js';
import { proxyOf } from '../../src/model/proxy.js';
import { Registry } from '../../src/registry/registry.js';
import { parseMeshText } from '../../src/sources/file/parse.js';
import { meshToSource } from '../../src/sources/file/to-model.js';
import { XdsStore } from '../../src/xds/store.js';

const router = (cluster: string, network: string) =>
  proxyOf({
    id: `router~10.0.0.1~gw-${cluster}.istio-system~istio-system.svc.cluster.local`,
    metadata: { CLUSTER_ID: cluster, NETWORK: network },
  }).view;

const service = (name: string, cluster: string, address: string) => ({
  name,
  namespace: 'abc',
  cluster,
  exported: true,
  ports: [{ name: 'grpc', port: 8080, protocol: 'GRPC' }],
  endpoints: [{ address, mtls: true }],
});

describe('gateway views', () => {
  it('give each network’s gateway the SNI clusters of its own network only', () => {
    const store = new XdsStore(createGenerators());
    const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s, c) => store.update(s, c), pino({ level: 'silent' }));
    const mesh = {
      clusters: [
        { id: 'a', network: 'na', domain: 'cluster.local' },
        { id: 'b', network: 'nb', domain: 'cluster.local' },
      ],
      services: [service('foo', 'a', '10.1.0.1'), service('bar', 'b', '10.2.0.1')],
    };
    registry.setSource('t', meshToSource(parseMeshText(JSON.stringify(mesh), 'mesh.json'), 't'));
    registry.flush();
    const clusters = (view: ReturnType<typeof router>) => [...store.table(TypeUrl.Cluster, view).entries()].map((e) => e.name);
    expect(clusters(router('a', 'na'))).toEqual(['outbound_.8080_._.foo.abc.svc.cluster.local']);
    expect(clusters(router('b', 'nb'))).toEqual(['outbound_.8080_._.bar.abc.svc.cluster.local']);
  });
});
