// What meshfed serves from a misbehaving remote cluster, on a fake clock: last known endpoints
// keep serving while it is unreachable, are demoted past staleAfter and withdrawn past withdrawAfter;
// a mass withdrawal is held until a relist or confirmAfter confirms it, or the endpoints come back.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ServiceContribution } from '../../src/model/source.js';
import { type GuardOptions, RemoteGuard } from '../../src/sources/kube/remote-guard.js';
import { contribution } from '../helpers/model.js';

const OPTS: GuardOptions = {
  staleAfterMs: 60_000,
  withdrawAfterMs: 300_000,
  maxDropShare: 0.5,
  confirmAfterMs: 30_000,
  dropWindowMs: 10_000,
};

/** What the guard's output says is served, per service key: endpoint count and priorities. */
class Served {
  readonly now = new Map<string, ServiceContribution>();
  replace(all: Map<string, ServiceContribution>): void {
    this.now.clear();
    for (const [k, v] of all) this.now.set(k, v);
  }
  patch(p: Map<string, ServiceContribution | undefined>): void {
    for (const [k, v] of p) {
      if (v) this.now.set(k, v);
      else this.now.delete(k);
    }
  }
  counts(): Record<string, number> {
    return Object.fromEntries([...this.now].map(([k, c]) => [k, c.endpoints.length]));
  }
  priorities(): number[] {
    return [...new Set([...this.now.values()].flatMap((c) => c.endpoints.map((e) => e.priority ?? 0)))];
  }
}

const view = (...cs: ServiceContribution[]): Map<string, ServiceContribution> => new Map(cs.map((c) => [`c2/${c.hostname}`, c]));
const key = (name: string): string => `c2/${name}.ns.svc.cluster.local`;

describe('RemoteGuard', () => {
  let served: Served;
  let guard: RemoteGuard;
  beforeEach(() => {
    vi.useFakeTimers();
    served = new Served();
    guard = new RemoteGuard(OPTS, served);
  });
  afterEach(() => {
    guard.stop();
    vi.useRealTimers();
  });

  it("keeps an unreachable cluster's endpoints, demotes them past staleAfter, withdraws them past withdrawAfter", () => {
    guard.replace(view(contribution('a', 'c2', 3)));
    guard.setReachable(false);
    expect(served.counts()).toEqual({ [key('a')]: 3 });
    expect(served.priorities()).toEqual([0]);

    vi.advanceTimersByTime(OPTS.staleAfterMs - 1);
    expect(guard.status().phase).toBe('fresh');
    vi.advanceTimersByTime(2);
    expect(guard.status().phase).toBe('demoted');
    expect(served.counts()).toEqual({ [key('a')]: 3 });
    expect(served.priorities()).toEqual([1]);

    vi.advanceTimersByTime(OPTS.withdrawAfterMs - OPTS.staleAfterMs);
    expect(guard.status().phase).toBe('withdrawn');
    expect(served.counts()).toEqual({ [key('a')]: 0 }); // the service stays, empty

    // Back: what it holds then serves at normal priority.
    guard.patch(view(contribution('a', 'c2', 2)));
    guard.setReachable(true);
    expect(guard.status().phase).toBe('fresh');
    expect(served.counts()).toEqual({ [key('a')]: 2 });
    expect(served.priorities()).toEqual([0]);
  });

  it('holds a withdrawal of more than maxDropShare, lets growing services through, and releases it after confirmAfter', () => {
    guard.replace(view(contribution('a', 'c2', 4), contribution('b', 'c2', 4)));
    guard.patch(
      new Map([
        [key('a'), undefined],
        [key('b'), contribution('b', 'c2', 1)],
      ]),
    ); // 8 -> 1: held
    expect(served.counts()).toEqual({ [key('a')]: 4, [key('b')]: 4 });
    expect(guard.status()).toMatchObject({ heldServices: 2, heldEndpoints: 8 });

    guard.patch(view(contribution('c', 'c2', 2))); // a new service is not held back
    expect(served.counts()).toEqual({ [key('a')]: 4, [key('b')]: 4, [key('c')]: 2 });

    vi.advanceTimersByTime(OPTS.confirmAfterMs - 1);
    expect(guard.status().heldServices).toBe(2);
    vi.advanceTimersByTime(2);
    expect(served.counts()).toEqual({ [key('b')]: 1, [key('c')]: 2 });
    expect(guard.status()).toMatchObject({ heldServices: 0, endpoints: 3 });
  });

  it('counts confirmAfter from the last change to what is held', () => {
    guard.replace(view(contribution('a', 'c2', 10)));
    guard.patch(view(contribution('a', 'c2', 4)));
    vi.advanceTimersByTime(20_000);
    guard.patch(view(contribution('a', 'c2', 3)));
    vi.advanceTimersByTime(20_000); // 40 s after the first drop, 20 s after the last
    expect(served.counts()).toEqual({ [key('a')]: 10 });
    vi.advanceTimersByTime(10_001);
    expect(served.counts()).toEqual({ [key('a')]: 3 });
  });

  it('releases a hold at once when a relist confirms it, and drops it when the endpoints come back', () => {
    guard.replace(view(contribution('a', 'c2', 10)));
    guard.patch(view(contribution('a', 'c2', 2)));
    expect(served.counts()).toEqual({ [key('a')]: 10 });
    guard.patch(view(contribution('a', 'c2', 10))); // undone
    expect(guard.status().heldServices).toBe(0);
    expect(served.counts()).toEqual({ [key('a')]: 10 });

    guard.patch(view(contribution('a', 'c2', 2)));
    expect(guard.status().heldServices).toBe(1);
    guard.confirm();
    expect(served.counts()).toEqual({ [key('a')]: 2 });
    expect(guard.status().heldServices).toBe(0);
  });

  it('judges a burst of deletions within dropWindow as one update', () => {
    guard.replace(view(...['a', 'b', 'c', 'd'].map((n) => contribution(n, 'c2', 1))));
    guard.patch(new Map([[key('a'), undefined]])); // 4 -> 3: through
    guard.patch(new Map([[key('b'), undefined]])); // 4 -> 2: through (not below half)
    expect(Object.keys(served.counts())).toEqual([key('c'), key('d')]);
    guard.patch(new Map([[key('c'), undefined]])); // 4 -> 1: held, though 2 -> 1 is only half
    expect(Object.keys(served.counts())).toEqual([key('c'), key('d')]);
    expect(guard.status().heldServices).toBe(1);
  });

  it('lowers the reference once dropWindow passes without a hold', () => {
    guard.replace(view(...['a', 'b', 'c', 'd'].map((n) => contribution(n, 'c2', 1))));
    guard.patch(
      new Map([
        [key('a'), undefined],
        [key('b'), undefined],
      ]),
    ); // 4 -> 2
    vi.advanceTimersByTime(OPTS.dropWindowMs);
    guard.patch(new Map([[key('c'), undefined]])); // reference 2 -> 1: through
    expect(Object.keys(served.counts())).toEqual([key('d')]);
  });
});
