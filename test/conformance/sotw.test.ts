// Conformance, state of the world (xds.md §3 cases 12–30 and 56): subscriptions and wildcard,
// full-state (CDS, LDS) versus per-resource (EDS, RDS, SDS) grouping, versions; on ADS and on
// each type's own service.
import { describe, expect, vi } from 'vitest';
import { isFullState } from '../../src/envoy/protos.js';
import {
  ALL_TYPES,
  expectSotw,
  FOO_CLUSTER,
  FULL_STATE,
  GRPC,
  it,
  nameOf,
  PER_RESOURCE,
  QUIET_MS,
  serviceYaml,
  SERVICE_OF,
  SIDECAR,
  T,
  variants,
} from './harness.js';

vi.setConfig({ maxConcurrency: 16 });

const all = (t: (typeof ALL_TYPES)[number]): string[] => [1, 2, 3].map((i) => nameOf(t, i));

describe.concurrent('sotw subscriptions and wildcard', () => {
  it.for(variants(FULL_STATE))('case 12: a first $label request with no names is a wildcard: every resource', async ({ t, ads }, { h }) => {
    const c = h.open('sotw', t, ads);
    c.send(t, []);
    expectSotw(h, await c.next(), t, all(t));
    c.ack(t);
    h.set(t, nameOf(t, 4), 1).commit();
    expectSotw(h, await c.next(), t, [...all(t), nameOf(t, 4)]);
  });

  it.for(variants(FULL_STATE))('case 13: ["*"] on $label is an explicit wildcard: every resource', async ({ t, ads }, { h }) => {
    const c = h.open('sotw', t, ads);
    c.send(t, ['*']);
    expectSotw(h, await c.next(), t, all(t));
  });

  it.for(variants(FULL_STATE))(
    'case 13: ["*", A] on $label is wildcard plus A (A once, and A when it appears)',
    async ({ t, ads }, { h }) => {
      const c = h.open('sotw', t, ads);
      c.send(t, ['*', nameOf(t, 1), nameOf(t, 'x')]);
      expectSotw(h, await c.next(), t, all(t));
      c.ack(t);
      h.set(t, nameOf(t, 'x'), 1).commit();
      expectSotw(h, await c.next(), t, [...all(t), nameOf(t, 'x')]);
    },
  );

  it.for(variants(FULL_STATE))(
    `case 14: after a wildcard, [A] on $label subscribes A only: the next response holds only A, and others' changes send nothing (${QUIET_MS} ms)`,
    async ({ t, ads }, { h }) => {
      const c = h.open('sotw', t, ads);
      c.send(t, []);
      await c.next();
      c.ack(t, [nameOf(t, 1)]);
      expectSotw(h, await c.next(), t, [nameOf(t, 1)]);
      c.ack(t);
      h.set(t, nameOf(t, 2), 2).set(t, nameOf(t, 4), 1).commit();
      await c.none();
    },
  );

  it.for(variants(ALL_TYPES))(
    `case 15: after explicit names, [] on $label unsubscribes everything (not a wildcard): no response to it or to later changes (${QUIET_MS} ms)`,
    async ({ t, ads }, { h }) => {
      const c = h.open('sotw', t, ads);
      c.send(t, [nameOf(t, 1), nameOf(t, 2)]);
      await c.next();
      c.ack(t, []);
      await c.none();
      await h.subscribed(t, []);
      h.set(t, nameOf(t, 1), 2).set(t, nameOf(t, 4), 1).commit();
      await c.none();
      expect(h.serverState(t).wildcard).toBe(false);
    },
  );

  it.for(FULL_STATE)(
    `case 16: a gRPC client that unsubscribes its last %s name ([] with the prior nonce) gets no wildcard and nothing (${QUIET_MS} ms)`,
    async (t, { h }) => {
      const c = h.sotw('ads', GRPC);
      c.send(t, [nameOf(t, 1)]);
      expectSotw(h, await c.next(), t, [nameOf(t, 1)]);
      c.ack(t, []);
      await c.none();
      await h.subscribed(t, []);
      h.set(t, nameOf(t, 1), 2).set(t, nameOf(t, 4), 1).commit();
      await c.none();
    },
  );

  it.for(variants(PER_RESOURCE))('case 17: a request for specific $label names gets only those that exist', async ({ t, ads }, { h }) => {
    const c = h.open('sotw', t, ads);
    c.send(t, [nameOf(t, 1), nameOf(t, 'missing'), nameOf(t, 2)]);
    expectSotw(h, await c.next(), t, [nameOf(t, 1), nameOf(t, 2)]);
    await c.none();
  });

  it.for(variants(PER_RESOURCE))(
    `case 18: a request for a nonexistent $label name gets no response (${QUIET_MS} ms) and no error; the name is remembered`,
    async ({ t, ads }, { h }) => {
      const c = h.open('sotw', t, ads);
      c.send(t, [nameOf(t, 'missing')]);
      // The name is remembered; the quiet window starts once the server holds it (under load, the
      // request can take longer than the window to arrive, and an unheard request proves nothing).
      await h.subscribed(t, [nameOf(t, 'missing')]);
      await c.none();
      expect(c.raw.status).toBeUndefined();
    },
  );

  it.for(variants(ALL_TYPES))(
    'case 19: a requested $label name created later is sent (CDS/LDS: with the full set; others: alone)',
    async ({ t, ads }, { h }) => {
      const c = h.open('sotw', t, ads);
      const [n1, x] = [nameOf(t, 1), nameOf(t, 'new')];
      c.send(t, [n1, x]);
      expectSotw(h, await c.next(), t, [n1]);
      c.ack(t);
      h.set(t, x, 1).commit();
      expectSotw(h, await c.next(), t, isFullState(t) ? [n1, x] : [x], [n1, x]);
    },
  );

  it.for(variants(ALL_TYPES))('case 20: an ACK on $label that adds B at the same version gets B', async ({ t, ads }, { h }) => {
    const c = h.open('sotw', t, ads);
    const [n1, n2] = [nameOf(t, 1), nameOf(t, 2)];
    c.send(t, [n1]);
    const r = await c.next();
    c.send(t, [n1, n2], { version: r.version_info, nonce: r.nonce });
    expectSotw(h, await c.next(), t, isFullState(t) ? [n1, n2] : [n2], [n1, n2]);
  });

  it.for(variants(ALL_TYPES))(
    `case 21: $label: unsubscribing A gets no response (${QUIET_MS} ms); resubscribing unchanged A sends A again`,
    async ({ t, ads }, { h }) => {
      const c = h.open('sotw', t, ads);
      const [n1, n2] = [nameOf(t, 1), nameOf(t, 2)];
      c.send(t, [n1, n2]);
      await c.next();
      c.ack(t, [n2]);
      await c.none();
      c.ack(t, [n1, n2]);
      expectSotw(h, await c.next(), t, isFullState(t) ? [n1, n2] : [n1], [n1, n2]);
    },
  );

  it.for(variants(ALL_TYPES))(
    `case 22: $label: after unsubscribing B, B's changes send nothing (${QUIET_MS} ms)`,
    async ({ t, ads }, { h }) => {
      const c = h.open('sotw', t, ads);
      const [n1, n2] = [nameOf(t, 1), nameOf(t, 2)];
      c.send(t, [n1, n2]);
      await c.next();
      c.ack(t, [n1]);
      await h.subscribed(t, [n1]);
      h.set(t, n2, 2).commit();
      await c.none();
      h.set(t, n1, 2).commit();
      expectSotw(h, await c.next(), t, [n1]);
    },
  );

  it.for(variants(ALL_TYPES))(
    `case 23: a $label request naming several resources gets one response with all of them (and nothing more in ${QUIET_MS} ms)`,
    async ({ t, ads }, { h }) => {
      const c = h.open('sotw', t, ads);
      c.send(t, all(t));
      expectSotw(h, await c.next(), t, all(t));
      await c.none();
    },
  );

  it.for(ALL_TYPES.map((t) => [SERVICE_OF[t], t] as const))(
    'case 23: several %s streams on one connection are each served their own names',
    async ([, t], { h }) => {
      const client = h.client();
      const [a, b] = [client.sotw(SERVICE_OF[t]), client.sotw(SERVICE_OF[t])];
      const req = (names: string[]) => ({ node: SIDECAR, type_url: t, resource_names: names });
      a.send(req([nameOf(t, 1), nameOf(t, 2)]));
      b.send(req([nameOf(t, 2), nameOf(t, 3)]));
      expectSotw(h, await a.next(), t, [nameOf(t, 1), nameOf(t, 2)]);
      expectSotw(h, await b.next(), t, [nameOf(t, 2), nameOf(t, 3)]);
      a.close();
      b.close();
    },
  );

  it('case 24: a gRPC client’s CDS gets only what it named, in the gRPC view, never other nodes’ clusters', async ({ h }) => {
    h.setServices(serviceYaml('foo', 8080, ['10.1.0.1'])).commit();
    const sidecar = h.sotw('cds', SIDECAR);
    sidecar.send(T.Cluster, []);
    const rs = await sidecar.next();
    expect(rs.resources.map((x) => x.name).sort()).toEqual([...all(T.Cluster), FOO_CLUSTER].sort());
    const envoyView = rs.resources.find((x) => x.name === FOO_CLUSTER)!.body;
    expect(envoyView).toHaveProperty('typed_extension_protocol_options'); // HTTP/2 upstream for Envoy

    const grpc = h.sotw('ads', GRPC);
    grpc.send(T.Cluster, [FOO_CLUSTER]);
    const rg = await grpc.next();
    expect(rg.resources.map((x) => x.name)).toEqual([FOO_CLUSTER]);
    expect(rg.resources[0]!.body).not.toHaveProperty('typed_extension_protocol_options');
    grpc.ack(T.Cluster);
    h.set(T.Cluster, 'c1', 2).commit(); // a cluster the gRPC client did not name
    await grpc.none();
  });

  it.for(variants(PER_RESOURCE))(`case 24: a $label response never holds names that were not requested`, async ({ t, ads }, { h }) => {
    const c = h.open('sotw', t, ads);
    c.send(t, [nameOf(t, 2)]);
    expectSotw(h, await c.next(), t, [nameOf(t, 2)]);
    c.ack(t);
    h.set(t, nameOf(t, 1), 2).set(t, nameOf(t, 3), 2).commit();
    await c.none();
  });
});

