// Kubernetes discovery: the local cluster, and every remote cluster its remote Secrets (or multicluster
// peers, setPeerRemotes) name, each fed into the registry as its own source (`kube:<cluster id>`). A
// remote's credentials can be added, rotated or removed at any time: a rotation starts new watches beside the old ones and swaps them in
// one registry update once the new ones have synced (make-before-break).
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { MeshCluster } from '../../model/mesh.js';
import type { ServiceContribution, SourceMesh } from '../../model/source.js';
import { ClusterWatcher, type ContributionPatch, type GatewayStatus } from './cluster-watcher.js';
import { type Backoff, DEFAULT_BACKOFF, ResourceInformer } from './informer.js';
import { type Kind, parseLabelSelector, pathOf, type SecretObj } from './objects.js';
import { type GuardOptions, type GuardStatus, RemoteGuard, UNGUARDED } from './remote-guard.js';
import {
  addPeerRemotes,
  MULTICLUSTER_SELECTOR,
  type PeerRemote,
  type RemoteSpec,
  remotesFromSecrets,
  type SecretsView,
} from './remote-secrets.js';
import { DEFAULT_LIMITS, KubeClient, localKubeConfig, remoteKubeConfig, type TransportLimits } from './transport.js';

export interface KubeSourceOptions {
  /** Kubeconfig of the local cluster; in-cluster configuration when absent. */
  readonly kubeconfig?: string;
  readonly clusterId: string;
  /** The local cluster's network; else the label on meshfed's namespace, else the cluster id. */
  readonly network?: string;
  readonly clusterDomain: string;
  /** meshfed's own namespace: remote Secrets live here. */
  readonly namespace: string;
  /** Namespace label selectors; a service is seen when its namespace matches any. */
  readonly discoverySelectors: readonly string[];
  /** /readyz waits at most this long for each remote's first sync. */
  readonly remoteSyncTimeoutMs: number;
  readonly remote: GuardOptions;
  readonly limits?: TransportLimits;
  readonly backoff?: Backoff;
  /** Read Istio ServiceEntries from the local apiserver (default true; see service-entries.ts). */
  readonly serviceEntries?: boolean;
}

export const KUBE_DEFAULTS = {
  clusterId: 'Kubernetes',
  clusterDomain: 'cluster.local',
  namespace: 'meshfed',
  discoverySelectors: [] as readonly string[],
  remoteSyncTimeoutMs: 30_000,
  remote: { staleAfterMs: 5 * 60_000, withdrawAfterMs: 15 * 60_000, maxDropShare: 0.5, confirmAfterMs: 60_000, dropWindowMs: 10_000 },
} as const;

/** The parts of the registry a source writes to. */
export interface MeshSink {
  setSource(id: string, mesh: SourceMesh): void;
  patchSource(
    id: string,
    patch: { clusters?: ReadonlyMap<string, MeshCluster>; services?: ReadonlyMap<string, ServiceContribution | undefined> },
  ): void;
  removeSource(id: string): void;
  /** Publishes pending changes now, skipping the debounce. */
  flush(): void;
}

export interface KubeObserver {
  /** An object from a cluster was rejected; reason is a short category. */
  rejected(cluster: string, kind: string, reason: string): void;
}

export type ClusterState = 'connecting' | 'synced' | 'unreachable' | 'stale' | 'withdrawn' | 'timeout' | 'error';
export const CLUSTER_STATES: readonly ClusterState[] = ['connecting', 'synced', 'unreachable', 'stale', 'withdrawn', 'timeout', 'error'];

export interface ClusterStatus {
  readonly cluster: string;
  readonly role: 'local' | 'remote';
  readonly state: ClusterState;
  /** `namespace/name` of the remote Secret, or `multicluster/<peer>` for a multicluster peer's cluster. */
  readonly secret?: string;
  /** The multicluster peer (IstioMulticluster or mesh-file entry) this cluster was joined by. */
  readonly peer?: string;
  readonly server?: string;
  readonly network?: string;
  readonly domain?: string;
  readonly syncedAt?: string;
  readonly lastContact?: string;
  readonly endpoints: number;
  readonly stalenessSeconds: number;
  readonly heldUpdates: { readonly services: number; readonly endpoints: number; readonly since?: string };
  readonly rotating: boolean;
  readonly rejectedObjects: number;
  readonly lastError?: string;
  /** East-west gateways found in the cluster (network-labelled Services), by the network they lead into. */
  readonly gateways: readonly GatewayStatus[];
  /** Network-labelled Services that give no gateway, and why (e.g. a LoadBalancer still <PENDING>). */
  readonly pendingGateways: readonly string[];
}

