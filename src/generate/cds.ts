// CDS: one EDS cluster per service port, named as Istio names outbound clusters.
import type { MeshChanges, MeshSnapshot, ServicePort } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { TypeUrl } from '../envoy/protos.js';
import { ADS_CONFIG_SOURCE, type GeneratedResource, type Generator, outboundClusterName } from './generator.js';

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

export const cdsGenerator: Generator = {
  typeUrl: TypeUrl.Cluster,
  viewKey: (view: ProxyView) => view.role,
  affected: (changes: MeshChanges) => (changes.clusters ? 'all' : changes.services),
  generate(mesh: MeshSnapshot, view: ProxyView, hostname: string): GeneratedResource[] {
    const service = mesh.services.get(hostname);
    if (!service) return [];
    return service.ports.map((port) => {
      const name = outboundClusterName(port.port, hostname);
      return { name, body: outboundCluster(name, port, view) };
    });
  },
};

function outboundCluster(name: string, port: ServicePort, view: ProxyView): Record<string, unknown> {
  const cluster: Record<string, unknown> = {
    name,
    type: 'EDS',
    // Istio's zero initial_fetch_timeout: a cluster never waits 15 s for a CLA that is coming anyway.
    eds_cluster_config: { eds_config: { ...ADS_CONFIG_SOURCE, initial_fetch_timeout: {} }, service_name: name },
    connect_timeout: { seconds: 10 },
    lb_policy: 'ROUND_ROBIN',
  };
  if (view.role !== 'grpc' && (port.protocol === 'GRPC' || port.protocol === 'HTTP2')) {
    cluster['typed_extension_protocol_options'] = {
      [HTTP_PROTOCOL_OPTIONS]: {
        '@type': `type.googleapis.com/${HTTP_PROTOCOL_OPTIONS}`,
        explicit_http_config: { http2_protocol_options: {} },
      },
    };
  }
  return cluster;
}
