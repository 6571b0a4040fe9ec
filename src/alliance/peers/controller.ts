// The peer controller, for both kinds of peer: per peer, on change and every poll interval, fetch the
// peer's public.json, then (with a fresh 60 s token) its federation.json or multicluster.json; keep the
// allow-list of peers (PeerDirectory) the exporter and api-proxy check tokens against; and, on the one
// replica that leads, write the CR's status as Deckhouse does (metadataCache + conditions, merge-patch on
// /status). Every replica fetches and serves; only status writes are the leader's.
//   federation peer   → the federation source (a cluster of a foreign trust domain, its public services)
//   multicluster peer → probe of its api-proxy (`GET /api`, an `api` token), and a remote cluster watched
//                       through that api-proxy by the kube source, as if a remote Secret named it
import { metadataEndpointProblem } from '../../sources/file/validate.js';
import type { Logger } from 'pino';
import type { FederationSource } from '../../sources/federation/federation-source.js';
import type { ClusterStatus } from '../../sources/kube/kube-source.js';
import type { PeerRemote } from '../../sources/kube/remote-secrets.js';
import { multiclusterClusterId } from '../exporter/documents.js';
import type {
  FederationMetadata,
  FederationPeerSpec,
  MulticlusterMetadata,
  MulticlusterPeerSpec,
  PeerDirectory,
  PublicMetadata,
  TokenMinter,
  TokenScope,
} from '../types.js';
import { type ApiTokenPolicy, apiToken, DECKHOUSE_API_TOKEN, type HeldToken } from './api-token.js';
import { API_READY, type Condition, mergeConditions, PRIVATE_READY, type Probe, PUBLIC_READY } from './conditions.js';
import { fetchJson, type FetchFailure, type PeerTls } from './fetch.js';
import { apiServerUrl, checkFederation, checkMulticluster, checkPublic } from './metadata.js';

export type PeerOrigin = 'kube' | 'file';
export type PeerKind = 'federation' | 'multicluster';
export type PeerSpec = ({ readonly kind: 'federation' } & FederationPeerSpec) | ({ readonly kind: 'multicluster' } & MulticlusterPeerSpec);

/** Where a peer's status goes: the IstioFederation's or IstioMulticluster's /status subresource (kube peers only). */
export interface StatusSink {
  /** The CR's current status.conditions, so conditions of other types are kept. */
  conditions(name: string): readonly unknown[] | undefined;
  /** The CR's status.metadataCache (as last written), unchecked. */
  metadataCache?(name: string): { public?: unknown; private?: unknown } | undefined;
  patch(name: string, status: PeerStatus): Promise<void>;
}

/** `status` of an IstioFederation or IstioMulticluster, as Deckhouse writes it. */
export interface PeerStatus {
  metadataCache?: { public?: PublicMetadata; private?: Required<FederationMetadata> | MulticlusterMetadata };
  conditions: Condition[];
}

/** Where multicluster peers' remote clusters go: the kube source (the second input beside remote Secrets). */
export interface RemoteClusterSink {
  /** The cluster whose network this is (the local one, a remote Secret's), other than `except`; a peer may not claim it. */
  networkOwner?(network: string, except: string): string | undefined;
  /**
   * `remotes`: the peers whose metadata names a cluster now; `declared`: the names of every declared multicluster
   * peer, polled or not (undefined until each origin has declared its peers), so a writer removes only what is gone.
   */
  setPeerRemotes(remotes: readonly PeerRemote[], declared: ReadonlySet<string> | undefined): void;
  clusterStatus(id: string): ClusterStatus | undefined;
}

export interface PeerControllerOptions {
  /** This cluster's trust domain: a federation peer claiming it is refused; multicluster peers share it. */
  readonly localTrustDomain: string;
  /** With Kubernetes discovery, the local cluster domain (default the trust domain); multicluster peers need both equal. */
  readonly localClusterDomain?: string;
  readonly mintToken: TokenMinter;
  /** True on the replica that writes status (Lease-elected); every replica fetches and serves. */
  readonly isLeader: () => boolean;
  readonly pollIntervalMs: number;
  readonly fetchTimeoutMs: number;
  readonly maxPublicBytes: number;
  readonly maxPrivateBytes: number;
  readonly source: FederationSource;
  readonly status?: StatusSink;
  /** The multicluster `api` token's lifetime and renewal (default Deckhouse's: 366 days, re-minted under 30 left). */
  readonly apiToken?: ApiTokenPolicy;
  /** The `api` token kept for a peer from before (its remote Secret), if it may be reused; asked once per peer. */
  readonly storedApiToken?: (peer: string, audience: string) => Promise<HeldToken | undefined>;
  /** The origins that declare multicluster peers (mesh file, CRs): until each has, no peer counts as gone. Default none. */
  readonly multiclusterOrigins?: readonly PeerOrigin[];
  readonly log: Logger;
}

