// Status conditions as Deckhouse's discovery hooks write them on IstioFederation / IstioMulticluster.
export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  readonly type: string;
  readonly status: ConditionStatus;
  readonly reason: string;
  readonly message: string;
  readonly lastTransitionTime: string;
  readonly lastProbeTime: string;
}

export const PUBLIC_READY = 'PublicMetadataExchangeReady';
export const PRIVATE_READY = 'PrivateMetadataExchangeReady';
/** IstioMulticluster only: the peer's api-proxy answers `GET /api` with APIVersions. */
export const API_READY = 'RemoteAPIServerReady';

/** What one probe found for one condition type. */
export interface Probe {
  readonly type: string;
  readonly status: ConditionStatus;
  readonly reason: string;
  readonly message: string;
}

/**
 * The new condition list: probed types updated (lastTransitionTime kept when status, reason and
 * message are unchanged; lastProbeTime always now), every other type kept as it was, in its place.
 */
export function mergeConditions(current: readonly unknown[] | undefined, probes: readonly Probe[], now: string): Condition[] {
  const byType = new Map(probes.map((p) => [p.type, p]));
  const out: Condition[] = [];
  const seen = new Set<string>();
  for (const c of current ?? []) {
    const type = (c as { type?: unknown } | null)?.type;
    if (typeof type !== 'string' || seen.has(type)) continue;
    seen.add(type);
    const p = byType.get(type);
    out.push(p ? next(c as Condition, p, now) : (c as Condition));
  }
  for (const p of probes) if (!seen.has(p.type)) out.push(next(undefined, p, now));
  return out;
}

function next(prev: Condition | undefined, p: Probe, now: string): Condition {
  const same =
    prev &&
    prev.status === p.status &&
    prev.reason === p.reason &&
    prev.message === p.message &&
    typeof prev.lastTransitionTime === 'string';
  return {
    type: p.type,
    status: p.status,
    reason: p.reason,
    message: p.message,
    lastTransitionTime: same ? prev.lastTransitionTime : now,
    lastProbeTime: now,
  };
}
