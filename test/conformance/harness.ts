// Conformance harness: one in-process meshfed per test, a mesh of raw resources the test
// edits through the registry, and SotW/delta connections that speak the protocol by hand
// and check every response for what must always hold (unique nonces, no duplicate names,
// resources of the response's type, never wrapped).
import pino from 'pino';
import { expect, test as base, vi } from 'vitest';
import { startMeshfed, type Meshfed } from '../../src/app.js';
import { DEFAULT_MESH_SOURCE } from '../../src/config/default-mesh.js';
import type { MeshCluster, RawResource } from '../../src/model/mesh.js';
import type { ServiceContribution } from '../../src/model/source.js';
import { parseMeshText } from '../../src/sources/file/parse.js';
import { meshToSource } from '../../src/sources/file/to-model.js';
import { messageType, SHORT, TO_OBJECT, TypeUrl, type XdsTypeUrl } from '../../src/envoy/protos.js';
import { encodeEntry, VersionSum } from '../../src/xds/resource.js';
import type { SubscriptionStatus } from '../../src/xds/subscription.js';
import { type DeltaResponse, RawXdsClient, type RawXdsStream, type ServiceName, type SotwResponse } from '../helpers/raw-client.js';

/** How long a test waits to conclude that no response is coming. */
export const QUIET_MS = 300;

export const T = TypeUrl;
export const ALL_TYPES: readonly XdsTypeUrl[] = [T.Cluster, T.Endpoint, T.Listener, T.Route, T.Secret];
export const FULL_STATE: readonly XdsTypeUrl[] = [T.Cluster, T.Listener];
export const PER_RESOURCE: readonly XdsTypeUrl[] = [T.Endpoint, T.Route, T.Secret];
export const short = (t: XdsTypeUrl): string => SHORT[t];

/** The per-type discovery service of each type. */
export const SERVICE_OF: Readonly<Record<XdsTypeUrl, ServiceName>> = {
  [T.Cluster]: 'cds',
  [T.Endpoint]: 'eds',
  [T.Listener]: 'lds',
  [T.Route]: 'rds',
  [T.Secret]: 'sds',
};

/** Names of the raw resources of each type in the base mesh: `${prefix}1` … `${prefix}3`. */
const PREFIX: Readonly<Record<XdsTypeUrl, string>> = {
  [T.Cluster]: 'c',
  [T.Endpoint]: 'c', // a CLA is named after its cluster
  [T.Listener]: 'l',
  [T.Route]: 'r',
  [T.Secret]: 's',
};
export const nameOf = (t: XdsTypeUrl, i: number | string): string => `${PREFIX[t]}${i}`;

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const ADS_SOURCE = { ads: {}, resource_api_version: 'V3' };

/** A raw resource body whose content depends on `rev`; a listener routes to `route`. */
export function body(t: XdsTypeUrl, name: string, rev: number, route = 'r1'): Record<string, unknown> {
  switch (t) {
    case T.Cluster:
      return { name, type: 'EDS', eds_cluster_config: { eds_config: ADS_SOURCE, service_name: name }, connect_timeout: { seconds: rev } };
    case T.Endpoint:
      return {
        cluster_name: name,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: `10.0.${rev}.1`, port_value: 8080 } } } }] }],
      };
    case T.Listener:
      return {
        name,
        api_listener: {
          api_listener: {
            '@type': HCM,
            stat_prefix: `${name}-${rev}`,
            rds: { config_source: ADS_SOURCE, route_config_name: route },
            http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
          },
        },
      };
    case T.Route:
      return {
        name,
        virtual_hosts: [
          { name: 'vh', domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster: 'c1', timeout: { seconds: rev } } }] },
        ],
      };
    case T.Secret:
      return { name, generic_secret: { secret: { inline_string: `secret-${name}-${rev}` } } };
  }
}

/** What a client should hold for one resource. */
export interface Expected {
  name: string;
  version: string;
  body: Record<string, unknown>;
}

