// One cluster's Kubernetes objects → the services and endpoints it contributes to the mesh. Pure: it
// holds the objects it is given and answers which services a change touches, so one EndpointSlice
// change recomputes one hostname.
//
// Rules (documented for users):
// - hostname `<name>.<namespace>.svc.<cluster domain>`; ExternalName services are skipped.
// - a port's protocol comes from appProtocol, else from its name prefix (grpc-, http-, http2-, ...).
// - endpoints come from the service's EndpointSlices (label kubernetes.io/service-name), one per
//   address, mapped to service ports by port name; the same address in two slices counts once.
// - health: ready (or unset) → HEALTHY, terminating → TERMINATING, otherwise UNHEALTHY.
// - service account and labels from the pod the endpoint targets; locality from its node's
//   topology.kubernetes.io/region and zone labels (and topology.istio.io/subzone).
// - network: the pod's topology.istio.io/network label, else its namespace's, else the cluster's.
// - mTLS: a pod takes mTLS unless it is labelled sidecar.istio.io/inject=false or
//   security.istio.io/tlsMode=disabled; an endpoint that targets no known pod is plaintext (meshfed
//   cannot know that a workload certificate is there).
// - exported (to federation peers): the Service is labelled meshfed.io/exported=true, or
//   federation.istio.deckhouse.io/public-service with an empty value (Deckhouse's label; any other value is not).
// - discovery selectors: when given, only services in namespaces whose labels match one are seen.
// - network gateways, as Istio finds them: a Service labelled topology.istio.io/network=<net> (in any
//   namespace, whatever the discovery selectors) makes its external addresses gateways into <net>
//   from this cluster: a LoadBalancer's status.loadBalancer.ingress (ip, else hostname) and
//   spec.externalIPs, at the port of label networking.istio.io/gatewayPort, default 15443 (Istio does
//   not check that the Service exposes it). A labelled Service with no external address yet (a
//   LoadBalancer still <PENDING>) gives no gateway, and says so.
// - a labelled Service of type NodePort (without externalIPs) is reached, as Deckhouse's exporter does
//   it, at the nodePort of its gateway port (else of its port named tls) on every node that runs one
//   of its ready endpoints, at the node's ExternalIP, else InternalIP; nodes not Ready, marked
//   unschedulable or tainted node.kubernetes.io/unschedulable are skipped.
import { isIP } from 'node:net';
import { compare, hostnameOf, protocolOf, type Endpoint, type Health, type ServicePort } from '../../model/mesh.js';
import type { ServiceContribution } from '../../model/source.js';
import type { EndpointSliceObj, KubeObj, LabelSelector, NamespaceObj, NodeObj, PodObj, ServiceObj, SliceEndpoint } from './objects.js';

export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';
export const LABEL_NETWORK = 'topology.istio.io/network';
export const LABEL_REGION = 'topology.kubernetes.io/region';
export const LABEL_ZONE = 'topology.kubernetes.io/zone';
export const LABEL_SUBZONE = 'topology.istio.io/subzone';
export const LABEL_EXPORTED = 'meshfed.io/exported';
export const LABEL_DECKHOUSE_PUBLIC = 'federation.istio.deckhouse.io/public-service';
export const LABEL_INJECT = 'sidecar.istio.io/inject';
export const LABEL_TLS_MODE = 'security.istio.io/tlsMode';
export const LABEL_GATEWAY_PORT = 'networking.istio.io/gatewayPort';
export const DEFAULT_GATEWAY_PORT = 15443;

/** What a Service labelled with a network says about the gateways into that network. */
export interface GatewayService {
  /** `namespace/name` */
  readonly service: string;
  readonly network: string;
  readonly port: number;
  /** External addresses, sorted: IPs, and load balancer hostnames (to be resolved). */
  readonly addresses: readonly string[];
  /** A NodePort gateway's node port: ClusterIndex.gateways() fills in `addresses` from the nodes. */
  readonly nodePort?: number;
  /** Why the Service gives no gateway, or not the one it seems to: shown at /debug/clusters. */
  readonly notes: readonly string[];
}