export class KubeSource {
  private readonly local: ClusterHandle;
  private readonly remotes = new Map<string, ClusterHandle>();
  private readonly secrets = new Map<string, SecretObj>();
  private peerRemotes: readonly PeerRemote[] = [];
  private readonly secretsInformer: ResourceInformer<SecretObj>;
  private refused: SecretsView['refused'] = [];
  private reconciling: NodeJS.Immediate | undefined;
  private readonly deps: HandleDeps;
  private readonly kc: KubeConfig;

  constructor(
    private readonly opts: KubeSourceOptions,
    sink: MeshSink,
    private readonly log: Logger,
    observer?: KubeObserver,
  ) {
    const selectors = opts.discoverySelectors.map(parseLabelSelector);
    this.deps = {
      sink,
      log,
      observer,
      limits: opts.limits ?? DEFAULT_LIMITS,
      backoff: opts.backoff ?? DEFAULT_BACKOFF,
      selectors,
      systemNamespace: opts.namespace,
    };
    const kc = (this.kc = localKubeConfig(opts.kubeconfig));
    this.local = new ClusterHandle(opts.clusterId, 'local', UNGUARDED, this.deps, () => this.scheduleReconcile());
    const secretsClient = new KubeClient(kc, this.deps.limits, (kind, reason, name) => this.local.rejected(kind, reason, name));
    this.secretsInformer = new ResourceInformer<SecretObj>(
      secretsClient,
      'Secret',
      pathOf('Secret', opts.namespace),
      {
        set: (obj, key) => {
          if (obj) this.secrets.set(key, obj);
          else this.secrets.delete(key);
          this.scheduleReconcile();
        },
        listed: () => this.scheduleReconcile(),
        health: () => undefined,
      },
      this.deps.backoff,
      log.child({ kind: 'Secret' }),
      MULTICLUSTER_SELECTOR,
    );
  }

  start(): void {
    const o = this.opts;
    this.local.use(
      { id: o.clusterId, secret: '', kubeconfig: '', network: o.network, domain: o.clusterDomain, hash: 'local' },
      () => this.kc,
    );
    this.secretsInformer.start();
  }

  stop(): void {
    clearImmediate(this.reconciling);
    this.secretsInformer.stop();
    for (const r of this.remotes.values()) r.stop();
    this.remotes.clear();
    this.local.stop();
  }

  /** Ready once the local cluster has synced and every remote has synced or had its bounded wait. */
  readiness(): { ready: boolean; detail?: string } {
    if (!this.local.synced) return { ready: false, detail: `local cluster ${this.opts.clusterId} has not synced yet` };
    if (!this.secretsInformer.synced) return { ready: false, detail: 'remote secrets have not been listed yet' };
    const waiting = [...this.remotes.values()].filter((r) => r.waitingForFirstSync(this.opts.remoteSyncTimeoutMs));
    if (waiting.length) return { ready: false, detail: `waiting for remote clusters: ${waiting.map((r) => r.id).join(', ')}` };
    const late = [...this.remotes.values()].filter((r) => !r.synced);
    return late.length
      ? { ready: true, detail: `serving without remote clusters that have not synced: ${late.map((r) => r.id).join(', ')}` }
      : { ready: true };
  }