/** Nodes: an Envoy sidecar (Istio style) and a proxyless gRPC client. */
const META = {
  fields: {
    CLUSTER_ID: { stringValue: 'cluster-a' },
    NETWORK: { stringValue: 'network-a' },
    NAMESPACE: { stringValue: 'abc' },
    SERVICE_ACCOUNT: { stringValue: 'app' },
  },
};
export const SIDECAR = { id: 'sidecar~10.0.0.1~app-1.abc~abc.svc.cluster.local', user_agent_name: 'envoy', metadata: META };
export const GRPC = { id: 'grpc-client-1', user_agent_name: 'gRPC Node Pure JS', metadata: META };
export type Node = typeof SIDECAR | typeof GRPC;

/** A service for the generated resources: CDS/EDS `outbound|<port>||<host>`, and LDS/RDS `<host>:<port>` for gRPC. */
export const FOO_HOST = 'foo.abc.svc.cluster.local';
export const FOO_CLUSTER = `outbound|8080||${FOO_HOST}`;
export const FOO_LISTENER = `${FOO_HOST}:8080`;
/** A mesh description (JSON, which is YAML) with one service on cluster-a. */
export function serviceYaml(name: string, port: number, endpoints: string[]): string {
  return JSON.stringify({
    clusters: [{ id: 'cluster-a', network: 'network-a', domain: 'cluster.local', rootCaPem: '' }],
    services: [
      {
        name,
        namespace: 'abc',
        cluster: 'cluster-a',
        ports: [{ name: 'grpc', port, protocol: 'GRPC' }],
        endpoints: endpoints.map((address) => ({ address, port, serviceAccount: name, health: 'HEALTHY' })),
      },
    ],
  });
}

export class Harness {
  readonly revs = new Map<string, { t: XdsTypeUrl; name: string; body: Record<string, unknown> }>();
  private readonly pending = new Map<string, RawResource | undefined>();
  private readonly services = new Map<string, ServiceContribution | undefined>();
  private clusters: ReadonlyMap<string, MeshCluster> | undefined;
  private readonly clients: RawXdsClient[] = [];
  private readonly streams: Array<{ close(): void }> = [];

  private constructor(readonly meshfed: Meshfed) {}

  /** A meshfed with c1..c3 (CDS and EDS), l1..l3, r1..r3, s1..s3 at revision 1, and no services. */
  static async start(): Promise<Harness> {
    const meshfed = await startMeshfed({
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      debugPort: 0,
      debounceMs: 0,
      enableAdminApi: true,
      insecureDevIdentity: true, // SDS needs an identity; the nodes' metadata gives abc/app
      log: pino({ level: 'silent' }),
    });
    meshfed.registry.removeSource(DEFAULT_MESH_SOURCE);
    const h = new Harness(meshfed);
    for (const t of ALL_TYPES) for (const i of [1, 2, 3]) h.set(t, nameOf(t, i), 1);
    h.commit();
    return h;
  }

  get address(): string {
    return `127.0.0.1:${this.meshfed.xdsPort}`;
  }

  /** Queues a raw resource at a revision (or with an explicit body); commit() publishes. */
  set(t: XdsTypeUrl, name: string, rev: number | Record<string, unknown>): this {
    const b = typeof rev === 'number' ? body(t, name, rev) : rev;
    this.revs.set(`${t} ${name}`, { t, name, body: b });
    this.pending.set(`${t} ${name}`, { typeUrl: t, name, body: b });
    return this;
  }

  del(t: XdsTypeUrl, name: string): this {
    this.revs.delete(`${t} ${name}`);
    this.pending.set(`${t} ${name}`, undefined);
    return this;
  }

  /** Sets (or with undefined yaml, removes) the services of a mesh description, for generated resources. */
  setServices(yaml: string | undefined): this {
    for (const k of this.services.keys()) this.services.set(k, undefined);
    if (yaml) {
      const src = meshToSource(parseMeshText(yaml, 'test.yaml'), 'test');
      for (const [k, v] of src.services) this.services.set(k, v);
      this.clusters = src.clusters;
    }
    return this;
  }

  /** Publishes the queued changes at once, as one snapshot. */
  commit(): void {
    this.meshfed.registry.patchSource('test', {
      raw: new Map(this.pending),
      services: new Map(this.services),
      ...(this.clusters ? { clusters: this.clusters } : {}),
    });
    this.pending.clear();
    for (const [k, v] of this.services) if (!v) this.services.delete(k);
    this.meshfed.registry.flush();
  }

