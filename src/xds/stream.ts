// What SotW and delta streams share: the node, per-type state, nonces, and a flush loop
// that pushes in ADS order, one built response at a time, within its connection's and the
// global send budget.
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
import type { AuthOutcome } from './auth.js';
import { isForeignSecret, isPublicSecret } from '../generate/sds.js';
import { validSpiffeId } from '../pki/identity.js';
import { structToJson } from './struct.js';
import { TypeState } from './subscription.js';

export interface StreamDeps {
  readonly store: XdsStore;
  readonly budget: SendBudget;
  /** This stream's connection's share: a peer that stops reading fills only this one. */
  readonly connectionBudget: SendBudget;
  readonly limits: XdsLimits;
  readonly observer: XdsObserver;
  readonly log: Logger;
  /** Called when the stream ends, so the server forgets it. */
  readonly onClose: (s: XdsStream) => void;
}

/** A request that could not be decoded; the stream fails with INVALID_ARGUMENT. */
export interface Malformed {
  readonly malformed: string;
}

export interface Built {
  readonly bytes: Buffer;
  readonly resources: number;
}

let nextStreamId = 1;

/** Istio config types one stream may ask for (istiod asks for about 16); further ones are ignored. */
const MAX_ISTIO_TYPES = 64;
/** Why a withheld secret was not sent (metrics and /debug/syncz). */
export const UNAUTHENTICATED = 'unauthenticated';
const NO_IDENTITY =
  'secrets not sent: the stream has no identity (a service-account token or a mesh client certificate over TLS, ' +
  'or --insecure-dev-identity with node metadata in development); the trust bundle and configuration are served';

export abstract class XdsStream {
  readonly id = nextStreamId++;
  readonly connectedAt = Date.now();
  proxy: Proxy | undefined;
  /** Envoy's types, and on SotW ADS Istio config types (istiod's config-source client). */
  protected readonly types = new Map<string, TypeState>();
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

  constructor(
    readonly kind: StreamKind,
    protected readonly call: ServerDuplexStream<unknown, Buffer>,
    protected readonly deps: StreamDeps,
    /** The type of a per-type RPC (CDS, EDS, ...); undefined on ADS. */
    protected readonly fixedType: XdsTypeUrl | undefined,
    /** Who the stream authenticated as when it opened. */
    readonly auth: AuthOutcome = { kind: 'anonymous' },
  ) {}

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