  /** Every cluster's state, for /debug/clusters and metrics. */
  clusters(): { clusters: ClusterStatus[]; refusedSecretKeys: SecretsView['refused'] } {
    const timeout = this.opts.remoteSyncTimeoutMs;
    return {
      clusters: [
        this.local.status(timeout),
        ...[...this.remotes.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((r) => r.status(timeout)),
      ],
      refusedSecretKeys: this.refused,
    };
  }

  /** The multicluster peers' clusters now (all of them: a peer missing here is removed, as a deleted Secret). */
  setPeerRemotes(remotes: readonly PeerRemote[]): void {
    this.peerRemotes = remotes;
    this.scheduleReconcile();
  }

  /** Which cluster (`local cluster <id>` or `cluster <id>`) has this network, other than `except`. */
  networkOwner(network: string, except: string): string | undefined {
    if (this.localNetwork() === network) return `the local cluster ${this.opts.clusterId}`;
    for (const [id, r] of this.remotes) if (id !== except && r.network === network) return `cluster ${id}`;
    return undefined;
  }

  /** One cluster's state (a multicluster peer's row shows its remote cluster's). */
  clusterStatus(id: string): ClusterStatus | undefined {
    return this.remotes.get(id)?.status(this.opts.remoteSyncTimeoutMs);
  }

  private localNetwork(): string {
    return this.opts.network ?? this.local.network ?? this.opts.clusterId;
  }

  private scheduleReconcile(): void {
    if (!this.secretsInformer.synced || this.reconciling) return;
    this.reconciling = setImmediate(() => {
      this.reconciling = undefined;
      this.reconcile();
    });
  }

  private reconcile(): void {
    // A flat-network peer's pods are on the local network: whatever the local cluster's network turns out to be.
    const localNetwork = this.localNetwork();
    const view = addPeerRemotes(
      remotesFromSecrets(this.secrets.values(), this.opts.clusterId, this.opts.clusterDomain),
      this.peerRemotes,
      this.opts.clusterId,
      this.opts.clusterDomain,
      localNetwork,
    );
    for (const r of view.refused) {
      if (!this.refused.some((x) => x.secret === r.secret && x.id === r.id)) this.log.warn(r, 'remote secret key ignored');
    }
    this.refused = view.refused;
    for (const [id, spec] of view.remotes) {
      let handle = this.remotes.get(id);
      if (!handle) {
        this.log.info({ cluster: id, secret: spec.secret, peer: spec.peer?.name }, 'remote cluster added');
        this.remotes.set(id, (handle = new ClusterHandle(id, 'remote', this.opts.remote, this.deps)));
      }
      handle.use(spec, () => remoteKubeConfig(spec.kubeconfig, id));
    }
    for (const [id, handle] of this.remotes) {
      if (view.remotes.has(id)) continue;
      this.log.info({ cluster: id }, 'remote cluster removed');
      handle.stop();
      this.remotes.delete(id);
    }
  }
}

interface HandleDeps {
  readonly sink: MeshSink;
  readonly log: Logger;
  readonly observer: KubeObserver | undefined;
  readonly limits: TransportLimits;
  readonly backoff: Backoff;
  readonly selectors: ReturnType<typeof parseLabelSelector>[];
  readonly systemNamespace: string;
}

/** One cluster: its watches (the serving ones, and a replacement being synced), guard and state. */
class ClusterHandle {
  private active: ClusterWatcher | undefined;
  private activeSpec: RemoteSpec | undefined;
  private pending: ClusterWatcher | undefined;
  private pendingSpec: RemoteSpec | undefined;
  private error: string | undefined;
  private readonly guard: RemoteGuard;
  private readonly addedAt = Date.now();
  private rejectedCount = 0;
  private readonly sourceId: string;
  private readonly log: Logger;

  constructor(
    readonly id: string,
    readonly role: 'local' | 'remote',
    guardOpts: GuardOptions,
    private readonly deps: HandleDeps,
    /** Called when the cluster entry (network) may have changed. */
    private readonly onClusterChange: () => void = () => undefined,
  ) {
    this.sourceId = `kube:${id}`;
    this.log = deps.log.child({ cluster: id });
    this.guard = new RemoteGuard(guardOpts, {
      replace: (all) => deps.sink.setSource(this.sourceId, { clusters: this.clusterMap(), services: all, raw: new Map() }),
      patch: (services) => deps.sink.patchSource(this.sourceId, { clusters: this.clusterMap(), services }),
    });
  }

  get synced(): boolean {
    return this.active !== undefined;
  }

  get network(): string | undefined {
    return this.active?.meshCluster().network;
  }

  waitingForFirstSync(timeoutMs: number): boolean {
    return !this.active && !this.error && Date.now() - this.addedAt < timeoutMs;
  }

  /** Watches the cluster with these credentials, unless it already does. */
  use(spec: RemoteSpec, load: () => KubeConfig): void {
    if (spec.hash === (this.pendingSpec ?? this.activeSpec)?.hash) {
      // Same credentials and address: a peer's new root or gateways update the cluster entry in place.
      if (spec.peer) {
        for (const w of [this.active, this.pending]) w?.setPeer(spec.peer);
        if (this.pendingSpec) this.pendingSpec = spec;
        else this.activeSpec = spec;
      }
      return;
    }
    let kc: KubeConfig;
    try {
      kc = load();
    } catch (err) {
      this.error = (err as Error).message;
      this.log.error({ secret: spec.secret }, `${this.error}${this.active ? ' (the previous credentials keep serving)' : ''}`);
      return;
    }
    this.error = undefined;
    const client = new KubeClient(kc, this.deps.limits, (kind, reason, name) => this.rejected(kind, reason, name));
    const watcher: ClusterWatcher = new ClusterWatcher(
      client,
      {
        id: this.id,
        network: spec.network,
        domain: spec.domain,
        systemNamespace: this.deps.systemNamespace,
        discoverySelectors: this.deps.selectors,
        backoff: this.deps.backoff,
        log: this.log,
        peer: spec.peer,
      },
      {
        synced: () => this.synced_(watcher),
        changed: (patch) => this.changed(watcher, patch),
        relisted: () => watcher === this.active && this.guard.confirm(),
        health: () => watcher === this.active && this.guard.setReachable(watcher.health().reachable),
        // A gateway change touches every proxy's EDS: the registry flags it as a cluster change.
        clusterChanged: () => {
          if (watcher !== this.active) return;
          this.deps.sink.patchSource(this.sourceId, { clusters: this.clusterMap() });
          this.onClusterChange();
        },
      },
    );
    this.pending?.stop();
    this.pending = watcher;
    this.pendingSpec = spec;
    if (this.active)
      this.log.info({ secret: spec.secret, server: client.server }, 'new credentials: watching beside the current ones until synced');
    watcher.start();
  }

