// A validated mesh description → the model a source contributes. Pure: the same description
// always gives the same (deep-equal, same-ordered) model, so reordering a file pushes nothing.
import {
  Health as PbHealth,
  type Cluster as PbCluster,
  type Endpoint as PbEndpoint,
  type Mesh,
  type Service as PbService,
} from '../../gen/meshfed/v1/mesh_pb.js';
import {
  compare,
  hostnameOf,
  protocolOf,
  type Endpoint,
  type Health,
  type MeshCluster,
  type RawResource,
  type ServicePort,
} from '../../model/mesh.js';
import { contributionKey, rawKey, type ServiceContribution, type SourceMesh } from '../../model/source.js';
import { resourceName } from '../../envoy/protos.js';
import type { FederationPeerSpec, MulticlusterPeerSpec } from '../../alliance/types.js';

export const DEFAULT_DOMAIN = 'cluster.local';
/** Kubernetes gives every pod a service account; "default" when none is named. */
export const DEFAULT_SERVICE_ACCOUNT = 'default';

/** What a mesh file holds: its part of the mesh, and the federation peers it declares. */
export interface FileMesh extends SourceMesh {
  readonly federations: readonly FederationPeerSpec[];
  readonly multiclusters: readonly MulticlusterPeerSpec[];
}

/** `source` names the origin for provenance, e.g. `file:/etc/meshfed/mesh.yaml`. */
export function meshToSource(mesh: Mesh, source: string): FileMesh {
  const clusters = new Map(
    mesh.clusters
      .map(toCluster)
      .sort(byKey((c) => c.id))
      .map((c) => [c.id, c] as const),
  );
  const services = mesh.services.map((s) => toContribution(s, clusters, source)).sort(byKey(contributionKey));
  const raw = mesh.resources
    .map(toRaw)
    .filter((r): r is RawResource => r !== undefined)
    .sort(byKey(rawKey));
  return {
    clusters,
    services: new Map(services.map((s) => [contributionKey(s), s])),
    raw: new Map(raw.map((r) => [rawKey(r), r])),
    federations: mesh.federations
      .map((f) => ({
        name: f.name,
        trustDomain: f.trustDomain,
        metadataEndpoint: f.metadataEndpoint,
        metadata: { ca: f.metadata?.ca || undefined, insecureSkipVerify: f.metadata?.insecureSkipVerify || undefined },
      }))
      .sort(byKey((f) => f.name)),
    multiclusters: mesh.multiclusters
      .map((m) => ({
        name: m.name,
        metadataEndpoint: m.metadataEndpoint,
        metadata: { ca: m.metadata?.ca || undefined, insecureSkipVerify: m.metadata?.insecureSkipVerify || undefined },
        enableIngressGateway: m.enableIngressGateway ?? true,
      }))
      .sort(byKey((m) => m.name)),
  };
}

/** Port on the endpoint for each service port name: `ports[name]`, else `port`, else the target port. */
export function endpointPorts(svc: Pick<PbService, 'ports'>, ep: Pick<PbEndpoint, 'port' | 'ports'>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of [...svc.ports].sort(byKey((x) => x.name))) {
    out[p.name] = ep.ports[p.name] || ep.port || p.targetPort || p.port;
  }
  return out;
}

function toCluster(c: PbCluster): MeshCluster {
  return {
    id: c.id,
    network: c.network || c.id,
    domain: c.domain || DEFAULT_DOMAIN,
    rootCaPem: c.rootCaPem,
    gateways: c.gateways
      .map((g) => ({ address: g.address, port: g.port }))
      .sort((a, b) => compare(a.address, b.address) || a.port - b.port),
  };
}

function toContribution(s: PbService, clusters: ReadonlyMap<string, MeshCluster>, source: string): ServiceContribution {
  const domain = clusters.get(s.cluster)?.domain ?? DEFAULT_DOMAIN;
  const ports: ServicePort[] = s.ports
    .map((p) => ({ name: p.name, port: p.port, protocol: protocolOf(p.protocol, p.name), targetPort: p.targetPort || p.port }))
    .sort((a, b) => a.port - b.port);
  const endpoints = s.endpoints
    .map((ep) => toEndpoint(ep, s, clusters, source))
    .sort((a, b) => compare(a.address, b.address) || compare(JSON.stringify(a.ports), JSON.stringify(b.ports)));
  return {
    hostname: hostnameOf(s.name, s.namespace, domain),
    name: s.name,
    namespace: s.namespace,
    cluster: s.cluster,
    ports,
    exported: s.exported,
    origin: 'local',
    endpoints,
  };
}

function toEndpoint(ep: PbEndpoint, s: PbService, clusters: ReadonlyMap<string, MeshCluster>, source: string): Endpoint {
  const clusterId = ep.cluster || s.cluster;
  return {
    address: ep.address,
    ports: endpointPorts(s, ep),
    serviceAccount: ep.serviceAccount || DEFAULT_SERVICE_ACCOUNT,
    labels: Object.fromEntries(Object.entries(ep.labels).sort(([a], [b]) => compare(a, b))),
    locality: { region: ep.locality?.region ?? '', zone: ep.locality?.zone ?? '', subzone: ep.locality?.subzone ?? '' },
    health: HEALTH[ep.health] ?? 'HEALTHY',
    weight: ep.weight || 1,
    mtls: ep.mtls ?? true,
    clusterId,
    network: ep.network || clusters.get(clusterId)?.network || clusterId,
    provenance: { source },
  };
}

const HEALTH: Readonly<Record<PbHealth, Health>> = {
  [PbHealth.UNSPECIFIED]: 'HEALTHY',
  [PbHealth.HEALTHY]: 'HEALTHY',
  [PbHealth.UNHEALTHY]: 'UNHEALTHY',
  [PbHealth.TERMINATING]: 'TERMINATING',
};

/** The "@type" goes to typeUrl; the body is the rest, as protobufjs fromObject takes it. */
function toRaw(r: Readonly<Record<string, unknown>>): RawResource | undefined {
  const { ['@type']: typeUrl, ...body } = r;
  if (typeof typeUrl !== 'string') return undefined;
  return { typeUrl, name: resourceName(typeUrl, body), body };
}

function byKey<T>(key: (t: T) => string): (a: T, b: T) => number {
  return (a, b) => compare(key(a), key(b));
}

/** Code-unit order, independent of the locale. */