/** The gateways a Service stands for, or undefined when it has no network label. */
export function gatewayServiceOf(svc: ServiceObj): GatewayService | undefined {
  const labels = svc.metadata.labels ?? {};
  const network = labels[LABEL_NETWORK];
  if (!network) return undefined;
  const service = key(svc.metadata.namespace, svc.metadata.name);
  const notes: string[] = [];
  let port = DEFAULT_GATEWAY_PORT;
  const portLabel = labels[LABEL_GATEWAY_PORT];
  if (portLabel !== undefined) {
    const n = Number(portLabel);
    if (/^\d+$/.test(portLabel) && n > 0 && n < 65536) port = n;
    else notes.push(`${service}: label ${LABEL_GATEWAY_PORT}="${portLabel}" is not a port; using ${DEFAULT_GATEWAY_PORT}`);
  }
  const type = svc.spec?.type ?? 'ClusterIP';
  const addresses = new Set<string>();
  if (type === 'LoadBalancer') {
    for (const i of svc.status?.loadBalancer?.ingress ?? []) {
      const a = i.ip || i.hostname;
      if (a) addresses.add(a);
    }
  }
  for (const ip of svc.spec?.externalIPs ?? []) if (ip) addresses.add(ip);
  if (type === 'NodePort' && addresses.size === 0) {
    const ports = svc.spec?.ports ?? [];
    const nodePort = (ports.find((p) => p.port === port) ?? ports.find((p) => p.name === 'tls'))?.nodePort;
    if (nodePort) return { service, network, port, addresses: [], notes, nodePort };
    notes.push(
      `${service}: NodePort Service has no nodePort for port ${port} (nor a port named tls): no gateway into network ${network} from it`,
    );
    return { service, network, port, addresses: [], notes };
  }
  if (addresses.size === 0) {
    notes.push(
      type === 'LoadBalancer'
        ? `${service}: LoadBalancer has no ingress address yet (<PENDING>): no gateway into network ${network} from it`
        : `${service}: type ${type} with no spec.externalIPs has no external address: no gateway into network ${network} from it (meshfed reads LoadBalancer ingress and externalIPs)`,
    );
  }
  return { service, network, port, addresses: [...addresses].sort(), notes };
}

/** An address a gateway can be reached at without DNS. */
export const isIpAddress = (a: string): boolean => isIP(a) !== 0;

export interface ClusterInfo {
  readonly id: string;
  /** Changes when the system namespace's network label does. */
  network: string;
  readonly domain: string;
  /** Namespace label selectors; empty = every namespace. */
  readonly discoverySelectors: readonly LabelSelector[];
}

const key = (ns: string | undefined, name: string): string => `${ns ?? ''}/${name}`;
/** `namespace/name` (`/name` for cluster-scoped objects): how the index keys every object. */
export const objectKey = (o: KubeObj): string => key(o.metadata.namespace, o.metadata.name);

/** A service, as `namespace/name`. */
export type ServiceKey = string;

export class ClusterIndex {
  private readonly services = new Map<ServiceKey, ServiceObj>();
  private readonly slices = new Map<string, EndpointSliceObj>();
  /** Slice keys per service key. */
  private readonly slicesOf = new Map<ServiceKey, Set<string>>();
  private readonly pods = new Map<string, PodObj>();
  private readonly nodes = new Map<string, NodeObj>();
  private readonly namespaces = new Map<string, NamespaceObj>();
  /** Which slices mention a pod or a node, to find the services a pod or node change touches. */
  private readonly slicesByPod = new Map<string, Set<string>>();
  private readonly slicesByNode = new Map<string, Set<string>>();
  private readonly gatewayServices = new Map<ServiceKey, GatewayService>();

  constructor(readonly cluster: ClusterInfo) {}

  /** Every service key currently known (selected or not). */
  serviceKeys(): ServiceKey[] {
    return [...this.services.keys()];
  }

  setService(obj: ServiceObj | undefined, k: string): ServiceKey[] {
    setOrDelete(this.services, k, obj);
    setOrDelete(this.gatewayServices, k, obj && gatewayServiceOf(obj));
    return [k];
  }

  /** Every Service that names a network gateway, by service key. */
  gateways(): GatewayService[] {
    return [...this.gatewayServices.entries()]
      .sort(([a], [b]) => compare(a, b))
      .map(([k, g]) => (g.nodePort === undefined ? g : this.nodePortGateway(k, g, g.nodePort)));
  }

