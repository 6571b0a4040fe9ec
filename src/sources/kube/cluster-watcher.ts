// Watches one cluster (Services, EndpointSlices, Pods, Nodes, Namespaces) and reports, per changed
// service, what the cluster now contributes. Changes are batched per turn of the event loop (a relist
// arrives as one batch) and held back until every kind has been listed once. The cluster's own entry
// (network, gateways) is reported when it changes, so that every proxy's view is regenerated.
import type { Logger } from 'pino';
import { compare, type Gateway, hostnameOf, type MeshCluster } from '../../model/mesh.js';
import { contributionKey, type ServiceContribution } from '../../model/source.js';
import { type Backoff, ResourceInformer } from './informer.js';
import { type Kind, type KubeObj, type LabelSelector, pathOf } from './objects.js';
import { HostnameResolver } from './gateway-dns.js';
import { type ClusterInfo, ClusterIndex, isIpAddress, LABEL_NETWORK, type ServiceKey } from './to-model.js';
import type { KubeClient } from './transport.js';

export type ContributionPatch = Map<string, ServiceContribution | undefined>;

export interface ClusterWatcherOptions {
  readonly id: string;
  /** Explicit network (flag or Secret annotation); else the system namespace's label, else the id. */
  readonly network?: string;
  readonly domain: string;
  /** meshfed's namespace name, whose network label is the cluster's network. */
  readonly systemNamespace: string;
  readonly discoverySelectors: readonly LabelSelector[];
  readonly backoff: Backoff;
  readonly log: Logger;
  /** How often load balancer hostnames of gateways are looked up again. */
  readonly gatewayDnsRefreshMs?: number;
  /** A multicluster peer's root and gateways, from its metadata (see setPeer). */
  readonly peer?: PeerInfo;
}

/** What a multicluster peer's metadata adds to the cluster entry: its root, and its gateways into its network. */
export interface PeerInfo {
  readonly rootCaPem: string;
  readonly gateways: readonly { readonly address: string; readonly port: number }[];
}

/** The `service` a gateway from a peer's multicluster.json shows at /debug/clusters. */
export const PEER_GATEWAY_SOURCE = 'multicluster.json';

/** One gateway as /debug/clusters shows it. */
export interface GatewayStatus {
  readonly network: string;
  readonly address: string;
  readonly port: number;
  /** The Service it comes from, `namespace/name`, and the load balancer hostname it was resolved from. */
  readonly service: string;
  readonly hostname?: string;
}

export interface GatewayView {
  readonly gateways: readonly GatewayStatus[];
  /** Why labelled Services give no gateway (or not yet): a <PENDING> load balancer, a bad port label, DNS. */
  readonly pending: readonly string[];
}

export interface ClusterWatcherEvents {
  /** Services changed after the first sync. */
  changed(patch: ContributionPatch): void;
  /** Every kind has been listed once: snapshot() is complete. */
  synced(): void;
  /** A kind was listed again (after 410 Gone or an error): what the cluster holds is confirmed. */
  relisted(): void;
  /** Reachability changed. */
  health(): void;
  /** The cluster's entry (network, gateways) changed after the first sync. */
  clusterChanged(): void;
}

const KINDS: readonly Kind[] = ['Namespace', 'Node', 'Pod', 'Service', 'EndpointSlice'];

export class ClusterWatcher {
  private readonly index: ClusterIndex;
  private readonly informers: ResourceInformer<KubeObj>[];
  private readonly dirty = new Set<ServiceKey>();
  private flushing: NodeJS.Immediate | undefined;
  private readonly info: ClusterInfo;
  private readonly resolver: HostnameResolver;
  /** The cluster entry last reported, as JSON. */
  private reported = '';
  private peer: PeerInfo | undefined;
  syncedAt: number | undefined;

  constructor(
    readonly client: KubeClient,
    private readonly opts: ClusterWatcherOptions,
    private readonly events: ClusterWatcherEvents,
  ) {
    this.peer = opts.peer;
    this.info = { id: opts.id, network: opts.network || opts.id, domain: opts.domain, discoverySelectors: opts.discoverySelectors };
    this.index = new ClusterIndex(this.info);
    this.resolver = new HostnameResolver(() => this.scheduleFlush(), opts.gatewayDnsRefreshMs);
    this.informers = KINDS.map(
      (kind) =>
        new ResourceInformer<KubeObj>(
          client,
          kind,
          pathOf(kind),
          {
            set: (obj, key) => this.apply(kind, obj, key),
            listed: (_k, first) => (first ? this.maybeSynced() : this.events.relisted()),
            health: () => this.events.health(),
          },
          opts.backoff,
          opts.log.child({ kind }),
        ),
    );
  }

  get id(): string {
    return this.opts.id;
  }

  get synced(): boolean {
    return this.syncedAt !== undefined;
  }

  start(): void {
    for (const i of this.informers) i.start();
  }

  stop(): void {
    clearImmediate(this.flushing);
    this.resolver.stop();
    for (const i of this.informers) i.stop();
    this.client.close();
  }

