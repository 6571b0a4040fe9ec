// What the metadata exporter publishes, built from the registry snapshot the generators read (no watches of its
// own). Field names, shapes and formulas are Deckhouse's (deckhouse.md §2), so a Deckhouse peer reads them unchanged.
import { compare, type MeshSnapshot } from '../../model/mesh.js';
import type { FederationMetadata, IngressGateway, MulticlusterMetadata, PublicMetadata, PublicService } from '../types.js';

export interface LocalCluster {
  readonly clusterUuid: string;
  /** The cluster domain, which is the trust domain. */
  readonly clusterDomain: string;
  /** Id of the local cluster in the mesh model: the one whose services and gateways are published. */
  readonly clusterId: string;
}

/** public.json; empty fields are left out, as Deckhouse's `omitempty`. */
export function publicMetadata(o: { clusterUuid: string; authnKeyPub: string; rootCA: string }): Partial<PublicMetadata> {
  return {
    ...(o.clusterUuid && { clusterUUID: o.clusterUuid }),
    ...(o.authnKeyPub && { authnKeyPub: o.authnKeyPub }),
    ...(o.rootCA && { rootCA: o.rootCA }),
  };
}

/**
 * Where peers reach this cluster's services: the advertised list when given (Deckhouse's `advertise`), else the local
 * cluster's gateways into its own network as the kube source or mesh file found them (LoadBalancer ingress, external
 * IPs, NodePort on the nodes that run the gateway). Sorted by address, then port.
 */
export function ingressGateways(snapshot: MeshSnapshot, clusterId: string, advertise: readonly IngressGateway[] = []): IngressGateway[] {
  const cluster = snapshot.clusters.get(clusterId);
  const found = advertise.length
    ? advertise
    : (cluster?.gateways ?? []).filter((g) => g.network === undefined || g.network === cluster!.network);
  const seen = new Map<string, IngressGateway>();
  for (const g of found) seen.set(`${g.address} ${g.port}`, { address: g.address, port: g.port });
  return [...seen.values()].sort((a, b) => compare(a.address, b.address) || a.port - b.port);
}

/**
 * Services of the local cluster that are exported (a mesh file's `exported: true`, or the Services labelled
 * meshfed.io/exported=true or federation.istio.deckhouse.io/public-service=""), with every port as {name, port}.
 */
export function publicServices(snapshot: MeshSnapshot, local: LocalCluster): PublicService[] {
  const out: PublicService[] = [];
  for (const s of snapshot.services.values()) {
    // Imports of peers' services never go back out, nor services of other clusters of the mesh.
    if (!s.exported || s.origin !== 'local' || !s.clusters.includes(local.clusterId)) continue;
    out.push({ hostname: s.hostname, ports: s.ports.map((p) => ({ name: p.name, port: p.port })) });
  }
  return out.sort((a, b) => compare(a.hostname, b.hostname));
}

/** federation.json. Both lists are always there (maybe empty): a Deckhouse peer requires them present. */
export function federationMetadata(
  snapshot: MeshSnapshot,
  local: LocalCluster,
  advertise?: readonly IngressGateway[],
): Required<FederationMetadata> {
  return { ingressGateways: ingressGateways(snapshot, local.clusterId, advertise), publicServices: publicServices(snapshot, local) };
}

/** multicluster.json: Deckhouse's network name and Istio cluster id formulas. */
export function multiclusterMetadata(
  snapshot: MeshSnapshot,
  local: LocalCluster,
  apiHost: string,
  advertise?: readonly IngressGateway[],
): MulticlusterMetadata {
  return {
    ingressGateways: ingressGateways(snapshot, local.clusterId, advertise),
    apiHost,
    networkName: multiclusterNetworkName(local.clusterDomain, local.clusterUuid),
    clusterID: multiclusterClusterId(local.clusterDomain, local.clusterUuid),
  };
}

/** `network-<domain with . → ->-<adler32(uuid)>`, Deckhouse's `istioNetworkName`. */
export const multiclusterNetworkName = (domain: string, uuid: string): string => `network-${multiclusterClusterId(domain, uuid)}`;

/** `<domain with . → ->-<adler32(uuid)>`, Deckhouse's Istio `multiCluster.clusterName`. */
export const multiclusterClusterId = (domain: string, uuid: string): string => `${domain.replaceAll('.', '-')}-${adler32(uuid)}`;

/** Adler-32 (RFC 1950) of the UTF-8 bytes, as a number: what sprig's `adler32sum` prints in decimal. */
export function adler32(s: string): number {
  let a = 1;
  let b = 0;
  for (const byte of Buffer.from(s, 'utf8')) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return b * 65536 + a;
}
