// Per-stream, per-type state: what the client subscribes to and what it was sent.
// This is all a stream keeps: names, versions sent (as shared Entry references),
// the last nonce and the last NACK.
import { createHash } from 'node:crypto';
import type { Entry } from './resource.js';
import { VersionSum } from './resource.js';
import type { TableWatcher, TypeTable } from './table.js';

export interface Nack {
  readonly message: string;
  readonly nonce: string;
  /** The version the client reports it holds while rejecting ours. */
  readonly version: string;
  readonly at: number;
}

export class TypeState implements TableWatcher {
  wildcard = false;
  /** SotW legacy wildcard: true while every request so far named nothing. */
  namedNothingYet = true;
  readonly names = new Set<string>();
  /** What the client holds as far as we know; null: we told it (delta) the name does not exist. */
  readonly sent = new Map<string, Entry | null>();
  readonly sum = new VersionSum();
  /** Names to re-check against the table at the next flush, or all of them. */
  dirty: Set<string> | 'all' | null = null;
  /** When the oldest change waiting in `dirty` happened at its source. */
  dirtySince: number | undefined;
  /** Answer at the next flush even if nothing changed (first full-state or delta wildcard request). */
  mustRespond = false;
  /** Set by the stream while it builds: keep resources that went away for a later response (make before break). */
  holdRemovals = false;
  /** Delta: names to report in removed_resources at the next flush. */
  readonly removedPending = new Set<string>();
  /** SDS names asked for by a stream without an identity: answered as not existing (see /debug/syncz). */
  readonly withheld = new Set<string>();
  /** Names of the last SotW request, in order: identifies subscriptions shared by many streams. */
  requestNames: readonly string[] = [];
  /** Fingerprint of the last SotW request's encoded names. */
  namesFingerprint: string | undefined;
  private subKeyCache: string | undefined;

  lastNonce = '';
  versionSent = '';
  versionAcked = '';
  nack: Nack | undefined;

  constructor(
    readonly typeUrl: string,
    readonly table: TypeTable,
    private readonly onDirty: () => void,
  ) {
    table.attach(this);
  }

  tableChanged(names: readonly string[], changedAt: number): void {
    let relevant = this.wildcard;
    if (!relevant) for (const n of names) if (this.names.has(n) || this.sent.has(n)) relevant = true;
    if (!relevant) return;
    this.markDirty(names, changedAt);
    this.onDirty();
  }

  markDirty(names: Iterable<string> | 'all', changedAt?: number): void {
    if (changedAt !== undefined) this.dirtySince = Math.min(this.dirtySince ?? changedAt, changedAt);
    if (names === 'all') this.dirty = 'all';
    else if (this.dirty !== 'all') {
      this.dirty ??= new Set();
      for (const n of names) this.dirty.add(n);
    }
  }

  pending(): boolean {
    return this.dirty !== null || this.mustRespond || this.removedPending.size > 0;
  }

  /** Names to re-check now; clears the dirty set. */
  takeDirty(): Iterable<string> {
    const d = this.dirty;
    this.dirty = null;
    if (d !== 'all') return d ?? [];
    const all = new Set<string>(this.names);
    for (const n of this.sent.keys()) all.add(n);
    if (this.wildcard) for (const e of this.table.entries()) all.add(e.name);
    return all;
  }

  setSent(name: string, e: Entry | null): void {
    const old = this.sent.get(name);
    if (old) this.sum.remove(old);
    if (e) this.sum.add(e);
    this.sent.set(name, e);
  }

  deleteSent(name: string): void {
    const old = this.sent.get(name);
    if (old) this.sum.remove(old);
    this.sent.delete(name);
  }

  subscriptionChanged(): void {
    this.subKeyCache = undefined;
  }

  /** Identifies this subscription so streams with the same one can share a response body. */
  subscriptionKey(): string {
    if (this.subKeyCache === undefined) {
      const names = this.requestNames.length ? this.requestNames : [...this.names].sort();
      const digest = createHash('sha1').update(names.join('\n')).digest('base64');
      this.subKeyCache = `${this.wildcard ? '*' : ''}${digest}`;
    }
    return this.subKeyCache;
  }

  close(): void {
    this.table.detach(this);
  }
}