export const PEER_DEFAULTS = {
  pollIntervalMs: 60_000,
  fetchTimeoutMs: 10_000,
  maxPublicBytes: 1 << 20,
  maxPrivateBytes: 8 << 20,
  tokenTtlSeconds: 60,
} as const;

type ConditionRow = { readonly status: string; readonly reason: string; readonly message: string };

/** One row of /debug/peers and `meshfed status`. */
export interface PeerRow {
  readonly name: string;
  readonly kind: PeerKind;
  readonly origin: PeerOrigin;
  /** A multicluster peer's is the local one (they share it). */
  readonly trustDomain: string;
  readonly metadataEndpoint: string;
  readonly clusterUUID?: string;
  readonly public: ConditionRow;
  readonly private: ConditionRow;
  /** Multicluster: RemoteAPIServerReady, the probe of the peer's api-proxy. */
  readonly api?: ConditionRow;
  /** Multicluster: the remote cluster joined through the api-proxy, as /debug/clusters shows it. */
  readonly remoteCluster?: {
    readonly id: string;
    readonly server: string;
    readonly network: string;
    readonly state: string;
    readonly endpoints: number;
    readonly rotating: boolean;
    readonly lastError?: string;
  };
  readonly lastSuccess?: string;
  readonly fetchError: 0 | 1;
  readonly gateways: readonly string[];
  /** Since when the federation source (or the remote cluster's watches) could not reach the peer. */
  readonly unreachableSince?: string;
  /** Federation peers only (a multicluster peer imports nothing: remoteCluster says what its endpoints do). */
  readonly servicesImported?: number;
  /** Federation peers only: fresh, stale (demoted) or withdrawn, what the last good imports are doing. */
  readonly imports?: 'none' | 'fresh' | 'stale' | 'withdrawn';
  /** Federation peers only. */
  readonly refusedServices?: readonly string[];
}

/** Whole-second RFC 3339, as Kubernetes writes times. */
const rfc3339 = (t = Date.now()): string => new Date(t).toISOString().replace(/\.\d+Z$/, 'Z');

const keyOf = (kind: PeerKind, name: string): string => `${kind}/${name}`;

/** Stands for the user and password of a metadataEndpoint that had them (the peer is refused). */
export const REDACTED_USER = 'redacted';

/** Which kind of peer may present a token of each scope. */
const SCOPE_KIND: Readonly<Record<TokenScope, PeerKind>> = {
  api: 'multicluster',
  'private-multicluster': 'multicluster',
  'private-federation': 'federation',
};
let peersAdded = 0;

class Peer {
  conditions: Condition[] = [];
  publicCache: PublicMetadata | undefined;
  privateCache: Required<FederationMetadata> | MulticlusterMetadata | undefined;
  lastSuccess: string | undefined;
  fetchError: 0 | 1 = 0;
  /** Multicluster: the `api` token kept for the remote cluster, and the cluster handed to the kube source. */
  apiToken: HeldToken | undefined;
  /** Whether the remote cluster came from the metadata cached in the CR's status (fromStatus). */
  joinedFromStatus = false;
  /** Whether the stored token (storedApiToken) has been looked for. */
  storedTokenRead = false;
  remote: PeerRemote | undefined;
  /** Declaration order: the CR's creationTimestamp (else when first seen), then the order added. */
  readonly since: number;
  readonly seq = ++peersAdded;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;

  constructor(
    public spec: PeerSpec,
    readonly origin: PeerOrigin,
    private readonly ctl: PeerController,
  ) {
    this.since = spec.createdAt ?? Date.now();
  }

  /** Whether this peer was declared before `other`. */
  before(other: Peer): boolean {
    return this.since !== other.since ? this.since < other.since : this.seq < other.seq;
  }

  get key(): string {
    return keyOf(this.spec.kind, this.spec.name);
  }

