// The federation peer controller: per peer, on change and every poll interval, fetch the peer's
// public.json, then (with a fresh 60 s token) its federation.json; feed the federation source; keep
// the allow-list of peers (PeerDirectory) the exporter checks tokens against; and, on the one replica
// that leads, write the CR's status as Deckhouse does (metadataCache + conditions, merge-patch on /status).
// Every replica fetches and serves; only status writes are the leader's.
import type { Logger } from 'pino';
import type { FederationSource } from '../../sources/federation/federation-source.js';
import type { FederationMetadata, FederationPeerSpec, PeerDirectory, PublicMetadata, TokenMinter } from '../types.js';
import { type Condition, mergeConditions, PRIVATE_READY, type Probe, PUBLIC_READY } from './conditions.js';
import { fetchJson, type FetchFailure } from './fetch.js';
import { checkFederation, checkPublic } from './metadata.js';

export type PeerOrigin = 'kube' | 'file';

/** Where a peer's status goes: the IstioFederation's /status subresource (kube peers only). */
export interface StatusSink {
  /** The CR's current status.conditions, so conditions of other types are kept. */
  conditions(name: string): readonly unknown[] | undefined;
  patch(name: string, status: FederationStatus): Promise<void>;
}

/** `status` of an IstioFederation, as Deckhouse writes it. */
export interface FederationStatus {
  metadataCache?: { public?: PublicMetadata; private?: Required<FederationMetadata> };
  conditions: Condition[];
}

export interface PeerControllerOptions {
  /** This cluster's trust domain: a peer claiming it is refused. */
  readonly localTrustDomain: string;
  readonly mintToken: TokenMinter;
  /** True on the replica that writes status (Lease-elected); every replica fetches and serves. */
  readonly isLeader: () => boolean;
  readonly pollIntervalMs: number;
  readonly fetchTimeoutMs: number;
  readonly maxPublicBytes: number;
  readonly maxPrivateBytes: number;
  readonly source: FederationSource;
  readonly status?: StatusSink;
  readonly log: Logger;
}

export const PEER_DEFAULTS = {
  pollIntervalMs: 60_000,
  fetchTimeoutMs: 10_000,
  maxPublicBytes: 1 << 20,
  maxPrivateBytes: 8 << 20,
  tokenTtlSeconds: 60,
} as const;

/** One row of /debug/peers and `meshfed status`. */
export interface PeerRow {
  readonly name: string;
  readonly origin: PeerOrigin;
  readonly trustDomain: string;
  readonly metadataEndpoint: string;
  readonly clusterUUID?: string;
  readonly public: { readonly status: string; readonly reason: string; readonly message: string };
  readonly private: { readonly status: string; readonly reason: string; readonly message: string };
  readonly lastSuccess?: string;
  readonly fetchError: 0 | 1;
  readonly servicesImported: number;
  readonly gateways: readonly string[];
  /** fresh, stale (demoted) or withdrawn: what the last good imports are doing. */
  readonly imports: 'none' | 'fresh' | 'stale' | 'withdrawn';
  readonly unreachableSince?: string;
  readonly refusedServices: readonly string[];
}

/** Whole-second RFC 3339, as Kubernetes writes times. */
const rfc3339 = (t = Date.now()): string => new Date(t).toISOString().replace(/\.\d+Z$/, 'Z');

class Peer {
  conditions: Condition[] = [];
  publicCache: PublicMetadata | undefined;
  privateCache: Required<FederationMetadata> | undefined;
  lastSuccess: string | undefined;
  fetchError: 0 | 1 = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;

  constructor(
    public spec: FederationPeerSpec,
    readonly origin: PeerOrigin,
    private readonly ctl: PeerController,
  ) {}

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

export class PeerController implements PeerDirectory {
  private readonly peers = new Map<string, Peer>();
  private readonly specs = new Map<PeerOrigin, readonly FederationPeerSpec[]>();
  private readonly probeListeners = new Set<() => void>();
  private statusSink: StatusSink | undefined;

  private readonly o: PeerControllerOptions;

  constructor(o: PeerControllerOptions) {
    this.o = o;
    this.statusSink = o.status;
  }

  /** Where kube peers' status goes (set once the CR watch exists). */
  useStatusSink(sink: StatusSink): void {
    this.statusSink = sink;
  }

