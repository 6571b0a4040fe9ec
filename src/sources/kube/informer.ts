// One kind's informer: client-node's ListWatch (list, watch from the resourceVersion, relist on 410
// Gone) over the guarded transport, restarted with jittered exponential backoff after errors, with the
// first sync, relists and reachability reported to its owner.
import { ListWatch } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type Kind, type KubeObj } from './objects.js';
import { GuardedWatch, type KubeClient } from './transport.js';
import { objectKey } from './to-model.js';

export interface Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 250, maxMs: 30_000 };

export interface InformerEvents<T> {
  /** An object was added or changed (obj), or deleted (undefined). */
  set(obj: T | undefined, key: string): void;
  /** A full list has been applied; `first` on the first one. */
  listed(kind: Kind, first: boolean): void;
  /** Reachability or sync state changed. */
  health(): void;
}

export class ResourceInformer<T extends KubeObj> {
  private readonly lw: ListWatch<T & { metadata: { name: string } }>;
  private retry: NodeJS.Timeout | undefined;
  private attempts = 0;
  private stopped = false;
  synced = false;
  /** When the apiserver last answered (a list, a watch opening, an event or a bookmark). */
  lastContact: number | undefined;
  failingSince: number | undefined;
  lastError: string | undefined;

  constructor(
    private readonly client: KubeClient,
    readonly kind: Kind,
    path: string,
    private readonly events: InformerEvents<T>,
    private readonly backoff: Backoff,
    private readonly log: Logger,
    labelSelector?: string,
  ) {
    const watch = new GuardedWatch(client, kind, () => this.contact());
    this.lw = new ListWatch(path, watch, () => this.list(path, labelSelector), false, labelSelector);
    const set = (obj: T | undefined, k: string): void => {
      try {
        events.set(obj, k);
      } catch (err) {
        log.error({ err, kind, object: k }, 'could not apply a Kubernetes object');
      }
    };
    this.lw.on('add', (o) => set(o, objectKey(o)));
    this.lw.on('update', (o) => set(o, objectKey(o)));
    this.lw.on('delete', (o) => set(undefined, objectKey(o)));
    this.lw.on('error', (err) => this.failed(err));
  }

  start(): void {
    this.stopped = false;
    void this.lw.start().catch((err: unknown) => this.failed(err));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    void this.lw.stop();
  }

  private async list(path: string, labelSelector: string | undefined) {
    const { items, resourceVersion } = await this.client.list(this.kind, path, labelSelector);
    this.contact();
    // ListWatch applies the items right after this promise settles, before any macrotask.
    setImmediate(() => {
      if (this.stopped) return;
      const first = !this.synced;
      this.synced = true;
      this.events.listed(this.kind, first);
      if (first) this.events.health();
    });
    return { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion }, items: items as (T & { metadata: { name: string } })[] };
  }

  private contact(): void {
    this.lastContact = Date.now();
    this.attempts = 0;
    if (this.failingSince !== undefined) {
      this.failingSince = undefined;
      this.lastError = undefined;
      this.events.health();
    }
  }

  private failed(err: unknown): void {
    if (this.stopped) return;
    const message = err instanceof Error ? err.message : String(err);
    const first = this.failingSince === undefined;
    this.failingSince ??= Date.now();
    this.lastError = message;
    const delay = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.attempts++) * (0.8 + Math.random() * 0.4);
    this.log.warn({ err: message, retryInMs: Math.round(delay) }, 'list/watch failed; retrying');
    if (first) this.events.health();
    clearTimeout(this.retry);
    this.retry = setTimeout(() => {
      if (!this.stopped) void this.lw.start().catch((e: unknown) => this.failed(e));
    }, delay);
    this.retry.unref();
  }
}