  /** Per-type state for debug pages. */
  typeStates(): ReadonlyMap<string, TypeState> {
    return this.types;
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
      this.handle(req);
    } catch (err) {
      this.deps.log.error({ err, stream: this.id, proxy: this.who }, 'xDS request failed');
      this.fail(Status.INTERNAL, `meshfed could not handle the request: ${(err as Error).message}`);
    }
  }

  protected abstract handle(req: object): void;

  protected refuse(r: OverLimit): void {
    this.deps.observer.limited(r.limit);
    this.fail(r.code, r.details);
  }

  /** Builds the next response for a type from the current state, or null if there is nothing to say. */
  protected abstract build(st: TypeState): Built | null;

  /**
   * The first request carries the node; later ones may not, and are attributed to it. An
   * authenticated identity overrides the node's namespace and service account.
   */
  protected identify(node: NodeInfo | null | undefined): Proxy {
    if (!this.proxy) {
      const n = node ?? undefined;
      const proxy = proxyOf(n && { ...n, metadata: structToJson(n.metadata as never) });
      const a = this.auth;
      const v = proxy.view;
      if (a.kind === 'authenticated') {
        const { spiffeId, namespace, serviceAccount } = a.identity;
        this.proxy = { ...proxy, view: { ...v, identity: spiffeId, namespace, serviceAccount } };
      } else {
        const claimed = a.kind === 'node-metadata' ? validSpiffeId({ trustDomain: a.trustDomain, namespace: v.namespace, serviceAccount: v.serviceAccount }) : undefined;
        this.proxy = claimed ? { ...proxy, view: { ...v, identity: claimed } } : proxy;
      }
    }
    return this.proxy;
  }

  /**
   * Fails the stream (counted) for another identity's secret, or while its credentials cannot be
   * checked. A stream without credentials stays: see withholdSecrets.
   */
  protected maySubscribeSecrets(names: readonly string[]): boolean {
    const id = this.proxy?.view.identity;
    if (!id) {
      if (this.auth.kind !== 'unavailable') return true;
      this.deny(Status.UNAVAILABLE, 'credentials-unchecked', `no secrets: meshfed cannot check this stream's credentials now (${this.auth.reason})`);
      return false;
    }
    const foreign = names.find((n) => isForeignSecret(n, id));
    if (foreign !== undefined) {
      this.deny(Status.PERMISSION_DENIED, 'foreign-secret', `${id} may not read the secret ${clip(foreign)}`);
      return false;
    }
    return true;
  }

  /**
   * Without an identity a stream may read only the public trust bundle. The other names it asks for
   * are answered as not existing (SotW: no response; delta: removed_resources), so its CDS/EDS/LDS/RDS
   * keep flowing (an Envoy whose TLS clusters name SDS `default` would otherwise reconnect forever).
   * Returns the names to subscribe; `replace` (SotW) means `names` is the whole subscription.
   */
  protected withholdSecrets(st: TypeState, names: readonly string[], replace: boolean): string[] {
    if (this.proxy?.view.identity) return [...names];
    const allowed: string[] = [];
    const before = new Set(st.withheld);
    if (replace) st.withheld.clear();
    for (const n of names) {
      if (isPublicSecret(n)) allowed.push(n);
      else st.withheld.add(n);
    }
    const added = [...st.withheld].filter((n) => !before.has(n));
    if (added.length) {
      this.deps.observer.withheld(UNAUTHENTICATED, added.length);
      if (before.size === 0) this.deps.log.info({ stream: this.id, proxy: this.proxy?.id, secrets: added }, NO_IDENTITY);
    }
    return allowed;
  }

  private deny(code: Status, reason: string, details: string): void {
    this.deps.observer.denied(Status[code], reason);
    this.fail(code, details);
  }

  /** The request's type, or undefined if the stream was failed or the type is ignored. */
  protected typeOf(requested: string): string | undefined {
    const t = requested || this.fixedType;
    if (!t) {
      this.fail(Status.INVALID_ARGUMENT, 'type_url is required on an aggregated stream');
      return undefined;
    }
    if (this.fixedType && t !== this.fixedType) {
      this.fail(Status.INVALID_ARGUMENT, `type_url ${clip(t)} does not match this service (${this.fixedType})`);
      return undefined;
    }
    if (isXdsType(t) || this.types.has(t)) return t;
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

  protected state(typeUrl: string): TypeState {
    let st = this.types.get(typeUrl);
    if (!st) {
      const table = this.deps.store.table(typeUrl, this.proxy!.view);
      st = new TypeState(typeUrl, table, () => this.schedule());
      this.types.set(typeUrl, st);
    }
    return st;
  }

  protected nextNonce(): string {
    return (++this.nonces).toString();
  }

  /** After a Cluster changes, Envoy warms it only on a fresh CLA: resend its EDS resource. */
  protected resendEndpoints(edsNames: readonly string[]): void {
    const eds = this.types.get(TypeUrl.Endpoint);
    if (!eds || edsNames.length === 0) return;
    for (const n of edsNames) eds.deleteSent(n);
    eds.markDirty(edsNames);
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
    const routing = !this.fixedType && [TypeUrl.Listener, TypeUrl.Route].some((t) => this.types.get(t)?.pending());
    for (const st of this.inPushOrder()) {
      const t = st.typeUrl;
      if (!st.pending()) continue;
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
      const since = st.dirtySince;
      st.holdRemovals = routing && (t === TypeUrl.Cluster || t === TypeUrl.Endpoint);
      const out = this.build(st);
      st.holdRemovals = false;
      st.dirtySince = undefined;
      st.mustRespond = false;
      if (out) this.write(t, out, since);
      if (this.writing || this.closed) return;
    }
    // Removals held back above are dirty again: send them now that LDS/RDS went out.
    for (const st of this.types.values()) if (st.pending()) return this.schedule();
  }

  /** Envoy's types in ADS order, then Istio config types in the order they were asked for. */
  private *inPushOrder(): IterableIterator<TypeState> {
    for (const t of ADS_ORDER) {
      const st = this.types.get(t);
      if (st) yield st;
    }
    if (this.istioTypes) for (const [t, st] of this.types) if (!isXdsType(t)) yield st;
  }

  /**
   * One response in flight per stream: the next is built only once this one has left for the
   * socket, so a slow proxy gets the latest state when it catches up, not a queue of old ones.
   */
  private write(typeUrl: string, out: Built, since: number | undefined): void {
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
    this.deps.observer.pushed(typeUrl, size, out.resources, since === undefined ? undefined : Date.now() - since);
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
    for (const st of this.types.values()) st.close();
    this.deps.observer.streamClosed(this.kind);
    this.deps.onClose(this);
  }

  protected recordAckOrNack(st: TypeState, nonce: string, version: string, error: { message?: string } | null | undefined): void {
    // Only an answer to our latest response counts; an older nonce says nothing about it.
    if (!nonce || nonce !== st.lastNonce) return;
    if (error) {
      // Envoy's NACK messages name the failing resources: worth keeping, but not megabytes of them.
      const message = clip(error.message ?? '', 4096);
      st.nack = { message, nonce, version: clip(version), at: Date.now() };
      this.deps.observer.nacked(st.typeUrl, this.proxy?.id ?? '', message);
      this.deps.log.warn({ proxy: this.who, type: shortType(st.typeUrl), nonce, message: clip(message) }, 'proxy rejected a response');
    } else {
      st.versionAcked = clip(version);
      st.nack = undefined;
    }
  }
}
