// What the api-proxy lets a peer ask the local apiserver: read-only by construction, whatever the proxy's RBAC.
// A request is parsed strictly and rebuilt from its parsed parts (the apiserver never sees the peer's raw URL), so a
// path the parser and the apiserver would read differently (`..`, `%2F`, `//`, `;`) is refused instead of normalised.
//
// Allowed: GET of the discovery documents kubectl and client-go need, and get/list/watch of what remote discovery
// reads (Istio's remote cluster: namespaces, services, endpointslices, pods, nodes). Nothing else: no other resource
// (Secrets, ConfigMaps), no subresource (exec, attach, portforward, proxy, log, status), no other group or version.

/** Why a request was refused (403, or 429 for `concurrency`): a closed set, for the metric's label. */
export const DENY_REASONS = ['method', 'body', 'path', 'query', 'resource', 'subresource', 'upgrade', 'concurrency'] as const;
export type DenyReason = (typeof DENY_REASONS)[number];

/** A watch asks the apiserver to end after at most this long (client-go asks for 5–10 minutes). */
export const MAX_WATCH_SECONDS = 600;

export type Verdict =
  | {
      readonly ok: true /** Path and canonical query to send upstream. */;
      readonly upstream: string;
      readonly watch: boolean;
      readonly timeoutSeconds: number | undefined;
    }
  | { readonly ok: false; readonly reason: DenyReason; readonly message: string };

const DISCOVERY = new Set(['/version', '/api', '/api/v1', '/apis', '/apis/discovery.k8s.io', '/apis/discovery.k8s.io/v1']);

/** Readable resources by group/version, and whether they live in a namespace. */
const RESOURCES: ReadonlyMap<string, ReadonlyMap<string, { namespaced: boolean }>> = new Map([
  [
    'api/v1',
    new Map([
      ['namespaces', { namespaced: false }],
      ['nodes', { namespaced: false }],
      ['services', { namespaced: true }],
      ['pods', { namespaced: true }],
    ]),
  ],
  ['apis/discovery.k8s.io/v1', new Map([['endpointslices', { namespaced: true }]])],
]);

/** Each allowed query parameter and the values it may take. Nothing else passes (dryRun, pretty, fieldManager…). */
const QUERY: ReadonlyMap<string, RegExp> = new Map([
  ['watch', /^(true|false|1|0)$/],
  ['allowWatchBookmarks', /^(true|false)$/],
  ['sendInitialEvents', /^(true|false)$/],
  ['resourceVersion', /^[0-9]{0,20}$/],
  ['resourceVersionMatch', /^(Exact|NotOlderThan)$/],
  ['limit', /^[0-9]{1,7}$/],
  ['timeoutSeconds', /^[0-9]{1,9}$/],
  // client-go's request deadline (a Go duration, `?timeout=32s`): the apiserver only ends the request sooner.
  ['timeout', /^([0-9]{1,6}(\.[0-9]{1,6})?(ns|us|ms|s|m|h)){1,4}$/],
  // An opaque continue token (base64 of JSON); selectors are printable text.
  ['continue', /^[A-Za-z0-9+/=_-]{0,4096}$/],
  ['labelSelector', /^[\x20-\x7e]{0,4096}$/],
  ['fieldSelector', /^[\x20-\x7e]{0,4096}$/],
]);

const SEGMENT = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/; // a DNS-1123 subdomain: names, namespaces, resources
const RAW_PATH = /^(\/[A-Za-z0-9._-]+)+$/; // no `%`, no empty segment, no trailing slash, nothing the apiserver would decode

const deny = (reason: DenyReason, message: string): Verdict => ({ ok: false, reason, message });