  /** Polls now (or right after the poll in flight), then every interval. */
  kick(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.ctl
      .poll(this)
      .catch((err: unknown) => this.ctl.log.error({ peer: this.spec.name, err }, 'peer poll failed'))
      .finally(() => {
        this.running = false;
        if (this.stopped) return;
        if (this.again) {
          this.again = false;
          this.kick();
          return;
        }
        this.timer = setTimeout(() => this.kick(), this.ctl.pollIntervalMs);
        this.timer.unref();
      });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}

/** Deckhouse's condition texts for a multicluster peer (its federation conditions carry no message). */
const TEXT = {
  federation: { publicOk: '', privateOk: '', awaitingPublic: undefined, pendingStatus: 'False' },
  multicluster: {
    publicOk: 'Public metadata exchange succeeded.',
    privateOk: 'Private metadata exchange succeeded.',
    awaitingPublic: 'Public metadata exchange has not succeeded yet.',
    pendingStatus: 'Unknown',
  },
} as const;

const AWAITING_PRIVATE: Probe = {
  type: API_READY,
  status: 'Unknown',
  reason: 'AwaitingPrivate',
  message: 'Private metadata exchange has not succeeded yet.',
};

type Refusal = { readonly reason: string; readonly message: string };

export class PeerController implements PeerDirectory {
  /** By kind/name: an IstioFederation and an IstioMulticluster may share a name. */
  private readonly refusals = new WeakMap<PeerSpec, Refusal | null>();
  private readonly peers = new Map<string, Peer>();
  private readonly specs = new Map<string, readonly PeerSpec[]>();
  private readonly probeListeners = new Set<() => void>();
  private readonly statusSinks = new Map<PeerKind, StatusSink>();
  private remoteSink: RemoteClusterSink | undefined;
  private warnedNoRemotes = false;
  /** The declared multicluster peers as last handed over (names, or '?' while not known). */
  private declaredKey = '';

  private readonly o: PeerControllerOptions;

  constructor(o: PeerControllerOptions) {
    this.o = o;
    if (o.status) this.statusSinks.set('federation', o.status);
  }

  /** Where kube peers' status goes (set once the CR watch exists). */
  useStatusSink(sink: StatusSink, kind: PeerKind = 'federation'): void {
    this.statusSinks.set(kind, sink);
  }

  /** Where multicluster peers' remote clusters go (the kube source); without one they are probed only. */
  useRemoteClusters(sink: RemoteClusterSink): void {
    this.remoteSink = sink;
    this.pushRemotes();
  }

  get log(): Logger {
    return this.o.log;
  }

  get pollIntervalMs(): number {
    return this.o.pollIntervalMs;
  }

  /** The peers of one kind one origin declares now (all of them: missing ones are removed). Kube CRs win a name clash. */
  setPeers(origin: PeerOrigin, specs: readonly FederationPeerSpec[]): void;
  setPeers(origin: PeerOrigin, specs: readonly MulticlusterPeerSpec[], kind: 'multicluster'): void;
  setPeers(origin: PeerOrigin, specs: readonly (FederationPeerSpec | MulticlusterPeerSpec)[], kind: PeerKind = 'federation'): void {
    this.specs.set(
      `${origin}/${kind}`,
      specs.map((s) => ({ ...s, kind }) as PeerSpec),
    );
    const wanted = new Map<string, { spec: PeerSpec; origin: PeerOrigin }>();
    for (const o of ['kube', 'file'] as const) {
      for (const k of ['federation', 'multicluster'] as const) {
        for (const spec of this.specs.get(`${o}/${k}`) ?? []) {
          const key = keyOf(k, spec.name);
          const had = wanted.get(key);
          if (had) {
            if (had.origin !== o)
              this.o.log.warn(
                { peer: spec.name, kind: k },
                `${k} peer ${spec.name} is declared by a custom resource and the mesh file; the custom resource wins`,
              );
            continue;
          }
          wanted.set(key, { spec, origin: o });
        }
      }
    }
    let remotesChanged = false;
    for (const [key, peer] of this.peers) {
      if (wanted.has(key)) continue;
      this.o.log.info({ peer: peer.spec.name, kind: peer.spec.kind }, `${peer.spec.kind} peer removed`);
      peer.stop();
      this.peers.delete(key);
      if (peer.spec.kind === 'federation') this.o.source.remove(peer.spec.name);
      else remotesChanged = true;
    }
    for (const [key, { spec, origin }] of wanted) {
      const peer = this.peers.get(key);
      if (peer && peer.origin === origin && JSON.stringify(peer.spec) === JSON.stringify(spec)) continue;
      if (peer) {
        peer.spec = spec;
        peer.kick();
        continue;
      }
      this.o.log.info({ peer: spec.name, kind: spec.kind, origin, endpoint: spec.metadataEndpoint }, `${spec.kind} peer added`);
      const p = new Peer(spec, origin, this);
      this.peers.set(key, p);
      p.kick();
    }
    if (remotesChanged || this.declaredMulticlusters().key !== this.declaredKey) this.pushRemotes();
  }

