// Conformance, stream basics (xds.md §3 cases 1–11), reconnects (31–34), wrapping and foreign
// types (54, 57, 58): SotW and delta, on ADS and on each type's own service.
import { status } from '@grpc/grpc-js';
import { describe, expect, vi } from 'vitest';
import {
  ack,
  ALL_TYPES,
  expectResources,
  expectSotw,
  FOO_CLUSTER,
  it,
  FOO_LISTENER,
  FULL_STATE,
  GRPC,
  Harness,
  KINDS,
  nameOf,
  QUIET_MS,
  request,
  serviceYaml,
  subscribeMore,
  SERVICE_OF,
  SIDECAR,
  SotwConn,
  T,
  variants,
} from './harness.js';
import { isFullState } from '../../src/envoy/protos.js';

vi.setConfig({ maxConcurrency: 16 });
const RUNTIME = 'type.googleapis.com/envoy.service.runtime.v3.Runtime';

describe.concurrent('stream basics', () => {
  describe.each(KINDS)('%s', (kind) => {
    it('case 1: an ADS request with an empty type_url fails the stream with INVALID_ARGUMENT', async ({ h }) => {
      const c = h.open(kind, T.Cluster, true);
      request(c, '', ['c1']);
      const st = await c.raw.ended();
      expect(st.code).toBe(status.INVALID_ARGUMENT);
      expect(st.details).toMatch(/type_url/);
      await h.released(); // a stream the server fails leaks nothing either (case 11)
    });

    it.for(ALL_TYPES.map((t) => [SERVICE_OF[t], t] as const))(
      'case 1: on the %s service an empty type_url is taken from the method',
      async ([_svc, t], { h }) => {
        const c = h.open(kind, t, false);
        request(c, t, [nameOf(t, 1)], { typeUrl: '' });
        expectResources(h, await c.next(), t, [nameOf(t, 1)]);
      },
    );

    it('case 1 (server choice): a per-type request for another type fails with INVALID_ARGUMENT', async ({ h }) => {
      const c = h.open(kind, T.Endpoint, false);
      request(c, T.Cluster, ['c1']);
      expect((await c.raw.ended()).code).toBe(status.INVALID_ARGUMENT);
    });

    it('stream basics: undecodable request bytes fail the stream with INVALID_ARGUMENT', async ({ h }) => {
      const c = h.open(kind, T.Cluster, true);
      c.raw.sendRaw(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])); // field 1, length far past the end
      expect((await c.raw.ended()).code).toBe(status.INVALID_ARGUMENT);
      await h.released();
    });

    it.for(variants([T.Listener]))(
      'case 2: node only on the first request ($label): later requests are attributed to the first node',
      async ({ t, ads }, { h }) => {
        h.setServices(serviceYaml('foo', 8080, ['10.1.0.1'])).commit();
        const c = h.open(kind, t, ads, GRPC);
        request(c, t, ['l1']); // carries the gRPC node
        expectResources(h, await c.next(), t, ['l1']);
        // No node on this one: still the gRPC client, which alone is served API listeners.
        subscribeMore(c, t, [FOO_LISTENER]);
        const r = await c.next();
        expect(r.resources.map((x) => x.name)).toContain(FOO_LISTENER);
        expect([...h.meshfed.xds.streams][0]!.proxy?.id).toBe(GRPC.id);
      },
    );

    it('case 2: on ADS a later request for another type, without node, is served for the first node', async ({ h }) => {
      h.setServices(serviceYaml('foo', 8080, ['10.1.0.1'])).commit();
      const c = h.open(kind, T.Listener, true, GRPC);
      request(c, T.Listener, [FOO_LISTENER]);
      expect((await c.next()).resources.map((x) => x.name)).toEqual([FOO_LISTENER]);
      request(c, T.Route, [FOO_LISTENER]); // no node
      const r = await c.next();
      expect(r.type_url).toBe(T.Route);
      expect(r.resources.map((x) => x.name)).toEqual([FOO_LISTENER]); // routes exist only for gRPC clients
      // Another node on a later request is ignored too: the stream keeps the first one's view.
      request(c, T.Cluster, [FOO_CLUSTER], { node: SIDECAR });
      const rc = await c.next();
      expect(rc.resources.map((x) => x.name)).toEqual([FOO_CLUSTER]);
      expect(rc.resources[0]!.body).not.toHaveProperty('typed_extension_protocol_options'); // Envoy's view has it
    });

    describe.each(variants(ALL_TYPES))('$label', ({ t, ads }) => {
      const [n1, n2, n3] = [nameOf(t, 1), nameOf(t, 2), nameOf(t, 3)];

      it(`case 3: a first request for existing resources gets exactly one response with all of them (none more within ${QUIET_MS} ms)`, async ({
        h,
      }) => {
        const c = h.open(kind, t, ads);
        request(c, t, [n1, n2]);
        const r = await c.next();
        expectResources(h, r, t, [n1, n2]);
        if ('version_info' in r) expect(r.version_info).not.toBe('');
        await c.none();
      });

      it('case 4: every response has a nonce unique within the stream; an old stream’s nonce means nothing on a new one', async ({ h }) => {
        const c = h.open(kind, t, ads);
        request(c, t, [n1]);
        await c.next();
        ack(c, t);
        for (const rev of [2, 3, 4]) {
          h.set(t, n1, rev).commit();
          await c.next(); // Conn.next checks uniqueness of the nonce
          ack(c, t);
        }
        expect(c.nonces.size).toBe(4);
        // A new stream whose first request carries the old stream's latest nonce is answered in full.
        const old = c.lastOf(t).nonce;
        const d = h.open(kind, t, ads);
        request(d, t, [n1, n2], { nonce: old });
        expectResources(h, await d.next(), t, [n1, n2]);
      });

      it(`case 5: an ACK gets no response (${QUIET_MS} ms) until something changes`, async ({ h }) => {
        const c = h.open(kind, t, ads);
        request(c, t, [n1, n2]);
        await c.next();
        ack(c, t);
        await c.none();
        h.set(t, n2, 2).commit();
        const r = await c.next();
        expectResources(h, r, t, isFullState(t) && kind === 'sotw' ? [n1, n2] : [n2], { held: [n1, n2] });
        ack(c, t);
        await c.none();
      });

      it(`case 6: a NACK is recorded and the rejected version is not resent (${QUIET_MS} ms); the next version comes with a new nonce`, async ({
        h,
      }) => {
        const c = h.open(kind, t, ads);
        request(c, t, [n1]);
        const r1 = await c.next();
        ack(c, t);
        h.set(t, n1, 2).commit();
        const r2 = await c.next();
        if (c instanceof SotwConn && 'version_info' in r1) c.nack(t, r1.version_info, 'bad cluster');
        else c.nack(t, 'bad cluster');
        await c.none();
        expect(h.serverState(t).nack?.message).toBe('bad cluster');
        expect(h.serverState(t).nack?.nonce).toBe(r2.nonce);
        expect(await h.nackCount(t)).toBe(1);
        h.set(t, n1, 3).commit();
        const r3 = await c.next();
        expectResources(h, r3, t, [n1]);
        expect(r3.nonce).not.toBe(r2.nonce);
        ack(c, t);
        await c.none();
        expect(h.serverState(t).nack).toBeUndefined();
      });

      it('case 11: when the client closes, the stream and every watch are released', async ({ h }) => {
        const c = h.open(kind, t, ads);
        request(c, t, [n1, n2, n3]);
        await c.next();
        expect(h.meshfed.xds.streams.size).toBe(1);
        expect([...h.meshfed.store.allTables()].some((tb) => tb.watchers.size > 0)).toBe(true);
        c.close();
        await h.released();
      });

      it('case 33: a first request carrying a nonce from a previous server is not stale: it is answered in full', async ({ h }) => {
        const c = h.open(kind, t, ads);
        request(c, t, [n1, n2], { nonce: 'nonce-from-the-previous-server-42', version: 'v-previous' });
        expectResources(h, await c.next(), t, [n1, n2]);
      });
    });

    it('case 9: a request with a stale nonce is neither ACK nor NACK', async ({ h }) => {
      const c = h.open(kind, T.Endpoint, true);
      request(c, T.Endpoint, ['c1']);
      const r1 = await c.next();
      ack(c, T.Endpoint);
      h.set(T.Endpoint, 'c1', 2).commit();
      await c.next();
      const acked = h.serverState(T.Endpoint).versionAcked;
      // A NACK of the superseded response: the server does not take it as rejecting the latest.
      if (c instanceof SotwConn) c.send(T.Endpoint, ['c1'], { nonce: r1.nonce, version: '', error: { code: 3, message: 'stale' } });
      else c.send(T.Endpoint, { nonce: r1.nonce, error: { code: 3, message: 'stale' } });
      await c.none();
      expect(h.serverState(T.Endpoint).nack).toBeUndefined();
      expect(h.serverState(T.Endpoint).versionAcked).toBe(acked);
      expect(await h.nackCount(T.Endpoint)).toBe(0);
    });

    it.for(variants([T.Cluster, T.Endpoint]))(
      'case 9 (server choice): the resource_names of a stale-nonce request are applied ($label)',
      async ({ t, ads }, { h }) => {
        const [n1, n2] = [nameOf(t, 1), nameOf(t, 2)];
        const c = h.open(kind, t, ads);
        request(c, t, [n1]);
        const r1 = await c.next();
        ack(c, t);
        h.set(t, n1, 2).commit();
        await c.next();
        // The client asks for n2 before it saw the push: its nonce is stale, its wish is current.
        if (c instanceof SotwConn) c.send(t, [n1, n2], { nonce: r1.nonce, version: c.lastOf(t).version_info });
        else c.send(t, { sub: [n2], nonce: r1.nonce });
        const r = await c.next();
        expectResources(h, r, t, kind === 'sotw' && isFullState(t) ? [n1, n2] : [n2], { held: [n1, n2] });
      },
    );

    it.for(variants([T.Cluster, T.Endpoint]))(
      'case 10: two requests back to back are answered according to the latest ($label)',
      async ({ t, ads }, { h }) => {
        const [n1, n2, n3] = [nameOf(t, 1), nameOf(t, 2), nameOf(t, 3)];
        const c = h.open(kind, t, ads);
        request(c, t, [n1]);
        await c.next();
        // Written in one tick: the server reads both before it builds a response.
        if (c instanceof SotwConn) {
          c.ack(t, [n1, n2]);
          c.ack(t, [n1, n3]);
        } else {
          c.ack(t, { sub: [n2] });
          c.ack(t, { sub: [n3], unsub: [n2] });
        }
        const r = await c.next();
        expectResources(h, r, t, kind === 'sotw' && isFullState(t) ? [n1, n3] : [n3], { held: [n1, n3] });
        await c.none();
      },
    );

    it('case 11: closing an ADS stream subscribed to every type releases all of its watches', async ({ h }) => {
      const c = h.open(kind, T.Cluster, true);
      for (const t of ALL_TYPES) {
        request(c, t, [nameOf(t, 1)]);
        await c.next();
      }
      expect([...h.meshfed.store.allTables()].filter((tb) => tb.watchers.size > 0)).toHaveLength(5);
      c.close();
      await h.released();
    });

    it(`case 58: an ADS request for a type meshfed does not serve gets no response (${QUIET_MS} ms) and the stream stays open`, async ({
      h,
    }) => {
      const c = h.open(kind, T.Cluster, true);
      request(c, RUNTIME, ['rtds-layer']);
      await c.none();
      expect(c.raw.status).toBeUndefined();
      request(c, T.Cluster, ['c1']);
      expectResources(h, await c.next(), T.Cluster, ['c1']);
    });

    it('case 31: versions are content hashes: equal on another server instance, different for different content', async ({ h }) => {
      const other = await Harness.start();
      try {
        for (const t of ALL_TYPES) {
          const names = [nameOf(t, 1), nameOf(t, 2)];
          const a = h.open(kind, t, true);
          const b = other.open(kind, t, true);
          request(a, t, names);
          request(b, t, names);
          const [ra, rb] = [await a.next(), await b.next()];
          if ('version_info' in ra && 'version_info' in rb) expect(rb.version_info).toBe(ra.version_info);
          else expect(rb.resources.map((x) => [x.name, x.version])).toEqual(ra.resources.map((x) => [x.name, x.version]));
          ack(b, t);
          other.set(t, names[0]!, 7).commit();
          const rb2 = await b.next();
          expectResources(other, rb2, t, isFullState(t) && kind === 'sotw' ? names : [names[0]!], { held: names });
          if ('version_info' in rb2 && 'version_info' in ra) expect(rb2.version_info).not.toBe(ra.version_info);
          else {
            const before = ra.resources.find((x) => x.name === names[0])!.version;
            expect(rb2.resources.find((x) => x.name === names[0])!.version).not.toBe(before);
          }
        }
      } finally {
        await other.stop();
      }
    });
  });

  describe('sotw only', () => {
    describe.each(variants(ALL_TYPES))('$label', ({ t, ads }) => {
      const [n1, n2] = [nameOf(t, 1), nameOf(t, 2)];

      it('case 7: a request with another version and no error_detail is not a NACK', async ({ h }) => {
        const c = h.sotw(ads ? 'ads' : SERVICE_OF[t]);
        c.send(t, [n1]);
        const r = await c.next();
        c.send(t, [n1], { nonce: r.nonce, version: 'a-version-meshfed-never-sent' });
        await c.none();
        expect(h.serverState(t).nack).toBeUndefined();
        expect(await h.nackCount(t)).toBe(0);
      });

      it('case 8: a NACK carrying the new version (partial acceptance) is still a NACK', async ({ h }) => {
        const c = h.sotw(ads ? 'ads' : SERVICE_OF[t]);
        c.send(t, [n1]);
        const r = await c.next();
        c.nack(t, r.version_info, 'partly rejected');
        await c.none();
        expect(h.serverState(t).nack).toMatchObject({ message: 'partly rejected', version: r.version_info, nonce: r.nonce });
        expect(await h.nackCount(t)).toBe(1);
      });

      it('case 32: a new stream whose version_info is current still gets the named resources', async ({ h }) => {
        const a = h.sotw(ads ? 'ads' : SERVICE_OF[t]);
        a.send(t, [n1, n2]);
        const ra = await a.next();
        const b = h.sotw(ads ? 'ads' : SERVICE_OF[t]);
        b.send(t, [n1, n2], { version: ra.version_info });
        const rb = await b.next();
        expectSotw(h, rb, t, [n1, n2]);
        expect(rb.version_info).toBe(ra.version_info);
      });

      it('case 31: a first request with a version meshfed never issued gets a full reply', async ({ h }) => {
        const c = h.sotw(ads ? 'ads' : SERVICE_OF[t]);
        c.send(t, [n1, n2], { version: 'other-epoch/0123456789abcdef' });
        expectSotw(h, await c.next(), t, [n1, n2]);
      });
    });

    it.for(FULL_STATE)('case 32: a wildcard %s reconnect with the current version still gets the full state', async (t, { h }) => {
      const a = h.sotw('ads');
      a.send(t, []);
      const ra = await a.next();
      const b = h.sotw('ads');
      b.send(t, [], { version: ra.version_info });
      const all = [1, 2, 3].map((i) => nameOf(t, i));
      expectSotw(h, await b.next(), t, all);
    });

    it('case 34: a gRPC client that reconnects with its persisted versions and no nonce gets everything it names', async ({ h }) => {
      h.setServices(serviceYaml('foo', 8080, ['10.1.0.1'])).commit();
      const wanted = [
        [T.Listener, FOO_LISTENER],
        [T.Route, FOO_LISTENER],
        [T.Cluster, FOO_CLUSTER],
        [T.Endpoint, FOO_CLUSTER],
      ] as const;
      const first = h.sotw('ads', GRPC);
      const before = new Map<string, { version: string; body: unknown }>();
      for (const [t, name] of wanted) {
        first.send(t, [name]);
        const r = await first.next();
        expect(r.resources.map((x) => x.name)).toEqual([name]);
        before.set(t, { version: r.version_info, body: r.resources[0]!.body });
        first.ack(t);
      }
      first.close();
      const again = h.sotw('ads', GRPC);
      for (const [t, name] of wanted) {
        again.send(t, [name], { version: before.get(t)!.version, nonce: '' });
        const r = await again.next();
        expect(r.type_url).toBe(t);
        expect(r.resources.map((x) => x.name)).toEqual([name]);
        expect({ version: r.version_info, body: r.resources[0]!.body }).toEqual(before.get(t));
      }
    });

    it.for(ALL_TYPES)(
      'case 54: %s resources are never wrapped in Resource for a client without xds.config.resource-in-sotw',
      async (t, { h }) => {
        const c = h.sotw('ads');
        c.send(t, [nameOf(t, 1)]);
        const r = await c.next();
        expect(r.resources).toHaveLength(1);
        expect(r.resources[0]!.typeUrl).toBe(t); // not type.googleapis.com/envoy.service.discovery.v3.Resource
      },
    );

    it('case 57: a gRPC client is sent only what it named, each resource of the response’s type', async ({ h }) => {
      h.setServices(serviceYaml('foo', 8080, ['10.1.0.1'])).commit();
      const c = h.sotw('ads', GRPC);
      c.send(T.Cluster, [FOO_CLUSTER]); // c1..c3 exist too
      const r = await c.next();
      expect(r.resources.map((x) => [x.name, x.typeUrl])).toEqual([[FOO_CLUSTER, T.Cluster]]);
      c.ack(T.Cluster);
      h.set(T.Cluster, 'c1', 2).commit(); // not subscribed
      await c.none();
    });
  });
});
