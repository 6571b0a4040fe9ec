// The ServiceEntry source: Istio ServiceEntries in the local apiserver (networking.istio.io v1, else
// v1beta1, else v1alpha3, whichever the apiserver serves), fed into the registry as `serviceentries:<cluster>`.
// An invalid entry is skipped with its reason (log, metric, /debug/mesh); the others keep serving.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ServiceContribution } from '../../model/source.js';
import { HostnameResolver } from './gateway-dns.js';
import { DEFAULT_BACKOFF, ResourceInformer } from './informer.js';
import type { KubeObserver, MeshSink } from './kube-source.js';
import { type EntryResult, serviceEntryToModel, type ServiceEntryObj } from './service-entry.js';
import { DEFAULT_LIMITS, KubeClient } from './transport.js';

const VERSIONS = ['v1', 'v1beta1', 'v1alpha3'];

export interface EntryNote {
  readonly entry: string;
  readonly reason: string;
}

export interface ServiceEntryStatus {
  /** The API version watched; undefined until the apiserver serves networking.istio.io. */
  readonly version?: string;
  readonly entries: number;
  readonly rejected: readonly EntryNote[];
  readonly ignored: readonly EntryNote[];
}

export class ServiceEntrySource {
  private readonly client: KubeClient;
  private informer: ResourceInformer<ServiceEntryObj> | undefined;
  private version: string | undefined;
  private readonly objects = new Map<string, ServiceEntryObj>();
  private readonly results = new Map<string, EntryResult>();
  private readonly dns: HostnameResolver;
  private readonly sourceId: string;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    kc: KubeConfig,
    private readonly ctx: { clusterId: string; localDomain: string },
    private readonly sink: MeshSink,
    private readonly log: Logger,
    private readonly observer?: KubeObserver,
    private readonly discoveryRetryMs = 60_000,
  ) {
    this.sourceId = `serviceentries:${ctx.clusterId}`;
    this.client = new KubeClient(kc, DEFAULT_LIMITS, (kind, reason, name) =>
      this.note(name ?? '?', `rejected by the transport: ${reason}`),
    );
    this.dns = new HostnameResolver(() => this.recomputeAll());
  }

  start(): void {
    void this.discover();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.informer?.stop();
    this.dns.stop();
    this.client.close();
  }

  status(): ServiceEntryStatus {
    const rejected: EntryNote[] = [];
    const ignored: EntryNote[] = [];
    for (const [entry, r] of [...this.results].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (r.kind === 'invalid') rejected.push({ entry, reason: r.reason });
      else if (r.kind === 'ignored') ignored.push({ entry, reason: r.reason });
    }
    return { version: this.version, entries: this.objects.size, rejected, ignored };
  }

  /** Picks the newest served version; retries while the apiserver has no networking.istio.io. */
  private async discover(): Promise<void> {
    let versions: string[] = [];
    try {
      versions = await this.client.groupVersions('networking.istio.io');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot read the networking.istio.io API group; retrying');
    }
    if (this.stopped) return;
    const version = VERSIONS.find((v) => versions.includes(v));
    if (!version) {
      this.log.debug('networking.istio.io is not served (yet): no ServiceEntries until it is');
      this.retry = setTimeout(() => void this.discover(), this.discoveryRetryMs);
      this.retry.unref();
      return;
    }
    this.version = version;
    this.log.info({ version }, 'watching ServiceEntries');
    this.informer = new ResourceInformer<ServiceEntryObj>(
      this.client,
      'ServiceEntry',
      `/apis/networking.istio.io/${version}/serviceentries`,
      { set: (obj, key) => this.set(key, obj), listed: () => this.sink.flush(), health: () => undefined },
      DEFAULT_BACKOFF,
      this.log.child({ kind: 'ServiceEntry' }),
    );
    this.informer.start();
  }

  private set(key: string, obj: ServiceEntryObj | undefined): void {
    const before = this.objects.get(key);
    if (obj) this.objects.set(key, obj);
    else this.objects.delete(key);
    this.apply(key, obj, before?.metadata.resourceVersion !== obj?.metadata.resourceVersion);
  }

  private apply(key: string, obj: ServiceEntryObj | undefined, fresh: boolean): void {
    const old = this.results.get(key);
    const r = obj && serviceEntryToModel(obj, { ...this.ctx, resolve: (h) => this.dns.get(h)?.addresses });
    if (r) this.results.set(key, r);
    else this.results.delete(key);
    if (r?.kind === 'invalid' && fresh) this.note(key, r.reason);
    const patch = new Map<string, ServiceContribution | undefined>();
    if (old?.kind === 'services') for (const k of old.services.keys()) patch.set(k, undefined);
    if (r?.kind === 'services') for (const [k, c] of r.services) patch.set(k, c);
    if (patch.size) this.sink.patchSource(this.sourceId, { services: patch });
    if (fresh) this.wantDns();
  }

  private note(entry: string, reason: string): void {
    this.log.warn({ serviceEntry: entry, reason }, `ServiceEntry ${entry} skipped: ${reason}`);
    this.observer?.rejected(this.ctx.clusterId, 'ServiceEntry', 'invalid');
  }

  private wantDns(): void {
    const names = new Set<string>();
    for (const r of this.results.values()) if (r.kind === 'services') for (const n of r.dnsNames) names.add(n);
    this.dns.want(names);
  }

  private recomputeAll(): void {
    for (const [key, obj] of this.objects) {
      const r = this.results.get(key);
      if (r?.kind === 'services' && r.dnsNames.length) this.apply(key, obj, false);
    }
  }
}