  stop(): void {
    this.pending?.stop();
    this.active?.stop();
    this.pending = this.active = undefined;
    this.guard.stop();
    this.deps.sink.removeSource(this.sourceId);
  }

  rejected(kind: Kind, reason: string, name?: string): void {
    this.rejectedCount++;
    this.log.warn({ kind, object: name, reason }, 'rejected an object from the apiserver');
    this.deps.observer?.rejected(this.id, kind, category(reason));
  }

  status(remoteSyncTimeoutMs: number): ClusterStatus {
    const g: GuardStatus = this.guard.status();
    const h = this.active?.health() ?? this.pending?.health();
    const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t).toISOString());
    const spec = this.activeSpec ?? this.pendingSpec;
    const gw = this.active?.gatewayView();
    return {
      cluster: this.id,
      role: this.role,
      state: this.state(g, h?.reachable ?? true, remoteSyncTimeoutMs),
      secret: spec?.secret || undefined,
      peer: spec?.peer?.name,
      server: (this.active ?? this.pending)?.client.server,
      network: this.active?.meshCluster().network,
      domain: spec?.domain,
      syncedAt: iso(this.active?.syncedAt),
      lastContact: iso(h?.lastContact),
      endpoints: g.endpoints,
      stalenessSeconds: g.unreachableSince === undefined ? 0 : (Date.now() - g.unreachableSince) / 1000,
      heldUpdates: { services: g.heldServices, endpoints: g.heldEndpoints, since: iso(g.heldSince) },
      rotating: this.active !== undefined && this.pending !== undefined,
      rejectedObjects: this.rejectedCount,
      lastError:
        this.error ??
        (this.active && this.pending?.health().lastError ? `new credentials: ${this.pending.health().lastError}` : h?.lastError),
      gateways: gw?.gateways ?? [],
      pendingGateways: gw?.pending ?? [],
    };
  }

  private state(g: GuardStatus, reachable: boolean, remoteSyncTimeoutMs: number): ClusterState {
    if (!this.active) {
      if (this.error) return 'error';
      return Date.now() - this.addedAt >= remoteSyncTimeoutMs && this.role === 'remote' ? 'timeout' : 'connecting';
    }
    if (g.phase === 'demoted') return 'stale';
    if (g.phase === 'withdrawn') return 'withdrawn';
    return reachable ? 'synced' : 'unreachable';
  }

  private synced_(watcher: ClusterWatcher): void {
    if (watcher !== this.pending) return;
    const old = this.active;
    this.active = watcher;
    this.activeSpec = this.pendingSpec;
    this.pending = this.pendingSpec = undefined;
    // The cluster itself (network, gateways), even when it has no services to patch.
    this.deps.sink.patchSource(this.sourceId, { clusters: this.clusterMap() });
    // One registry update replaces the old view with the new: no moment without the cluster's endpoints.
    this.guard.replace(watcher.snapshot());
    this.guard.setReachable(watcher.health().reachable);
    // Published at once: /readyz turns ready on a first sync, and a proxy that connects then must get it.
    if (!old) this.deps.sink.flush();
    if (!old) this.onClusterChange();
    old?.stop();
    if (old) this.log.info("swapped to the new credentials' watches");
  }

  private changed(watcher: ClusterWatcher, patch: ContributionPatch): void {
    if (watcher === this.active) this.guard.patch(patch);
  }

  private clusterMap(): Map<string, MeshCluster> {
    const c = this.active?.meshCluster();
    return c ? new Map([[c.id, c]]) : new Map();
  }
}

function category(reason: string): string {
  if (reason.startsWith('oversized')) return 'oversized';
  if (reason === 'not JSON') return 'not_json';
  if (reason.startsWith('kind ')) return 'wrong_kind';
  return 'malformed';
}
