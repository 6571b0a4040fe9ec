// The federation source: what each federation peer publishes, fed into the registry as its own source
// (`federation:<peer>`). A peer that stops answering keeps its last good metadata under the same
// keep → demote → withdraw policy (and mass-withdrawal hold) as a remote Kubernetes cluster.
import net from 'node:net';
import type { Logger } from 'pino';
import type { MeshCluster } from '../../model/mesh.js';
import type { MeshSink } from '../kube/kube-source.js';
import { HostnameResolver, type LookupAll } from '../kube/gateway-dns.js';
import { type GuardOptions, type Phase, RemoteGuard } from '../kube/remote-guard.js';
import { peerCluster, type PeerImport, peerServices } from './to-model.js';

export interface PeerImportStatus {
  readonly phase: Phase;
  readonly servicesImported: number;
  /** Gateways as served (hostnames resolved). */
  readonly gateways: readonly string[];
  /** Published hostnames outside the peer's trust domain, not imported. */
  readonly refusedServices: readonly string[];
  readonly unreachableSince?: string;
}

class PeerFeed {
  readonly sourceId: string;
  readonly guard: RemoteGuard;
  last: PeerImport | undefined;
  cluster: MeshCluster | undefined;
  refused: string[] = [];
  services = 0;

  constructor(
    readonly name: string,
    opts: GuardOptions,
    private readonly sink: MeshSink,
  ) {
    this.sourceId = `federation:${name}`;
    this.guard = new RemoteGuard(opts, {
      replace: (all) => sink.setSource(this.sourceId, { clusters: this.clusters(), services: all, raw: new Map() }),
      patch: (services) => sink.patchSource(this.sourceId, { clusters: this.clusters(), services }),
    });
  }

  clusters(): Map<string, MeshCluster> {
    return this.cluster ? new Map([[this.cluster.id, this.cluster]]) : new Map();
  }

  /** Recomputes from the last good metadata (a new fetch, or a gateway hostname that resolved anew). */
  apply(resolve: (h: string) => readonly string[], fetched: boolean): void {
    if (!this.last) return;
    const cluster = peerCluster(this.last, resolve);
    const changed = JSON.stringify(cluster) !== JSON.stringify(this.cluster);
    this.cluster = cluster;
    const { services, refused } = peerServices(this.last, cluster);
    this.refused = refused;
    this.services = services.size;
    // The cluster (root, gateways) first, so the bundle and EDS follow even when no service changes.
    if (changed) this.sink.patchSource(this.sourceId, { clusters: this.clusters() });
    // A fetch is a complete listing, like a relist: a withdrawal held since the last fetch is confirmed.
    if (fetched) this.guard.confirm();
    this.guard.replace(services);
  }

  stop(): void {
    this.guard.stop();
    this.sink.removeSource(this.sourceId);
  }
}

export class FederationSource {
  private readonly peers = new Map<string, PeerFeed>();
  private readonly dns: HostnameResolver;

  constructor(
    private readonly sink: MeshSink,
    private readonly guard: GuardOptions,
    private readonly log: Logger,
    lookup?: LookupAll,
  ) {
    // Gateway hostnames (an advertised FQDN, an AWS load balancer) resolve to the IPs EDS needs, as the kube source's do.
    this.dns = new HostnameResolver(() => this.resolved(), undefined, lookup);
  }

  /** A successful fetch of the peer's public and private metadata. */
  update(imp: PeerImport): void {
    let p = this.peers.get(imp.name);
    if (!p) this.peers.set(imp.name, (p = new PeerFeed(imp.name, this.guard, this.sink)));
    p.last = imp;
    this.wantHostnames();
    p.apply((h) => this.dns.get(h)?.addresses ?? [], true);
    if (p.refused.length)
      this.log.warn(
        { peer: imp.name, trustDomain: imp.trustDomain, hostnames: p.refused },
        'peer publishes hostnames outside its trust domain; not imported',
      );
    p.guard.setReachable(true);
  }

  /** A failed fetch: the last good imports keep serving, then are demoted, then withdrawn. */
  unreachable(name: string): void {
    this.peers.get(name)?.guard.setReachable(false);
  }

  remove(name: string): void {
    const p = this.peers.get(name);
    if (!p) return;
    p.stop();
    this.peers.delete(name);
    this.wantHostnames();
  }

  status(name: string): PeerImportStatus | undefined {
    const p = this.peers.get(name);
    if (!p) return undefined;
    const g = p.guard.status();
    return {
      phase: g.phase,
      servicesImported: g.phase === 'withdrawn' ? 0 : p.services,
      gateways: (p.cluster?.gateways ?? []).map((gw) => `${gw.address}:${gw.port}`),
      refusedServices: p.refused,
      unreachableSince: g.unreachableSince === undefined ? undefined : new Date(g.unreachableSince).toISOString(),
    };
  }

  stop(): void {
    this.dns.stop();
    for (const p of this.peers.values()) p.stop();
    this.peers.clear();
  }

  private wantHostnames(): void {
    const hostnames = new Set<string>();
    for (const p of this.peers.values())
      for (const g of p.last?.private.ingressGateways ?? []) if (net.isIP(g.address) === 0) hostnames.add(g.address);
    this.dns.want(hostnames);
  }

  private resolved(): void {
    for (const p of this.peers.values()) p.apply((h) => this.dns.get(h)?.addresses ?? [], false);
  }
}
