// What one source (a file, the admin API, a kube-apiserver) contributes to the mesh.
import type { Endpoint, MeshCluster, RawResource, ServiceOrigin, ServicePort } from './mesh.js';

/** One cluster's definition of a service, with the endpoints that cluster reports for it. */
export interface ServiceContribution {
  readonly hostname: string;
  readonly name: string;
  readonly namespace: string;
  /** Id of the cluster that defines the service. */
  readonly cluster: string;
  readonly ports: readonly ServicePort[];
  readonly exported: boolean;
  readonly origin: ServiceOrigin;
  readonly endpoints: readonly Endpoint[];
}

export interface SourceMesh {
  readonly clusters: ReadonlyMap<string, MeshCluster>;
  /** Keyed by `${cluster}/${hostname}`: a source may report the same hostname for several clusters. */
  readonly services: ReadonlyMap<string, ServiceContribution>;
  /** Keyed by `${typeUrl} ${name}`. */
  readonly raw: ReadonlyMap<string, RawResource>;
}

export function contributionKey(s: Pick<ServiceContribution, 'cluster' | 'hostname'>): string {
  return `${s.cluster}/${s.hostname}`;
}

export function rawKey(r: Pick<RawResource, 'typeUrl' | 'name'>): string {
  return `${r.typeUrl} ${r.name}`;
}
