// The mesh model every part of meshfed agrees on: plain data, no I/O.

export type Protocol = 'TCP' | 'HTTP' | 'HTTP2' | 'GRPC';
export type Health = 'HEALTHY' | 'UNHEALTHY' | 'TERMINATING';

export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subzone: string;
}

export interface Gateway {
  readonly address: string;
  readonly port: number;
  /** The network it leads into, when not its cluster's (Istio keys gateways by network and cluster). */
  readonly network?: string;
}

/** A Kubernetes cluster taking part in the mesh. */
export interface MeshCluster {
  readonly id: string;
  readonly network: string;
  /** Cluster domain, which is also the SPIFFE trust domain. */
  readonly domain: string;
  readonly rootCaPem: string;
  readonly gateways: readonly Gateway[];
}

export interface ServicePort {
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
  readonly targetPort: number;
}

export type ServiceOrigin = 'local' | 'multicluster' | 'federation';

/** A service, merged across every cluster that runs one of the same hostname. */
export interface Service {
  /** `<name>.<namespace>.svc.<domain>` */
  readonly hostname: string;
  readonly name: string;
  readonly namespace: string;
  readonly ports: readonly ServicePort[];
  readonly exported: boolean;
  /** Clusters that define this service, sorted. */
  readonly clusters: readonly string[];
  readonly origin: ServiceOrigin;
}

export interface Provenance {
  /** Which source reported the endpoint, e.g. `file:/etc/mesh.yaml`. */
  readonly source: string;
  readonly peer?: string;
  /** When the source last confirmed the endpoint (ms since epoch), if it tracks that. */
  readonly confirmedAt?: number;
}

export interface Endpoint {
  readonly address: string;
  /** Port on the endpoint per service port name. */
  readonly ports: Readonly<Record<string, number>>;
  readonly serviceAccount: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly locality: Locality;
  readonly health: Health;
  readonly weight: number;
  readonly mtls: boolean;
  readonly clusterId: string;
  /** '' = reachable from every network, dialed as is (Istio's rule for an endpoint without a network: a ServiceEntry's). */
  readonly network: string;
  /** Identities the endpoint presents, when given outright (a ServiceEntry's subjectAltNames); else from serviceAccount. */
  readonly sans?: readonly string[];
  readonly provenance: Provenance;
  /** 0 (or absent) normal; 1 = demoted (a stale remote cluster's endpoints). EDS priority. */
  readonly priority?: number;
}

/** A raw Envoy resource given as JSON with an "@type", served as is. */
export interface RawResource {
  readonly typeUrl: string;
  readonly name: string;
  readonly body: Readonly<Record<string, unknown>>;
}

/** One consistent view of the whole mesh, as the generators see it. */
export interface MeshSnapshot {
  readonly clusters: ReadonlyMap<string, MeshCluster>;
  readonly services: ReadonlyMap<string, Service>;
  /** Endpoints by service hostname. */
  readonly endpoints: ReadonlyMap<string, readonly Endpoint[]>;
  /** Raw resources by type URL, then by name. */
  readonly raw: ReadonlyMap<string, ReadonlyMap<string, RawResource>>;
}

/** What changed between two published snapshots. */
export interface MeshChanges {
  /** Clusters (networks, gateways, roots) changed: everything may depend on them. */
  readonly clusters: boolean;
  /** Hostnames whose service description (ports, exported, ...) changed, appeared or went away. */
  readonly services: ReadonlySet<string>;
  /** Hostnames whose endpoints changed. */
  readonly endpoints: ReadonlySet<string>;
  /** Of those, the hostnames whose endpoint identities (see endpointIdentities) changed too. */
  readonly identities: ReadonlySet<string>;
  /** Names of the raw resources that changed, appeared or went away, by type URL. */
  readonly raw: ReadonlyMap<string, ReadonlySet<string>>;
}

export const EMPTY_SNAPSHOT: MeshSnapshot = {
  clusters: new Map(),
  services: new Map(),
  endpoints: new Map(),
  raw: new Map(),
};

/**
 * Who serves a service, as clusters read it (SAN lists, mTLS or not): each live endpoint's
 * cluster, service account and mTLS. Most endpoint changes (addresses, health, weights) leave it.
 */
export function endpointIdentities(endpoints: readonly Endpoint[] | undefined): string {
  const ids = new Set<string>();
  for (const ep of endpoints ?? [])
    if (ep.health !== 'TERMINATING') ids.add(`${ep.clusterId} ${ep.serviceAccount} ${ep.mtls}${ep.sans ? ` ${ep.sans.join(',')}` : ''}`);
  return [...ids].sort().join('\n');
}

export function hostnameOf(name: string, namespace: string, domain: string): string {
  return `${name}.${namespace}.svc.${domain}`;
}

/** Protocol from a port's appProtocol, or else from its name prefix, as Istio does. */
export function protocolOf(appProtocol: string, portName: string): Protocol {
  const p = (appProtocol || portName.split('-')[0] || '').toLowerCase();
  if (p === 'grpc' || p === 'grpc-web') return 'GRPC';
  if (p === 'http2' || p === 'h2c' || p === 'kubernetes.io/h2c') return 'HTTP2';
  if (p === 'http' || p === 'https') return 'HTTP';
  return 'TCP';
}

/** Code-unit order, independent of the locale: what every sort behind generated bytes uses. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