  /** Every declared multicluster peer's name, once every origin of them has declared its peers. */
  private declaredMulticlusters(): { names: ReadonlySet<string> | undefined; key: string } {
    const known = (this.o.multiclusterOrigins ?? []).every((o) => this.specs.has(`${o}/multicluster`));
    if (!known) return { names: undefined, key: '?' };
    const names = [...this.peers.values()]
      .filter((p) => p.spec.kind === 'multicluster')
      .map((p) => p.spec.name)
      .sort();
    return { names: new Set(names), key: JSON.stringify(names) };
  }

  /** PeerDirectory: the peers this cluster federates or joins with, by the UUID their public metadata gave. */
  publicMetadata(clusterUUID: string, scope?: TokenScope): PublicMetadata | undefined {
    const p = this.holder(clusterUUID);
    return p && (!scope || SCOPE_KIND[scope] === p.spec.kind) ? p.publicCache : undefined;
  }

  /** The peer a clusterUUID belongs to: of those whose public.json claims it, the one declared first. */
  private holder(clusterUUID: string, except?: Peer): Peer | undefined {
    let first: Peer | undefined;
    for (const p of this.peers.values()) {
      if (p === except || p.publicCache?.clusterUUID !== clusterUUID || this.refusal(p.spec)) continue;
      if (!first || p.before(first)) first = p;
    }
    return first;
  }

  /**
   * A peer declared earlier that has not fetched its public.json since a restart, whose CR's status caches this UUID:
   * it still holds the UUID (an impostor polled first must not be sent tokens minted for it meanwhile).
   */
  private cachedHolder(clusterUUID: string, except: Peer): Peer | undefined {
    for (const p of this.peers.values()) {
      if (p === except || p.publicCache || p.origin !== 'kube' || !p.before(except) || this.refusal(p.spec)) continue;
      const cached = this.statusSinks.get(p.spec.kind)?.metadataCache?.(p.spec.name)?.public as { clusterUUID?: unknown } | undefined;
      if (cached?.clusterUUID === clusterUUID) return p;
    }
    return undefined;
  }

  /** Called after every probe of any peer (tests and status pages wait on it). */
  onProbe(fn: () => void): () => void {
    this.probeListeners.add(fn);
    return () => this.probeListeners.delete(fn);
  }

  rows(): PeerRow[] {
    return [...this.peers.values()]
      .sort((a, b) => (a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : a.spec.kind < b.spec.kind ? -1 : 1))
      .map((p) => {
        const cond = (type: string): ConditionRow => {
          const c = p.conditions.find((x) => x.type === type);
          return { status: c?.status ?? 'Unknown', reason: c?.reason ?? '', message: c?.message ?? '' };
        };
        const common = {
          name: p.spec.name,
          kind: p.spec.kind,
          origin: p.origin,
          metadataEndpoint: p.spec.metadataEndpoint,
          clusterUUID: p.publicCache?.clusterUUID,
          public: cond(PUBLIC_READY),
          private: cond(PRIVATE_READY),
          lastSuccess: p.lastSuccess,
          fetchError: p.fetchError,
        };
        if (p.spec.kind === 'multicluster') {
          // Only the cluster this peer joined: a remote Secret or another peer may name the same id.
          const found = p.remote && this.remoteSink?.clusterStatus(p.remote.clusterId);
          const c = found?.peer === p.spec.name ? found : undefined;
          return {
            ...common,
            trustDomain: this.o.localTrustDomain,
            api: cond(API_READY),
            remoteCluster: c && {
              id: c.cluster,
              server: c.server ?? '',
              network: c.network ?? p.remote?.network ?? '',
              state: c.state,
              endpoints: c.endpoints,
              rotating: c.rotating,
              lastError: c.lastError,
            },
            gateways: (p.remote?.gateways ?? []).map((g) => `${g.address}:${g.port}`),
            unreachableSince: c && c.stalenessSeconds > 0 ? new Date(Date.now() - c.stalenessSeconds * 1000).toISOString() : undefined,
          };
        }
        const imp = this.o.source.status(p.spec.name);
        return {
          ...common,
          trustDomain: p.spec.trustDomain,
          servicesImported: imp?.servicesImported ?? 0,
          gateways: imp?.gateways ?? [],
          imports: !imp ? 'none' : imp.phase === 'demoted' ? 'stale' : imp.phase,
          unreachableSince: imp?.unreachableSince,
          refusedServices: imp?.refusedServices ?? [],
        };
      });
  }

  /** Re-polls every peer now. */
  pollAll(): void {
    for (const p of this.peers.values()) p.kick();
  }

