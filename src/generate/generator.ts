// Generators turn the mesh into Envoy resources for one proxy view. They are pure:
// the same snapshot and view always give the same resources, field for field.
import type { MeshChanges, MeshSnapshot, ServicePort } from '../model/mesh.js';
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
  /** Hostnames whose resources these changes can alter, or 'all'. */
  affected(changes: MeshChanges): ReadonlySet<string> | 'all';
  /** The resources derived from one service for one view (none if it is gone). */
  generate(mesh: MeshSnapshot, view: ProxyView, hostname: string): GeneratedResource[];
  /** The keys generate() is called with, when they are not the service hostnames (SDS: one per view). */
  units?(mesh: MeshSnapshot): Iterable<string>;
}

export function outboundClusterName(port: number, hostname: string): string {
  return `outbound|${port}||${hostname}`;
}

/** Resources built from JSON-like literals; Any fields carry "@type". */
export const ADS_CONFIG_SOURCE = { ads: {}, resource_api_version: 'V3' } as const;

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
