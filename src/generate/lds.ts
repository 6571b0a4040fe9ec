// LDS for proxyless gRPC: an API listener per `hostname:port`, routed through RDS.
import type { MeshChanges, MeshSnapshot } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { TypeUrl } from '../envoy/protos.js';
import { ADS_CONFIG_SOURCE, type GeneratedResource, type Generator, proxylessPorts } from './generator.js';

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

export const ldsGenerator: Generator = {
  typeUrl: TypeUrl.Listener,
  viewKey: (view: ProxyView) => view.role,
  affected: (changes: MeshChanges) => (changes.clusters ? 'all' : changes.services),
  generate(mesh: MeshSnapshot, view: ProxyView, hostname: string): GeneratedResource[] {
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
