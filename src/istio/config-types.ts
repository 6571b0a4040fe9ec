// The type URLs of istiod's config-source client (meshConfig.configSources: xds://…): Istio
// GroupVersionKind strings, `<group>/<version>/<Kind>`, not `type.googleapis.com/…` names. istiod
// matches a response's type_url exactly, so every reply echoes the requested spelling.

/** What istiod 1.24 and later ask for, in its order (TrafficExtension from 1.30). */
export const ISTIOD_TYPES: readonly string[] = [
  'core/v1alpha1/MeshConfig',
  'security.istio.io/v1/AuthorizationPolicy',
  'networking.istio.io/v1/DestinationRule',
  'networking.istio.io/v1alpha3/EnvoyFilter',
  'networking.istio.io/v1/Gateway',
  'security.istio.io/v1/PeerAuthentication',
  'networking.istio.io/v1beta1/ProxyConfig',
  'security.istio.io/v1/RequestAuthentication',
  'networking.istio.io/v1/ServiceEntry',
  'networking.istio.io/v1/Sidecar',
  'telemetry.istio.io/v1/Telemetry',
  'extensions.istio.io/v1alpha1/TrafficExtension',
  'networking.istio.io/v1/VirtualService',
  'extensions.istio.io/v1alpha1/WasmPlugin',
  'networking.istio.io/v1/WorkloadEntry',
  'networking.istio.io/v1/WorkloadGroup',
];

/** What istiod 1.23 and earlier ask for. */
export const ISTIOD_TYPES_1_23: readonly string[] = [
  'core/v1alpha1/MeshConfig',
  'security.istio.io/v1beta1/AuthorizationPolicy',
  'networking.istio.io/v1alpha3/DestinationRule',
  'networking.istio.io/v1alpha3/EnvoyFilter',
  'networking.istio.io/v1alpha3/Gateway',
  'security.istio.io/v1beta1/PeerAuthentication',
  'networking.istio.io/v1beta1/ProxyConfig',
  'security.istio.io/v1beta1/RequestAuthentication',
  'networking.istio.io/v1alpha3/ServiceEntry',
  'networking.istio.io/v1alpha3/Sidecar',
  'telemetry.istio.io/v1alpha1/Telemetry',
  'networking.istio.io/v1alpha3/VirtualService',
  'extensions.istio.io/v1alpha1/WasmPlugin',
  'networking.istio.io/v1alpha3/WorkloadEntry',
  'networking.istio.io/v1alpha3/WorkloadGroup',
];

const KNOWN = new Set([...ISTIOD_TYPES, ...ISTIOD_TYPES_1_23]);

/** The kinds meshfed produces, under both spellings istiod may ask for. */
export const IstioType = {
  ServiceEntry: ['networking.istio.io/v1/ServiceEntry', 'networking.istio.io/v1alpha3/ServiceEntry'],
  DestinationRule: ['networking.istio.io/v1/DestinationRule', 'networking.istio.io/v1alpha3/DestinationRule'],
} as const;

/** The envelope every resource of a config-source response is packed in. */
export const MCP_RESOURCE_TYPE_URL = 'type.googleapis.com/istio.mcp.v1alpha1.Resource';

/** A group (DNS name, or `core`), a version and a Kind; a later Istio may ask for kinds not listed above. */
const GVK = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\/v[0-9]+((alpha|beta)[0-9]+)?\/[A-Z][A-Za-z0-9]{0,62}$/;

/**
 * An Istio config type: a config source must answer it (with nothing, if it is not one meshfed
 * produces), or istiod never becomes ready.
 */
export function isIstioConfigType(t: string): boolean {
  return KNOWN.has(t) || GVK.test(t);
}

/** A label for metrics: the type itself when Istio defines it, else one bucket (type URLs come from clients). */
export function istioTypeLabel(t: string): string {
  return KNOWN.has(t) ? t : 'istio:other';
}
