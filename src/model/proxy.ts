// The proxy view: the few fields of an xDS node that select what it is served.

export type ProxyRole = 'sidecar' | 'router' | 'grpc';

export interface ProxyView {
  readonly role: ProxyRole;
  readonly clusterId: string;
  readonly network: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /**
   * An Envoy run by istio-agent (it announces ISTIO_VERSION): Istio's telemetry in it reads each
   * endpoint's `istio.workload`. Other Envoys and proxyless gRPC read no such metadata.
   */
  readonly istioProxy: boolean;
  /** The SPIFFE id the stream authenticated as (never from node metadata alone); SDS serves only its secrets. */
  readonly identity?: string;
}

/** The parts of an xDS Node meshfed reads (field names as on the wire). */
export interface NodeInfo {
  readonly id?: string;
  readonly cluster?: string;
  readonly metadata?: Readonly<Record<string, unknown>>;
  readonly user_agent_name?: string;
}

export interface Proxy {
  /** Node id as sent; unique per connected proxy for debugging. */
  readonly id: string;
  readonly view: ProxyView;
}

const GRPC_AGENT = /^grpc/i;

/**
 * Reads an Istio-style node (`sidecar~<ip>~<pod>.<ns>~<ns>.svc.<domain>`, metadata CLUSTER_ID,
 * NETWORK, NAMESPACE, SERVICE_ACCOUNT, LABELS) or a plain id with the same metadata.
 * Proxyless gRPC is told by its user agent ("gRPC Node Pure JS", "gRPC Go", ...) or by
 * metadata GENERATOR "grpc", as istio-agent sets it. An Envoy is istio-proxy when it announces
 * ISTIO_VERSION, as istio-agent's bootstrap does.
 */
export function proxyOf(node: NodeInfo | undefined): Proxy {
  const id = node?.id ?? '';
  const md = node?.metadata ?? {};
  const str = (k: string): string => (typeof md[k] === 'string' ? (md[k] as string) : '');
  const parts = id.split('~');
  const istioId = parts.length === 4 && (parts[0] === 'sidecar' || parts[0] === 'router');
  const podNs = istioId ? parts[2]!.split('.') : [];
  const grpc = GRPC_AGENT.test(node?.user_agent_name ?? '') || str('GENERATOR') === 'grpc';
  const role = grpc ? 'grpc' : istioId && parts[0] === 'router' ? 'router' : 'sidecar';
  return {
    id,
    view: {
      role,
      clusterId: str('CLUSTER_ID') || node?.cluster || '',
      network: str('NETWORK'),
      namespace: str('NAMESPACE') || (podNs.length > 1 ? podNs[podNs.length - 1]! : ''),
      serviceAccount: str('SERVICE_ACCOUNT'),
      istioProxy: role !== 'grpc' && str('ISTIO_VERSION') !== '',
    },
  };
}
