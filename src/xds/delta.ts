// Incremental (delta) streams, ADS and per-type.
//
// Choices where the spec leaves room:
// - Subscribing to a name the client already holds resends it, except on the first request
//   of a type, where initial_resource_versions says what the client holds and a matching
//   version is not resent (envoyproxy/envoy#22418: a client may have forgotten a resource,
//   and re-subscribing is how it asks again).
// - Subscription changes apply whatever the nonce (the spec requires it).
// - A subscribed name that does not exist is reported once in removed_resources, and sent
//   when it appears. While its table is not ready (SDS: the certificate is still being issued)
//   a missing name is pending, not gone: its removal is held until the table is ready, and sent
//   only if the name is still missing then (SotW says nothing either way).
import { isFullState, shortType } from '../envoy/protos.js';
import type { TypeGate } from './auth.js';
import { overLimit } from './limits.js';
import type { Entry } from './resource.js';
import { type StreamRequest, XdsStream } from './stream.js';
import { type Response, Subscription, type SubscriptionOwner } from './subscription.js';
import type { TypeTable } from './table.js';

export interface DeltaRequest extends StreamRequest {
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions: Record<string, string>;
}

export class DeltaStream extends XdsStream<DeltaRequest, DeltaSubscription> {
  protected requested(req: DeltaRequest): readonly string[] {
    return req.resource_names_subscribe;
  }

  protected subscription(typeUrl: string, table: TypeTable, gate: TypeGate | undefined): DeltaSubscription {
    return new DeltaSubscription(typeUrl, table, gate, this.owner);
  }

  /** Each request is within the limits; so must be what they add up to (as one SotW request would). */
  protected override applied(sub: DeltaSubscription): boolean {
    const { maxNames, maxRequestBytes } = this.deps.limits;
    if (sub.nameCount > maxNames) {
      this.refuse(overLimit('names', `a subscription to ${sub.nameCount} ${shortType(sub.typeUrl)} resources`, maxNames));
      return false;
    }
    let chars = 0;
    for (const s of this.subs.values()) chars += s.nameChars;
    if (chars > maxRequestBytes) {
      this.refuse(overLimit('request-bytes', `a subscription whose names add up to ${chars} characters`, maxRequestBytes));
      return false;
    }
    return true;
  }
}

export class DeltaSubscription extends Subscription<DeltaRequest> {
  /** Characters of the names subscribed. */
  private chars = 0;
  /** Names to report in removed_resources at the next flush. */
  private readonly removedPending = new Set<string>();
  /** Names missing from a table that was not ready: reported at its first change once it is, if still missing. */
  private readonly awaitingReady = new Set<string>();

  constructor(typeUrl: string, table: TypeTable, gate: TypeGate | undefined, owner: SubscriptionOwner) {
    super(typeUrl, table, gate, owner, 'delta');
  }

  /** Names subscribed, withheld ones included: a stream may not grow either without bound. */
  get nameCount(): number {
    return this.names.size + this.withheld.size;
  }

  get nameChars(): number {
    return this.chars;
  }

  override pending(): boolean {
    return super.pending() || this.removedPending.size > 0;
  }

  override tableChanged(names: readonly string[], changedAt: number): void {
    if (this.awaitingReady.size && this.table.ready) {
      const held = [...this.awaitingReady];
      this.awaitingReady.clear();
      for (const n of held)
        if (!this.table.get(n) && this.sent.get(n) !== null && (this.names.has(n) || this.wildcard)) this.removedPending.add(n);
      names = [...names, ...held];
    }
    super.tableChanged(names, changedAt);
  }

  /** A delta request reports no version: an ACK acknowledges the version we sent. */
  protected versionOf(): undefined {
    return undefined;
  }

  protected encoded(e: Entry): Uint8Array {
    return e.deltaBytes();
  }

  protected subscribe(req: DeltaRequest): void {
    const first = this.opening;
    const unsub = req.resource_names_unsubscribe;
    const sub = this.gate?.withholds ? this.withhold(req) : req.resource_names_subscribe;
    if (first && sub.length === 0 && unsub.length === 0 && isFullState(this.typeUrl)) this.wildcard = true; // legacy wildcard
    const wasWildcard = this.wildcard;
    for (const n of sub) {
      if (n === '*') this.wildcard = true;
      else {
        if (!this.names.has(n)) this.chars += n.length;
        this.names.add(this.intern(n));
        if (!first) this.forget(n);
      }
    }
    for (const n of unsub) {
      if (n === '*') this.wildcard = false;
      else if (this.names.delete(n)) {
        this.chars -= n.length;
        // Still covered by a wildcard: answer with it (or its removal) so the client keeps the right view.
        if (this.wildcard && this.table.get(n)) this.forget(n);
        else if (this.wildcard) this.removedPending.add(n);
        else this.forget(n);
      }
    }
    this.leaveWildcard(wasWildcard);
    this.subscriptionChanged();

    if (first) {
      // The client says what it holds: skip what is current, remove what is gone.
      for (const [n, version] of Object.entries(req.initial_resource_versions)) {
        if (!this.wildcard && !this.names.has(n)) continue;
        const e = this.table.get(n);
        if (e && e.version === version) this.record(n, e);
        else if (!e) this.removedPending.add(n);
      }
      this.markDirty('all');
      this.mustRespond = this.wildcard;
    } else {
      this.markDirty(sub.filter((n) => n !== '*'));
      if (this.wildcard && !wasWildcard) this.markDirty('all');
      for (const n of unsub) if (this.wildcard && n !== '*') this.markDirty([n]);
    }
  }

  /** Names the gate withholds are answered as names that do not exist; returns the others. */
  private withhold(req: DeltaRequest): string[] {
    const gate = this.gate!;
    for (const n of new Set(req.resource_names_subscribe)) if (!this.withheld.has(n) && gate.withholds!(n)) this.chars += n.length;
    const allowed = this.admit(req.resource_names_subscribe, false);
    for (const n of req.resource_names_unsubscribe) if (this.withheld.delete(n)) this.chars -= n.length;
    for (const n of req.resource_names_subscribe) if (n !== '*' && this.withheld.has(n)) this.removedPending.add(n);
    return allowed;
  }

  protected compose(holdRemovals: boolean): Response | null {
    const toSend: Entry[] = [];
    const ready = this.table.ready;
    const removed = new Set<string>();
    // A withheld name is refused, not pending: it is reported whatever the table's state.
    for (const n of this.removedPending) (ready || this.withheld.has(n) ? removed : this.awaitingReady).add(n);
    this.removedPending.clear();
    const held: string[] = [];
    for (const n of this.takeDirty()) {
      if (!this.names.has(n) && !this.wildcard) {
        this.forget(n);
        continue;
      }
      const e = this.table.get(n);
      if (!e && holdRemovals && this.sent.get(n))
        held.push(n); // removed after LDS/RDS
      else if (e) {
        if (this.sent.get(n) !== e) {
          toSend.push(e);
          this.record(n, e);
          removed.delete(n);
        }
      } else if (!ready) {
        if (this.names.has(n) || this.sent.has(n)) this.awaitingReady.add(n); // pending, not gone
      } else if (this.names.has(n)) {
        if (this.sent.get(n) !== null) {
          removed.add(n);
          this.record(n, null);
        }
      } else if (this.sent.has(n)) {
        removed.add(n);
        this.forget(n);
      }
    }
    if (held.length) this.markDirty(held);
    if (toSend.length === 0 && removed.size === 0 && !this.mustRespond) return null;
    const everything = removed.size === 0 && toSend.length === this.sent.size;
    return this.stamp(this.body(toSend, everything), toSend.length, removed);
  }
}
