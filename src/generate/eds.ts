// EDS: a service port's endpoints as the proxy's network sees them (split horizon), grouped by
// (priority, locality) in a stable order, with the endpoint metadata the proxy reads (Istio's)
// and meshfed's provenance.
import { compare, type MeshChanges, type MeshCluster, type MeshSnapshot, type Service } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { TypeUrl } from '../envoy/protos.js';
import { type GeneratedResource, type Generator, networkOfView, outboundClusterName, sniName, union } from './generator.js';
import { localityKey, networkGateways, type PlannedEndpoint, planEndpoints } from './split-horizon.js';
import { PLAINTEXT_MATCH, tlsModes } from './tls.js';

const UINT32_MAX = 0xffff_ffff;

export const edsGenerator: Generator = {
  typeUrl: TypeUrl.Endpoint,
  // Split horizon depends on the network; federation on the proxy's trust domain (its cluster's);
  // the metadata on whether the proxy is istio-proxy (two kinds of Envoy, so at most two tables).
  viewKey: (view: ProxyView) => `${view.role}${view.istioProxy ? '+istio' : ''}|${view.network}|${view.clusterId}`,
  affected: (changes: MeshChanges) => (changes.clusters ? 'all' : union(changes.services, changes.endpoints)),
  generate(mesh: MeshSnapshot, view: ProxyView, hostname: string): GeneratedResource[] {
    const service = mesh.services.get(hostname);
    if (!service) return [];
    const router = view.role === 'router';
    if (router && !servedByGateway(mesh, view, service)) return [];
    const gateways = networkGateways(mesh);
    const grpc = view.role === 'grpc';
    const md: MetadataWanted = {
      // gRPC reads no endpoint metadata; a gateway's SNI clusters have no socket matches; a
      // sidecar's cluster has them only when the service mixes mTLS and plaintext (tls.ts).
      tlsMode: view.role === 'sidecar' && tlsModes(mesh, service) === 'mixed',
      workload: view.istioProxy,
      provenance: !grpc,
    };
    return service.ports.map((port) => {
      const name = router ? sniName(port.port, hostname) : outboundClusterName(port.port, hostname);
      let planned = planEndpoints(mesh, view, service, port, gateways);
      // gRPC NACKs an address that appears twice in one assignment (a gateway in two localities).
      if (grpc) planned = mergeDuplicateAddresses(planned);
      return { name, body: { cluster_name: name, endpoints: localityGroups(planned, service, md) } };
    });
  },
};

/**
 * A gateway passes traffic through to the services of its own network: the exported ones (all that
 * federation peers may reach), and every one of a domain that also has a cluster on another network —
 * multicluster: those clusters' proxies send each shared service through this gateway, as Istio's
 * east-west gateway exposes `*.<domain>`.
 */
export function servedByGateway(mesh: MeshSnapshot, view: ProxyView, service: Service): boolean {
  const network = networkOfView(mesh, view);
  if (network === '') return false;
  const here = service.clusters.map((id) => mesh.clusters.get(id)).filter((c) => c?.network === network);
  return here.length > 0 && (service.exported || here.some((c) => spansNetworks(mesh, c!)));
}

/** Whether another cluster of this cluster's domain sits on another network. */
function spansNetworks(mesh: MeshSnapshot, cluster: MeshCluster): boolean {
  for (const other of mesh.clusters.values()) if (other.domain === cluster.domain && other.network !== cluster.network) return true;
  return false;
}