  /** The resource as a client must receive it: content-hash version and decoded body. */
  expected(t: XdsTypeUrl, name: string): Expected {
    const r = this.revs.get(`${t} ${name}`);
    if (!r) throw new Error(`test bug: no resource ${short(t)} ${name}`);
    return expectedOf(t, name, r.body);
  }

  /** The SotW version_info of a client holding exactly these resources of a type. */
  sotwVersion(t: XdsTypeUrl, held: readonly string[]): string {
    const sum = new VersionSum();
    for (const n of held) {
      const r = this.revs.get(`${t} ${n}`);
      if (r) sum.add(encodeEntry(t, n, stripType(r.body)));
    }
    return sum.toString();
  }

  client(): RawXdsClient {
    const c = new RawXdsClient(this.address);
    this.clients.push(c);
    return c;
  }

  sotw(service: ServiceName, node: Node = SIDECAR): SotwConn {
    const c = new SotwConn(this.client().sotw(service), node, service === 'ads');
    this.streams.push(c);
    return c;
  }

  delta(service: ServiceName, node: Node = SIDECAR): DeltaConn {
    const c = new DeltaConn(this.client().delta(service), node, service === 'ads');
    this.streams.push(c);
    return c;
  }

  /** A SotW or delta stream for one type, on ADS or on the type's own service. */
  open(kind: 'sotw', t: XdsTypeUrl, ads: boolean, node?: Node): SotwConn;
  open(kind: 'delta', t: XdsTypeUrl, ads: boolean, node?: Node): DeltaConn;
  open(kind: 'sotw' | 'delta', t: XdsTypeUrl, ads: boolean, node?: Node): SotwConn | DeltaConn;
  open(kind: 'sotw' | 'delta', t: XdsTypeUrl, ads: boolean, node: Node = SIDECAR): SotwConn | DeltaConn {
    const service = ads ? 'ads' : SERVICE_OF[t];
    return kind === 'sotw' ? this.sotw(service, node) : this.delta(service, node);
  }

  /** The server-side per-type state of the only open stream. */
  serverState(t: XdsTypeUrl): SubscriptionStatus {
    const streams = [...this.meshfed.xds.streams];
    expect(streams).toHaveLength(1);
    const st = streams[0]!.typeStates().get(t);
    if (!st) throw new Error(`no server state for ${short(t)}`);
    return st;
  }

  /**
   * Waits until the server has applied a subscription change (the names it holds for the type
   * on the only open stream), so that a mesh change made next is judged against it.
   */
  async subscribed(t: XdsTypeUrl, names: readonly string[], wildcard = false): Promise<void> {
    await vi.waitFor(() => {
      const st = this.serverState(t);
      expect([...st.names].sort()).toEqual([...names].sort());
      expect(st.wildcard).toBe(wildcard);
    });
  }

  /** Waits until no stream is open and no table has a watcher (case 11: nothing leaks). */
  async released(): Promise<void> {
    await vi.waitFor(() => {
      expect(this.meshfed.xds.streams.size).toBe(0);
      expect([...this.meshfed.store.allTables()].filter((tb) => tb.watchers.size > 0).map((tb) => tb.typeUrl)).toEqual([]);
    });
  }

  async nackCount(t: XdsTypeUrl): Promise<number> {
    const m = this.meshfed.metrics.registry.getSingleMetric('meshfed_xds_nacks_total');
    const v = (await m!.get()).values.find((x) => x.labels['type'] === short(t));
    return v?.value ?? 0;
  }

  async stop(): Promise<void> {
    for (const s of this.streams) s.close();
    for (const c of this.clients) c.close();
    await this.meshfed.stop(1000);
  }
}

function stripType(b: Record<string, unknown>): Record<string, unknown> {
  const { '@type': _t, ...rest } = b;
  return rest;
}

export function expectedOf(t: XdsTypeUrl, name: string, b: Record<string, unknown>): Expected {
  const type = messageType(t);
  const bytes = type.encode(type.fromObject(stripType(b))).finish();
  return { name, version: encodeEntry(t, name, stripType(b)).version, body: type.toObject(type.decode(bytes), TO_OBJECT) };
}

/**
 * `it` with a fresh meshfed per test as the `h` fixture, stopped afterwards; safe in concurrent
 * suites. Use `it.for(cases)(name, (c, { h }) => …)` for parameterised cases.
 */
