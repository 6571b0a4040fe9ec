// LDS. Proxyless gRPC: an API listener per `hostname:port`, routed through RDS. A gateway
// (router): Istio's AUTO_PASSTHROUGH listener on 15443, which forwards mTLS by SNI untouched.
import { compare, type MeshChanges, type MeshSnapshot } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { TypeUrl } from '../envoy/protos.js';
import { servedByGateway } from './eds.js';
import {
  ADS_CONFIG_SOURCE,
  type GeneratedResource,
  type Generator,
  proxylessPorts,
  roleViewKey,
  sniName,
  VIEW_RESOURCES,
} from './generator.js';

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const TLS_INSPECTOR = 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector';
const SNI_CLUSTER = 'type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster';
const TCP_PROXY = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

export const GATEWAY_PORT = 15443;
export const GATEWAY_LISTENER = `0.0.0.0_${GATEWAY_PORT}`;

export const ldsGenerator: Generator = {
  typeUrl: TypeUrl.Listener,
  viewKey: roleViewKey,
  affected: (changes: MeshChanges) =>
    changes.clusters ? 'all' : changes.services.size ? new Set([...changes.services, VIEW_RESOURCES]) : changes.services,
  generate(mesh: MeshSnapshot, view: ProxyView, hostname: string): GeneratedResource[] {
    if (view.role === 'router') return hostname === VIEW_RESOURCES ? gatewayListener(mesh, view) : [];
    return proxylessPorts(mesh, view, hostname).map(({ name }) => ({
      name,
      body: {
        name,
        api_listener: {
          api_listener: {
            '@type': HCM,
            stat_prefix: name,
            rds: { config_source: ADS_CONFIG_SOURCE, route_config_name: name },
            http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
          },
        },
      },
    }));
  },
};

/**
 * Filter chains per exported service port of the gateway's network, matched on the SNI a client
 * may send: Istio's `outbound_.<port>_._.<host>` (sni_cluster picks the same-named cluster); the
 * target authority `<host>:<port>` of `xds:///<host>:<port>`, which proxyless gRPC clients other than
 * grpc-js send instead of the cluster's sni (Envoy matches server_names as plain strings, rejecting
 * only partial wildcards, so the colon is fine); and the bare hostname of a single-port service.
 * No ALPN match (Istio matches its own ALPNs), so gRPC's `h2` passes too. No chain has a
 * transport_socket: the gateway never terminates TLS, it only reads the ClientHello.
 */
function gatewayListener(mesh: MeshSnapshot, view: ProxyView): GeneratedResource[] {
  const chains: Record<string, unknown>[] = [];
  const services = [...mesh.services.values()]
    .filter((s) => servedByGateway(mesh, view, s))
    .sort((a, b) => compare(a.hostname, b.hostname));
  for (const service of services) {
    for (const port of service.ports) {
      const sni = sniName(port.port, service.hostname);
      chains.push(chain(sni, sni, true), chain(`${service.hostname}:${port.port}`, sni, false));
      if (service.ports.length === 1) chains.push(chain(service.hostname, sni, false));
    }
  }
  if (chains.length === 0) return []; // Envoy rejects a listener without filter chains
  return [
    {
      name: GATEWAY_LISTENER,
      body: {
        name: GATEWAY_LISTENER,
        address: { socket_address: { address: '0.0.0.0', port_value: GATEWAY_PORT } },
        listener_filters: [{ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': TLS_INSPECTOR } }],
        filter_chains: chains,
      },
    },
  ];
}

function chain(serverName: string, cluster: string, sniCluster: boolean): Record<string, unknown> {
  const tcp = { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY, stat_prefix: cluster, cluster } };
  return {
    name: serverName,
    filter_chain_match: { server_names: [serverName] },
    filters: sniCluster ? [{ name: 'envoy.filters.network.sni_cluster', typed_config: { '@type': SNI_CLUSTER } }, tcp] : [tcp],
  };
}
