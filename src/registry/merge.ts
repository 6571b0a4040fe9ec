// Merging what several clusters and sources say about one hostname into one service.
import { compare, type Endpoint, type Service, type ServicePort } from '../model/mesh.js';
import type { ServiceContribution } from '../model/source.js';

export interface Merged {
  readonly service: Service;
  readonly endpoints: readonly Endpoint[];
  /** Port definitions that disagreed, each resolved in favour of the first cluster id. */
  readonly conflicts: readonly string[];
}

const byClusterThenSource = (a: ServiceContribution, b: ServiceContribution): number =>
  a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0;

/** Same-hostname services merge: ports by number (first cluster id wins a conflict), endpoints joined. */
export function mergeService(contributions: readonly ServiceContribution[]): Merged | undefined {
  if (contributions.length === 0) return undefined;
  const sorted = [...contributions].sort(byClusterThenSource);
  const first = sorted[0]!;
  const ports = new Map<number, ServicePort>();
  const conflicts: string[] = [];
  for (const c of sorted) {
    for (const p of c.ports) {
      const have = ports.get(p.port);
      if (!have) ports.set(p.port, p);
      else if (have.name !== p.name || have.protocol !== p.protocol || have.targetPort !== p.targetPort) {
        conflicts.push(`${first.hostname} port ${p.port}: cluster ${c.cluster} says ${describe(p)}, keeping ${describe(have)}`);
      }
    }
  }
  const endpoints = sorted.flatMap((c) => c.endpoints);
  endpoints.sort((a, b) => compare(a.clusterId, b.clusterId) || compare(a.address, b.address));
  return {
    service: {
      hostname: first.hostname,
      name: first.name,
      namespace: first.namespace,
      ports: [...ports.values()].sort((a, b) => a.port - b.port),
      exported: sorted.some((c) => c.exported),
      clusters: [...new Set(sorted.map((c) => c.cluster))],
      origin: first.origin,
    },
    endpoints,
    conflicts,
  };
}

function describe(p: ServicePort): string {
  return `${p.name}/${p.protocol}->${p.targetPort}`;
}