describe.concurrent('sotw grouping and versions', () => {
  for (const mode of ['named', 'wildcard'] as const) {
    it.for(variants(FULL_STATE))(
      `case 25: a change to one $label resource (${mode}) sends every subscribed resource in one response`,
      async ({ t, ads }, { h }) => {
        const c = h.open('sotw', t, ads);
        c.send(t, mode === 'named' ? all(t) : []);
        await c.next();
        c.ack(t);
        h.set(t, nameOf(t, 2), 2).commit();
        expectSotw(h, await c.next(), t, all(t));
        c.ack(t);
        await c.none();
      },
    );

    it.for(variants(FULL_STATE))(
      `case 26: a deleted $label resource (${mode}) is left out of the next response; when all are gone an empty response is still sent`,
      async ({ t, ads }, { h }) => {
        const c = h.open('sotw', t, ads);
        const [n1, n2, n3] = all(t);
        c.send(t, mode === 'named' ? all(t) : []);
        await c.next();
        c.ack(t);
        h.del(t, n2!).commit();
        expectSotw(h, await c.next(), t, [n1!, n3!]);
        c.ack(t);
        h.del(t, n1!).del(t, n3!).commit();
        const r = await c.next();
        expectSotw(h, r, t, []);
        expect(r.resources).toEqual([]);
      },
    );
  }

  it.for(variants(PER_RESOURCE))('case 27: a change to one $label resource sends only that resource', async ({ t, ads }, { h }) => {
    const c = h.open('sotw', t, ads);
    c.send(t, all(t));
    await c.next();
    c.ack(t);
    h.set(t, nameOf(t, 2), 2).commit();
    expectSotw(h, await c.next(), t, [nameOf(t, 2)], all(t));
    c.ack(t);
    await c.none();
  });

  it.for(variants(PER_RESOURCE))(
    `case 28: a deleted $label resource has no SotW signal: no response (${QUIET_MS} ms); when it returns it is sent`,
    async ({ t, ads }, { h }) => {
      const c = h.open('sotw', t, ads);
      c.send(t, all(t));
      await c.next();
      c.ack(t);
      h.del(t, nameOf(t, 2)).commit();
      await c.none();
      h.set(t, nameOf(t, 2), 5).commit();
      expectSotw(h, await c.next(), t, [nameOf(t, 2)], all(t));
    },
  );

  it.for(variants(ALL_TYPES))('case 29: a $label request naming a resource twice gets it once', async ({ t, ads }, { h }) => {
    const c = h.open('sotw', t, ads);
    c.send(t, [nameOf(t, 1), nameOf(t, 1), nameOf(t, 2)]);
    expectSotw(h, await c.next(), t, [nameOf(t, 1), nameOf(t, 2)]);
  });

  it('case 29: a raw cluster named like a generated one is sent once, the raw one winning', async ({ h }) => {
    h.setServices(serviceYaml('foo', 8080, ['10.1.0.1']))
      .set(T.Cluster, FOO_CLUSTER, 9)
      .commit();
    const c = h.sotw('cds');
    c.send(T.Cluster, ['*', FOO_CLUSTER]);
    const r = await c.next();
    expect(r.resources.filter((x) => x.name === FOO_CLUSTER)).toHaveLength(1);
    expect(r.resources.find((x) => x.name === FOO_CLUSTER)!.body).toEqual(h.expected(T.Cluster, FOO_CLUSTER).body);
  });

  it('case 30: on ADS each type has its own version_info, which changes whenever one of its resources changes', async ({ h }) => {
    const c = h.sotw('ads');
    const names = new Map([
      [T.Cluster, ['c1', 'c2']],
      [T.Endpoint, ['c1']],
      [T.Listener, ['l1']],
      [T.Route, ['r1']],
      [T.Secret, ['s1']],
    ]);
    const versions = new Map<string, string>();
    for (const [t, ns] of names) {
      c.send(t, ns);
      const r = await c.next();
      versions.set(t, r.version_info);
      c.ack(t);
    }
    // Per type, not per stream: types holding different resources have different versions.
    expect(new Set(versions.values()).size).toBe(5);
    // One change per type (cluster c2 has no subscribed CLA, so no EDS resend): only that type answers.
    for (const [t, name] of [
      [T.Cluster, 'c2'],
      [T.Endpoint, 'c1'],
      [T.Listener, 'l1'],
      [T.Route, 'r1'],
      [T.Secret, 's1'],
    ] as const) {
      h.set(t, name, 2).commit();
      const r = await c.next();
      expect(r.type_url).toBe(t);
      expect(r.version_info).not.toBe(versions.get(t));
      expect(r.version_info).toBe(h.sotwVersion(t, names.get(t)!));
      versions.set(t, r.version_info);
      c.ack(t);
      await c.none(QUIET_MS / 2);
    }
  });
});

