// What meshfed serves from one cluster when the cluster misbehaves. Two rules:
//
// Staleness. While the cluster is unreachable its last known endpoints keep serving. Past
// `staleAfterMs` they are demoted (Endpoint.priority 1: used only when nothing else is healthy); past
// `withdrawAfterMs` (counted from the same moment) they are withdrawn (the services stay, empty).
// When the cluster answers again, what it holds then serves at normal priority.
//
// Mass withdrawal. An update that would leave fewer than (1 − maxDropShare) of the endpoints the cluster
// had at the reference point is held: the withdrawing services keep their endpoints, while services that
// grow or keep their count go through. The reference is the endpoint count, raised whenever it grows
// and lowered to the current count once `dropWindowMs` has passed without a hold, so a burst of
// deletions is judged as one update. A hold is released when the drop is confirmed (a relist shows it
// again, or it has been stable for `confirmAfterMs`) or undone (the endpoints come back).
import type { Endpoint } from '../../model/mesh.js';
import type { ServiceContribution } from '../../model/source.js';

export interface GuardOptions {
  readonly staleAfterMs: number;
  readonly withdrawAfterMs: number;
  readonly maxDropShare: number;
  readonly confirmAfterMs: number;
  readonly dropWindowMs: number;
}

/** No staleness handling and no holds: the local cluster, whose view meshfed always serves as is. */
export const UNGUARDED: GuardOptions = {
  staleAfterMs: Number.POSITIVE_INFINITY,
  withdrawAfterMs: Number.POSITIVE_INFINITY,
  maxDropShare: 1,
  confirmAfterMs: 0,
  dropWindowMs: 0,
};

export type Phase = 'fresh' | 'demoted' | 'withdrawn';

export interface GuardOutput {
  /** Replace everything the cluster contributes. */
  replace(all: Map<string, ServiceContribution>): void;
  /** Set (or, where undefined, delete) some contributions. */
  patch(patch: Map<string, ServiceContribution | undefined>): void;
}

export interface GuardStatus {
  readonly phase: Phase;
  /** Endpoints accepted from the cluster (served, unless withdrawn). */
  readonly endpoints: number;
  readonly unreachableSince?: number;
  /** Services whose withdrawal is held, and the endpoints they keep. */
  readonly heldServices: number;
  readonly heldEndpoints: number;
  readonly heldSince?: number;
}

const count = (c: ServiceContribution | undefined): number => c?.endpoints.length ?? 0;