/** Decides one request from its method, raw URL and whether it carries a body. */
export function classify(method: string | undefined, rawUrl: string | undefined, hasBody: boolean): Verdict {
  if (method !== 'GET') return deny('method', `${method ?? '?'} is not allowed: the api-proxy is read-only (GET only)`);
  if (hasBody) return deny('body', 'a request body is not allowed');
  const url = rawUrl ?? '';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (!RAW_PATH.test(path)) return deny('path', 'the path is not in canonical form');
  const segs = path.split('/').slice(1);
  if (segs.some((s) => s === '.' || s === '..')) return deny('path', 'the path is not in canonical form');

  const rawQuery = q < 0 ? '' : url.slice(q + 1);

  if (DISCOVERY.has(path)) return withQuery(path, rawQuery, true);
  const gv = segs[0] === 'api' ? segs.slice(0, 2) : segs[0] === 'apis' ? segs.slice(0, 3) : undefined;
  const resources = gv && RESOURCES.get(gv.join('/'));
  if (!gv || !resources)
    return deny('resource', `${path} is not readable through the api-proxy (only namespaces, services, pods, nodes, endpointslices)`);
  const rest = segs.slice(gv.length);
  let ns: string | undefined;
  let res: string | undefined;
  let name: string | undefined;
  let extra: string[];
  if (rest[0] === 'namespaces' && rest.length >= 3) [ns, res, name, ...extra] = rest.slice(1);
  else [res, name, ...extra] = rest;
  const def = res === undefined ? undefined : resources.get(res);
  if (!def)
    return deny(
      'resource',
      `${res ?? path} is not readable through the api-proxy (only namespaces, services, pods, nodes, endpointslices)`,
    );
  if (extra.length) return deny('subresource', `subresources (${extra.join('/')}) are not readable through the api-proxy`);
  if (ns !== undefined && !def.namespaced) return deny('path', `${res} is not namespaced`);
  if (ns === undefined && def.namespaced && name !== undefined) return deny('path', `a ${res} is named within a namespace`);
  for (const s of [ns, name]) if (s !== undefined && !SEGMENT.test(s)) return deny('path', 'a name or namespace is not a DNS-1123 name');
  return withQuery(path, rawQuery, false);
}

/** The verdict for an allowed path: its query checked and rebuilt, a watch's duration capped. */
function withQuery(path: string, rawQuery: string, discovery: boolean): Verdict {
  const query = parseQuery(rawQuery);
  if (typeof query === 'string') return deny('query', query);
  if (discovery && [...query.keys()].some((k) => k !== 'timeout'))
    return deny('query', 'discovery documents take no query parameters but timeout');
  const watch = query.get('watch') === 'true' || query.get('watch') === '1';
  let timeoutSeconds: number | undefined;
  if (watch || query.has('timeoutSeconds')) {
    // Long-running requests are bounded: the apiserver is asked to end them itself.
    timeoutSeconds = Math.min(Number(query.get('timeoutSeconds') ?? MAX_WATCH_SECONDS), MAX_WATCH_SECONDS);
    query.set('timeoutSeconds', String(timeoutSeconds));
  }
  return { ok: true, upstream: query.size ? `${path}?${query.toString()}` : path, watch, timeoutSeconds };
}

/** The allowed parameters, each at most once and with a valid value; else why not. */
function parseQuery(raw: string): URLSearchParams | string {
  let params: URLSearchParams;
  try {
    // Reject before decoding what decodes ambiguously: `;` separators and malformed escapes.
    if (raw.includes(';')) return 'the query is malformed';
    decodeURIComponent(raw.replace(/\+/g, ' '));
    params = new URLSearchParams(raw);
  } catch {
    return 'the query is malformed';
  }
  const out = new URLSearchParams();
  for (const [k, v] of params) {
    const re = QUERY.get(k);
    if (!re) return `query parameter ${JSON.stringify(k.slice(0, 64))} is not allowed`;
    if (out.has(k)) return `query parameter ${k} is given twice`;
    if (!re.test(v)) return `query parameter ${k} has an invalid value`;
    out.set(k, v);
  }
  return out;
}