  stop(): void {
    for (const p of this.peers.values()) p.stop();
    this.peers.clear();
    this.o.source.stop();
  }

  /** Why a spec is refused, if it is; once per spec (the token checks of every private request ask). */
  private refusal(spec: PeerSpec): Refusal | undefined {
    let r = this.refusals.get(spec);
    if (r === undefined) this.refusals.set(spec, (r = this.refusalOf(spec) ?? null));
    return r ?? undefined;
  }

  private refusalOf(spec: PeerSpec): Refusal | undefined {
    const problem = metadataEndpointProblem(spec.metadataEndpoint);
    if (problem) return { reason: 'InvalidMetadataEndpoint', message: `spec.metadataEndpoint ${problem}` };
    if (spec.kind === 'federation' && spec.trustDomain.toLowerCase() === this.o.localTrustDomain.toLowerCase()) {
      return {
        reason: 'LocalTrustDomain',
        message: `spec.trustDomain ${spec.trustDomain} is this cluster's own trust domain; a federation peer must have its own`,
      };
    }
    // The mesh model files a cluster's root under its cluster domain, which it takes for its trust domain (as for the
    // clusters of remote Secrets): a peer's services are <svc>.<ns>.svc.<cluster domain>, its root must join the
    // local trust domain's. Both hold only when the two are one.
    const domain = this.o.localClusterDomain ?? this.o.localTrustDomain;
    if (spec.kind === 'multicluster' && domain.toLowerCase() !== this.o.localTrustDomain.toLowerCase()) {
      return {
        reason: 'ClusterDomainNotTrustDomain',
        message: `this cluster's domain ${domain} is not its trust domain ${this.o.localTrustDomain}; a multicluster peer shares both (give --trust-domain ${domain}, or leave it out)`,
      };
    }
    return undefined;
  }