  /** A NodePort gateway's addresses: the usable nodes that run its ready endpoints. */
  private nodePortGateway(k: ServiceKey, g: GatewayService, nodePort: number): GatewayService {
    const ns = k.slice(0, k.indexOf('/'));
    const nodes = new Set<string>();
    for (const sk of this.slicesOf.get(k) ?? []) {
      for (const e of this.slices.get(sk)?.endpoints ?? []) {
        if (e.conditions?.ready === false) continue;
        const pod =
          e.targetRef?.kind === 'Pod' && e.targetRef.name ? this.pods.get(key(e.targetRef.namespace ?? ns, e.targetRef.name)) : undefined;
        const name = e.nodeName ?? pod?.spec?.nodeName;
        if (name) nodes.add(name);
      }
    }
    const addresses = new Set<string>();
    for (const name of nodes) {
      const node = this.nodes.get(name);
      const a = node && usableNode(node) && nodeAddress(node);
      if (a) addresses.add(a);
    }
    const notes = addresses.size
      ? g.notes
      : [
          ...g.notes,
          `${g.service}: NodePort ${nodePort}: no Ready, schedulable node with an address runs a ready gateway endpoint: no gateway into network ${g.network} from it`,
        ];
    return { ...g, port: nodePort, addresses: [...addresses].sort(), notes };
  }

  setSlice(obj: EndpointSliceObj | undefined, k: string): ServiceKey[] {
    const before = this.slices.get(k);
    const touched = new Set<ServiceKey>();
    if (before) {
      const owner = sliceOwner(before);
      if (owner) {
        touched.add(owner);
        this.slicesOf.get(owner)?.delete(k);
        if (this.slicesOf.get(owner)?.size === 0) this.slicesOf.delete(owner);
      }
      this.indexRefs(before, k, false);
    }
    setOrDelete(this.slices, k, obj);
    if (obj) {
      const owner = sliceOwner(obj);
      if (owner) {
        touched.add(owner);
        let set = this.slicesOf.get(owner);
        if (!set) this.slicesOf.set(owner, (set = new Set()));
        set.add(k);
      }
      this.indexRefs(obj, k, true);
    }
    return [...touched];
  }

  setPod(obj: PodObj | undefined, k: string): ServiceKey[] {
    setOrDelete(this.pods, k, obj);
    return this.ownersOf(this.slicesByPod.get(k));
  }

  setNode(obj: NodeObj | undefined, name: string): ServiceKey[] {
    setOrDelete(this.nodes, name, obj);
    return this.ownersOf(this.slicesByNode.get(name));
  }

  setNamespace(obj: NamespaceObj | undefined, name: string): ServiceKey[] {
    setOrDelete(this.namespaces, name, obj);
    return [...this.services.keys()].filter((k) => k.startsWith(`${name}/`));
  }

  /** What the cluster says about one service now, or undefined (gone, ExternalName, or not selected). */
  contribution(k: ServiceKey): ServiceContribution | undefined {
    const svc = this.services.get(k);
    if (!svc || svc.spec?.type === 'ExternalName') return undefined;
    const ns = svc.metadata.namespace ?? '';
    if (!this.selected(ns)) return undefined;
    const ports: ServicePort[] = (svc.spec?.ports ?? [])
      .map((p) => ({
        name: p.name ?? '',
        port: p.port,
        protocol: protocolOf(p.appProtocol ?? '', p.name ?? ''),
        targetPort: typeof p.targetPort === 'number' ? p.targetPort : p.port,
      }))
      .sort((a, b) => a.port - b.port);
    return {
      hostname: hostnameOf(svc.metadata.name, ns, this.cluster.domain),
      name: svc.metadata.name,
      namespace: ns,
      cluster: this.cluster.id,
      ports,
      exported: svc.metadata.labels?.[LABEL_EXPORTED] === 'true' || svc.metadata.labels?.[LABEL_DECKHOUSE_PUBLIC] === '',
      origin: 'local',
      endpoints: this.endpointsOf(k, ns, ports),
    };
  }

  private endpointsOf(k: ServiceKey, ns: string, ports: readonly ServicePort[]): Endpoint[] {
    const byIdentity = new Map<string, Endpoint>();
    const sliceKeys = [...(this.slicesOf.get(k) ?? [])].sort();
    const nsLabels = this.namespaces.get(ns)?.metadata.labels ?? {};
    for (const sk of sliceKeys) {
      const slice = this.slices.get(sk)!;
      if (slice.addressType === 'FQDN') continue;
      // Service port name → the port the slice's endpoints listen on.
      const slicePorts: Record<string, number> = {};
      for (const sp of slice.ports ?? []) {
        if (sp.port !== undefined && ports.some((p) => p.name === (sp.name ?? ''))) slicePorts[sp.name ?? ''] = sp.port;
      }
      const portsJson = JSON.stringify(slicePorts);
      for (const e of slice.endpoints ?? []) {
        for (const address of e.addresses) {
          const id = `${address} ${portsJson}`;
          if (!byIdentity.has(id)) byIdentity.set(id, this.endpoint(e, address, slicePorts, ns, nsLabels));
        }
      }
    }
    return [...byIdentity.entries()].sort(([a], [b]) => compare(a, b)).map(([, e]) => e);
  }

