// Small builders for model objects in unit tests: only what a test varies is spelled out.
import type { Endpoint } from '../../src/model/mesh.js';
import type { ServiceContribution } from '../../src/model/source.js';

export function endpoint(address: string, over: Partial<Endpoint> = {}): Endpoint {
  return {
    address,
    ports: { http: 8080 },
    serviceAccount: 'default',
    labels: {},
    locality: { region: '', zone: '', subzone: '' },
    health: 'HEALTHY',
    weight: 1,
    mtls: false,
    clusterId: 'c1',
    network: 'n1',
    provenance: { source: 'test' },
    ...over,
  };
}

/** `name.ns.svc.cluster.local` as `cluster` defines it, with `n` endpoints 10.0.0.1… (or the given ones). */
export function contribution(
  name: string,
  cluster: string,
  endpoints: number | readonly Endpoint[],
  over: Partial<ServiceContribution> = {},
): ServiceContribution {
  const eps =
    typeof endpoints === 'number'
      ? Array.from({ length: endpoints }, (_, i) => endpoint(`10.0.${i >> 8}.${(i & 255) + 1}`, { clusterId: cluster }))
      : endpoints;
  return {
    hostname: `${name}.ns.svc.cluster.local`,
    name,
    namespace: 'ns',
    cluster,
    ports: [{ name: 'http', port: 80, protocol: 'HTTP', targetPort: 8080 }],
    exported: false,
    origin: 'local',
    endpoints: eps,
    ...over,
  };
}