  /** One probe of one peer; the outcome goes to conditions, the source (or remote cluster), the status and the metric. */
  async poll(peer: Peer): Promise<void> {
    const { spec } = peer;
    const text = TEXT[spec.kind];
    // A peer removed or respecified while a fetch was out: its outcome is dropped (a respecified one polls again).
    const stale = (): boolean => this.peers.get(peer.key) !== peer || peer.spec !== spec;
    const base = spec.metadataEndpoint.replace(/\/+$/, '');
    const tls: PeerTls = { ca: spec.metadata?.ca || undefined, insecureSkipVerify: spec.metadata?.insecureSkipVerify };
    // Multicluster: the API condition waits for the private exchange, as Deckhouse writes it.
    const pendingApi = spec.kind === 'multicluster' ? [AWAITING_PRIVATE] : [];
    const awaiting = (message: string): Probe => ({
      type: PRIVATE_READY,
      status: text.pendingStatus,
      reason: 'AwaitingPublic',
      message: text.awaitingPublic ?? message,
    });
    const failed = async (probes: Probe[], log: string): Promise<void> => {
      if (stale()) return;
      peer.fetchError = 1;
      // A federation peer's imports go stale by the fetch; a multicluster peer's remote cluster is kept as it was
      // (its own watches say whether it is reachable), as a remote Secret's is while nobody edits it.
      if (spec.kind === 'federation') this.o.source.unreachable(spec.name);
      else await this.fromStatus(peer, spec, tls);
      if (stale()) return;
      const kept =
        spec.kind === 'federation'
          ? KEPT[this.o.source.status(spec.name)?.phase ?? 'none']
          : peer.remote
            ? 'the remote cluster keeps being watched with the last good metadata'
            : '';
      probes = probes.map((p) =>
        p.status === 'False' && p.reason !== 'AwaitingPublic' && kept ? { ...p, message: `${p.message}; ${kept}` } : p,
      );
      this.o.log.warn({ peer: spec.name, kind: spec.kind, endpoint: spec.metadataEndpoint, reasons: probes.map((p) => p.reason) }, log);
      await this.finish(peer, probes, false);
    };

    const refused = this.refusal(spec);
    if (refused) {
      if (spec.kind === 'federation') this.o.source.remove(spec.name);
      peer.fetchError = 1;
      return this.finish(
        peer,
        [{ type: PUBLIC_READY, status: 'False', ...refused }, awaiting('the peer is refused'), ...pendingApi],
        false,
      );
    }

    const pub = await fetchJson(`${base}/public/public.json`, { tls, timeoutMs: this.o.fetchTimeoutMs, maxBytes: this.o.maxPublicBytes });
    const pubChecked = pub.ok ? checkPublic(pub.body) : undefined;
    if (!pub.ok || !pubChecked?.ok) {
      const p = failure(PUBLIC_READY, pub, pubChecked, 'InvalidPublicMetadata');
      return failed([p, awaiting('public metadata is not available'), ...pendingApi], `public metadata of peer ${spec.name}: ${p.message}`);
    }
    if (stale()) return;
    // A clusterUUID is one peer's: another claiming it could lock that peer out, or be sent tokens minted for it.
    const uuid = pubChecked.value.clusterUUID;
    const owner = this.holder(uuid, peer) ?? this.cachedHolder(uuid, peer);
    if (owner?.before(peer)) {
      peer.publicCache = undefined;
      this.drop(peer);
      const p: Probe = {
        type: PUBLIC_READY,
        status: 'False',
        reason: 'DuplicateClusterUUID',
        message: `clusterUUID ${uuid} is already held by ${owner.spec.kind} peer ${owner.spec.name}, declared first`,
      };
      peer.fetchError = 1;
      this.o.log.warn({ peer: spec.name, kind: spec.kind, holder: owner.spec.name }, `peer ${spec.name} refused: ${p.message}`);
      return this.finish(peer, [p, awaiting('the peer is refused'), ...pendingApi], false);
    }
    peer.publicCache = pubChecked.value;
    // Peers declared later that took the UUID meanwhile (this one had not polled yet) lose it, now.
    for (const q of this.peers.values()) {
      if (q !== peer && q.publicCache?.clusterUUID === uuid) {
        q.publicCache = undefined;
        this.drop(q);
        q.kick();
      }
    }
    const pubOk: Probe = { type: PUBLIC_READY, status: 'True', reason: 'Succeeded', message: text.publicOk };

    const scope = spec.kind === 'federation' ? 'private-federation' : 'private-multicluster';
    let token: string;
    try {
      token = await this.o.mintToken(pubChecked.value.clusterUUID, scope, PEER_DEFAULTS.tokenTtlSeconds);
    } catch (err) {
      const p: Probe = { type: PRIVATE_READY, status: 'False', reason: 'TokenGenerationFailed', message: (err as Error).message };
      return failed([pubOk, p, ...pendingApi], `no token for peer ${spec.name}: ${p.message}`);
    }
    const doc = spec.kind === 'federation' ? 'federation.json' : 'multicluster.json';
    const priv = await fetchJson(`${base}/private/${doc}`, {
      tls,
      bearer: token,
      timeoutMs: this.o.fetchTimeoutMs,
      maxBytes: this.o.maxPrivateBytes,
    });
    const privChecked = !priv.ok
      ? undefined
      : spec.kind === 'federation'
        ? checkFederation(priv.body)
        : checkMulticluster(priv.body, spec.enableIngressGateway);
    const clash =
      privChecked?.ok && spec.kind === 'multicluster' && spec.enableIngressGateway
        ? this.networkClash(peer, privChecked.value as MulticlusterMetadata, pubChecked.value)
        : undefined;
    if (!priv.ok || !privChecked?.ok || clash) {
      const p = clash
        ? { type: PRIVATE_READY, status: 'False' as const, reason: 'InvalidPrivateMetadata', message: clash }
        : failure(PRIVATE_READY, priv, privChecked, 'InvalidPrivateMetadata');
      return failed([pubOk, p, ...pendingApi], `private metadata of peer ${spec.name}: ${p.message}`);
    }
    if (stale()) return;
    peer.privateCache = privChecked.value;
    peer.fetchError = 0;
    peer.lastSuccess = rfc3339();
    const privOk: Probe = { type: PRIVATE_READY, status: 'True', reason: 'Succeeded', message: text.privateOk };
    if (spec.kind === 'federation') {
      this.o.source.update({
        name: spec.name,
        trustDomain: spec.trustDomain,
        public: pubChecked.value,
        private: privChecked.value as Required<FederationMetadata>,
      });
      return this.finish(peer, [pubOk, privOk], true);
    }
    const api = await this.joinRemote(peer, spec, pubChecked.value, privChecked.value as MulticlusterMetadata, tls);
    if (stale()) return;
    await this.finish(peer, [pubOk, privOk, api], true);
  }