export const it = base.extend<{ h: Harness }>({
  // eslint-disable-next-line no-empty-pattern
  h: async ({}, use) => {
    const h = await Harness.start();
    try {
      await use(h);
    } finally {
      await h.stop();
    }
  },
});

interface RequestOpts {
  version?: string;
  nonce?: string;
  error?: { code: number; message: string };
  node?: object | null;
  typeUrl?: string;
}

/** Checks every response for the protocol's invariants. */
abstract class Conn<Res extends SotwResponse | DeltaResponse> {
  protected nodeSent = false;
  readonly nonces = new Set<string>();
  readonly last = new Map<string, Res>();

  constructor(
    readonly raw: RawXdsStream<Res>,
    readonly node: Node,
    readonly ads: boolean,
  ) {}

  protected nodeFor(opts: RequestOpts): object | undefined {
    if (opts.node !== undefined) {
      this.nodeSent = true;
      return opts.node ?? undefined;
    }
    if (this.nodeSent) return undefined;
    this.nodeSent = true;
    return this.node;
  }

  async next(timeoutMs = 3000): Promise<Res> {
    const r = await this.raw.next(timeoutMs);
    expect(r.nonce, 'every response has a nonce').not.toBe('');
    expect(this.nonces.has(r.nonce), `nonce ${r.nonce} is unique within the stream`).toBe(false);
    this.nonces.add(r.nonce);
    const names = r.resources.map((x) => x.name);
    expect(new Set(names).size, `no name twice in one response: ${names.join(', ')}`).toBe(names.length);
    for (const x of r.resources) {
      // Never wrapped in envoy.service.discovery.v3.Resource, never another type (cases 54, 57).
      expect(x.typeUrl, `resource ${x.name} is a ${r.type_url}`).toBe(r.type_url);
    }
    this.check(r);
    this.last.set(r.type_url, r);
    return r;
  }

  protected check(_r: Res): void {}

  /** Asserts that no response arrives within the window (QUIET_MS unless given). */
  none(windowMs = QUIET_MS): Promise<void> {
    return this.raw.none(windowMs);
  }

  lastOf(t: string): Res {
    const r = this.last.get(t);
    if (!r) throw new Error(`test bug: no response of ${t} yet`);
    return r;
  }

  close(): void {
    this.raw.close();
  }
}

export class SotwConn extends Conn<SotwResponse> {
  readonly names = new Map<string, string[]>();

  /** A request; the node goes on the first one only. */
  send(t: string, names: readonly string[], opts: RequestOpts = {}): void {
    this.names.set(t, [...names]);
    const node = this.nodeFor(opts);
    this.raw.send({
      ...(node ? { node } : {}),
      type_url: opts.typeUrl ?? t,
      resource_names: names,
      version_info: opts.version ?? '',
      response_nonce: opts.nonce ?? '',
      ...(opts.error ? { error_detail: opts.error } : {}),
    });
  }

  /** ACKs the last response of the type, with the current (or new) names. */
  ack(t: string, names?: readonly string[]): void {
    const r = this.lastOf(t);
    this.send(t, names ?? this.names.get(t) ?? [], { version: r.version_info, nonce: r.nonce });
  }

  /** NACKs the last response of the type, reporting `version` as the last accepted one. */
  nack(t: string, version: string, message = 'rejected by test', names?: readonly string[]): void {
    const r = this.lastOf(t);
    this.send(t, names ?? this.names.get(t) ?? [], { version, nonce: r.nonce, error: { code: 3, message } });
  }
}

export class DeltaConn extends Conn<DeltaResponse> {
  send(t: string, req: { sub?: readonly string[]; unsub?: readonly string[]; initial?: Record<string, string> } & RequestOpts = {}): void {
    const node = this.nodeFor(req);
    this.raw.send({
      ...(node ? { node } : {}),
      type_url: req.typeUrl ?? t,
      resource_names_subscribe: req.sub ?? [],
      resource_names_unsubscribe: req.unsub ?? [],
      initial_resource_versions: req.initial ?? {},
      response_nonce: req.nonce ?? '',
      ...(req.error ? { error_detail: req.error } : {}),
    });
  }

