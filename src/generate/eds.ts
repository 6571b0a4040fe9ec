// EDS: a service port's endpoints, grouped by locality in a stable order.
import type { Endpoint, Locality, MeshChanges, MeshSnapshot } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { TypeUrl } from '../envoy/protos.js';
import { type GeneratedResource, type Generator, outboundClusterName, union } from './generator.js';

export const edsGenerator: Generator = {
  typeUrl: TypeUrl.Endpoint,
  viewKey: (view: ProxyView) => view.role,
  affected: (changes: MeshChanges) => (changes.clusters ? 'all' : union(changes.services, changes.endpoints)),
  generate(mesh: MeshSnapshot, _view: ProxyView, hostname: string): GeneratedResource[] {
    const service = mesh.services.get(hostname);
    if (!service) return [];
    const endpoints = mesh.endpoints.get(hostname) ?? [];
    return service.ports.map((port) => {
      const name = outboundClusterName(port.port, hostname);
      const byLocality = new Map<string, { locality: Locality; lb: Record<string, unknown>[]; weight: number }>();
      for (const ep of endpoints) {
        if (ep.health === 'TERMINATING') continue;
        const key = localityKey(ep.locality);
        let group = byLocality.get(key);
        if (!group) byLocality.set(key, (group = { locality: ep.locality, lb: [], weight: 0 }));
        group.lb.push(lbEndpoint(ep, ep.ports[port.name] ?? port.targetPort));
        group.weight += ep.weight;
      }
      const localities = [...byLocality.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([, g]) => ({
          locality: { region: g.locality.region, zone: g.locality.zone, sub_zone: g.locality.subzone },
          lb_endpoints: g.lb,
          load_balancing_weight: { value: g.weight },
        }));
      return { name, body: { cluster_name: name, endpoints: localities } };
    });
  },
};

function localityKey(l: Locality): string {
  return `${l.region}/${l.zone}/${l.subzone}`;
}

function lbEndpoint(ep: Endpoint, port: number): Record<string, unknown> {
  return {
    endpoint: { address: { socket_address: { address: ep.address, port_value: port } } },
    health_status: ep.health === 'HEALTHY' ? 'HEALTHY' : 'UNHEALTHY',
    load_balancing_weight: { value: ep.weight },
    // Per-endpoint bytes add up (50,000 endpoints × 1,000 proxies): only the source cluster rides along.
    metadata: { filter_metadata: { meshfed: { fields: { cluster: str(ep.clusterId) } } } },
  };
}

/** A google.protobuf.Value; protobufjs names the well-known types' fields in camelCase. */
function str(s: string): { stringValue: string } {
  return { stringValue: s };
}