function localityGroups(planned: PlannedEndpoint[], service: Service, md: MetadataWanted): Record<string, unknown>[] {
  const groups = new Map<string, PlannedEndpoint[]>();
  for (const p of planned) {
    const key = `${String(p.priority).padStart(10, '0')}|${localityKey(p.locality)}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(p);
  }
  // Priorities are compacted to 0..N: a client treats a gap (1 without 0) as an error.
  const priorities = [...new Set(planned.map((p) => p.priority))].sort((a, b) => a - b);
  return [...groups.entries()]
    .sort(([a], [b]) => compare(a, b))
    .map(([, g]) => {
      const { locality, priority } = g[0]!;
      const sorted = g.sort((a, b) => compare(a.address, b.address) || a.port - b.port);
      const weight = Math.min(
        UINT32_MAX,
        sorted.reduce((n, p) => n + p.weight, 0),
      );
      const rank = priorities.indexOf(priority);
      return {
        locality: { region: locality.region, zone: locality.zone, sub_zone: locality.subzone },
        lb_endpoints: sorted.map((p) => lbEndpoint(p, service, md)),
        load_balancing_weight: { value: weight },
        ...(rank > 0 ? { priority: rank } : {}),
      };
    });
}

function mergeDuplicateAddresses(planned: PlannedEndpoint[]): PlannedEndpoint[] {
  const first = new Map<string, PlannedEndpoint>();
  const out: PlannedEndpoint[] = [];
  const ordered = [...planned].sort((a, b) => a.priority - b.priority || compare(localityKey(a.locality), localityKey(b.locality)));
  for (const p of ordered) {
    const key = `${p.address}|${p.port}`;
    const seen = first.get(key);
    if (seen) seen.weight += p.weight;
    else {
      const copy = { ...p };
      first.set(key, copy);
      out.push(copy);
    }
  }
  return out;
}

/** Which endpoint metadata the proxy reads, for one service. */
interface MetadataWanted {
  /** `envoy.transport_socket_match` on plaintext endpoints, read by the cluster's socket match. */
  readonly tlsMode: boolean;
  /** `istio.workload`, read by Istio's telemetry in istio-proxy. */
  readonly workload: boolean;
  /** `meshfed`, read by people in the proxy's config dump. */
  readonly provenance: boolean;
}

function lbEndpoint(p: PlannedEndpoint, service: Service, want: MetadataWanted): Record<string, unknown> {
  const lb: Record<string, unknown> = {
    endpoint: { address: { socket_address: { address: p.address, port_value: p.port } } },
    health_status: p.healthy ? 'HEALTHY' : 'UNHEALTHY',
    load_balancing_weight: { value: Math.min(UINT32_MAX, p.weight) },
  };
  const md = endpointMetadata(p, service, want);
  if (md) lb['metadata'] = { filter_metadata: md };
  return lb;
}

/**
 * Istio's endpoint metadata, then meshfed's provenance, each only where it is read. Bytes count
 * (50,000 endpoints × 1,000 proxies), so nothing is said twice: the source cluster is
 * istio.workload's last field, and `meshfed` appears only when there is a peer or a
 * confirmation time to tell.
 */
function endpointMetadata(p: PlannedEndpoint, service: Service, want: MetadataWanted): Record<string, unknown> | undefined {
  const ep = p.endpoint;
  const md: Record<string, unknown> = {};
  // Only a plaintext pod says so (the cluster's one match); an mTLS pod, and a gateway, which
  // always takes mTLS, say nothing and get the cluster's default, TLS (fails closed, tls.ts).
  if (want.tlsMode && ep && !ep.mtls) md['envoy.transport_socket_match'] = PLAINTEXT_MATCH;
  if (want.workload) md['istio'] = { fields: { workload: str(ep ? workload(ep.labels, service, p.clusterId) : `;;;;${p.clusterId}`) } };
  const provenance: Record<string, unknown> = {};
  if (want.provenance && ep?.provenance.peer) provenance['peer'] = str(ep.provenance.peer);
  if (want.provenance && ep?.provenance.confirmedAt !== undefined)
    provenance['confirmed'] = str(new Date(ep.provenance.confirmedAt).toISOString());
  if (Object.keys(provenance).length) md['meshfed'] = { fields: provenance };
  return Object.keys(md).length ? md : undefined;
}

/** Istio's `<workload>;<namespace>;<canonical service>;<canonical revision>;<cluster>`, for telemetry. */
function workload(labels: Readonly<Record<string, string>>, service: Service, clusterId: string): string {
  const name = labels['service.istio.io/canonical-name'] ?? labels['app.kubernetes.io/name'] ?? labels['app'] ?? service.name;
  const rev = labels['service.istio.io/canonical-revision'] ?? labels['app.kubernetes.io/version'] ?? labels['version'] ?? 'latest';
  return `${name};${service.namespace};${name};${rev};${clusterId}`;
}

/** A google.protobuf.Value; protobufjs names the well-known types' fields in camelCase. */
function str(s: string): { stringValue: string } {
  return { stringValue: s };
}
