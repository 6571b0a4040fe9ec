// The registry: merging same-named services across clusters and sources, per-key debounce with
// a max wait, the change sets generators rely on, and snapshots that never change once published.
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { MeshChanges, MeshSnapshot, RawResource } from '../../src/model/mesh.js';
import { contributionKey, rawKey, type ServiceContribution, type SourceMesh } from '../../src/model/source.js';
import { mergeService } from '../../src/registry/merge.js';
import { Registry } from '../../src/registry/registry.js';
import { contribution, endpoint } from '../helpers/model.js';

const A = 'a.ns.svc.cluster.local';
const B = 'b.ns.svc.cluster.local';
const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';

function source(services: ServiceContribution[], raw: RawResource[] = []): SourceMesh {
  return {
    clusters: new Map(),
    services: new Map(services.map((s) => [contributionKey(s), s])),
    raw: new Map(raw.map((r) => [rawKey(r), r])),
  };
}

interface Published {
  snapshot: MeshSnapshot;
  changes: MeshChanges;
  at: number;
  /** When it was published. */
  now: number;
}

describe('mergeService', () => {
  it('joins endpoints of same-named services across clusters, ports by number, first cluster id winning a conflict', () => {
    const c2 = contribution('a', 'c2', [endpoint('10.2.0.1', { clusterId: 'c2' })], {
      ports: [
        { name: 'http', port: 80, protocol: 'HTTP', targetPort: 9090 },
        { name: 'grpc', port: 81, protocol: 'GRPC', targetPort: 8081 },
      ],
      exported: true,
    });
    const c1 = contribution('a', 'c1', [endpoint('10.1.0.2', { clusterId: 'c1' }), endpoint('10.1.0.1', { clusterId: 'c1' })]);
    const m = mergeService([c2, c1])!;
    expect(m.service).toMatchObject({
      hostname: A,
      clusters: ['c1', 'c2'],
      exported: true,
      ports: [
        { name: 'http', port: 80, protocol: 'HTTP', targetPort: 8080 },
        { name: 'grpc', port: 81, protocol: 'GRPC', targetPort: 8081 },
      ],
    });
    expect(m.endpoints.map((e) => `${e.clusterId} ${e.address}`)).toEqual(['c1 10.1.0.1', 'c1 10.1.0.2', 'c2 10.2.0.1']);
    expect(m.conflicts).toEqual([`${A} port 80: cluster c2 says http/HTTP->9090, keeping http/HTTP->8080`]);
  });

  it('merges nothing into nothing', () => {
    expect(mergeService([])).toBeUndefined();
  });
});

