// State-of-the-world streams (ADS and per-type).
//
// Stale nonces: a request whose response_nonce is not the latest we sent is never taken
// as an ACK or NACK, but its resource_names are applied all the same. SotW requests carry
// the whole subscription, so the latest request is always the client's current wish;
// ignoring it (go-control-plane's choice) loses subscription changes that race a push
// (envoyproxy/envoy#10363).
import { createHash } from 'node:crypto';
import { isFullState } from '../envoy/protos.js';
import type { TypeGate } from './auth.js';
import type { Entry } from './resource.js';
import { type StreamRequest, XdsStream } from './stream.js';
import { type Response, Subscription, type SubscriptionOwner } from './subscription.js';
import type { TypeTable } from './table.js';

export interface SotwRequest extends StreamRequest {
  version_info: string;
  /** Identifies resource_names without decoding them ('' for none). */
  names_fingerprint: string;
  /** Decodes resource_names (left encoded until a stream needs them). */
  decodeNames: () => string[];
}

export class SotwStream extends XdsStream<SotwRequest, SotwSubscription> {
  protected requested(req: SotwRequest): readonly string[] {
    return req.decodeNames();
  }

  protected subscription(typeUrl: string, table: TypeTable, gate: TypeGate | undefined): SotwSubscription {
    return new SotwSubscription(typeUrl, table, gate, this.owner);
  }
}

export class SotwSubscription extends Subscription<SotwRequest> {
  /** CDS/LDS: every response carries every subscribed resource; a missing one is deleted. */
  private readonly fullState: boolean;
  /** Legacy wildcard: true while every request so far named nothing. */
  private namedNothingYet = true;
  /** Fingerprint of the last request's encoded names. */
  private namesFingerprint: string | undefined;
  /** The key of the table's shared name set this stream holds, if it holds one. */
  private sharedKey: string | undefined;

  constructor(typeUrl: string, table: TypeTable, gate: TypeGate | undefined, owner: SubscriptionOwner) {
    super(typeUrl, table, gate, owner, 'sotw');
    this.fullState = isFullState(typeUrl);
  }

  protected versionOf(req: SotwRequest): string {
    return req.version_info;
  }

  protected encoded(e: Entry): Uint8Array {
    return e.any;
  }

  protected subscribe(req: SotwRequest): void {
    // Most requests are ACKs repeating the same names (Envoy lists every EDS name each time).
    if (!this.opening && req.names_fingerprint === this.namesFingerprint) return;
    this.namesFingerprint = req.names_fingerprint;
    const requested = this.admit(req.decodeNames(), true);
    for (let i = 0; i < requested.length; i++) requested[i] = this.intern(requested[i]!);

    const wasWildcard = this.wildcard;
    const before = this.names; // never edited: replaced below
    // Legacy wildcard (an empty list while nothing was ever named) exists only for LDS and CDS;
    // once a client names anything, an empty list means "nothing" (gRPC's last unsubscribe).
    const legacy = this.namedNothingYet && requested.length === 0 && this.fullState;
    if (requested.length > 0) this.namedNothingYet = false;
    this.wildcard = legacy || requested.includes('*');
    this.useNames(req.names_fingerprint, requested);
    this.subscriptionChanged();

    const added: string[] = [];
    for (const n of this.names) if (!before.has(n)) added.push(n);
    for (const n of before) if (!this.names.has(n) && !(this.wildcard && this.table.get(n))) this.forget(n);
    this.leaveWildcard(wasWildcard);
    // A (re)subscribed name is sent even if the client had it before: it may have dropped it.
    for (const n of added) this.forget(n);
    if (this.opening) {
      this.markDirty('all');
      this.mustRespond = this.fullState;
    } else if (this.wildcard && !wasWildcard) this.markDirty('all');
    else if (added.length) this.markDirty(added);
  }

  /**
   * Without a gate that withholds names, the request's names fingerprint says which names a stream has: streams
   * with the same one share one set and one response-body key. With one, the admitted names are the stream's own.
   */
  private useNames(fingerprint: string, requested: readonly string[]): void {
    const build = (): Set<string> => new Set(requested.filter((n) => n !== '*'));
    const old = this.sharedKey;
    if (this.gate?.withholds) {
      this.names = build();
      this.sharedKey = undefined;
      this.requestKey = createHash('sha1').update(requested.join('\n')).digest('base64');
    } else {
      this.sharedKey = `sotw ${fingerprint}`;
      this.names = this.table.shareNames(this.sharedKey, build);
      this.requestKey = fingerprint;
    }
    if (old !== undefined) this.table.releaseNames(old);
  }

  override close(): void {
    if (this.sharedKey !== undefined) this.table.releaseNames(this.sharedKey);
    this.sharedKey = undefined;
    super.close();
  }

  protected compose(holdRemovals: boolean): Response | null {
    return this.fullState ? this.composeFullState(holdRemovals) : this.composePerResource();
  }

  private composeFullState(holdRemovals: boolean): Response | null {
    let changed = this.mustRespond;
    const held: Entry[] = [];
    for (const n of this.takeDirty()) {
      const want = this.wanted(n);
      const had = this.sent.get(n);
      if (!want && had && holdRemovals && (this.wildcard || this.names.has(n))) held.push(had);
      else if ((want ?? undefined) !== (had ?? undefined)) changed = true;
    }
    if (held.length) this.markDirty(held.map((e) => e.name));
    if (!changed) return null;
    const target: Entry[] = this.wildcard ? [...this.table.entries()] : [];
    if (!this.wildcard) {
      for (const n of this.names) {
        const e = this.table.get(n);
        if (e) target.push(e);
      }
    }
    target.push(...held); // deleted, but still in this response: removed after LDS/RDS
    for (const e of target) this.record(e.name, e);
    const kept = held.length ? new Set(held.map((e) => e.name)) : undefined;
    for (const n of this.sent.keys()) if (!this.wanted(n) && !kept?.has(n)) this.forget(n);
    // Held entries are this stream's own: such a body is not the one shared by the subscription.
    return this.stamp(this.body(target, !kept), target.length);
  }

  /** EDS/RDS/SDS: only what changed; a deleted resource has no SotW signal. */
  private composePerResource(): Response | null {
    const toSend: Entry[] = [];
    for (const n of this.takeDirty()) {
      const want = this.wanted(n);
      if (!want) {
        this.forget(n);
        continue;
      }
      if (this.sent.get(n) !== want) {
        toSend.push(want);
        this.record(n, want);
      }
    }
    if (toSend.length === 0 && !this.mustRespond) return null;
    // The first response of a big subscription is the same for every stream that shares it.
    return this.stamp(this.body(toSend, toSend.length === this.sent.size), toSend.length);
  }

  /** The entry the client should hold for a name, if it wants one. */
  private wanted(name: string): Entry | undefined {
    return this.names.has(name) || this.wildcard ? this.table.get(name) : undefined;
  }
}
