// One (stream, type): what the client subscribes to and what it was sent, as go-control-plane's
// Subscription. This is all a stream keeps per type: names, versions sent (as shared Entry
// references), the last nonce and the last NACK, private to this object. SotwSubscription and
// DeltaSubscription add what their protocol reads from a request and puts in a response; what
// they share is here once: acknowledgements, stamping a response, shared bodies, interned names,
// leaving a wildcard, and resending a changed cluster's EDS resource.
import { createHash } from 'node:crypto';
import { clip } from '../log.js';
import type { TypeGate } from './auth.js';
import { type Entry, VersionSum } from './resource.js';
import type { TableWatcher, TypeTable } from './table.js';
import { DeltaResponseField as F, encodeRepeated, MessageWriter } from './wire.js';

/** A request's answer to our latest response that rejected it. */
export interface Nack {
  readonly message: string;
  /** The nonce of the rejected response. */
  readonly nonce: string;
  /**
   * SotW: the version_info the client reports holding while it rejects ours (the new one when it
   * took part of the response). Delta requests carry no version: absent.
   */
  readonly version?: string;
  readonly at: number;
}

/** What a subscription tells its stream. */
export interface SubscriptionOwner {
  /** There is something to send. */
  schedule(): void;
  /** The stream's next nonce (nonces are per stream, across types). */
  nextNonce(): string;
  nacked(typeUrl: string, nack: Nack): void;
  /** Names the gate withheld that were not withheld before; `first`: none were. */
  withheld(gate: TypeGate, names: readonly string[], first: boolean): void;
}

/** Read-only, for debug pages and tests. */
export interface SubscriptionStatus {
  readonly typeUrl: string;
  readonly wildcard: boolean;
  readonly names: ReadonlySet<string>;
  /** What the client holds as far as we know; null: we told it (delta) the name does not exist. */
  readonly sent: ReadonlyMap<string, Entry | null>;
  /** Names the gate withheld, and why. */
  readonly withheld: ReadonlySet<string>;
  readonly withheldReason: string | undefined;
  /** '' until a response was sent. */
  readonly nonce: string;
  readonly versionSent: string;
  readonly versionAcked: string;
  readonly nack: Nack | undefined;
}

export interface Response {
  readonly bytes: Buffer;
  readonly resources: number;
  /** When the oldest change it carries happened at its source. */
  readonly since: number | undefined;
  /** EDS names of the clusters it changed: Envoy warms a changed cluster only on a fresh CLA. */
  readonly resendEds: readonly string[];
}

/** The request fields every protocol has. */
export interface XdsRequest {
  response_nonce: string;
  error_detail: { code?: number; message?: string } | null;
}

export abstract class Subscription<Req extends XdsRequest = XdsRequest> implements TableWatcher {
  protected wildcard = false;
  /** The names subscribed to; SotW replaces the set (it may be shared with other streams), never edits it. */
  protected names = new Set<string>();
  protected readonly sent = new Map<string, Entry | null>();
  protected withheld = new Set<string>();
  /** Answer at the next flush even if nothing changed (first full-state or delta wildcard request). */
  protected mustRespond = false;
  /** Identifies the subscribed names when the request does (SotW): streams with equal keys share response bodies. */
  protected requestKey: string | undefined;
  /** True until the first request was applied. */
  protected opening = true;
  private readonly sum = new VersionSum();
  /** Names to re-check against the table at the next flush, or all of them. */
  private dirty: Set<string> | 'all' | null = null;
  /** When the oldest change waiting in `dirty` happened at its source. */
  private dirtySince: number | undefined;
  private subKeyCache: string | undefined;
  /** Reused by every response: the stream reads it before the next is built. */
  private readonly resendEds: string[] = [];
  private lastNonce = '';
  private versionSent = '';
  private versionAcked = '';
  private nack: Nack | undefined;

  constructor(
    readonly typeUrl: string,
    protected readonly table: TypeTable,
    /** What the app's policy says this stream may ask of this type. */
    readonly gate: TypeGate | undefined,
    private readonly owner: SubscriptionOwner,
    /** 'sotw' or 'delta': keys the response bodies shared through the table. */
    private readonly protocol: string,
  ) {
    table.attach(this);
  }

  /** Applies a request: its ACK or NACK, then its subscription change. */
  apply(req: Req): void {
    this.answer(req.response_nonce, this.versionOf(req), req.error_detail);
    this.subscribe(req);
    this.opening = false;
  }

  /** The version a request reports; undefined where the protocol has none (delta). */
  protected abstract versionOf(req: Req): string | undefined;
  protected abstract subscribe(req: Req): void;
  /** The next response's resources and removals, stamped; null if there is nothing to say. */
  protected abstract compose(holdRemovals: boolean): Response | null;
  /** How an entry is carried in this protocol's responses. */
  protected abstract encoded(e: Entry): Uint8Array;

  tableChanged(names: readonly string[], changedAt: number): void {
    let relevant = this.wildcard;
    if (!relevant) for (const n of names) if (this.names.has(n) || this.sent.has(n)) relevant = true;
    if (!relevant) return;
    this.markDirty(names, changedAt);
    this.owner.schedule();
  }

  pending(): boolean {
    return this.dirty !== null || this.mustRespond;
  }

  /**
   * Builds the next response. `holdRemovals` (ADS make before break, while listeners or routes are
   * on their way): resources that went away stay for a later response.
   */
  build(holdRemovals: boolean): Response | null {
    this.resendEds.length = 0;
    const out = this.compose(holdRemovals);
    this.dirtySince = undefined;
    this.mustRespond = false;
    return out;
  }