export class RemoteGuard {
  private readonly desired = new Map<string, ServiceContribution>();
  private readonly accepted = new Map<string, ServiceContribution>();
  private acceptedEndpoints = 0;
  private held = new Set<string>();
  private heldSince: number | undefined;
  private reference = 0;
  private referenceAt = 0;
  private unreachableSince: number | undefined;
  private phase: Phase = 'fresh';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: GuardOptions,
    private readonly out: GuardOutput,
    private readonly now: () => number = Date.now,
  ) {}

  /** The cluster's whole view (first sync, or a replacement watch after a credentials rotation). */
  replace(all: ReadonlyMap<string, ServiceContribution>): void {
    const keys = new Set([...this.desired.keys(), ...all.keys()]);
    this.desired.clear();
    for (const [k, v] of all) this.desired.set(k, v);
    this.evaluate(keys, false);
  }

  patch(patch: ReadonlyMap<string, ServiceContribution | undefined>): void {
    for (const [k, v] of patch) {
      if (v) this.desired.set(k, v);
      else this.desired.delete(k);
    }
    this.evaluate(new Set(patch.keys()), false);
  }

  /** A relist showed the cluster's current state: held withdrawals are confirmed. */
  confirm(): void {
    if (this.held.size) this.evaluate(new Set(), true);
  }

  setReachable(reachable: boolean): void {
    if (reachable) {
      this.unreachableSince = undefined;
      this.setPhase('fresh');
    } else {
      this.unreachableSince ??= this.now();
    }
    this.tick();
  }

  /** Moves the phase on and releases confirmed holds; arms a timer for the next deadline. */
  tick(): void {
    const now = this.now();
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.heldSince !== undefined && now - this.heldSince >= this.opts.confirmAfterMs) this.evaluate(new Set(), true);
    if (this.unreachableSince !== undefined) {
      const down = now - this.unreachableSince;
      this.setPhase(down >= this.opts.withdrawAfterMs ? 'withdrawn' : down >= this.opts.staleAfterMs ? 'demoted' : 'fresh');
    }
    const deadlines = [
      this.heldSince !== undefined ? this.heldSince + this.opts.confirmAfterMs : Infinity,
      this.unreachableSince !== undefined && this.phase === 'fresh' ? this.unreachableSince + this.opts.staleAfterMs : Infinity,
      this.unreachableSince !== undefined && this.phase !== 'withdrawn' ? this.unreachableSince + this.opts.withdrawAfterMs : Infinity,
    ];
    const next = Math.min(...deadlines);
    if (Number.isFinite(next)) {
      this.timer = setTimeout(() => this.tick(), Math.max(0, next - now) + 1);
      this.timer.unref();
    }
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  status(): GuardStatus {
    let heldEndpoints = 0;
    for (const k of this.held) heldEndpoints += count(this.accepted.get(k));
    return {
      phase: this.phase,
      endpoints: this.acceptedEndpoints,
      unreachableSince: this.unreachableSince,
      heldServices: this.held.size,
      heldEndpoints,
      heldSince: this.heldSince,
    };
  }

  private evaluate(changed: ReadonlySet<string>, confirmed: boolean): void {
    const now = this.now();
    // A quiet window has passed since the last drop: this update is a new one, judged from here.
    if (!this.held.size && now - this.referenceAt >= this.opts.dropWindowMs) {
      this.reference = this.acceptedEndpoints;
      this.referenceAt = now;
    }
    const grow: string[] = [];
    const shrink: string[] = [];
    let drop = 0;
    for (const k of new Set([...changed, ...this.held])) {
      const d = this.desired.get(k);
      const a = this.accepted.get(k);
      if (d === a) continue;
      if (count(d) >= count(a)) grow.push(k);
      else {
        shrink.push(k);
        drop += count(a) - count(d);
      }
    }
    const floor = this.reference * (1 - this.opts.maxDropShare);
    const hold = !confirmed && shrink.length > 0 && this.acceptedEndpoints - drop < floor;
    const take = hold ? grow : [...grow, ...shrink];
    if (hold) {
      // "Stable for a while" counts from the last change to what is held.
      if (this.heldSince === undefined || shrink.some((k) => changed.has(k))) this.heldSince = now;
      this.held = new Set(shrink);
    } else {
      this.held.clear();
      this.heldSince = undefined;
    }
    const patch = new Map<string, ServiceContribution | undefined>();
    for (const k of take) {
      const d = this.desired.get(k);
      this.acceptedEndpoints += count(d) - count(this.accepted.get(k));
      if (d) this.accepted.set(k, d);
      else this.accepted.delete(k);
      patch.set(k, d && this.shown(d));
    }
    if (!hold && (this.acceptedEndpoints >= this.reference || now - this.referenceAt >= this.opts.dropWindowMs || confirmed)) {
      this.reference = this.acceptedEndpoints;
      this.referenceAt = now;
    }
    if (patch.size) this.out.patch(patch);
    if (hold || confirmed) this.tick();
  }

  private setPhase(phase: Phase): void {
    if (phase === this.phase) return;
    this.phase = phase;
    const all = new Map<string, ServiceContribution>();
    for (const [k, c] of this.accepted) all.set(k, this.shown(c));
    this.out.replace(all);
  }

  /** A contribution as the current phase serves it. */
  private shown(c: ServiceContribution): ServiceContribution {
    switch (this.phase) {
      case 'fresh':
        return c;
      case 'demoted':
        return { ...c, endpoints: c.endpoints.map((e): Endpoint => ({ ...e, priority: 1 })) };
      case 'withdrawn':
        return { ...c, endpoints: [] };
    }
  }
}