describe('Registry', () => {
  let out: Published[];
  let registry: Registry;
  beforeEach(() => {
    vi.useFakeTimers();
    out = [];
    registry = new Registry(
      { quietMs: 100, maxMs: 1000 },
      (snapshot, changes, at) => out.push({ snapshot, changes, at, now: Date.now() }),
      pino({ level: 'silent' }),
    );
  });
  afterEach(() => {
    registry.stop();
    vi.useRealTimers();
  });

  it('publishes each key once it has been quiet, and a steady trickle no later than the max debounce', () => {
    const t0 = Date.now();
    registry.setSource('s', source([contribution('a', 'c1', 1)]));
    vi.advanceTimersByTime(50);
    registry.setSource('s', source([contribution('a', 'c1', 2)]));
    vi.advanceTimersByTime(50);
    // The description settled at t0 + 100; the endpoints moved again at t0 + 50.
    expect(out.map((p) => [p.now - t0, [...p.changes.services], [...p.changes.endpoints]])).toEqual([[100, [A], []]]);
    vi.advanceTimersByTime(49);
    expect(out).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(out.map((p) => [p.now - t0, [...p.changes.services], [...p.changes.endpoints], p.at - t0])).toEqual([
      [100, [A], [], 0],
      [150, [], [A], 0],
    ]);
    expect(out[1]!.snapshot.endpoints.get(A)).toHaveLength(2);

    out = [];
    const t1 = Date.now();
    for (let i = 3; i < 30; i++) {
      registry.setSource('s', source([contribution('a', 'c1', i)]));
      vi.advanceTimersByTime(50);
    }
    expect(out.map((p) => [p.now - t1, p.at - t1, [...p.changes.endpoints]])).toEqual([[1000, 0, [A]]]);
    expect(out[0]!.snapshot.endpoints.get(A)).toHaveLength(22); // as it was at the max wait
  });

  it('merges a hostname that two sources report for two clusters, and splits it again when one goes', () => {
    registry.setSource('kube:c1', source([contribution('a', 'c1', 1)]));
    registry.setSource('kube:c2', source([contribution('a', 'c2', 2)]));
    registry.flush();
    const merged = out.at(-1)!.snapshot;
    expect(merged.services.get(A)?.clusters).toEqual(['c1', 'c2']);
    expect(merged.endpoints.get(A)?.map((e) => e.clusterId)).toEqual(['c1', 'c2', 'c2']);

    registry.removeSource('kube:c2');
    registry.flush();
    const after = out.at(-1)!;
    expect(after.snapshot.services.get(A)?.clusters).toEqual(['c1']);
    expect(after.changes).toMatchObject({ services: new Set([A]), endpoints: new Set([A]), identities: new Set([A]) });
  });

  it('names in its change set only what changed, and endpoint identities only when who serves changed', () => {
    registry.setSource('s', source([contribution('a', 'c1', 1), contribution('b', 'c1', 1)]));
    registry.flush();
    expect(out[0]!.changes).toMatchObject({ services: new Set([A, B]), endpoints: new Set([A, B]), identities: new Set([A, B]) });

    // Same content again: nothing to publish.
    registry.setSource('s', source([contribution('a', 'c1', 1), contribution('b', 'c1', 1)]));
    registry.flush();
    expect(out).toHaveLength(1);

    // A new address, same identity: b's endpoints changed, its identities and its description did not.
    registry.patchSource('s', { services: new Map([[`c1/${B}`, contribution('b', 'c1', 2)]]) });
    registry.flush();
    expect(out[1]!.changes).toEqual({
      clusters: false,
      services: new Set(),
      endpoints: new Set([B]),
      identities: new Set(),
      raw: new Map(),
    });

    // Another service account: identities change.
    registry.patchSource('s', {
      services: new Map([[`c1/${B}`, contribution('b', 'c1', [endpoint('10.0.0.1', { serviceAccount: 'other' })])]]),
    });
    registry.flush();
    expect(out[2]!.changes.identities).toEqual(new Set([B]));
  });

  it('reports raw resources as type URL to names, deletions included', () => {
    const l = (name: string): RawResource => ({ typeUrl: LISTENER, name, body: { name } });
    registry.setSource('file', source([], [l('x'), l('y z')]));
    registry.flush();
    expect(out[0]!.changes.raw).toEqual(new Map([[LISTENER, new Set(['x', 'y z'])]]));
    expect([...out[0]!.snapshot.raw.get(LISTENER)!.keys()]).toEqual(['x', 'y z']);

    registry.patchSource('file', { raw: new Map([[rawKey(l('y z')), undefined]]) });
    registry.flush();
    expect(out[1]!.changes.raw).toEqual(new Map([[LISTENER, new Set(['y z'])]]));
    expect([...out[1]!.snapshot.raw.get(LISTENER)!.keys()]).toEqual(['x']);

    registry.removeSource('file');
    registry.flush();
    expect(out[2]!.snapshot.raw.has(LISTENER)).toBe(false);
  });

  it('never changes a snapshot once published', () => {
    registry.setSource('s', source([contribution('a', 'c1', 1)]));
    registry.flush();
    const first = out[0]!.snapshot;
    const firstEndpoints = first.endpoints.get(A);
    registry.setSource('s', source([contribution('a', 'c1', 3), contribution('b', 'c1', 1)]));
    registry.flush();
    expect(first.endpoints.get(A)).toBe(firstEndpoints);
    expect(first.services.has(B)).toBe(false);
    expect(Object.isFrozen(out[1]!.snapshot)).toBe(true);
    expect(registry.snapshot).toBe(out[1]!.snapshot);
    expect(out[1]!.snapshot.endpoints.get(A)).toHaveLength(3);
  });
});
