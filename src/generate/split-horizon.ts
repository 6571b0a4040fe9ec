// Split horizon, as Istio's EndpointsByNetworkFilter computes it: endpoints on the proxy's own
// network are sent as they are; endpoints on another network are replaced by that network's
// gateways, each carrying the summed weight of the endpoints it stands for. Federated imports
// (another trust domain) are reached only through their gateways.
import { compare, type Endpoint, type Gateway, type Locality, type MeshSnapshot, type Service, type ServicePort } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { clusterOfView, networkOfView, trustDomainOf } from './generator.js';

/** One LbEndpoint to send: a pod, or a gateway standing for the pods of one network. */
export interface PlannedEndpoint {
  readonly address: string;
  readonly port: number;
  weight: number;
  readonly healthy: boolean;
  readonly locality: Locality;
  readonly priority: number;
  /** The pod; undefined for a gateway. */
  readonly endpoint: Endpoint | undefined;
  /** The cluster behind the address (the pod's, or the gateway's). */
  readonly clusterId: string;
}

interface NetworkGateways {
  readonly byNetwork: ReadonlyMap<string, ReadonlyArray<GatewayOf>>;
  /** By (network, cluster): see networkCluster(). */
  readonly byCluster: ReadonlyMap<string, ReadonlyArray<GatewayOf>>;
  readonly scale: number;
}

interface GatewayOf extends Gateway {
  readonly clusterId: string;
}

const memo = new WeakMap<MeshSnapshot['clusters'], NetworkGateways>();

/** Gateways per network and per cluster, and the LCM of their counts (so every split is whole). */
export function networkGateways(mesh: MeshSnapshot): NetworkGateways {
  let g = memo.get(mesh.clusters);
  if (!g) memo.set(mesh.clusters, (g = computeGateways(mesh)));
  return g;
}

function computeGateways(mesh: MeshSnapshot): NetworkGateways {
  const byNetwork = new Map<string, GatewayOf[]>();
  const byCluster = new Map<string, GatewayOf[]>();
  for (const c of [...mesh.clusters.values()].sort((a, b) => compare(a.id, b.id))) {
    for (const g of c.gateways) {
      const network = g.network ?? c.network;
      const gw = { address: g.address, port: g.port, clusterId: c.id };
      for (const [map, k] of [
        [byCluster, networkCluster(network, c.id)],
        [byNetwork, network],
      ] as const) {
        const list = map.get(k) ?? [];
        if (!list.some((x) => x.address === gw.address && x.port === gw.port)) list.push(gw);
        map.set(k, list);
      }
    }
  }
  for (const list of [...byNetwork.values(), ...byCluster.values()]) sortGateways(list);
  let scale = 1;
  for (const gws of [...byNetwork.values(), ...byCluster.values()]) scale = lcm(scale, gws.length);
  return { byNetwork, byCluster, scale };
}

/**
 * The endpoints of one service port as the proxy should see them. Terminating endpoints are
 * dropped; a router (gateway) sees only mTLS endpoints of its own network, for SNI passthrough.
 */
export function planEndpoints(
  mesh: MeshSnapshot,
  view: ProxyView,
  service: Service,
  port: ServicePort,
  gateways: NetworkGateways,
): PlannedEndpoint[] {
  const network = networkOfView(mesh, view);
  const proxyDomain = clusterOfView(mesh, view)?.domain;
  const federated = proxyDomain !== undefined && trustDomainOf(service.hostname) !== proxyDomain;
  const scale = gateways.scale;
  const out: PlannedEndpoint[] = [];
  const viaGateway = new Map<string, PlannedEndpoint>();
  for (const ep of mesh.endpoints.get(service.hostname) ?? []) {
    if (ep.health === 'TERMINATING') continue;
    const priority = ep.priority ?? 0;
    const weight = ep.weight * scale;
    if (view.role === 'router') {
      if (ep.network === network && ep.mtls) out.push(direct(ep, port, weight, priority));
      continue;
    }
    const gws = gateways.byCluster.get(networkCluster(ep.network, ep.clusterId)) ?? gateways.byNetwork.get(ep.network) ?? [];
    // A proxy that does not know its network cannot tell local from remote: like Istio, it goes
    // through a gateway where there is one. Otherwise another network without a gateway is unreachable.
    const local = network === '' ? gws.length === 0 : ep.network === network;
    // An endpoint without a network (a ServiceEntry's, often a remote gateway itself) is dialed as given.
    if (ep.network === '' || (local && !federated)) {
      out.push(direct(ep, port, weight, priority));
      continue;
    }
    // Through a gateway: it forwards by SNI, so only mTLS endpoints can be reached; a gateway
    // stands for healthy endpoints only.
    if (!ep.mtls || ep.health !== 'HEALTHY' || gws.length === 0) continue;
    const share = weight / gws.length;
    for (const g of gws) {
      const key = `${priority}|${localityKey(ep.locality)}|${g.address}|${g.port}`;
      const seen = viaGateway.get(key);
      if (seen) seen.weight += share;
      else {
        const p: PlannedEndpoint = {
          address: g.address,
          port: g.port,
          weight: share,
          healthy: true,
          locality: ep.locality,
          priority,
          endpoint: undefined,
          clusterId: g.clusterId,
        };
        viaGateway.set(key, p);
        out.push(p);
      }
    }
  }
  return out;
}

function direct(ep: Endpoint, port: ServicePort, weight: number, priority: number): PlannedEndpoint {
  return {
    address: ep.address,
    port: ep.ports[port.name] ?? port.targetPort,
    weight,
    healthy: ep.health === 'HEALTHY',
    locality: ep.locality,
    priority,
    endpoint: ep,
    clusterId: ep.clusterId,
  };
}

/** Key of the gateways a cluster has into a network: a cluster's gateways may lead into another network than its own. */
function networkCluster(network: string, clusterId: string): string {
  return `${network}\u0000${clusterId}`;
}

export function localityKey(l: Locality): string {
  return `${l.region}/${l.zone}/${l.subzone}`;
}

function sortGateways<T extends Gateway>(gws: T[]): T[] {
  return gws.sort((a, b) => compare(a.address, b.address) || a.port - b.port);
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}