  /** Sends these names again at the next flush, even if the client holds them (EDS after its cluster changed). */
  resend(names: readonly string[]): void {
    for (const n of names) this.forget(n);
    this.markDirty(names);
  }

  status(): SubscriptionStatus {
    return {
      typeUrl: this.typeUrl,
      wildcard: this.wildcard,
      names: this.names,
      sent: this.sent,
      withheld: this.withheld,
      withheldReason: this.gate?.reason,
      nonce: this.lastNonce,
      versionSent: this.versionSent,
      versionAcked: this.versionAcked,
      nack: this.nack,
    };
  }

  close(): void {
    this.table.detach(this);
  }

  private answer(nonce: string, version: string | undefined, error: { message?: string } | null | undefined): void {
    // Only an answer to our latest response counts; an older nonce says nothing about it.
    if (!nonce || nonce !== this.lastNonce) return;
    if (error) {
      // Envoy's NACK messages name the failing resources: worth keeping, but not megabytes of them.
      const message = clip(error.message ?? '', 4096);
      this.nack = version === undefined ? { message, nonce, at: Date.now() } : { message, nonce, version: clip(version), at: Date.now() };
      this.owner.nacked(this.typeUrl, this.nack);
    } else {
      this.versionAcked = clip(version ?? this.versionSent);
      this.nack = undefined;
    }
  }

  /**
   * The names a request may subscribe to, given the gate; the others are withheld (answered as
   * not existing). `replace` (SotW): `names` is the whole subscription.
   */
  protected admit(names: string[], replace: boolean): string[] {
    const gate = this.gate;
    if (!gate?.withholds) return names;
    const allowed: string[] = [];
    const added: string[] = [];
    const before = this.withheld.size;
    const withheld = replace ? new Set<string>() : this.withheld;
    for (const n of names) {
      if (!gate.withholds(n)) allowed.push(n);
      else if (!withheld.has(n)) {
        if (!this.withheld.has(n)) added.push(n);
        withheld.add(n);
      }
    }
    if (replace) this.withheld = withheld;
    if (added.length) this.owner.withheld(gate, added, before === 0);
    return allowed;
  }

  /** A name as the table's own string, so a thousand streams do not each keep a copy. */
  protected intern(name: string): string {
    return this.table.get(name)?.name ?? name;
  }

  /** After the wildcard is dropped, the client keeps only what it names. */
  protected leaveWildcard(wasWildcard: boolean): void {
    if (wasWildcard && !this.wildcard) for (const n of this.sent.keys()) if (!this.names.has(n)) this.forget(n);
  }

  protected subscriptionChanged(): void {
    this.subKeyCache = undefined;
  }

  protected markDirty(names: Iterable<string> | 'all', changedAt?: number): void {
    if (changedAt !== undefined) this.dirtySince = Math.min(this.dirtySince ?? changedAt, changedAt);
    if (names === 'all') this.dirty = 'all';
    else if (this.dirty !== 'all') {
      this.dirty ??= new Set();
      for (const n of names) this.dirty.add(n);
    }
  }

  /** Names to re-check now; clears the dirty set. */
  protected takeDirty(): Iterable<string> {
    const d = this.dirty;
    this.dirty = null;
    if (d !== 'all') return d ?? [];
    const all = new Set<string>(this.names);
    for (const n of this.sent.keys()) all.add(n);
    if (this.wildcard) for (const e of this.table.entries()) all.add(e.name);
    return all;
  }

  /** Records what the client holds for a name; `old` (what it held) decides an EDS resend. */
  protected record(name: string, e: Entry | null): void {
    const old = this.sent.get(name);
    if (old && e && old !== e && e.edsName) this.resendEds.push(e.edsName);
    if (old) this.sum.remove(old);
    if (e) this.sum.add(e);
    this.sent.set(name, e);
  }

  /** The client holds nothing for a name (or is assumed not to). */
  protected forget(name: string): void {
    const old = this.sent.get(name);
    if (old) this.sum.remove(old);
    this.sent.delete(name);
  }

  /**
   * The resources' bytes; `shared`: the same for every stream with this subscription at this table
   * generation (a first response, a full state), so encoded once for all of them.
   */
  protected body(entries: readonly Entry[], shared: boolean): Buffer {
    const encode = (): Buffer =>
      encodeRepeated(
        F.resources,
        entries.map((e) => this.encoded(e)),
      );
    return shared ? this.table.cachedBody(`${this.protocol} ${this.subscriptionKey()}`, encode) : encode();
  }

  /**
   * The response around a body: version (SotW version_info, delta system_version_info: the same
   * field number), type, removals (delta) and a fresh nonce.
   */
  protected stamp(body: Buffer, resources: number, removed?: Iterable<string>): Response {
    const version = this.sum.toString();
    const nonce = this.owner.nextNonce();
    this.lastNonce = nonce;
    this.versionSent = version;
    const w = new MessageWriter().string(F.systemVersionInfo, version).raw(body).string(F.typeUrl, this.typeUrl);
    if (removed) for (const n of removed) w.string(F.removedResources, n);
    w.string(F.nonce, nonce);
    return { bytes: w.finish(), resources, since: this.dirtySince, resendEds: this.resendEds };
  }

  /** Identifies this subscription so streams with the same one can share a response body. */
  private subscriptionKey(): string {
    if (this.subKeyCache === undefined) {
      const digest =
        this.requestKey ??
        createHash('sha1')
          .update([...this.names].sort().join('\n'))
          .digest('base64');
      this.subKeyCache = `${this.wildcard ? '*' : ''}${digest}`;
    }
    return this.subKeyCache;
  }
}