  /**
   * A multicluster peer's remote cluster: the `api` token (kept, or re-minted under 30 days), the peer's api-proxy
   * probed with it (`GET /api` → APIVersions), and the cluster handed to the kube source whatever the probe says
   * (its watches keep the last good credentials serving until new ones sync).
   */
  private async joinRemote(
    peer: Peer,
    spec: MulticlusterPeerSpec,
    pub: PublicMetadata,
    priv: MulticlusterMetadata,
    tls: PeerTls,
  ): Promise<Probe> {
    const refused = await this.useRemote(peer, spec, pub, priv, tls);
    if (refused) return refused;
    const url = `${apiServerUrl(priv.apiHost)}/api`;
    const got = await fetchJson(url, {
      tls,
      bearer: peer.apiToken!.token,
      timeoutMs: this.o.fetchTimeoutMs,
      maxBytes: this.o.maxPublicBytes,
    });
    if (!got.ok) {
      const reason =
        got.reason === 'FetchFailed'
          ? 'RemoteAPIUnreachable'
          : got.reason === 'NonOKResponse'
            ? 'RemoteAPIBadResponse'
            : 'RemoteAPIInvalidResponse';
      return { type: API_READY, status: 'False', reason, message: got.message };
    }
    const kind = (got.body as { kind?: unknown } | null)?.kind;
    if (kind !== 'APIVersions')
      return {
        type: API_READY,
        status: 'False',
        reason: 'RemoteAPIUnexpectedResponse',
        message: `GET ${url}: expected kind APIVersions, got ${JSON.stringify(kind ?? '')}`,
      };
    return { type: API_READY, status: 'True', reason: 'RemoteAPIReachable', message: `GET ${url} returned HTTP 200 with kind APIVersions` };
  }

  /**
   * A restarted meshfed whose peer's metadata endpoint is down: the remote cluster from the metadata the CR's status
   * caches (Deckhouse renders from it too), rather than none until the endpoint is back. Once per peer.
   */
  private async fromStatus(peer: Peer, spec: MulticlusterPeerSpec, tls: PeerTls): Promise<void> {
    if (peer.remote || peer.joinedFromStatus || peer.origin !== 'kube') return;
    const cache = this.statusSinks.get('multicluster')?.metadataCache?.(spec.name);
    const pub = checkPublic(cache?.public);
    const priv = checkMulticluster(cache?.private, spec.enableIngressGateway);
    if (!pub.ok || !priv.ok || this.holder(pub.value.clusterUUID, peer)?.before(peer)) return;
    if (await this.useRemote(peer, spec, pub.value, priv.value, tls)) return;
    peer.joinedFromStatus = true;
    this.o.log.info(
      { peer: spec.name },
      'multicluster peer: its metadata endpoint fails; its remote cluster is watched with the metadata cached in its status',
    );
  }

  /** The remote cluster handed to the kube source: the `api` token, the cluster id (one peer's), the kubeconfig. A Probe when refused. */
  private async useRemote(
    peer: Peer,
    spec: MulticlusterPeerSpec,
    pub: PublicMetadata,
    priv: MulticlusterMetadata,
    tls: PeerTls,
  ): Promise<Probe | undefined> {
    try {
      if (!peer.apiToken && !peer.storedTokenRead && this.o.storedApiToken) {
        peer.storedTokenRead = true;
        peer.apiToken = await this.o.storedApiToken(spec.name, pub.clusterUUID);
        if (peer.apiToken) this.o.log.info({ peer: spec.name }, 'multicluster peer: reusing the api token of its remote Secret');
      }
      peer.apiToken = await apiToken(peer.apiToken, pub.clusterUUID, this.o.mintToken, this.o.apiToken ?? DECKHOUSE_API_TOKEN);
    } catch (err) {
      return { type: API_READY, status: 'False', reason: 'TokenGenerationFailed', message: (err as Error).message };
    }
    const server = apiServerUrl(priv.apiHost);
    const clusterId = priv.clusterID ?? multiclusterClusterId(this.o.localTrustDomain, pub.clusterUUID);
    // A cluster id is one peer's, the one declared first: another publishing it would take that cluster over.
    const owner = this.clusterHolder(clusterId, peer);
    if (owner?.before(peer)) {
      this.drop(peer);
      this.o.log.warn(
        { peer: spec.name, holder: owner.spec.name, clusterId },
        `multicluster peer ${spec.name} refused: cluster id ${clusterId} is peer ${owner.spec.name}'s`,
      );
      return {
        type: API_READY,
        status: 'False',
        reason: 'DuplicateClusterID',
        message: `clusterID ${clusterId} is already held by multicluster peer ${owner.spec.name}, declared first`,
      };
    }
    for (const q of this.peers.values()) {
      if (q !== peer && q.remote?.clusterId === clusterId) {
        this.drop(q);
        q.kick();
      }
    }
    const remote: PeerRemote = {
      name: spec.name,
      clusterId,
      server,
      ca: tls.ca,
      insecureSkipVerify: tls.insecureSkipVerify,
      token: peer.apiToken.token,
      network: spec.enableIngressGateway ? priv.networkName : undefined,
      rootCaPem: pub.rootCA,
      gateways: spec.enableIngressGateway ? (priv.ingressGateways ?? []) : [],
    };
    if (JSON.stringify(remote) !== JSON.stringify(peer.remote)) {
      if (peer.remote && peer.remote.token !== remote.token)
        this.o.log.info(
          { peer: spec.name },
          'multicluster peer: a new api token; the remote cluster is watched with it beside the old one until synced',
        );
      peer.remote = remote;
      this.pushRemotes();
    }
    return undefined;
  }

