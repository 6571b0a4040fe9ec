// CDS: one EDS cluster per service port, named as Istio names outbound clusters; on a gateway,
// Istio's SNI-DNAT clusters for the exported services of its network (mTLS passes through).
import type { MeshChanges, MeshSnapshot, Service, ServicePort } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { TypeUrl } from '../envoy/protos.js';
import { servedByGateway } from './eds.js';
import {
  ADS_NO_WAIT,
  DEFAULT_GENERATOR_OPTIONS,
  type GeneratedResource,
  type Generator,
  type GeneratorOptions,
  outboundClusterName,
  sniName,
  roleViewKey,
  union,
} from './generator.js';
import { grpcTransportSocket, sidecarTransport } from './tls.js';

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const UINT32_MAX = 0xffff_ffff;

export function cdsGenerator(opts: GeneratorOptions = DEFAULT_GENERATOR_OPTIONS): Generator {
  return {
    typeUrl: TypeUrl.Cluster,
    // A gateway's SNI clusters are the services of its network.
    viewKey: roleViewKey,
    // SANs and gRPC's mTLS-or-not follow who serves the endpoints, not their addresses.
    affected: (changes: MeshChanges) => (changes.clusters ? 'all' : union(changes.services, changes.identities)),
    generate(mesh: MeshSnapshot, view: ProxyView, hostname: string): GeneratedResource[] {
      const service = mesh.services.get(hostname);
      if (!service) return [];
      if (view.role === 'router') {
        if (!servedByGateway(mesh, view, service)) return [];
        return service.ports.map((port) => {
          const name = sniName(port.port, hostname);
          return { name, body: edsCluster(name, 'LEAST_REQUEST') };
        });
      }
      return service.ports.map((port) => {
        const name = outboundClusterName(port.port, hostname);
        return {
          name,
          body: view.role === 'grpc' ? grpcCluster(name, mesh, service, port) : sidecarCluster(name, mesh, service, port, opts),
        };
      });
    },
  };
}

function edsCluster(name: string, lbPolicy: string): Record<string, unknown> {
  return {
    name,
    alt_stat_name: `${name};`,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS_NO_WAIT, service_name: name },
    connect_timeout: { seconds: 10 },
    lb_policy: lbPolicy,
  };
}

function sidecarCluster(
  name: string,
  mesh: MeshSnapshot,
  service: Service,
  port: ServicePort,
  opts: GeneratorOptions,
): Record<string, unknown> {
  const cluster: Record<string, unknown> = {
    ...edsCluster(name, 'LEAST_REQUEST'),
    // Istio lifts Envoy's default limits (1,024 connections, ...): the mesh applies its own policy.
    circuit_breakers: {
      thresholds: [
        {
          max_connections: { value: UINT32_MAX },
          max_pending_requests: { value: UINT32_MAX },
          max_requests: { value: UINT32_MAX },
          max_retries: { value: UINT32_MAX },
          track_remaining: true,
        },
      ],
    },
    ...sidecarTransport(mesh, service, port, opts.sdsConfig),
    metadata: {
      filter_metadata: {
        istio: {
          fields: {
            services: {
              listValue: {
                values: [
                  { structValue: { fields: { host: str(service.hostname), name: str(service.name), namespace: str(service.namespace) } } },
                ],
              },
            },
          },
        },
      },
    },
  };
  if (port.protocol === 'GRPC' || port.protocol === 'HTTP2') {
    cluster['typed_extension_protocol_options'] = {
      [HTTP_PROTOCOL_OPTIONS]: {
        '@type': `type.googleapis.com/${HTTP_PROTOCOL_OPTIONS}`,
        explicit_http_config: { http2_protocol_options: {} },
      },
    };
  }
  return cluster;
}

/** gRPC takes ROUND_ROBIN only, and no socket matches. */
function grpcCluster(name: string, mesh: MeshSnapshot, service: Service, port: ServicePort): Record<string, unknown> {
  const socket = grpcTransportSocket(mesh, service, port);
  return { ...edsCluster(name, 'ROUND_ROBIN'), ...(socket ? { transport_socket: socket } : {}) };
}

function str(s: string): { stringValue: string } {
  return { stringValue: s };
}
