// A federation peer's metadata → the mesh model: a cluster with the peer's trust domain, root and
// gateways, and its public services as imports reached through those gateways (as Deckhouse's
// ServiceEntries are: endpoints = the peer's ingress gateways, every port mapped to the gateway port).
import net from 'node:net';
import type { FederationMetadata, PublicMetadata } from '../../alliance/types.js';
import { compare, type Endpoint, type Gateway, type MeshCluster, type Protocol, type ServicePort } from '../../model/mesh.js';
import { contributionKey, type ServiceContribution } from '../../model/source.js';

export interface PeerImport {
  /** The IstioFederation's (or mesh-file entry's) name. */
  readonly name: string;
  readonly trustDomain: string;
  readonly public: PublicMetadata;
  readonly private: Required<FederationMetadata>;
}

/** Cluster and network id of a peer: a colon never appears in a Kubernetes cluster id, so no clash. */
export const peerClusterId = (name: string): string => `federation:${name}`;

/** Deckhouse's protocols (TLS, HTTP, HTTP2, TCP) in the model's terms: TLS is opaque bytes to a proxy. */
const MODEL_PROTOCOL: Readonly<Record<string, Protocol>> = { HTTP: 'HTTP', HTTP2: 'HTTP2', TCP: 'TCP', TLS: 'TCP' };

/** A hostname a peer may publish: `<name>.<ns>.svc.<its own trust domain>` — never one of ours or a third cluster's. */
export function splitPeerHostname(hostname: string, trustDomain: string): { name: string; namespace: string } | undefined {
  const suffix = `.svc.${trustDomain}`;
  if (!hostname.endsWith(suffix)) return undefined;
  const parts = hostname.slice(0, -suffix.length).split('.');
  const [name, namespace] = parts;
  const label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
  if (parts.length !== 2 || !name || !namespace || !label.test(name) || !label.test(namespace)) return undefined;
  return { name, namespace };
}

/** Gateways with IP addresses (hostnames replaced by what they resolved to), sorted. */
export function peerCluster(imp: PeerImport, resolve: (hostname: string) => readonly string[]): MeshCluster {
  const id = peerClusterId(imp.name);
  const seen = new Set<string>();
  const gateways: Gateway[] = [];
  for (const g of imp.private.ingressGateways) {
    for (const address of net.isIP(g.address) ? [g.address] : resolve(g.address)) {
      const key = `${address}:${g.port}`;
      if (!seen.has(key)) gateways.push({ address, port: g.port });
      seen.add(key);
    }
  }
  gateways.sort((a, b) => compare(a.address, b.address) || a.port - b.port);
  return { id, network: id, domain: imp.trustDomain, rootCaPem: imp.public.rootCA, gateways };
}

/** The peer's public services as imports; hostnames outside its trust domain are listed in `refused`. */
export function peerServices(imp: PeerImport, cluster: MeshCluster): { services: Map<string, ServiceContribution>; refused: string[] } {
  const services = new Map<string, ServiceContribution>();
  const refused: string[] = [];
  const source = peerClusterId(imp.name); // the source id is the cluster id
  for (const s of imp.private.publicServices) {
    const at = splitPeerHostname(s.hostname, imp.trustDomain);
    if (!at) {
      refused.push(s.hostname);
      continue;
    }
    const byPort = new Map<number, ServicePort>();
    for (const p of s.ports) {
      // Unnamed ports are not supported by Deckhouse; name them by number so the port map still works.
      const name = p.name || `port-${p.port}`;
      if (!byPort.has(p.port))
        byPort.set(p.port, { name, port: p.port, protocol: MODEL_PROTOCOL[p.protocol ?? 'TCP'] ?? 'TCP', targetPort: p.port });
    }
    const ports = [...byPort.values()].sort((a, b) => a.port - b.port);
    const endpoints = cluster.gateways.map(
      (g): Endpoint => ({
        address: g.address,
        ports: Object.fromEntries(ports.map((p) => [p.name, g.port])),
        // Unknown: the peer does not say which accounts serve; SANs then allow any of the namespace's.
        serviceAccount: '',
        labels: {},
        locality: { region: '', zone: '', subzone: '' },
        health: 'HEALTHY',
        weight: 1,
        mtls: true,
        clusterId: cluster.id,
        network: cluster.network,
        provenance: { source, peer: imp.name },
      }),
    );
    const c: ServiceContribution = {
      hostname: s.hostname,
      name: at.name,
      namespace: at.namespace,
      cluster: cluster.id,
      ports,
      exported: false,
      origin: 'federation',
      endpoints,
    };
    services.set(contributionKey(c), c);
  }
  refused.sort(compare);
  return { services, refused };
}