  get log(): Logger {
    return this.o.log;
  }

  get pollIntervalMs(): number {
    return this.o.pollIntervalMs;
  }

  /** The peers one origin declares now (all of them: missing ones are removed). Kube CRs win a name clash. */
  setPeers(origin: PeerOrigin, specs: readonly FederationPeerSpec[]): void {
    this.specs.set(origin, specs);
    const wanted = new Map<string, { spec: FederationPeerSpec; origin: PeerOrigin }>();
    for (const o of ['kube', 'file'] as const) {
      for (const spec of this.specs.get(o) ?? []) {
        const had = wanted.get(spec.name);
        if (had) {
          if (had.origin !== o) this.o.log.warn({ peer: spec.name }, `federation peer ${spec.name} is declared by an IstioFederation and the mesh file; the IstioFederation wins`);
          continue;
        }
        wanted.set(spec.name, { spec, origin: o });
      }
    }
    for (const [name, peer] of this.peers) {
      if (wanted.has(name)) continue;
      this.o.log.info({ peer: name }, 'federation peer removed');
      peer.stop();
      this.peers.delete(name);
      this.o.source.remove(name);
    }
    for (const [name, { spec, origin }] of wanted) {
      const peer = this.peers.get(name);
      if (peer && peer.origin === origin && JSON.stringify(peer.spec) === JSON.stringify(spec)) continue;
      if (peer) {
        peer.spec = spec;
        peer.kick();
        continue;
      }
      this.o.log.info({ peer: name, origin, trustDomain: spec.trustDomain, endpoint: spec.metadataEndpoint }, 'federation peer added');
      const p = new Peer(spec, origin, this);
      this.peers.set(name, p);
      p.kick();
    }
  }

  /** PeerDirectory: the peers this cluster federates with, by the UUID their public metadata gave. */
  publicMetadata(clusterUUID: string): PublicMetadata | undefined {
    for (const p of this.peers.values()) if (p.publicCache?.clusterUUID === clusterUUID && !this.refusal(p.spec)) return p.publicCache;
    return undefined;
  }

  /** Called after every probe of any peer (tests and status pages wait on it). */
  onProbe(fn: () => void): () => void {
    this.probeListeners.add(fn);
    return () => this.probeListeners.delete(fn);
  }