  /** Why a peer's networkName may not be used: it is the local network's, or another cluster's (its gateways would be theirs). */
  private networkClash(peer: Peer, priv: MulticlusterMetadata, pub: PublicMetadata): string | undefined {
    const own = priv.clusterID ?? multiclusterClusterId(this.o.localTrustDomain, pub.clusterUUID);
    const other = [...this.peers.values()].find((q) => q !== peer && q.remote?.network === priv.networkName && q.remote.clusterId !== own);
    const owner = other ? `multicluster peer ${other.spec.name}` : this.remoteSink?.networkOwner?.(priv.networkName, own);
    return (
      owner &&
      `multicluster.json: networkName ${priv.networkName} is the network of ${owner}; a peer reached through its gateways needs its own`
    );
  }

  /** The multicluster peer a cluster id belongs to: of those whose remote cluster has it, the one declared first. */
  private clusterHolder(clusterId: string, except: Peer): Peer | undefined {
    let first: Peer | undefined;
    for (const p of this.peers.values()) if (p !== except && p.remote?.clusterId === clusterId && (!first || p.before(first))) first = p;
    return first;
  }

  /** What a refused peer must no longer have: a federation peer's imports, a multicluster peer's remote cluster. */
  private drop(peer: Peer): void {
    if (peer.spec.kind === 'federation') this.o.source.remove(peer.spec.name);
    else if (peer.remote) {
      peer.remote = undefined;
      this.pushRemotes();
    }
  }

  private pushRemotes(): void {
    // In declaration order: of two naming one cluster id, the kube source keeps the first.
    const remotes = [...this.peers.values()]
      .sort((a, b) => (a.before(b) ? -1 : 1))
      .flatMap((p) => (p.spec.kind === 'multicluster' && p.remote ? [p.remote] : []));
    if (!this.remoteSink) {
      if (remotes.length && !this.warnedNoRemotes)
        this.o.log.warn('multicluster peers are probed, but their clusters are watched only with Kubernetes discovery (--kube)');
      this.warnedNoRemotes ||= remotes.length > 0;
      return;
    }
    const declared = this.declaredMulticlusters();
    this.declaredKey = declared.key;
    this.remoteSink.setPeerRemotes(remotes, declared.names);
  }

  private async finish(peer: Peer, probes: Probe[], withCache: boolean): Promise<void> {
    const name = peer.spec.name;
    const sink = peer.origin === 'kube' ? this.statusSinks.get(peer.spec.kind) : undefined;
    peer.conditions = mergeConditions(sink?.conditions(name) ?? peer.conditions, probes, rfc3339());
    if (sink && this.o.isLeader()) {
      // The cache is written only from a probe that filled it, as Deckhouse does; a failure patches conditions only.
      const status: PeerStatus = { conditions: peer.conditions };
      if (withCache) status.metadataCache = { public: peer.publicCache, private: peer.privateCache };
      else if (probes[0]?.reason === 'Succeeded') status.metadataCache = { public: peer.publicCache };
      try {
        await sink.patch(name, status);
      } catch (err) {
        this.o.log.warn(
          { peer: name, err: (err as Error).message },
          `could not write the ${peer.spec.kind === 'federation' ? 'IstioFederation' : 'IstioMulticluster'} status`,
        );
      }
    }
    for (const fn of this.probeListeners) fn();
  }
}

const KEPT: Readonly<Record<string, string>> = {
  fresh: 'the last good imports keep serving',
  demoted: 'the last good imports are demoted (used only when nothing healthier is left)',
  withdrawn: 'the last good imports are withdrawn',
  none: '',
};

function failure(
  type: string,
  fetched: { ok: true } | FetchFailure,
  checked: { ok: false; message: string; reason?: string } | { ok: true } | undefined,
  invalid: string,
): Probe {
  if (!fetched.ok) return { type, status: 'False', reason: fetched.reason, message: fetched.message };
  return {
    type,
    status: 'False',
    reason: checked && !checked.ok ? (checked.reason ?? invalid) : invalid,
    message: checked && !checked.ok ? checked.message : 'invalid',
  };
}
