// RDS for proxyless gRPC: every request to `hostname:port` goes to the outbound cluster.
import type { MeshChanges, MeshSnapshot } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { TypeUrl } from '../envoy/protos.js';
import { type GeneratedResource, type Generator, outboundClusterName, proxylessPorts } from './generator.js';

export const rdsGenerator: Generator = {
  typeUrl: TypeUrl.Route,
  viewKey: (view: ProxyView) => view.role,
  affected: (changes: MeshChanges) => (changes.clusters ? 'all' : changes.services),
  generate(mesh: MeshSnapshot, view: ProxyView, hostname: string): GeneratedResource[] {
    return proxylessPorts(mesh, view, hostname).map(({ port, name }) => ({
      name,
      body: {
        name,
        virtual_hosts: [
          {
            name,
            domains: [hostname, name],
            routes: [{ match: { prefix: '' }, route: { cluster: outboundClusterName(port.port, hostname) } }],
          },
        ],
      },
    }));
  },
};
