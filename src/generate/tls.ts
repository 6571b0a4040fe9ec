// Upstream mTLS in Istio's form: SDS secrets for Envoy, certificate-provider instances for
// proxyless gRPC (gRFC A29), both verifying the SPIFFE ids of the service's accounts.
import { compare, type Endpoint, type MeshSnapshot, type Service, type ServicePort } from '../model/mesh.js';
import { ADS_NO_WAIT, type SdsConfig, sniName, trustDomainOf } from './generator.js';

const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const RAW_BUFFER = 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';

/** Where Envoy gets `default` and `ROOTCA`: meshfed over ADS, or istio-agent's SDS pipe beside istiod. */
export function sdsConfigSource(sds: SdsConfig): Record<string, unknown> {
  if (sds === 'ads') return ADS_NO_WAIT;
  return {
    api_config_source: {
      api_type: 'GRPC',
      set_node_on_first_message_only: true,
      transport_api_version: 'V3',
      grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc' } }],
    },
    initial_fetch_timeout: {},
    resource_api_version: 'V3',
  };
}

/**
 * `spiffe://<td>/ns/<ns>/sa/<sa>` of every mTLS endpoint, each in its own cluster's trust domain, sorted.
 * An endpoint whose account is unknown (a federation import: the peer publishes no accounts) allows any
 * account of the service's namespace in that trust domain, as a prefix, and never another domain.
 */
export function serviceSans(mesh: MeshSnapshot, service: Service): Array<{ exact: string } | { prefix: string }> {
  const sans = new Set<string>();
  for (const ep of mesh.endpoints.get(service.hostname) ?? []) {
    if (!ep.mtls || ep.health === 'TERMINATING') continue;
    if (ep.sans) {
      for (const san of ep.sans) sans.add(san);
      continue;
    }
    const td = mesh.clusters.get(ep.clusterId)?.domain ?? trustDomainOf(service.hostname);
    sans.add(`spiffe://${td}/ns/${service.namespace}/sa/${ep.serviceAccount}`);
  }
  return [...sans].sort(compare).map((san) => (san.endsWith('/sa/') ? { prefix: san } : { exact: san }));
}

/** Whether a service's live endpoints take mTLS: all of them (also when there are none), none, or some. */
export type TlsModes = 'all' | 'none' | 'mixed';

// Endpoint lists are immutable and replaced when they change, so a snapshot's CDS (every port)
// and EDS (every view) share one answer per service.
const modesMemo = new WeakMap<readonly Endpoint[], TlsModes>();

export function tlsModes(mesh: MeshSnapshot, service: Service): TlsModes {
  const endpoints = mesh.endpoints.get(service.hostname);
  if (!endpoints) return 'all';
  let modes = modesMemo.get(endpoints);
  if (modes) return modes;
  let mtls = false;
  let plain = false;
  for (const ep of endpoints) {
    if (ep.health === 'TERMINATING') continue;
    if (ep.mtls) mtls = true;
    else plain = true;
  }
  modes = mtls && plain ? 'mixed' : plain ? 'none' : 'all';
  modesMemo.set(endpoints, modes);
  return modes;
}

/** The endpoint metadata (under `envoy.transport_socket_match`) that a mixed cluster's one socket match takes. */
export const PLAINTEXT_MATCH = { fields: { tlsMode: { stringValue: 'disabled' } } };

/**
 * Auto-mTLS, said once per cluster where it can be: if every endpoint takes mTLS the cluster has
 * the TLS socket, if none does it has Envoy's default, plaintext. A service that mixes both keeps
 * the TLS socket as the cluster's default and adds ONE match, `tlsMode: disabled` → raw_buffer,
 * which EDS stamps on its plaintext endpoints only (eds.ts). Envoy's Cluster proto
 * (api/envoy/config/cluster/v3/cluster.proto, field `transport_socket_matches`; envoyproxy.io
 * docs, api-v3/config/cluster/v3/cluster.proto): an endpoint's
 * `envoy.transport_socket_match` metadata is matched against the list in order, then the
 * locality's, and "barring any matches in the endpoint or locality metadata, the socket
 * configuration fallbacks to use the ... transport_socket specified in this cluster".
 *
 * So an endpoint without the metadata gets TLS: it fails closed. Istio's shape (`tlsMode-istio`
 * → TLS, an empty `tlsMode-disabled` match → plaintext) fails open: while Envoy warms an updated
 * cluster, the old one takes the new assignment, and on mixed → all that assignment carries no
 * metadata, so the old cluster would send every endpoint plaintext. Here: mixed → all, the old
 * cluster sees no metadata and keeps TLS; all → mixed, the old TLS-only cluster ignores the
 * metadata and a plaintext endpoint fails until the new cluster is warm; none → mixed, the old
 * cluster stays plaintext as it was.
 */
export function sidecarTransport(mesh: MeshSnapshot, service: Service, port: ServicePort, sds: SdsConfig): Record<string, unknown> {
  const modes = tlsModes(mesh, service);
  if (modes === 'none') return {};
  const tls = sidecarTlsSocket(mesh, service, port, sds);
  if (modes === 'all') return { transport_socket: tls };
  return {
    transport_socket: tls,
    transport_socket_matches: [
      {
        name: 'tlsMode-disabled',
        match: PLAINTEXT_MATCH,
        transport_socket: { name: 'envoy.transport_sockets.raw_buffer', typed_config: { '@type': RAW_BUFFER } },
      },
    ],
  };
}

function sidecarTlsSocket(mesh: MeshSnapshot, service: Service, port: ServicePort, sds: SdsConfig): Record<string, unknown> {
  const source = sdsConfigSource(sds);
  const h2 = port.protocol === 'GRPC' || port.protocol === 'HTTP2';
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': UPSTREAM_TLS,
      common_tls_context: {
        tls_params: { tls_minimum_protocol_version: 'TLSv1_2', tls_maximum_protocol_version: 'TLSv1_3' },
        alpn_protocols: h2 ? ['istio-peer-exchange', 'istio', 'h2'] : ['istio-peer-exchange', 'istio'],
        tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: source }],
        combined_validation_context: {
          default_validation_context: { match_subject_alt_names: serviceSans(mesh, service) },
          validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: source },
        },
      },
      sni: sniName(port.port, service.hostname),
    },
  };
}

/**
 * Proxyless gRPC has no socket matches: mTLS when every endpoint takes it, else plaintext. The
 * root is the instance named after the service's trust domain, so a remote root vouches only for
 * its own names; grpc-js-xds NACKs tls_params and custom validators, so neither is set.
 */
export function grpcTransportSocket(mesh: MeshSnapshot, service: Service, port: ServicePort): Record<string, unknown> | undefined {
  if (tlsModes(mesh, service) !== 'all') return undefined;
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': UPSTREAM_TLS,
      common_tls_context: {
        tls_certificate_provider_instance: { instance_name: 'default', certificate_name: 'default' },
        validation_context: {
          ca_certificate_provider_instance: { instance_name: `spiffe://${trustDomainOf(service.hostname)}`, certificate_name: 'ROOTCA' },
          match_subject_alt_names: serviceSans(mesh, service),
        },
      },
      sni: sniName(port.port, service.hostname),
    },
  };
}
