// Conformance, ADS ordering and warming (xds.md §3 cases 49–53), SotW and delta.
import { describe, expect, vi } from 'vitest';
import {
  type AnyConn,
  body,
  expectDelta,
  expectResources,
  expectSotw,
  it,
  KINDS,
  QUIET_MS,
  request,
  short,
  SotwConn,
  T,
  variants,
} from './harness.js';
import type { XdsTypeUrl } from '../../src/envoy/protos.js';
import type { DeltaResponse, SotwResponse } from '../helpers/raw-client.js';

vi.setConfig({ maxConcurrency: 16 });

/** Opens an ADS stream with each type subscribed and ACKed. */
async function subscribeAll(c: AnyConn, subs: ReadonlyArray<readonly [string, readonly string[]]>): Promise<void> {
  for (const [t, names] of subs) {
    request(c, t, names);
    await c.next();
    c.ack(t);
  }
}

const ENVOY_LIKE = [
  [T.Cluster, ['c1']],
  [T.Endpoint, ['c1']],
  [T.Listener, ['l1']],
  [T.Route, ['r1']],
  [T.Secret, ['s1']],
] as const;

describe.concurrent('ADS ordering and warming', () => {
  describe.each(KINDS)('%s', (kind) => {
    it('case 49: one change to every type is pushed in the order CDS, EDS, LDS, RDS, SDS', async ({ h }) => {
      const c = h.open(kind, T.Cluster, true);
      await subscribeAll(c, ENVOY_LIKE);
      // Queued in reverse order, published as one snapshot.
      for (const [t, names] of [...ENVOY_LIKE].reverse()) h.set(t, names[0]!, 2);
      h.commit();
      const order: string[] = [];
      for (const [t, names] of ENVOY_LIKE) {
        const r = await c.next();
        order.push(r.type_url);
        expect(r.type_url, `response ${order.length}`).toBe(t);
        expectResources(h, r, t, [names[0]]);
        c.ack(t);
      }
      expect(order.map((u) => short(u as XdsTypeUrl))).toEqual(['CDS', 'EDS', 'LDS', 'RDS', 'SDS']);
      await c.none();
    });

    it('case 49: a cluster that a new route replaces is removed only after the new RDS (make before break)', async ({ h }) => {
      const c = h.open(kind, T.Cluster, true);
      const wildcard = kind === 'sotw' ? [] : ['*'];
      await subscribeAll(c, [
        [T.Cluster, wildcard],
        [T.Endpoint, ['c1', 'c2', 'c3']],
        [T.Listener, wildcard],
        [T.Route, ['r1']],
      ]);
      // One snapshot: the route moves from c1 to the new c4, and c1 goes away.
      const r1 = body(T.Route, 'r1', 1);
      (r1['virtual_hosts'] as Array<{ routes: Array<{ route: { cluster: string } }> }>)[0]!.routes[0]!.route.cluster = 'c4';
      h.set(T.Cluster, 'c4', 1).set(T.Endpoint, 'c4', 1).set(T.Route, 'r1', r1).del(T.Cluster, 'c1').del(T.Endpoint, 'c1').commit();
      const clusterNames = (r: SotwResponse | DeltaResponse): string[] => r.resources.map((x) => x.name).sort();
      // 1. CDS adds c4 and still holds c1.
      let r = await c.next();
      expect(r.type_url).toBe(T.Cluster);
      if ('version_info' in r) expect(clusterNames(r)).toEqual(['c1', 'c2', 'c3', 'c4']);
      else expectDelta(h, r, T.Cluster, ['c4']);
      // 2. RDS moves the route (EDS for c4 is not requested yet: Envoy asks for it while warming c4).
      r = await c.next();
      expect(r.type_url).toBe(T.Route);
      // 3. Only then is c1 removed.
      r = await c.next();
      expect(r.type_url).toBe(T.Cluster);
      if ('version_info' in r) expectSotw(h, r, T.Cluster, ['c2', 'c3', 'c4']);
      else expectDelta(h, r, T.Cluster, [], ['c1']);
      if (kind === 'delta') {
        r = await c.next();
        expectResources(h, r, T.Endpoint, [], { removed: ['c1'] });
      }
      await c.none();
    });

    it('case 50: a changed cluster whose CLA did not change is followed by a fresh CLA response', async ({ h }) => {
      const c = h.open(kind, T.Cluster, true);
      await subscribeAll(c, [
        [T.Cluster, ['c1', 'c2']],
        [T.Endpoint, ['c1']],
      ]);
      const cla = c.lastOf(T.Endpoint);
      h.set(T.Cluster, 'c1', 2).commit();
      const rc = await c.next();
      expectResources(h, rc, T.Cluster, kind === 'sotw' ? ['c1', 'c2'] : ['c1']);
      // No EDS request from the client: the server sends the unchanged CLA on its own.
      const re = await c.next();
      expectResources(h, re, T.Endpoint, ['c1']);
      if ('version_info' in re && 'version_info' in cla) expect(re.version_info).toBe(cla.version_info);
      else expect(re.resources[0]!.version).toBe(cla.resources[0]!.version);
      c.ack(T.Cluster);
      c.ack(T.Endpoint);
      // A change to c2, whose CLA is not subscribed, and which leaves c1 as it was: no CLA.
      h.set(T.Cluster, 'c2', 2).commit();
      expect((await c.next()).type_url).toBe(T.Cluster);
      await c.none();
    });

    it('case 50: under a CDS wildcard, only the changed cluster’s CLA is resent', async ({ h }) => {
      const c = h.open(kind, T.Cluster, true);
      await subscribeAll(c, [
        [T.Cluster, kind === 'sotw' ? [] : ['*']],
        [T.Endpoint, ['c1', 'c2', 'c3']],
      ]);
      h.set(T.Cluster, 'c2', 2).commit();
      expectResources(h, await c.next(), T.Cluster, kind === 'sotw' ? ['c1', 'c2', 'c3'] : ['c2']);
      expectResources(h, await c.next(), T.Endpoint, ['c2'], { held: ['c1', 'c2', 'c3'] });
      await c.none();
    });

    it('case 51: an EDS request naming fewer or more clusters than exist is answered at once with what exists', async ({ h }) => {
      const c = h.open(kind, T.Cluster, true);
      await subscribeAll(c, [[T.Cluster, kind === 'sotw' ? [] : ['*']]]);
      request(c, T.Endpoint, ['c1']); // fewer than the three clusters
      expectResources(h, await c.next(), T.Endpoint, ['c1']);
      const more = ['c2', 'c3', 'c8', 'c9'];
      if (c instanceof SotwConn) c.ack(T.Endpoint, ['c1', ...more]);
      else c.ack(T.Endpoint, { sub: more });
      const r = await c.next();
      expectResources(h, r, T.Endpoint, ['c2', 'c3'], { held: ['c1', 'c2', 'c3'], removed: ['c8', 'c9'] });
    });

    it('case 52: a listener that moves to a new route name: the new RouteConfiguration is served when requested', async ({ h }) => {
      const c = h.open(kind, T.Cluster, true);
      await subscribeAll(c, [
        [T.Listener, ['l1']],
        [T.Route, ['r1']],
      ]);
      h.set(T.Listener, 'l1', body(T.Listener, 'l1', 2, 'r-new'))
        .set(T.Route, 'r-new', 1)
        .commit();
      expectResources(h, await c.next(), T.Listener, ['l1']);
      c.ack(T.Listener);
      await c.none(); // r-new is not pushed before it is asked for
      if (c instanceof SotwConn) c.ack(T.Route, ['r-new']);
      else c.ack(T.Route, { sub: ['r-new'], unsub: ['r1'] });
      expectResources(h, await c.next(), T.Route, ['r-new']);
    });
  });

  describe.each(KINDS)('%s', (kind) => {
    it.for(variants([T.Secret]))(
      `case 53: an SDS request for [old, new] ($label) is served with what exists, and new when it appears`,
      async ({ t, ads }, { h }) => {
        const c = h.open(kind, t, ads);
        request(c, t, ['s1', 's-new']);
        const r = await c.next();
        expectResources(h, r, t, ['s1'], { removed: ['s-new'] });
        c.ack(t);
        await c.none(QUIET_MS / 2);
        h.set(t, 's-new', 1).commit();
        expectResources(h, await c.next(), t, ['s-new'], { held: ['s1', 's-new'] });
      },
    );
  });
});
