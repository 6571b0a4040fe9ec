// State-of-the-world streams (ADS and per-type).
//
// Stale nonces: a request whose response_nonce is not the latest we sent is never taken
// as an ACK or NACK, but its resource_names are applied all the same. SotW requests carry
// the whole subscription, so the latest request is always the client's current wish;
// ignoring it (go-control-plane's choice) loses subscription changes that race a push
// (envoyproxy/envoy#10363).
import type { NodeInfo } from '../model/proxy.js';
import { isFullState, TypeUrl } from '../envoy/protos.js';
import type { Entry } from './resource.js';
import { type Built, XdsStream } from './stream.js';
import type { TypeState } from './subscription.js';
import { DiscoveryResponseField as F, MessageWriter, encodeRepeated } from './wire.js';

export interface SotwRequest {
  version_info: string;
  node: NodeInfo | null;
  /** Identifies resource_names without decoding them ('' for none). */
  names_fingerprint: string;
  /** Decodes resource_names (left encoded until a stream needs them). */
  decodeNames: () => string[];
  type_url: string;
  response_nonce: string;
  error_detail: { code?: number; message?: string } | null;
}

export class SotwStream extends XdsStream {
  protected handle(raw: object): void {
    const req = raw as SotwRequest;
    this.identify(req.node);
    const typeUrl = this.typeOf(req.type_url);
    if (!typeUrl) return;
    if (typeUrl === TypeUrl.Secret && !this.maySubscribeSecrets(req.decodeNames())) return;
    const first = !this.types.has(typeUrl);
    const st = this.state(typeUrl);
    this.recordAckOrNack(st, req.response_nonce, req.version_info, req.error_detail);
    // Most requests are ACKs repeating the same names (Envoy lists every EDS name each time).
    if (first || req.names_fingerprint !== st.namesFingerprint) {
      st.namesFingerprint = req.names_fingerprint;
      const names = typeUrl === TypeUrl.Secret ? this.withholdSecrets(st, req.decodeNames(), true) : req.decodeNames();
      this.subscribe(st, typeUrl, this.intern(st, names), first);
    }
    if (st.pending()) this.schedule();
  }

  private subscribe(st: TypeState, typeUrl: string, requested: readonly string[], first: boolean): void {
    const wasWildcard = st.wildcard;
    const before = new Set(st.names);
    // Legacy wildcard (an empty list while nothing was ever named) exists only for LDS and CDS;
    // once a client names anything, an empty list means "nothing" (gRPC's last unsubscribe).
    const legacy = st.namedNothingYet && requested.length === 0 && isFullState(typeUrl);
    if (requested.length > 0) st.namedNothingYet = false;
    st.wildcard = legacy || requested.includes('*');
    st.names.clear();
    for (const n of requested) if (n !== '*') st.names.add(n);
    st.requestNames = requested;
    st.subscriptionChanged();

    const added: string[] = [];
    for (const n of st.names) if (!before.has(n)) added.push(n);
    for (const n of before) if (!st.names.has(n) && !(st.wildcard && st.table.get(n))) st.deleteSent(n);
    if (wasWildcard && !st.wildcard) for (const n of [...st.sent.keys()]) if (!st.names.has(n)) st.deleteSent(n);
    // A (re)subscribed name is sent even if the client had it before: it may have dropped it.
    for (const n of added) st.deleteSent(n);
    if (first) {
      st.markDirty('all');
      st.mustRespond = isFullState(typeUrl);
    } else if (st.wildcard && !wasWildcard) st.markDirty('all');
    else if (added.length) st.markDirty(added);
  }

  /** Names as the table's own strings, so a thousand streams do not each keep a copy. */
  private intern(st: TypeState, names: string[]): string[] {
    for (let i = 0; i < names.length; i++) {
      const e = st.table.get(names[i]!);
      if (e) names[i] = e.name;
    }
    return names;
  }

  protected build(st: TypeState): Built | null {
    return isFullState(st.typeUrl) ? this.buildFullState(st) : this.buildPerResource(st);
  }

  /** CDS/LDS: every response carries every subscribed resource; a missing one is deleted. */
  private buildFullState(st: TypeState): Built | null {
    const dirty = st.takeDirty();
    let changed = st.mustRespond;
    const held: Entry[] = [];
    for (const n of dirty) {
      const want = this.wanted(st, n);
      const had = st.sent.get(n);
      if (!want && had && st.holdRemovals && (st.wildcard || st.names.has(n))) held.push(had);
      else if ((want ?? undefined) !== (had ?? undefined)) changed = true;
    }
    if (held.length) st.markDirty(held.map((e) => e.name));
    if (!changed) return null;
    const target: Entry[] = st.wildcard ? [...st.table.entries()] : [];
    for (const n of st.names) {
      const e = st.table.get(n);
      if (e && !st.wildcard) target.push(e);
    }
    target.push(...held); // deleted, but still in this response: removed after LDS/RDS
    const edsToResend: string[] = [];
    const previous = new Map(st.sent);
    for (const n of previous.keys()) st.deleteSent(n);
    for (const e of target) {
      st.setSent(e.name, e);
      const old = previous.get(e.name);
      if (old && old !== e && e.edsName) edsToResend.push(e.edsName);
    }
    this.resendEndpoints(edsToResend);
    const encode = (): Buffer => encodeRepeated(F.resources, target.map((e) => e.any));
    // Held entries are this stream's own: such a body is not the one shared by the subscription.
    const body = held.length ? encode() : st.table.cachedBody(`sotw ${st.subscriptionKey()}`, encode);
    return this.response(st, body, target.length);
  }

  /** EDS/RDS/SDS: only what changed; a deleted resource has no SotW signal. */
  private buildPerResource(st: TypeState): Built | null {
    const toSend: Entry[] = [];
    for (const n of st.takeDirty()) {
      const want = this.wanted(st, n);
      if (!want) {
        st.deleteSent(n);
        continue;
      }
      if (st.sent.get(n) !== want) {
        toSend.push(want);
        st.setSent(n, want);
      }
    }
    if (toSend.length === 0 && !st.mustRespond) return null;
    // The first response of a big subscription is the same for every stream that shares it.
    const everything = toSend.length === st.sent.size;
    const encode = (): Buffer => encodeRepeated(F.resources, toSend.map((e) => e.any));
    const body = everything ? st.table.cachedBody(`sotw ${st.subscriptionKey()}`, encode) : encode();
    return this.response(st, body, toSend.length);
  }

  /** The entry the client should hold for a name, if it wants one. */
  private wanted(st: TypeState, name: string): Entry | undefined {
    return st.names.has(name) || st.wildcard ? st.table.get(name) : undefined;
  }

  private response(st: TypeState, body: Buffer, resources: number): Built {
    const version = st.sum.toString();
    const nonce = this.nextNonce();
    st.lastNonce = nonce;
    st.versionSent = version;
    const bytes = new MessageWriter()
      .string(F.versionInfo, version)
      .raw(body)
      .string(F.typeUrl, st.typeUrl)
      .string(F.nonce, nonce)
      .finish();
    return { bytes, resources };
  }
}