describe.concurrent('sotw gRPC specifics', () => {
  it.for(FULL_STATE)('case 56: a gRPC %s request for A and B, where only A exists, gets A in every response', async (t, { h }) => {
    const c = h.sotw('ads', GRPC);
    const [a, b] = [nameOf(t, 1), nameOf(t, 'b')];
    c.send(t, [a, b]);
    expectSotw(h, await c.next(), t, [a]);
    c.ack(t);
    h.set(t, a, 2).commit();
    expectSotw(h, await c.next(), t, [a]);
    c.ack(t);
    h.set(t, nameOf(t, 4), 1).commit(); // not named: nothing
    await c.none();
    h.set(t, b, 1).commit();
    expectSotw(h, await c.next(), t, [a, b]);
    c.ack(t);
    h.del(t, b).commit();
    expectSotw(h, await c.next(), t, [a]);
  });
});

describe('sotw streams that name the same resources', () => {
  it('share one set of names (memory: a thousand proxies repeat the same EDS names), and a stream that changes its names gets only its own updates', async ({
    h,
  }) => {
    const t = T.Endpoint;
    const [a, b] = [h.open('sotw', t, true), h.open('sotw', t, true)];
    for (const c of [a, b]) c.send(t, [nameOf(t, 1), nameOf(t, 2)]);
    for (const c of [a, b]) {
      expectSotw(h, await c.next(), t, [nameOf(t, 1), nameOf(t, 2)]);
      c.ack(t);
    }
    const sets = (): ReadonlySet<string>[] => [...h.meshfed.xds.streams].map((s) => s.typeStates().get(t)!.names);
    await vi.waitFor(() => expect(sets()).toHaveLength(2));
    expect(sets()[0]).toBe(sets()[1]);

    b.send(t, [nameOf(t, 1), nameOf(t, 3)]);
    expectSotw(h, await b.next(), t, [nameOf(t, 3)], [nameOf(t, 1), nameOf(t, 3)]);
    b.ack(t);
    expect(sets()[0]).not.toBe(sets()[1]);
    h.set(t, nameOf(t, 2), 2).commit();
    expectSotw(h, await a.next(), t, [nameOf(t, 2)], [nameOf(t, 1), nameOf(t, 2)]);
    await b.none();
  });
});