  rows(): PeerRow[] {
    return [...this.peers.values()]
      .sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1))
      .map((p) => {
        const imp = this.o.source.status(p.spec.name);
        const cond = (type: string) => {
          const c = p.conditions.find((x) => x.type === type);
          return { status: c?.status ?? 'Unknown', reason: c?.reason ?? '', message: c?.message ?? '' };
        };
        return {
          name: p.spec.name,
          origin: p.origin,
          trustDomain: p.spec.trustDomain,
          metadataEndpoint: p.spec.metadataEndpoint,
          clusterUUID: p.publicCache?.clusterUUID,
          public: cond(PUBLIC_READY),
          private: cond(PRIVATE_READY),
          lastSuccess: p.lastSuccess,
          fetchError: p.fetchError,
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

  private refusal(spec: FederationPeerSpec): string | undefined {
    if (spec.trustDomain.toLowerCase() === this.o.localTrustDomain.toLowerCase()) {
      return `spec.trustDomain ${spec.trustDomain} is this cluster's own trust domain; a federation peer must have its own`;
    }
    return undefined;
  }

  /** One probe of one peer; the outcome goes to conditions, the source, the status and the metric. */
  async poll(peer: Peer): Promise<void> {
    const { spec } = peer;
    // A peer removed or respecified while a fetch was out: its outcome is dropped (a respecified one polls again).
    const stale = (): boolean => this.peers.get(spec.name) !== peer || peer.spec !== spec;
    const base = spec.metadataEndpoint.replace(/\/+$/, '');
    const tls = { ca: spec.metadata?.ca || undefined, insecureSkipVerify: spec.metadata?.insecureSkipVerify };
    const awaiting = (message: string): Probe => ({ type: PRIVATE_READY, status: 'False', reason: 'AwaitingPublic', message });
    const failed = async (probes: Probe[], log: string): Promise<void> => {
      if (stale()) return;
      peer.fetchError = 1;
      this.o.source.unreachable(spec.name);
      // What the last good imports are doing shows in the failing condition, for whoever reads the CR.
      const kept = KEPT[this.o.source.status(spec.name)?.phase ?? 'none'];
      probes = probes.map((p) => (p.status === 'False' && p.reason !== 'AwaitingPublic' && kept ? { ...p, message: `${p.message}; ${kept}` } : p));
      this.o.log.warn({ peer: spec.name, endpoint: spec.metadataEndpoint, reasons: probes.map((p) => p.reason) }, log);
      await this.finish(peer, probes, false);
    };

    const refused = this.refusal(spec);
    if (refused) {
      this.o.source.remove(spec.name);
      peer.fetchError = 1;
      return this.finish(peer, [{ type: PUBLIC_READY, status: 'False', reason: 'LocalTrustDomain', message: refused }, awaiting('the peer is refused')], false);
    }

    const pub = await fetchJson(`${base}/public/public.json`, { tls, timeoutMs: this.o.fetchTimeoutMs, maxBytes: this.o.maxPublicBytes });
    const pubChecked = pub.ok ? checkPublic(pub.body) : undefined;
    if (!pub.ok || !pubChecked?.ok) {
      const p = failure(PUBLIC_READY, pub, pubChecked, 'InvalidPublicMetadata');
      return failed([p, awaiting('public metadata is not available')], `public metadata of peer ${spec.name}: ${p.message}`);
    }
    if (stale()) return;
    peer.publicCache = pubChecked.value;
    const pubOk: Probe = { type: PUBLIC_READY, status: 'True', reason: 'Succeeded', message: '' };

    let token: string;
    try {
      token = await this.o.mintToken(pubChecked.value.clusterUUID, 'private-federation', PEER_DEFAULTS.tokenTtlSeconds);
    } catch (err) {
      const p: Probe = { type: PRIVATE_READY, status: 'False', reason: 'TokenGenerationFailed', message: (err as Error).message };
      return failed([pubOk, p], `no token for peer ${spec.name}: ${p.message}`);
    }
    const priv = await fetchJson(`${base}/private/federation.json`, { tls, bearer: token, timeoutMs: this.o.fetchTimeoutMs, maxBytes: this.o.maxPrivateBytes });
    const privChecked = priv.ok ? checkFederation(priv.body) : undefined;
    if (!priv.ok || !privChecked?.ok) {
      const p = failure(PRIVATE_READY, priv, privChecked, 'InvalidPrivateMetadata');
      return failed([pubOk, p], `private metadata of peer ${spec.name}: ${p.message}`);
    }
    if (stale()) return;
    peer.privateCache = privChecked.value;
    peer.fetchError = 0;
    peer.lastSuccess = rfc3339();
    this.o.source.update({ name: spec.name, trustDomain: spec.trustDomain, public: pubChecked.value, private: privChecked.value });
    await this.finish(peer, [pubOk, { type: PRIVATE_READY, status: 'True', reason: 'Succeeded', message: '' }], true);
  }

  private async finish(peer: Peer, probes: Probe[], withCache: boolean): Promise<void> {
    const name = peer.spec.name;
    const sink = peer.origin === 'kube' ? this.statusSink : undefined;
    peer.conditions = mergeConditions(sink?.conditions(name) ?? peer.conditions, probes, rfc3339());
    if (sink && this.o.isLeader()) {
      // The cache is written only from a probe that filled it, as Deckhouse does; a failure patches conditions only.
      const status: FederationStatus = { conditions: peer.conditions };
      if (withCache) status.metadataCache = { public: peer.publicCache, private: peer.privateCache };
      else if (probes[0]?.reason === 'Succeeded') status.metadataCache = { public: peer.publicCache };
      try {
        await sink.patch(name, status);
      } catch (err) {
        this.o.log.warn({ peer: name, err: (err as Error).message }, 'could not write the IstioFederation status');
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

function failure(type: string, fetched: { ok: true } | FetchFailure, checked: { ok: false; message: string } | { ok: true } | undefined, invalid: string): Probe {
  if (!fetched.ok) return { type, status: 'False', reason: fetched.reason, message: fetched.message };
  return { type, status: 'False', reason: invalid, message: checked && !checked.ok ? checked.message : 'invalid' };
}
