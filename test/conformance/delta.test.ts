// Conformance, incremental xDS (xds.md §3 cases 35–48): wildcard, subscribe and unsubscribe,
// removals, reconnect with initial_resource_versions, NACK; on ADS and on each type's own service.
import { describe, expect, vi } from 'vitest';
import { ALL_TYPES, expectDelta, FULL_STATE, it, nameOf, QUIET_MS, variants } from './harness.js';

vi.setConfig({ maxConcurrency: 16 });

const all = (t: (typeof ALL_TYPES)[number]): string[] => [1, 2, 3].map((i) => nameOf(t, i));

describe.concurrent('delta', () => {
  it.for(variants(FULL_STATE))(
    'case 35: a first $label request with empty lists is a legacy wildcard: every resource, each with name and version',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, {});
      expectDelta(h, await c.next(), t, all(t));
      await c.none();
    },
  );

  it.for(variants(FULL_STATE))(
    'case 35: a first $label wildcard request is answered even when there is nothing',
    async ({ t, ads }, { h }) => {
      for (const n of all(t)) h.del(t, n);
      h.commit();
      const c = h.open('delta', t, ads);
      c.send(t, {});
      const r = await c.next();
      expectDelta(h, r, t, []);
      expect(r.resources).toEqual([]);
    },
  );

  it.for(variants(ALL_TYPES))('case 36: subscribing to A on $label sends A only', async ({ t, ads }, { h }) => {
    const c = h.open('delta', t, ads);
    c.send(t, { sub: [nameOf(t, 1)] });
    expectDelta(h, await c.next(), t, [nameOf(t, 1)]);
    await c.none();
  });

  it.for(variants(ALL_TYPES))(
    'case 37: an update to A on $label sends only A, with a new version and nonce no other resource shares',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, { sub: all(t) });
      const r1 = await c.next();
      expectDelta(h, r1, t, all(t));
      c.ack(t);
      h.set(t, nameOf(t, 2), 2).commit();
      const r2 = await c.next();
      expectDelta(h, r2, t, [nameOf(t, 2)]);
      const v2 = r2.resources[0]!.version;
      expect(r1.resources.map((x) => x.version)).not.toContain(v2);
      expect(r2.nonce).not.toBe(r1.nonce);
      c.ack(t);
      await c.none();
    },
  );

  it.for(variants(ALL_TYPES))(
    'case 38: subscribing to a nonexistent $label name reports it in removed_resources; once created it is sent',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      const b = nameOf(t, 'b');
      c.send(t, { sub: [nameOf(t, 1), b] });
      expectDelta(h, await c.next(), t, [nameOf(t, 1)], [b]);
      c.ack(t);
      await c.none();
      h.set(t, b, 1).commit();
      expectDelta(h, await c.next(), t, [b]);
    },
  );

  it.for(variants(ALL_TYPES))(
    'case 39: a deleted $label resource is sent as removed_resources; re-added, it is sent with its new version',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, { sub: all(t) });
      const r1 = await c.next();
      c.ack(t);
      h.del(t, nameOf(t, 2)).commit();
      expectDelta(h, await c.next(), t, [], [nameOf(t, 2)]);
      c.ack(t);
      h.set(t, nameOf(t, 2), 4).commit();
      const r3 = await c.next();
      expectDelta(h, r3, t, [nameOf(t, 2)]);
      expect(r3.resources[0]!.version).not.toBe(r1.resources.find((x) => x.name === nameOf(t, 2))!.version);
    },
  );

  it.for(variants(FULL_STATE))(
    'case 39: a deleted $label resource under a wildcard is sent as removed_resources',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, {});
      await c.next();
      c.ack(t);
      h.del(t, nameOf(t, 3)).commit();
      expectDelta(h, await c.next(), t, [], [nameOf(t, 3)]);
    },
  );

  it.for(variants(ALL_TYPES))(
    `case 40: unsubscribing B on $label needs no response (${QUIET_MS} ms); B's later updates are not sent`,
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, { sub: all(t) });
      await c.next();
      c.ack(t, { unsub: [nameOf(t, 2)] });
      await c.none();
      await h.subscribed(t, [nameOf(t, 1), nameOf(t, 3)]);
      h.set(t, nameOf(t, 2), 2).commit();
      await c.none();
      h.del(t, nameOf(t, 2)).commit();
      await c.none();
      h.set(t, nameOf(t, 1), 2).commit();
      expectDelta(h, await c.next(), t, [nameOf(t, 1)]);
    },
  );

  it.for(variants(ALL_TYPES))(
    `case 41: unsubscribing a $label name never subscribed is ignored (no response in ${QUIET_MS} ms, stream intact)`,
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, { sub: [nameOf(t, 1)] });
      await c.next();
      c.ack(t, { unsub: [nameOf(t, 'never'), nameOf(t, 2)] });
      await c.none();
      expect(c.raw.status).toBeUndefined();
      await h.subscribed(t, [nameOf(t, 1)]);
      h.set(t, nameOf(t, 1), 2).commit();
      expectDelta(h, await c.next(), t, [nameOf(t, 1)]);
    },
  );

  it.for(variants(FULL_STATE))(
    'case 42: subscribed to * and A on $label, unsubscribing A is answered with A, still covered by the wildcard',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, { sub: ['*', nameOf(t, 1)] });
      expectDelta(h, await c.next(), t, all(t));
      c.ack(t, { unsub: [nameOf(t, 1)] });
      expectDelta(h, await c.next(), t, [nameOf(t, 1)]);
      c.ack(t);
      await c.none();
    },
  );

  it.for(variants(FULL_STATE))(
    'case 42: subscribed to * and A on $label, where the wildcard does not cover A, unsubscribing A is answered with A removed',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      const a = nameOf(t, 'a'); // not in the wildcard set: does not exist
      c.send(t, { sub: ['*', a] });
      expectDelta(h, await c.next(), t, all(t), [a]);
      c.ack(t, { unsub: [a] });
      expectDelta(h, await c.next(), t, [], [a]);
    },
  );

  it.for(variants(FULL_STATE))(
    'case 43: explicit A then * on $label sends what the client lacks; unsubscribing * keeps A',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      const [n1, n2, n3] = all(t) as [string, string, string];
      c.send(t, { sub: [n1] });
      expectDelta(h, await c.next(), t, [n1]);
      c.ack(t, { sub: ['*'] });
      expectDelta(h, await c.next(), t, [n2, n3]);
      c.ack(t, { unsub: ['*'] });
      await c.none();
      await h.subscribed(t, [n1]);
      h.set(t, n2, 2).set(t, nameOf(t, 4), 1).commit();
      await c.none();
      h.set(t, n1, 2).commit();
      expectDelta(h, await c.next(), t, [n1]);
    },
  );

  it.for(variants(FULL_STATE))(
    'case 44: a legacy $label wildcard stays a wildcard after subscribing A, until * is unsubscribed',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      const n1 = nameOf(t, 1);
      c.send(t, {});
      expectDelta(h, await c.next(), t, all(t));
      c.ack(t, { sub: [n1] });
      expectDelta(h, await c.next(), t, [n1]); // a subscribed name is always sent (case 46)
      c.ack(t);
      h.set(t, nameOf(t, 4), 1).commit();
      expectDelta(h, await c.next(), t, [nameOf(t, 4)]);
      c.ack(t, { unsub: ['*'] });
      await c.none();
      await h.subscribed(t, [n1]);
      h.set(t, nameOf(t, 5), 1).set(t, nameOf(t, 2), 2).commit();
      await c.none();
      h.set(t, n1, 2).commit();
      expectDelta(h, await c.next(), t, [n1]);
    },
  );

  it.for(variants(ALL_TYPES))(
    'case 45: a $label reconnect with initial_resource_versions {A, B, C} (A current, B changed, C deleted) gets only B and removes C',
    async ({ t, ads }, { h }) => {
      const [a, b, cc] = all(t) as [string, string, string];
      const first = h.open('delta', t, ads);
      first.send(t, { sub: [a, b, cc] });
      const held = Object.fromEntries((await first.next()).resources.map((x) => [x.name, x.version!]));
      first.close();
      h.set(t, b, 2).del(t, cc).commit();
      const c = h.open('delta', t, ads);
      c.send(t, { sub: [a, b, cc], initial: held });
      expectDelta(h, await c.next(), t, [b], [cc]);
      await c.none();
    },
  );

  it.for(variants(FULL_STATE))(
    'case 45: a $label wildcard reconnect with initial_resource_versions gets only what changed and the removals',
    async ({ t, ads }, { h }) => {
      const [a, b, cc] = all(t) as [string, string, string];
      const first = h.open('delta', t, ads);
      first.send(t, {});
      const held = Object.fromEntries((await first.next()).resources.map((x) => [x.name, x.version!]));
      first.close();
      h.set(t, b, 2).del(t, cc).set(t, nameOf(t, 4), 1).commit();
      const c = h.open('delta', t, ads);
      c.send(t, { initial: held });
      expectDelta(h, await c.next(), t, [b, nameOf(t, 4)], [cc]);
      expect(held[a]).toBeDefined();
    },
  );

  it.for(variants(ALL_TYPES))(
    `case 21: on $label, unsubscribing A needs no response (${QUIET_MS} ms); resubscribing unchanged A sends A again`,
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      const [n1, n2] = [nameOf(t, 1), nameOf(t, 2)];
      c.send(t, { sub: [n1, n2] });
      await c.next();
      c.ack(t, { unsub: [n1] });
      await c.none();
      c.ack(t, { sub: [n1] });
      expectDelta(h, await c.next(), t, [n1]);
    },
  );

  it.for(variants(ALL_TYPES))(
    'case 46 (server choice): on $label, re-subscribing a name the client holds at the current version resends it',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, { sub: [nameOf(t, 1), nameOf(t, 2)] });
      const r1 = await c.next();
      c.ack(t, { sub: [nameOf(t, 1)] });
      const r2 = await c.next();
      expectDelta(h, r2, t, [nameOf(t, 1)]);
      expect(r2.resources[0]!.version).toBe(r1.resources.find((x) => x.name === nameOf(t, 1))!.version);
    },
  );

  it.for(variants(ALL_TYPES))(
    `case 46 (server choice): on $label, a first request whose initial_resource_versions match is not resent (${QUIET_MS} ms)`,
    async ({ t, ads }, { h }) => {
      const first = h.open('delta', t, ads);
      first.send(t, { sub: [nameOf(t, 1)] });
      const v = (await first.next()).resources[0]!.version!;
      first.close();
      const c = h.open('delta', t, ads);
      c.send(t, { sub: [nameOf(t, 1)], initial: { [nameOf(t, 1)]: v } });
      await c.none();
      // The subscription holds: the next change is sent.
      h.set(t, nameOf(t, 1), 2).commit();
      expectDelta(h, await c.next(), t, [nameOf(t, 1)]);
    },
  );

  it.for(variants(ALL_TYPES))(
    `case 47: a $label NACK is recorded, the rejected versions are not resent (${QUIET_MS} ms), and the subscription is kept`,
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, { sub: [nameOf(t, 1), nameOf(t, 2)] });
      await c.next();
      c.ack(t);
      h.set(t, nameOf(t, 1), 2).commit();
      const bad = await c.next();
      c.nack(t, 'cannot use it');
      await c.none();
      expect(h.serverState(t).nack).toMatchObject({ message: 'cannot use it', nonce: bad.nonce });
      expect(await h.nackCount(t)).toBe(1);
      expect([...h.serverState(t).names].sort()).toEqual([nameOf(t, 1), nameOf(t, 2)]);
      h.set(t, nameOf(t, 2), 2).commit();
      expectDelta(h, await c.next(), t, [nameOf(t, 2)]);
      h.set(t, nameOf(t, 1), 3).commit();
      expectDelta(h, await c.next(), t, [nameOf(t, 1)]);
    },
  );

  it.for(variants(ALL_TYPES))(
    'case 48: a spontaneous $label request (no nonce) that changes the subscription is honoured at once',
    async ({ t, ads }, { h }) => {
      const c = h.open('delta', t, ads);
      c.send(t, { sub: [nameOf(t, 1)] });
      await c.next();
      c.send(t, { sub: [nameOf(t, 2)] }); // no response_nonce
      expectDelta(h, await c.next(), t, [nameOf(t, 2)]);
      c.send(t, { unsub: [nameOf(t, 1)] });
      await h.subscribed(t, [nameOf(t, 2)]);
      h.set(t, nameOf(t, 1), 2).commit();
      await c.none();
    },
  );
});
