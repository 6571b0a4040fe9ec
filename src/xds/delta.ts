// Incremental (delta) streams, ADS and per-type.
//
// Choices where the spec leaves room:
// - Subscribing to a name the client already holds resends it, except on the first request
//   of a type, where initial_resource_versions says what the client holds and a matching
//   version is not resent (envoyproxy/envoy#22418: a client may have forgotten a resource,
//   and re-subscribing is how it asks again).
// - Subscription changes apply whatever the nonce (the spec requires it).
// - A subscribed name that does not exist is reported once in removed_resources, and sent
//   when it appears.
import type { NodeInfo } from '../model/proxy.js';
import { isFullState, shortType, TypeUrl } from '../envoy/protos.js';
import { overLimit } from './limits.js';
import type { Entry } from './resource.js';
import { type Built, XdsStream } from './stream.js';
import type { TypeState } from './subscription.js';
import { DeltaResponseField as F, MessageWriter, encodeRepeated } from './wire.js';

export interface DeltaRequest {
  node: NodeInfo | null;
  type_url: string;
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions: Record<string, string>;
  response_nonce: string;
  error_detail: { code?: number; message?: string } | null;
}

export class DeltaStream extends XdsStream {
  /** Characters of the names subscribed, across types. */
  private nameChars = 0;
  protected handle(raw: object): void {
    const req = raw as DeltaRequest;
    this.identify(req.node);
    const typeUrl = this.typeOf(req.type_url);
    if (!typeUrl) return;
    if (typeUrl === TypeUrl.Secret && !this.maySubscribeSecrets(req.resource_names_subscribe)) return;
    const first = !this.types.has(typeUrl);
    const st = this.state(typeUrl);
    this.recordAckOrNack(st, req.response_nonce, st.versionSent, req.error_detail);
    this.subscribe(st, typeUrl, typeUrl === TypeUrl.Secret ? this.withholdDelta(st, req) : req, first);
    // Each request is within the limits; so must be what they add up to (as one SotW request would).
    const { maxNames, maxRequestBytes } = this.deps.limits;
    if (st.names.size > maxNames) return this.refuse(overLimit('names', `a subscription to ${st.names.size} ${shortType(typeUrl)} resources`, maxNames));
    if (this.nameChars > maxRequestBytes) return this.refuse(overLimit('request-bytes', `a subscription whose names add up to ${this.nameChars} characters`, maxRequestBytes));
    if (st.pending()) this.schedule();
  }

  /** Secrets a stream without an identity may not have are answered as names that do not exist. */
  private withholdDelta(st: TypeState, req: DeltaRequest): DeltaRequest {
    const allowed = this.withholdSecrets(st, req.resource_names_subscribe, false);
    for (const n of req.resource_names_unsubscribe) st.withheld.delete(n);
    for (const n of req.resource_names_subscribe) if (n !== '*' && st.withheld.has(n)) st.removedPending.add(n);
    return { ...req, resource_names_subscribe: allowed };
  }

  private subscribe(st: TypeState, typeUrl: string, req: DeltaRequest, first: boolean): void {
    const sub = req.resource_names_subscribe;
    const unsub = req.resource_names_unsubscribe;
    if (first && sub.length === 0 && unsub.length === 0 && isFullState(typeUrl)) st.wildcard = true; // legacy wildcard
    const wasWildcard = st.wildcard;
    for (const n of sub) {
      if (n === '*') st.wildcard = true;
      else {
        if (!st.names.has(n)) this.nameChars += n.length;
        st.names.add(st.table.get(n)?.name ?? n); // the table's string: streams share it
        if (!first) st.deleteSent(n);
      }
    }
    for (const n of unsub) {
      if (n === '*') st.wildcard = false;
      else if (st.names.delete(n)) {
        this.nameChars -= n.length;
        // Still covered by a wildcard: answer with it (or its removal) so the client keeps the right view.
        if (st.wildcard && st.table.get(n)) st.deleteSent(n);
        else if (st.wildcard) st.removedPending.add(n);
        else st.deleteSent(n);
      }
    }
    if (wasWildcard && !st.wildcard) for (const n of [...st.sent.keys()]) if (!st.names.has(n)) st.deleteSent(n);
    st.subscriptionChanged();

    if (first) {
      // The client says what it holds: skip what is current, remove what is gone.
      for (const [n, version] of Object.entries(req.initial_resource_versions)) {
        if (!st.wildcard && !st.names.has(n)) continue;
        const e = st.table.get(n);
        if (e && e.version === version) st.setSent(n, e);
        else if (!e) st.removedPending.add(n);
      }
      st.markDirty('all');
      st.mustRespond = st.wildcard;
    } else {
      st.markDirty(sub.filter((n) => n !== '*'));
      if (st.wildcard && !wasWildcard) st.markDirty('all');
      for (const n of unsub) if (st.wildcard && n !== '*') st.markDirty([n]);
    }
  }

  protected build(st: TypeState): Built | null {
    const toSend: Entry[] = [];
    const edsToResend: string[] = [];
    const removed = new Set(st.removedPending);
    st.removedPending.clear();
    const held: string[] = [];
    for (const n of st.takeDirty()) {
      if (!st.names.has(n) && !st.wildcard) {
        st.deleteSent(n);
        continue;
      }
      const e = st.table.get(n);
      if (!e && st.holdRemovals && st.sent.get(n)) held.push(n); // removed after LDS/RDS
      else if (e) {
        const old = st.sent.get(n);
        if (old !== e) {
          if (old && e.edsName) edsToResend.push(e.edsName);
          toSend.push(e);
          st.setSent(n, e);
          removed.delete(n);
        }
      } else if (st.names.has(n)) {
        if (st.sent.get(n) !== null) {
          removed.add(n);
          st.setSent(n, null);
        }
      } else if (st.sent.has(n)) {
        removed.add(n);
        st.deleteSent(n);
      }
    }
    if (held.length) st.markDirty(held);
    if (toSend.length === 0 && removed.size === 0 && !st.mustRespond) return null;
    this.resendEndpoints(edsToResend);
    const everything = removed.size === 0 && toSend.length === st.sent.size;
    const encode = (): Buffer => encodeRepeated(F.resources, toSend.map((e) => e.deltaBytes()));
    const body = everything ? st.table.cachedBody(`delta ${st.subscriptionKey()}`, encode) : encode();
    const version = st.sum.toString();
    const nonce = this.nextNonce();
    st.lastNonce = nonce;
    st.versionSent = version;
    const w = new MessageWriter().string(F.systemVersionInfo, version).raw(body).string(F.typeUrl, st.typeUrl);
    for (const n of removed) w.string(F.removedResources, n);
    w.string(F.nonce, nonce);
    return { bytes: w.finish(), resources: toSend.length };
  }
}
