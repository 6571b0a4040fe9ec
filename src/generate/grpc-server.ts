// LDS for proxyless gRPC xDS servers (grpc-js-xds XdsServer, gRFC A36): the Listener a server asks
// for when it binds <ip>:<port>, named by its bootstrap's server_listener_resource_name_template.
//
// The store generates per service, not per requested name, so every endpoint port of a service
// gets listeners for its own address and for the wildcard addresses a server may bind instead
// (0.0.0.0, [::]); grpc-js-xds checks that the Listener's address equals the one it bound.
// An mTLS endpoint's listener requires a client certificate: identity and roots come from the
// bootstrap's "default" certificate-provider instance (CONTRACTS.md). Routing is non-forwarding:
// the server handles every RPC itself.
import { SERVER_LISTENER_PREFIX } from '../envoy/names.js';
import type { Endpoint, MeshChanges, MeshSnapshot } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import type { GeneratedResource, Generator } from './generator.js';
import { union } from './generator.js';

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';

const WILDCARDS = ['0.0.0.0', '[::]'];

export function serverListenerName(address: string, port: number): string {
  const host = address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
  return `${SERVER_LISTENER_PREFIX}${host}:${port}`;
}

/** The server listeners of one service's endpoints, for a proxyless gRPC view. */
export function grpcServerListeners(mesh: MeshSnapshot, view: ProxyView, hostname: string): GeneratedResource[] {
  const service = mesh.services.get(hostname);
  if (!service || view.role !== 'grpc') return [];
  const out = new Map<string, GeneratedResource>();
  for (const ep of mesh.endpoints.get(hostname) ?? []) {
    for (const port of service.ports) {
      const p = ep.ports[port.name];
      if (p === undefined) continue;
      for (const host of [ep.address, ...WILDCARDS]) {
        const name = serverListenerName(host, p);
        if (!out.has(name)) out.set(name, { name, body: serverListener(name, host.replace(/^\[|\]$/g, ''), p, ep) });
      }
    }
  }
  return [...out.values()];
}

function serverListener(name: string, address: string, port: number, ep: Endpoint): Record<string, unknown> {
  const chain: Record<string, unknown> = {
    name: 'inbound',
    filters: [
      {
        name: 'envoy.filters.network.http_connection_manager',
        typed_config: {
          '@type': HCM,
          stat_prefix: name,
          route_config: {
            name: 'inbound',
            virtual_hosts: [{ name: 'inbound', domains: ['*'], routes: [{ match: { prefix: '' }, non_forwarding_action: {} }] }],
          },
          http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
        },
      },
    ],
  };
  if (ep.mtls) {
    chain['transport_socket'] = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': DOWNSTREAM_TLS,
        common_tls_context: {
          tls_certificate_provider_instance: { instance_name: 'default', certificate_name: 'default' },
          validation_context: { ca_certificate_provider_instance: { instance_name: 'default', certificate_name: 'ROOTCA' } },
        },
        require_client_certificate: { value: true },
      },
    };
  }
  return { name, address: { socket_address: { address, port_value: port } }, default_filter_chain: chain };
}

/** LDS with server listeners added; they also depend on endpoints. */
export function withServerListeners(lds: Generator): Generator {
  return {
    typeUrl: lds.typeUrl,
    viewKey: lds.viewKey,
    affected(changes: MeshChanges) {
      const a = lds.affected(changes);
      return a === 'all' ? a : union(a, changes.endpoints);
    },
    generate: (mesh, view, hostname) => [...lds.generate(mesh, view, hostname), ...grpcServerListeners(mesh, view, hostname)],
  };
}
