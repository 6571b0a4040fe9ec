// The few fields meshfed reads from Kubernetes objects, and the checks an object from an apiserver must
// pass before anything uses it. An apiserver is not trusted to send well-formed objects: a bad one is
// rejected on its own and reported, and nothing else is touched.

export interface Meta {
  readonly name: string;
  readonly namespace?: string;
  readonly resourceVersion?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface KubeObj {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata: Meta;
}

export interface ServicePortObj {
  readonly name?: string;
  readonly port: number;
  readonly targetPort?: number | string;
  readonly appProtocol?: string;
  readonly nodePort?: number;
}

export interface LoadBalancerIngress {
  readonly ip?: string;
  readonly hostname?: string;
}

export interface ServiceObj extends KubeObj {
  readonly spec?: { readonly type?: string; readonly ports?: readonly ServicePortObj[]; readonly externalIPs?: readonly string[] | null };
  readonly status?: { readonly loadBalancer?: { readonly ingress?: readonly LoadBalancerIngress[] | null } };
}

export interface SliceEndpoint {
  readonly addresses: readonly string[];
  readonly conditions?: { readonly ready?: boolean; readonly serving?: boolean; readonly terminating?: boolean };
  readonly nodeName?: string;
  readonly zone?: string;
  readonly targetRef?: { readonly kind?: string; readonly name?: string; readonly namespace?: string };
}

export interface EndpointSliceObj extends KubeObj {
  readonly addressType?: string;
  readonly endpoints?: readonly SliceEndpoint[] | null;
  readonly ports?: readonly { readonly name?: string; readonly port?: number; readonly protocol?: string }[] | null;
}

export interface PodObj extends KubeObj {
  readonly spec?: { readonly serviceAccountName?: string; readonly nodeName?: string };
}

/** What a NodePort gateway needs of a node: its addresses, and whether it is Ready and schedulable. */
export interface NodeObj extends KubeObj {
  readonly spec?: { readonly unschedulable?: boolean; readonly taints?: readonly { readonly key?: string }[] | null };
  readonly status?: {
    readonly addresses?: readonly { readonly type?: string; readonly address?: string }[] | null;
    readonly conditions?: readonly { readonly type?: string; readonly status?: string }[] | null;
  };
}
export type NamespaceObj = KubeObj;

export interface SecretObj extends KubeObj {
  readonly data?: Readonly<Record<string, string>>;
}

export type Kind =
  | 'Service'
  | 'EndpointSlice'
  | 'Pod'
  | 'Node'
  | 'Namespace'
  | 'Secret'
  | 'IstioFederation'
  | 'IstioMulticluster'
  | 'ServiceEntry';

/** The list/watch path of each kind, cluster-wide or in one namespace. */
export function pathOf(kind: Kind, namespace?: string): string {
  const ns = namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  switch (kind) {
    case 'Service':
      return `/api/v1${ns}/services`;
    case 'EndpointSlice':
      return `/apis/discovery.k8s.io/v1${ns}/endpointslices`;
    case 'Pod':
      return `/api/v1${ns}/pods`;
    case 'Node':
      return '/api/v1/nodes';
    case 'Namespace':
      return '/api/v1/namespaces';
    case 'Secret':
      return `/api/v1${ns}/secrets`;
    case 'IstioFederation':
      return '/apis/deckhouse.io/v1alpha1/istiofederations';
    case 'IstioMulticluster':
      return '/apis/deckhouse.io/v1alpha1/istiomulticlusters';
    case 'ServiceEntry':
      return `/apis/networking.istio.io/v1${ns}/serviceentries`;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringMap = (v: unknown): boolean => v === undefined || (isObject(v) && Object.values(v).every((x) => typeof x === 'string'));
const isPort = (v: unknown): boolean => Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536;

/**
 * Why `obj` cannot be used as a `kind`, or undefined when it can. Checks what meshfed reads, so a
 * later step never meets a missing name or a port that is not a number.
 */
export function rejectReason(kind: Kind, obj: unknown): string | undefined {
  if (!isObject(obj)) return 'not an object';
  if (obj['kind'] !== undefined && obj['kind'] !== kind) return `kind ${String(obj['kind'])}, expected ${kind}`;
  const meta = obj['metadata'];
  if (!isObject(meta) || typeof meta['name'] !== 'string' || meta['name'] === '') return 'no metadata.name';
  if (meta['namespace'] !== undefined && typeof meta['namespace'] !== 'string') return 'metadata.namespace is not a string';
  if (!isStringMap(meta['labels'])) return 'metadata.labels is not a string map';
  if (!isStringMap(meta['annotations'])) return 'metadata.annotations is not a string map';
  switch (kind) {
    case 'Service': {
      const why = serviceAddressesReason(obj);
      if (why) return why;
      const spec = obj['spec'];
      if (spec === undefined) return undefined;
      if (!isObject(spec)) return 'spec is not an object';
      const ports = spec['ports'];
      if (ports === undefined || ports === null) return undefined;
      if (!Array.isArray(ports)) return 'spec.ports is not a list';
      for (const p of ports) {
        if (!isObject(p) || !isPort(p['port'])) return 'a service port has no valid port number';
        if (p['name'] !== undefined && typeof p['name'] !== 'string') return 'a service port name is not a string';
        if (p['appProtocol'] !== undefined && typeof p['appProtocol'] !== 'string') return 'a service port appProtocol is not a string';
        if (p['nodePort'] !== undefined && !isPort(p['nodePort'])) return 'a service port nodePort is not a port';
      }
      return undefined;
    }
    case 'EndpointSlice': {
      const eps = obj['endpoints'];
      if (eps !== undefined && eps !== null) {
        if (!Array.isArray(eps)) return 'endpoints is not a list';
        for (const e of eps) {
          if (!isObject(e) || !Array.isArray(e['addresses']) || !e['addresses'].every((a) => typeof a === 'string')) {
            return 'an endpoint has no address list';
          }
          if (e['conditions'] !== undefined && !isObject(e['conditions'])) return 'endpoint conditions is not an object';
          if (e['targetRef'] !== undefined && !isObject(e['targetRef'])) return 'endpoint targetRef is not an object';
        }
      }
      const ports = obj['ports'];
      if (ports !== undefined && ports !== null) {
        if (!Array.isArray(ports)) return 'ports is not a list';
        for (const p of ports) {
          if (!isObject(p) || (p['port'] !== undefined && !isPort(p['port']))) return 'a slice port is not valid';
        }
      }
      return undefined;
    }
    case 'Pod': {
      const spec = obj['spec'];
      if (spec !== undefined && !isObject(spec)) return 'spec is not an object';
      return undefined;
    }
    case 'Node': {
      const spec = obj['spec'];
      if (spec !== undefined && !isObject(spec)) return 'spec is not an object';
      if (isObject(spec) && !isListOf(spec['taints'], (t) => isObject(t) && (t['key'] === undefined || typeof t['key'] === 'string')))
        return 'spec.taints is not a list of taints';
      const status = obj['status'];
      if (status === undefined) return undefined;
      if (!isObject(status)) return 'status is not an object';
      if (!isListOf(status['addresses'], (a) => isObject(a) && typeof a['type'] === 'string' && typeof a['address'] === 'string'))
        return 'status.addresses is not a list of {type, address}';
      if (!isListOf(status['conditions'], (c) => isObject(c) && typeof c['type'] === 'string' && typeof c['status'] === 'string'))
        return 'status.conditions is not a list of {type, status}';
      return undefined;
    }
    case 'Secret': {
      if (!isStringMap(obj['data'])) return 'data is not a string map';
      return undefined;
    }
    case 'ServiceEntry':
      // The spec is checked field by field in service-entry.ts, which names what is wrong where.
      return undefined;
    case 'IstioFederation':
    case 'IstioMulticluster': {
      const spec = obj['spec'];
      if (!isObject(spec)) return 'spec is not an object';
      if (kind === 'IstioFederation' && (typeof spec['trustDomain'] !== 'string' || typeof spec['metadataEndpoint'] !== 'string'))
        return 'spec.trustDomain and spec.metadataEndpoint must be strings';
      if (kind === 'IstioMulticluster' && typeof spec['metadataEndpoint'] !== 'string') return 'spec.metadataEndpoint must be a string';
      if (kind === 'IstioMulticluster' && spec['enableIngressGateway'] !== undefined && typeof spec['enableIngressGateway'] !== 'boolean')
        return 'spec.enableIngressGateway must be a boolean';
      const md = spec['metadata'];
      if (
        md !== undefined &&
        (!isObject(md) ||
          (md['ca'] !== undefined && typeof md['ca'] !== 'string') ||
          (md['insecureSkipVerify'] !== undefined && typeof md['insecureSkipVerify'] !== 'boolean'))
      ) {
        return 'spec.metadata must be {ca: string, insecureSkipVerify: boolean}';
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

const isListOf = (v: unknown, ok: (x: unknown) => boolean): boolean => v === undefined || v === null || (Array.isArray(v) && v.every(ok));
const isStringList = (v: unknown): boolean => v === undefined || v === null || (Array.isArray(v) && v.every((x) => typeof x === 'string'));

/** Checks the fields a network gateway Service's addresses come from: spec.externalIPs and status.loadBalancer.ingress. */
function serviceAddressesReason(obj: Record<string, unknown>): string | undefined {
  const spec = obj['spec'];
  if (isObject(spec) && !isStringList(spec['externalIPs'])) return 'spec.externalIPs is not a list of strings';
  const status = obj['status'];
  if (status === undefined) return undefined;
  if (!isObject(status)) return 'status is not an object';
  const lb = status['loadBalancer'];
  if (lb === undefined) return undefined;
  if (!isObject(lb)) return 'status.loadBalancer is not an object';
  const ingress = lb['ingress'];
  if (ingress === undefined || ingress === null) return undefined;
  if (!Array.isArray(ingress)) return 'status.loadBalancer.ingress is not a list';
  for (const i of ingress) {
    if (
      !isObject(i) ||
      (i['ip'] !== undefined && typeof i['ip'] !== 'string') ||
      (i['hostname'] !== undefined && typeof i['hostname'] !== 'string')
    ) {
      return 'a load balancer ingress is not {ip, hostname}';
    }
  }
  return undefined;
}

/**
 * A namespace label selector as `--discovery-selectors` takes it: comma-separated requirements that
 * must all hold (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`).
 */
export type LabelSelector = (labels: Readonly<Record<string, string>>) => boolean;

export function parseLabelSelector(text: string): LabelSelector {
  const reqs: LabelSelector[] = [];
  for (const raw of splitTopLevel(text)) {
    const r = raw.trim();
    if (!r) continue;
    let m: RegExpMatchArray | null;
    if ((m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(r))) {
      const [, key, op, vals] = m as unknown as [string, string, string, string];
      const set = new Set(vals.split(',').map((v) => v.trim()));
      reqs.push(op === 'in' ? (l) => l[key] !== undefined && set.has(l[key]) : (l) => l[key] === undefined || !set.has(l[key]));
    } else if ((m = /^([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)$/.exec(r))) {
      const [, key, op, val] = m as unknown as [string, string, string, string];
      reqs.push(op === '!=' ? (l) => l[key] !== val : (l) => l[key] === val);
    } else if ((m = /^!([\w./-]+)$/.exec(r))) {
      const key = m[1]!;
      reqs.push((l) => l[key] === undefined);
    } else if ((m = /^([\w./-]+)$/.exec(r))) {
      const key = m[1]!;
      reqs.push((l) => l[key] !== undefined);
    } else {
      throw new Error(`label selector "${text}": cannot read "${r}"`);
    }
  }
  return (labels) => reqs.every((req) => req(labels));
}

/** Splits on commas outside parentheses. */
function splitTopLevel(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}
