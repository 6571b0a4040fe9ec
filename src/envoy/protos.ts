// Envoy's API, loaded by @grpc/proto-loader from the protos that @grpc/grpc-js-xds ships.
// Shared by every layer (like model/): generators build these messages, xds/ serves them.
import '@grpc/proto-loader'; // registers protobufjs' copies of google/protobuf/{descriptor,api,type}.proto
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

const DEPS = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
export const INCLUDE_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(DEPS, d));

/** Every Envoy proto meshfed reads or writes. */
export const ENVOY_PROTO_FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/cluster/v3/cds.proto',
  'envoy/service/endpoint/v3/eds.proto',
  'envoy/service/listener/v3/lds.proto',
  'envoy/service/route/v3/rds.proto',
  'envoy/service/secret/v3/sds.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.proto',
  'envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/network/sni_cluster/v3/sni_cluster.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/clusters/aggregate/v3/cluster.proto',
];

/**
 * Loads protos into `into` (a new Root by default) through protobufjs' public API: Root.resolvePath
 * is documented as the hook for imports spread over several directories. We need the Root itself
 * (not proto-loader's service definitions) to encode resources once and splice the bytes into responses.
 */
export function loadEnvoyProtos(files: readonly string[], into: protobuf.Root = new protobuf.Root()): protobuf.Root {
  into.resolvePath = (origin, target) => {
    if (path.isAbsolute(target)) return target;
    const found = INCLUDE_DIRS.map((d) => path.join(d, target)).find((f) => fs.existsSync(f));
    return found ?? protobuf.util.path.resolve(origin, target);
  };
  into.loadSync([...files], { keepCase: true });
  into.resolveAll();
  return into;
}

/** The one Root every layer shares (the validator adds the Bootstrap to it). */
export const root: protobuf.Root = loadEnvoyProtos(ENVOY_PROTO_FILES);

export const TYPE_PREFIX = 'type.googleapis.com/';

export const TypeUrl = {
  Cluster: `${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`,
  Endpoint: `${TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`,
  Listener: `${TYPE_PREFIX}envoy.config.listener.v3.Listener`,
  Route: `${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`,
  Secret: `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.Secret`,
} as const;
export type XdsTypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/** ADS push order: make-before-break (CDS → EDS → LDS → RDS → SDS). */
export const ADS_ORDER: readonly XdsTypeUrl[] = [TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route, TypeUrl.Secret];

/** Short names for logs, metrics and debug pages. */
export const SHORT: Readonly<Record<XdsTypeUrl, string>> = {
  [TypeUrl.Cluster]: 'CDS',
  [TypeUrl.Endpoint]: 'EDS',
  [TypeUrl.Listener]: 'LDS',
  [TypeUrl.Route]: 'RDS',
  [TypeUrl.Secret]: 'SDS',
};

export function isXdsType(t: string): t is XdsTypeUrl {
  return Object.prototype.hasOwnProperty.call(SHORT, t);
}

/** CDS, EDS, ... for Envoy's types; any other type as it is. */
export function shortType(t: string): string {
  return isXdsType(t) ? SHORT[t] : t;
}

/**
 * Full-state types: every SotW response carries every subscribed resource; absence deletes. So
 * is every type that is not Envoy's (Istio config: istiod replaces a kind's set with each response).
 */
export function isFullState(t: string): boolean {
  return t === TypeUrl.Cluster || t === TypeUrl.Listener || !isXdsType(t);
}

export function messageType(typeUrl: string): protobuf.Type {
  return root.lookupType(typeUrl.slice(TYPE_PREFIX.length));
}

/** Resource name as the xDS protocol defines it: a CLA's cluster_name, else its name. */
export function resourceName(typeUrl: string, body: Readonly<Record<string, unknown>>): string {
  const n = typeUrl === TypeUrl.Endpoint ? body['cluster_name'] : body['name'];
  return typeof n === 'string' ? n : '';
}

export const DiscoveryRequest = root.lookupType('envoy.service.discovery.v3.DiscoveryRequest');
export const DeltaDiscoveryRequest = root.lookupType('envoy.service.discovery.v3.DeltaDiscoveryRequest');
export const DiscoveryResponse = root.lookupType('envoy.service.discovery.v3.DiscoveryResponse');
export const DeltaDiscoveryResponse = root.lookupType('envoy.service.discovery.v3.DeltaDiscoveryResponse');

/** protobufjs → plain object options used for everything we decode or print. */
export const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, json: true };