  private endpoint(
    e: SliceEndpoint,
    address: string,
    ports: Readonly<Record<string, number>>,
    ns: string,
    nsLabels: Readonly<Record<string, string>>,
  ): Endpoint {
    const pod =
      e.targetRef?.kind === 'Pod' && e.targetRef.name ? this.pods.get(key(e.targetRef.namespace ?? ns, e.targetRef.name)) : undefined;
    const podLabels = pod?.metadata.labels ?? {};
    const nodeName = e.nodeName ?? pod?.spec?.nodeName;
    const nodeLabels = (nodeName && this.nodes.get(nodeName)?.metadata.labels) || {};
    return {
      address,
      ports,
      serviceAccount: pod?.spec?.serviceAccountName || 'default',
      labels: sortedRecord(podLabels),
      locality: {
        region: nodeLabels[LABEL_REGION] ?? '',
        zone: nodeLabels[LABEL_ZONE] ?? e.zone ?? '',
        subzone: nodeLabels[LABEL_SUBZONE] ?? '',
      },
      health: healthOf(e.conditions),
      weight: 1,
      mtls: pod !== undefined && podLabels[LABEL_INJECT] !== 'false' && podLabels[LABEL_TLS_MODE] !== 'disabled',
      clusterId: this.cluster.id,
      network: podLabels[LABEL_NETWORK] || nsLabels[LABEL_NETWORK] || this.cluster.network,
      provenance: { source: `kube:${this.cluster.id}` },
    };
  }

  private selected(ns: string): boolean {
    if (this.cluster.discoverySelectors.length === 0) return true;
    const labels = this.namespaces.get(ns)?.metadata.labels;
    return labels !== undefined && this.cluster.discoverySelectors.some((s) => s(labels));
  }

  private indexRefs(slice: EndpointSliceObj, k: string, add: boolean): void {
    const ns = slice.metadata.namespace;
    for (const e of slice.endpoints ?? []) {
      if (e.targetRef?.kind === 'Pod' && e.targetRef.name)
        index(this.slicesByPod, key(e.targetRef.namespace ?? ns, e.targetRef.name), k, add);
      if (e.nodeName) index(this.slicesByNode, e.nodeName, k, add);
    }
  }

  private ownersOf(sliceKeys: Set<string> | undefined): ServiceKey[] {
    const out = new Set<ServiceKey>();
    for (const sk of sliceKeys ?? []) {
      const s = this.slices.get(sk);
      const owner = s && sliceOwner(s);
      if (owner) out.add(owner);
    }
    return [...out];
  }
}

/** Ready (when it says), not cordoned (spec.unschedulable or the taint the node controller puts for it). */
function usableNode(n: NodeObj): boolean {
  if (n.spec?.unschedulable) return false;
  if ((n.spec?.taints ?? []).some((t) => t.key === 'node.kubernetes.io/unschedulable')) return false;
  return !(n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status !== 'True');
}

/** ExternalIP, else InternalIP. */
function nodeAddress(n: NodeObj): string | undefined {
  const addrs = n.status?.addresses ?? [];
  return (
    addrs.find((a) => a.type === 'ExternalIP' && a.address)?.address ?? addrs.find((a) => a.type === 'InternalIP' && a.address)?.address
  );
}

function sliceOwner(s: EndpointSliceObj): ServiceKey | undefined {
  const name = s.metadata.labels?.[LABEL_SERVICE_NAME];
  return name ? key(s.metadata.namespace, name) : undefined;
}

function healthOf(c: SliceEndpoint['conditions']): Health {
  if (c?.ready !== false) return 'HEALTHY';
  return c.terminating ? 'TERMINATING' : 'UNHEALTHY';
}

function index(map: Map<string, Set<string>>, k: string, v: string, add: boolean): void {
  let set = map.get(k);
  if (add) {
    if (!set) map.set(k, (set = new Set()));
    set.add(v);
  } else if (set) {
    set.delete(v);
    if (set.size === 0) map.delete(k);
  }
}

function sortedRecord(r: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => compare(a, b)));
}

function setOrDelete<V>(map: Map<string, V>, k: string, v: V | undefined): void {
  if (v === undefined) map.delete(k);
  else map.set(k, v);
}
