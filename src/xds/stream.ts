// What SotW and delta streams share: the node and its identity, one Subscription per type, nonces,
// and a flush loop that pushes in ADS order, one built response at a time, within its
// connection's and the global send budget. The protocol lives in the subscriptions.
import { status as Status, type ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { type Proxy, proxyOf, type NodeInfo } from '../model/proxy.js';
import type { XdsObserver, StreamKind } from './observer.js';
import { ADS_ORDER, isXdsType, shortType, TypeUrl, type XdsTypeUrl } from '../envoy/protos.js';
import { isIstioConfigType } from '../istio/config-types.js';
import type { SendBudget } from './send-budget.js';
import type { OverLimit, XdsLimits } from './limits.js';
import { clip } from '../log.js';
import type { XdsStore } from './store.js';
import type { AuthOutcome, Refusal, StreamPolicy, TypeGate } from './auth.js';
import { structToJson } from './struct.js';
import type { Nack, Response, Subscription, SubscriptionOwner, SubscriptionStatus, XdsRequest } from './subscription.js';
import type { TypeTable } from './table.js';

export interface StreamDeps {
  readonly store: XdsStore;
  readonly budget: SendBudget;
  /** This stream's connection's share: a peer that stops reading fills only this one. */
  readonly connectionBudget: SendBudget;
  readonly limits: XdsLimits;
  readonly observer: XdsObserver;
  readonly log: Logger;
  /** The app's authorization: the identity a stream is served as, and what it may ask of each type. */
  readonly policy: StreamPolicy;
  /** Called when the stream ends, so the server forgets it. */
  readonly onClose: (s: XdsStream) => void;
}

/** A request that could not be decoded; the stream fails with INVALID_ARGUMENT. */
export interface Malformed {
  readonly malformed: string;
}

/** The fields of a request the stream itself reads. */
export interface StreamRequest extends XdsRequest {
  node: NodeInfo | null;
  type_url: string;
}

let nextStreamId = 1;

/** Istio config types one stream may ask for (istiod asks for about 16); further ones are ignored. */
const MAX_ISTIO_TYPES = 64;
export abstract class XdsStream<Req extends StreamRequest = StreamRequest, Sub extends Subscription<Req> = Subscription<Req>> {
  readonly id = nextStreamId++;
  readonly connectedAt = Date.now();
  proxy: Proxy | undefined;
  /** Envoy's types, and on SotW ADS Istio config types (istiod's config-source client). */
  protected readonly subs = new Map<string, Sub>();
  private istioTypes = 0;
  private nonces = 0;
  private scheduled = false;
  private waitingForBudget = false;
  private writing = false;
  private unflushed = 0;
  /** The connection's share outlives close(): the bytes stay in the socket until written or the call ends. */
  private connectionUnflushed = 0;
  private writingSince = 0;
  /** Since when the stream waits for its connection's share, which only the peer reading frees. */
  private blockedSince: number | undefined;
  private closed = false;
  /** What the subscriptions tell this stream (one object per stream, not per response). */
  protected readonly owner: SubscriptionOwner = {
    schedule: () => this.schedule(),
    nextNonce: () => (++this.nonces).toString(),
    nacked: (typeUrl, nack) => this.nacked(typeUrl, nack),
    withheld: (gate, names, first) => this.withheld(gate, names, first),
  };

  constructor(
    readonly kind: StreamKind,
    protected readonly call: ServerDuplexStream<unknown, Buffer>,
    protected readonly deps: StreamDeps,
    /** The type of a per-type RPC (CDS, EDS, ...); undefined on ADS. */
    protected readonly fixedType: XdsTypeUrl | undefined,
    /** Who the stream authenticated as when it opened. */
    readonly auth: AuthOutcome = { kind: 'anonymous' },
  ) {}

  /** The names a request asks for, as the policy's gate checks them. */
  protected abstract requested(req: Req): readonly string[];
  /** A new subscription of this stream's protocol. */
  protected abstract subscription(typeUrl: string, table: TypeTable, gate: TypeGate | undefined): Sub;
  /** Checks a subscription after a request changed it; false if the stream was failed. */
  protected applied(_sub: Sub): boolean {
    return true;
  }

  start(): void {
    this.deps.observer.streamOpened(this.kind);
    this.call.on('data', (req: object) => this.receive(req));
    this.call.on('error', () => this.close());
    this.call.on('cancelled', () => {
      this.close();
      this.releaseConnection();
    });
    this.call.on('end', () => {
      this.close();
      this.call.end();
    });
  }

  /** Since when a response waits for the peer to read it (or for room its connection's other streams hold). */
  unreadSince(): number | undefined {
    if (this.closed) return undefined;
    return this.writing ? this.writingSince : this.blockedSince;
  }

  /** The node id for log lines: client-supplied, so clipped. */
  protected get who(): string | undefined {
    return this.proxy && clip(this.proxy.id);
  }

  /** Each type's subscription status, for debug pages and tests. */
  typeStates(): ReadonlyMap<string, SubscriptionStatus> {
    const out = new Map<string, SubscriptionStatus>();
    for (const [t, sub] of this.subs) out.set(t, sub.status());
    return out;
  }

  private receive(req: object): void {
    if (this.closed) return;
    try {
      if ('malformed' in req) {
        this.deps.observer.malformed((req as Malformed).malformed);
        this.fail(Status.INVALID_ARGUMENT, `malformed request: ${clip((req as Malformed).malformed)}`);
        return;
      }
      if ('limit' in req) return this.refuse(req as OverLimit);
      this.handle(req as Req);
    } catch (err) {
      this.deps.log.error({ err, stream: this.id, proxy: this.who }, 'xDS request failed');
      this.fail(Status.INTERNAL, `meshfed could not handle the request: ${(err as Error).message}`);
    }
  }

  /** A request: who sends it, which type, whether the policy lets it ask, then its subscription applies it. */
  private handle(req: Req): void {
    const proxy = this.identify(req.node);
    const typeUrl = this.typeOf(req.type_url);
    if (!typeUrl) return;
    let sub = this.subs.get(typeUrl);
    const gate = sub ? sub.gate : this.deps.policy.gate(typeUrl, proxy.view, this.auth);
    const refusal = gate?.refuse?.(this.requested(req));
    if (refusal) return this.deny(refusal);
    if (!sub) {
      sub = this.subscription(typeUrl, this.deps.store.table(typeUrl, proxy.view), gate);
      this.subs.set(typeUrl, sub);
    }
    sub.apply(req);
    if (!this.applied(sub)) return;
    if (sub.pending()) this.schedule();
  }

  protected refuse(r: OverLimit): void {
    this.deps.observer.limited(r.limit);
    this.fail(r.code, r.details);
  }

  /** The first request carries the node; later ones may not, and are attributed to it. */
  private identify(node: NodeInfo | null | undefined): Proxy {
    if (!this.proxy) {
      const n = node ?? undefined;
      const proxy = proxyOf(n && { ...n, metadata: structToJson(n.metadata as never) });
      const view = this.deps.policy.view(proxy.view, this.auth);
      this.proxy = view === proxy.view ? proxy : { ...proxy, view };
    }
    return this.proxy;
  }

  private deny(r: Refusal): void {
    this.deps.observer.denied(Status[r.code], r.reason);
    this.fail(r.code, r.details);
  }

  private withheld(gate: TypeGate, names: readonly string[], first: boolean): void {
    this.deps.observer.withheld(gate.reason ?? 'policy', names.length);
    if (first && gate.notice) this.deps.log.info({ stream: this.id, proxy: this.proxy?.id, secrets: names }, gate.notice);
  }

  private nacked(typeUrl: string, nack: Nack): void {
    this.deps.observer.nacked(typeUrl, this.proxy?.id ?? '', nack.message);
    this.deps.log.warn(
      { proxy: this.who, type: shortType(typeUrl), nonce: nack.nonce, message: clip(nack.message) },
      'proxy rejected a response',
    );
  }

  /** The request's type, or undefined if the stream was failed or the type is ignored. */
  private typeOf(requested: string): string | undefined {
    const t = requested || this.fixedType;
    if (!t) {
      this.fail(Status.INVALID_ARGUMENT, 'type_url is required on an aggregated stream');
      return undefined;
    }
    if (this.fixedType && t !== this.fixedType) {
      this.fail(Status.INVALID_ARGUMENT, `type_url ${clip(t)} does not match this service (${this.fixedType})`);
      return undefined;
    }
    if (isXdsType(t) || this.subs.has(t)) return t;
    // istiod's config source (SotW ADS, as pkg/adsc speaks it) asks for Istio config types: each
    // gets an answer, empty unless meshfed produces that kind, or istiod never becomes ready.
    if (this.kind === 'sotw' && !this.fixedType && isIstioConfigType(t) && this.istioTypes < MAX_ISTIO_TYPES) {
      this.istioTypes++;
      return t;
    }
    // Envoy asks ADS for types meshfed does not serve (RTDS, ECDS, ...): stay quiet, keep the stream.
    this.deps.observer.unknownType(t);
    return undefined;
  }

  schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.closed || this.writing || this.waitingForBudget) return;
    // Make before break on ADS: while new listeners or routes are on their way, clusters and
    // endpoints that went away are kept, and removed in a later round, after the LDS/RDS push.
    const routing = !this.fixedType && (this.subs.get(TypeUrl.Listener)?.pending() || this.subs.get(TypeUrl.Route)?.pending()) === true;
    for (const sub of this.inPushOrder()) {
      if (!sub.pending()) continue;
      const { budget, connectionBudget } = this.deps;
      const full = !connectionBudget.available() ? connectionBudget : !budget.available() ? budget : undefined;
      if (full) {
        this.waitingForBudget = true;
        if (full === connectionBudget) this.blockedSince = Date.now();
        // Flushes at once: its write takes budget before the next waiter is asked, so freed room
        // wakes only as many streams as it fits (scheduling would wake every waiter per write).
        full.wait(() => {
          this.waitingForBudget = false;
          this.blockedSince = undefined;
          this.flush();
        });
        return;
      }
      const t = sub.typeUrl;
      const out = sub.build(routing && (t === TypeUrl.Cluster || t === TypeUrl.Endpoint));
      if (out) {
        // After a Cluster changes, Envoy warms it only on a fresh CLA.
        if (out.resendEds.length) this.subs.get(TypeUrl.Endpoint)?.resend(out.resendEds);
        this.write(t, out);
      }
      if (this.writing || this.closed) return;
    }
    // Removals held back above are dirty again: send them now that LDS/RDS went out.
    for (const sub of this.subs.values()) if (sub.pending()) return this.schedule();
  }

  /** Envoy's types in ADS order, then Istio config types in the order they were asked for. */
  private *inPushOrder(): IterableIterator<Sub> {
    for (const t of ADS_ORDER) {
      const sub = this.subs.get(t);
      if (sub) yield sub;
    }
    if (this.istioTypes) for (const [t, sub] of this.subs) if (!isXdsType(t)) yield sub;
  }

  /**
   * One response in flight per stream: the next is built only once this one has left for the
   * socket, so a slow proxy gets the latest state when it catches up, not a queue of old ones.
   */
  private write(typeUrl: string, out: Response): void {
    const size = out.bytes.length;
    this.deps.budget.take(size);
    this.deps.connectionBudget.take(size);
    this.writing = true;
    this.writingSince = Date.now();
    this.unflushed = size;
    this.connectionUnflushed = size;
    this.call.write(out.bytes, () => {
      this.release();
      this.releaseConnection();
      this.writing = false;
      this.schedule();
    });
    this.deps.observer.pushed(typeUrl, size, out.resources, out.since === undefined ? undefined : Date.now() - out.since);
  }

  /** Ends the stream with a status; the client sees it and (for UNAVAILABLE) reconnects. */
  fail(code: Status, details: string, quiet = false): void {
    if (this.closed) return;
    if (!quiet) this.deps.log.warn({ stream: this.id, proxy: this.who, code: Status[code], details }, 'closing xDS stream');
    this.close();
    this.call.emit('error', { code, details });
  }

  /** Takes a response its peer does not read off the global budget; it still holds its connection's share. */
  park(): void {
    this.release();
  }

  /** Gives back the global budget of the response in flight; also on close, if its callback never comes. */
  private release(): void {
    const n = this.unflushed;
    this.unflushed = 0;
    if (n) this.deps.budget.give(n);
  }

  /** Gives back the connection's share once the bytes left, or the call is over. */
  private releaseConnection(): void {
    const n = this.connectionUnflushed;
    this.connectionUnflushed = 0;
    if (n) this.deps.connectionBudget.give(n);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
    for (const sub of this.subs.values()) sub.close();
    this.deps.observer.streamClosed(this.kind);
    this.deps.onClose(this);
  }
}
