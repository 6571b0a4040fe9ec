// Debug views of what each proxy is being served.
import { shortType, TypeUrl } from '../envoy/protos.js';
import type { XdsStream } from '../xds/stream.js';
import type { SubscriptionStatus } from '../xds/subscription.js';

export type SyncState = 'SYNCED' | 'STALE' | 'NOT_SENT' | 'ERROR';

export function syncState(st: SubscriptionStatus): SyncState {
  if (!st.nonce) return 'NOT_SENT';
  if (st.nack && st.nack.nonce === st.nonce) return 'ERROR';
  return st.versionAcked === st.versionSent ? 'SYNCED' : 'STALE';
}

export function syncz(streams: Iterable<XdsStream>): unknown[] {
  return [...streams].map((s) => ({
    proxy: s.proxy?.id ?? '',
    stream: s.id,
    kind: s.kind,
    view: s.proxy?.view,
    connectedAt: new Date(s.connectedAt).toISOString(),
    types: [...s.typeStates()].map(([t, st]) => ({
      type: shortType(t),
      typeUrl: t,
      state: syncState(st),
      // Names the policy withheld (secrets a stream without an identity asked for): never sent, and why.
      ...(st.withheld.size > 0 && {
        ...(syncState(st) === 'NOT_SENT' && { reason: st.withheldReason }),
        notSent: [...st.withheld].map((name) => ({ name, state: 'NOT_SENT', reason: st.withheldReason })),
      }),
      versionSent: st.versionSent,
      versionAcked: st.versionAcked,
      nonce: st.nonce,
      subscribed: st.wildcard ? ['*', ...st.names] : [...st.names],
      lastNack: st.nack && { message: st.nack.message, nonce: st.nack.nonce, at: new Date(st.nack.at).toISOString() },
    })),
  }));
}

/**
 * What the matching proxies hold, as proto3 JSON by type (bytes base64, secrets "[redacted]", as
 * Entry.toJSON gives them); `noSecrets` says why SDS is empty for everyone, if it is.
 */
export function configDump(streams: Iterable<XdsStream>, proxy: string, noSecrets?: string): unknown[] {
  const out: unknown[] = [];
  for (const s of streams) {
    if (s.proxy?.id !== proxy && String(s.id) !== proxy) continue;
    const types: Record<string, unknown> = {};
    for (const [t, st] of s.typeStates()) {
      types[shortType(t)] = {
        versionInfo: st.versionSent,
        resources: [...st.sent.values()].flatMap((e) => (e ? [{ name: e.name, version: e.version, resource: e.toJSON() }] : [])),
        ...(t === TypeUrl.Secret && noSecrets ? { note: noSecrets } : {}),
      };
    }
    out.push({ proxy: s.proxy?.id, stream: s.id, view: s.proxy?.view, types });
  }
  return out;
}