  /** The cluster entry this watcher's source contributes. */
  meshCluster(): MeshCluster {
    const seen = new Set<string>();
    const gateways: Gateway[] = [];
    for (const g of this.gatewayView().gateways) {
      const k = `${g.network} ${g.address} ${g.port}`;
      if (seen.has(k)) continue;
      seen.add(k);
      gateways.push(
        g.network === this.info.network ? { address: g.address, port: g.port } : { address: g.address, port: g.port, network: g.network },
      );
    }
    return { id: this.opts.id, network: this.info.network, domain: this.opts.domain, rootCaPem: this.peer?.rootCaPem ?? '', gateways };
  }

  /** New metadata from the peer (root, gateways): the cluster entry follows without new watches. */
  setPeer(peer: PeerInfo): void {
    this.peer = peer;
    this.scheduleFlush();
  }

  /** The cluster's gateways, from its network-labelled Services, with hostnames resolved (it tells the resolver which are needed). */
  gatewayView(): GatewayView {
    const gateways: GatewayStatus[] = [];
    const pending: string[] = [];
    const hostnames = new Set<string>();
    // A peer's published gateways lead into its network, like a network-labelled Service of its own.
    const fromPeer = (this.peer?.gateways ?? []).map((g) => ({
      network: this.info.network,
      port: g.port,
      addresses: [g.address],
      service: PEER_GATEWAY_SOURCE,
      notes: [],
    }));
    for (const gs of [...this.index.gateways(), ...fromPeer]) {
      pending.push(...gs.notes);
      for (const a of gs.addresses) {
        if (isIpAddress(a)) {
          gateways.push({ network: gs.network, address: a, port: gs.port, service: gs.service });
          continue;
        }
        hostnames.add(a);
        const r = this.resolver.get(a);
        if (!r) pending.push(`${gs.service}: resolving load balancer hostname ${a}`);
        else if (r.error)
          pending.push(
            `${gs.service}: load balancer hostname ${a} does not resolve (${r.error})${r.addresses.length ? '; keeping its last addresses' : ''}`,
          );
        for (const ip of r?.addresses ?? [])
          gateways.push({ network: gs.network, address: ip, port: gs.port, service: gs.service, hostname: a });
      }
    }
    this.resolver.want(hostnames);
    gateways.sort(
      (a, b) => compare(a.network, b.network) || compare(a.address, b.address) || a.port - b.port || compare(a.service, b.service),
    );
    return { gateways, pending };
  }

  /** Everything the cluster contributes now, by contribution key. */
  snapshot(): Map<string, ServiceContribution> {
    const out = new Map<string, ServiceContribution>();
    for (const k of this.index.serviceKeys()) {
      const c = this.index.contribution(k);
      if (c) out.set(contributionKey(c), c);
    }
    return out;
  }

  /** Reachable unless some kind's list/watch is failing; with the oldest failure and its message. */
  health(): { reachable: boolean; failingSince?: number; lastError?: string; lastContact?: number } {
    let failingSince: number | undefined;
    let lastError: string | undefined;
    let lastContact: number | undefined;
    for (const i of this.informers) {
      if (i.failingSince !== undefined && (failingSince === undefined || i.failingSince < failingSince)) {
        failingSince = i.failingSince;
        lastError = `${i.kind}: ${i.lastError ?? ''}`;
      }
      if (i.lastContact !== undefined) lastContact = Math.max(lastContact ?? 0, i.lastContact);
    }
    return { reachable: failingSince === undefined, failingSince, lastError, lastContact };
  }

  private apply(kind: Kind, obj: KubeObj | undefined, key: string): void {
    let touched: ServiceKey[];
    switch (kind) {
      case 'Service':
        touched = this.index.setService(obj, key);
        break;
      case 'EndpointSlice':
        touched = this.index.setSlice(obj, key);
        break;
      case 'Pod':
        touched = this.index.setPod(obj, key);
        break;
      case 'Node':
        touched = this.index.setNode(obj, key.slice(1));
        break;
      case 'Namespace': {
        const name = key.slice(1);
        touched = this.index.setNamespace(obj, name);
        if (name === this.opts.systemNamespace && !this.opts.network) {
          const net = obj?.metadata.labels?.[LABEL_NETWORK] || this.opts.id;
          if (net !== this.info.network) {
            this.info.network = net;
            touched = this.index.serviceKeys();
          }
        }
        break;
      }
      default:
        return;
    }
    for (const k of touched) this.dirty.add(k);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.synced && !this.flushing) this.flushing = setImmediate(() => this.flush());
  }

  private maybeSynced(): void {
    if (this.synced || !this.informers.every((i) => i.synced)) return;
    this.syncedAt = Date.now();
    this.dirty.clear();
    this.reported = JSON.stringify(this.meshCluster());
    this.opts.log.info({ cluster: this.opts.id, services: this.index.serviceKeys().length }, 'cluster synced');
    this.events.synced();
  }

  private flush(): void {
    this.flushing = undefined;
    const patch: ContributionPatch = new Map();
    for (const k of this.dirty) {
      const c = this.index.contribution(k);
      // A deleted service has no contribution to name it: its key (namespace/name) does.
      const slash = k.indexOf('/');
      const hostname = hostnameOf(k.slice(slash + 1), k.slice(0, slash), this.opts.domain);
      patch.set(contributionKey({ cluster: this.opts.id, hostname }), c);
    }
    this.dirty.clear();
    if (patch.size) this.events.changed(patch);
    const cluster = JSON.stringify(this.meshCluster());
    if (cluster !== this.reported) {
      this.reported = cluster;
      this.events.clusterChanged();
    }
  }
}