  ack(t: string, change: { sub?: readonly string[]; unsub?: readonly string[] } = {}): void {
    this.send(t, { ...change, nonce: this.lastOf(t).nonce });
  }

  nack(t: string, message = 'rejected by test'): void {
    this.send(t, { nonce: this.lastOf(t).nonce, error: { code: 3, message } });
  }

  protected override check(r: DeltaResponse): void {
    for (const x of r.resources) expect(x.version, `delta resource ${x.name} has a version`).toBeTruthy();
    expect(new Set(r.removed_resources).size, 'no name twice in removed_resources').toBe(r.removed_resources.length);
    const sent = new Set(r.resources.map((x) => x.name));
    for (const n of r.removed_resources) expect(sent.has(n), `${n} both sent and removed`).toBe(false);
  }
}

const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * A SotW response of type t carrying exactly `names` (any order), with their current content,
 * and the version_info of a client that then holds `held` (default: `names`).
 */
export function expectSotw(h: Harness, r: SotwResponse, t: XdsTypeUrl, names: readonly string[], held: readonly string[] = names): void {
  expect(r.type_url).toBe(t);
  const got = r.resources.map((x) => ({ name: x.name, body: x.body })).sort(byName);
  const want = names
    .map((n) => h.expected(t, n))
    .map(({ name, body: b }) => ({ name, body: b }))
    .sort(byName);
  expect(got).toEqual(want);
  expect(r.version_info).toBe(h.sotwVersion(t, held));
}

/** A delta response of type t carrying exactly `names` with their current versions and content, and `removed`. */
export function expectDelta(h: Harness, r: DeltaResponse, t: XdsTypeUrl, names: readonly string[], removed: readonly string[] = []): void {
  expect(r.type_url).toBe(t);
  const got = r.resources.map((x) => ({ name: x.name, version: x.version, body: x.body })).sort(byName);
  const want = names.map((n) => h.expected(t, n)).sort(byName);
  expect(got).toEqual(want);
  expect([...r.removed_resources].sort()).toEqual([...removed].sort());
}

/** The variants a case runs in: ADS and the type's own service, for each type given. */
export function variants(types: readonly XdsTypeUrl[]): Array<{ t: XdsTypeUrl; ads: boolean; label: string }> {
  return types.flatMap((t) => [
    { t, ads: true, label: `${short(t)} on ADS` },
    { t, ads: false, label: `${short(t)} on its own service` },
  ]);
}

export type AnyConn = SotwConn | DeltaConn;
export type Kind = 'sotw' | 'delta';
export const KINDS: readonly Kind[] = ['sotw', 'delta'];

/** A first (or subscribing) request for names: SotW resource_names, or delta resource_names_subscribe. */
export function request(c: AnyConn, t: string, names: readonly string[], opts: RequestOpts = {}): void {
  if (c instanceof SotwConn) c.send(t, names, opts);
  else c.send(t, { sub: names, ...opts });
}

/** ACKs the last response of a type, changing nothing. */
export function ack(c: AnyConn, t: string): void {
  c.ack(t);
}

/** Exactly these resources (current content) in a response of either kind. */
export function expectResources(
  h: Harness,
  r: SotwResponse | DeltaResponse,
  t: XdsTypeUrl,
  names: readonly string[],
  opts: { held?: readonly string[]; removed?: readonly string[] } = {},
): void {
  if ('version_info' in r) expectSotw(h, r, t, names, opts.held);
  else expectDelta(h, r, t, names, opts.removed);
}

/** A follow-up request on the last nonce that adds names (SotW: the full list grows; delta: subscribe). */
export function subscribeMore(c: AnyConn, t: string, added: readonly string[]): void {
  if (c instanceof SotwConn) c.ack(t, [...(c.names.get(t) ?? []), ...added]);
  else c.ack(t, { sub: added });
}

/** A follow-up request on the last nonce that drops names (SotW: the full list shrinks; delta: unsubscribe). */
export function unsubscribe(c: AnyConn, t: string, removed: readonly string[]): void {
  if (c instanceof SotwConn)
    c.ack(
      t,
      (c.names.get(t) ?? []).filter((n) => !removed.includes(n)),
    );
  else c.ack(t, { unsub: removed });
}
