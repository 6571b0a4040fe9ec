// Generators turn the mesh into Envoy resources for one proxy view. They are pure:
// the same snapshot and view always give the same resources, field for field.
import type { MeshChanges, MeshCluster, MeshSnapshot, ServicePort } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';

export type ResourceBody = Record<string, unknown>;

export interface GeneratedResource {
  readonly name: string;
  readonly body: ResourceBody;
}

export interface Generator {
  readonly typeUrl: string;
  /** The part of a view this type depends on: views with equal keys share one table. */
  viewKey(view: ProxyView): string;
  /** Hostnames whose resources these changes can alter (VIEW_RESOURCES for view-wide ones), or 'all'. */
  affected(changes: MeshChanges): ReadonlySet<string> | 'all';
  /** The resources derived from one service for one view (none if it is gone), or with VIEW_RESOURCES the view-wide ones. */
  generate(mesh: MeshSnapshot, view: ProxyView, hostname: string): GeneratedResource[];
  /**
   * False while a view's view-wide resources are still being made outside the mesh (SDS: the
   * identity's first certificate): a name they lack is pending, not gone. Absent: always ready.
   */
  ready?(view: ProxyView): boolean;
}

/** The view key of a type whose resources depend only on the role, except that a gateway's depend on its network. */
export function roleViewKey(view: ProxyView): string {
  return view.role === 'router' ? `router|${view.network}|${view.clusterId}` : view.role;
}

/** The key under which a generator emits resources that belong to a view, not to one service (a gateway's listener). */
export const VIEW_RESOURCES = '';

/** Where Envoy fetches the SDS secrets `default` and `ROOTCA`: meshfed over ADS, or istio-agent's `sds-grpc` pipe. */
export type SdsConfig = 'ads' | 'sds-grpc';

export interface GeneratorOptions {
  readonly sdsConfig: SdsConfig;
}

export const DEFAULT_GENERATOR_OPTIONS: GeneratorOptions = { sdsConfig: 'ads' };

export function outboundClusterName(port: number, hostname: string): string {
  return `outbound|${port}||${hostname}`;
}

/** Istio's DNS-SRV form: the SNI of mesh mTLS and the cluster name on an AUTO_PASSTHROUGH gateway. */
export function sniName(port: number, hostname: string): string {
  return `outbound_.${port}_._.${hostname}`;
}

/** Resources built from JSON-like literals; Any fields carry "@type". */
export const ADS_CONFIG_SOURCE = { ads: {}, resource_api_version: 'V3' } as const;

/** Istio's zero initial_fetch_timeout: nothing waits 15 s for a resource that is coming anyway. */
export const ADS_NO_WAIT = { ...ADS_CONFIG_SOURCE, initial_fetch_timeout: {} } as const;

export function union(...sets: ReadonlySet<string>[]): Set<string> {
  const out = new Set<string>();
  for (const s of sets) for (const v of s) out.add(v);
  return out;
}

/** The name a gRPC client asks for when it dials `xds:///<hostname>:<port>`: its listener and route. */
export function apiListenerName(hostname: string, port: number): string {
  return `${hostname}:${port}`;
}

/** A service's ports as proxyless gRPC sees them; Envoy takes API listeners only from its bootstrap. */
export function proxylessPorts(mesh: MeshSnapshot, view: ProxyView, hostname: string): Array<{ port: ServicePort; name: string }> {
  const service = mesh.services.get(hostname);
  if (!service || view.role !== 'grpc') return [];
  return service.ports.map((port) => ({ port, name: apiListenerName(hostname, port.port) }));
}

/** A hostname's trust domain: its cluster domain, `<name>.<ns>.svc.<domain>`. */
export function trustDomainOf(hostname: string): string {
  const i = hostname.indexOf('.svc.');
  return i < 0 ? '' : hostname.slice(i + 5);
}

export function clusterOfView(mesh: MeshSnapshot, view: ProxyView): MeshCluster | undefined {
  return mesh.clusters.get(view.clusterId);
}

/** The proxy's network: its NETWORK metadata, else its cluster's network, else unknown (''). */
export function networkOfView(mesh: MeshSnapshot, view: ProxyView): string {
  return view.network || clusterOfView(mesh, view)?.network || '';
}
