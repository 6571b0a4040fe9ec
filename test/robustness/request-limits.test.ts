// Issue 14, rows 2-5: no xDS request may bloat meshfed. Metric labels come from a closed set,
// client-supplied strings are clipped in statuses and logs, and request size, names, name
// length, streams per connection and connections per address are limited, each refusal
// naming its limit. Limits are set small here so the tests stay small.
import { status } from '@grpc/grpc-js';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startMeshfed, type Meshfed } from '../../src/app.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import type { XdsLimits } from '../../src/xds/limits.js';
import { SIDECAR } from '../conformance/harness.js';
import { RawXdsClient, type RawXdsStream, type DeltaResponse, type SotwResponse } from '../helpers/raw-client.js';

let meshfed: Meshfed | undefined;
const cleanups: Array<() => void> = [];
/** Every log line meshfed wrote in the current test. */
let logLines: string[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0)) c();
  await meshfed?.stop(500);
  meshfed = undefined;
});

async function start(limits: Partial<XdsLimits> = {}): Promise<Meshfed> {
  logLines = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  meshfed = await startMeshfed({
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 0,
    xdsLimits: limits,
    log: pino({ level: 'info' }, sink),
  });
  return meshfed;
}

/** A client on its own connection, that takes responses of any size (an echo of a huge name must show). */
function client(m: Meshfed): RawXdsClient {
  const c = new RawXdsClient(`127.0.0.1:${m.xdsPort}`, { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': -1 });
  cleanups.push(() => c.close());
  return c;
}

function track<S extends { close(): void }>(s: S): S {
  cleanups.push(() => s.close());
  return s;
}

async function admin(m: Meshfed, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${path.startsWith('/debug/') ? m.debugPort : m.adminPort}${path}`);
  return { status: res.status, text: await res.text() };
}

async function limitCount(m: Meshfed, limit: string): Promise<number> {
  const metric = m.metrics.registry.getSingleMetric('meshfed_xds_limited_total');
  if (!metric) return 0;
  return (await metric.get()).values.find((v) => v.labels['limit'] === limit)?.value ?? 0;
}

/** Waits for a response that proves the server handled every request sent before. */
async function roundTrip(s: RawXdsStream<SotwResponse>): Promise<void> {
  s.send({ type_url: TypeUrl.Listener, resource_names: [] });
  await s.next(3000);
}

describe('row 2: unknown type_urls', () => {
  it('are counted under one label, so /metrics stays small', async () => {
    const m = await start();
    const s = track(client(m).sotw('ads'));
    s.send({ node: SIDECAR, type_url: TypeUrl.Cluster, resource_names: [] });
    await s.next();
    for (let i = 0; i < 200; i++)
      s.send({ type_url: `type.googleapis.com/attacker.${i}.${'x'.repeat(i % 2 ? 64 * 1024 : 10)}`, resource_names: [] });
    await roundTrip(s);

    const metrics = await admin(m, '/metrics');
    expect(metrics.status).toBe(200);
    const series = metrics.text.split('\n').filter((l) => l.startsWith('meshfed_xds_unknown_type_requests_total{'));
    expect(series).toEqual(['meshfed_xds_unknown_type_requests_total{type_url="unknown"} 200']);
    expect(metrics.text.length).toBeLessThan(64 * 1024);
  });
});

describe('row 3: a huge type_url on a per-type service', () => {
  it('is clipped in the status and in the log, with its length', async () => {
    const m = await start();
    const huge = `type.googleapis.com/${'y'.repeat(1024 * 1024)}`;
    const s = track(client(m).sotw('cds'));
    s.send({ node: SIDECAR, type_url: huge, resource_names: [] });
    const st = await s.ended();
    expect(st.code).toBe(status.INVALID_ARGUMENT);
    expect(st.details).toContain('does not match this service');
    expect(st.details).toContain(`(${huge.length} bytes)`);
    expect(st.details.length).toBeLessThan(1024);
    expect(logLines.some((l) => l.includes('closing xDS stream'))).toBe(true);
    for (const l of logLines) expect(l.length).toBeLessThan(2048);
  });
});

describe('a huge node id', () => {
  it('is refused by --max-name-bytes, so it is neither logged nor kept for /debug/syncz', async () => {
    const m = await start();
    const id = `sidecar~${'i'.repeat(64 * 1024)}`;
    const s = track(client(m).sotw('ads'));
    s.send({ node: { ...SIDECAR, id }, type_url: TypeUrl.Cluster, resource_names: [] });
    const st = await s.ended();
    expect(st.code).toBe(status.INVALID_ARGUMENT);
    expect(st.details).toBe(`a node id of ${id.length} bytes is over the limit of 4096 (--max-name-bytes)`);
    expect((await admin(m, '/debug/syncz')).text.length).toBeLessThan(64 * 1024);
    for (const l of logLines) expect(l.length).toBeLessThan(2048);
  });
});

describe('row 4: request size and names', () => {
  it('refuses a request over the default 4 MiB, before reading it', async () => {
    const m = await start();
    const s = track(client(m).sotw('ads'));
    const names = Array.from({ length: 5 * 1024 }, (_, i) => `${i}-${'n'.repeat(1024)}`); // ~5 MiB
    s.send({ node: SIDECAR, type_url: TypeUrl.Endpoint, resource_names: names });
    const st = await s.ended(5000);
    expect(st.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(st.details).toMatch(/larger than max/);
    expect(m.xds.streams.size).toBe(0);
  });

  it('refuses a request with more names than --max-names, naming the limit', async () => {
    const m = await start({ maxNames: 100 });
    const s = track(client(m).sotw('ads'));
    s.send({ node: SIDECAR, type_url: TypeUrl.Endpoint, resource_names: Array.from({ length: 101 }, (_, i) => `c${i}`) });
    const st = await s.ended();
    expect(st.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(st.details).toBe('a request naming 101 resources is over the limit of 100 (--max-names)');
    expect(await limitCount(m, 'names')).toBe(1);
  });

  it('refuses a delta subscription that grows past --max-names, one request at a time', async () => {
    const m = await start({ maxNames: 100 });
    const s = track(client(m).delta('ads'));
    s.send({ node: SIDECAR, type_url: TypeUrl.Endpoint, resource_names_subscribe: Array.from({ length: 60 }, (_, i) => `a${i}`) });
    await s.next();
    s.send({ type_url: TypeUrl.Endpoint, resource_names_subscribe: Array.from({ length: 60 }, (_, i) => `b${i}`) });
    const st = await s.ended();
    expect(st.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(st.details).toMatch(/120 EDS resources is over the limit of 100 \(--max-names\)/);
  });

  it('counts the secrets an anonymous delta stream is refused toward --max-names, so they cannot pile up either', async () => {
    const m = await start({ maxNames: 50 });
    const s = track(client(m).delta('ads'));
    const names = (p: string): string[] => Array.from({ length: 40 }, (_, i) => `${p}${i}`);
    s.send({ node: SIDECAR, type_url: TypeUrl.Secret, resource_names_subscribe: names('a') });
    await s.next(); // answered as names that do not exist
    s.send({ type_url: TypeUrl.Secret, resource_names_subscribe: names('b') });
    const st = await s.ended();
    expect(st.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(st.details).toMatch(/^a subscription to 80 SDS resources is over the limit of 50 \(--max-names\)$/);
  });

  it('refuses a delta subscription whose names add up to more than --max-request-bytes', async () => {
    const m = await start({ maxRequestBytes: 64 * 1024 });
    const s = track(client(m).delta('ads'));
    const names = (p: string): string[] => Array.from({ length: 40 }, (_, i) => `${p}${i}-${'n'.repeat(1000)}`);
    s.send({ node: SIDECAR, type_url: TypeUrl.Endpoint, resource_names_subscribe: names('a') });
    await s.next();
    s.send({ type_url: TypeUrl.Endpoint, resource_names_subscribe: names('b') });
    const st = await s.ended();
    expect(st.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(st.details).toMatch(/^a subscription whose names add up to \d+ characters is over the limit of 65536 \(--max-request-bytes\)$/);
  });

  it('refuses a request over --max-request-bytes with our own count', async () => {
    const m = await start({ maxRequestBytes: 64 * 1024 });
    const s = track(client(m).sotw('ads'));
    s.send({
      node: SIDECAR,
      type_url: TypeUrl.Endpoint,
      resource_names: Array.from({ length: 100 }, (_, i) => `${i}-${'n'.repeat(1024)}`),
    });
    const st = await s.ended();
    expect(st.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(st.details).toMatch(/larger than max|over the limit of 65536 \(--max-request-bytes\)/);
  });
});

describe('streams per connection and connections per address', () => {
  it('refuses a stream over --max-streams-per-connection, and takes one again when another ends', async () => {
    const m = await start({ maxStreamsPerConnection: 3 });
    const c = client(m);
    const open = [0, 1, 2].map(() => track(c.sotw('ads')));
    for (const s of open) {
      s.send({ node: SIDECAR, type_url: TypeUrl.Cluster, resource_names: [] });
      await s.next();
    }
    const extra = track(c.sotw('ads'));
    extra.send({ node: SIDECAR, type_url: TypeUrl.Cluster, resource_names: [] });
    const st = await extra.ended();
    expect(st.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(st.details).toBe('too many xDS streams on one connection: the limit is 3 (--max-streams-per-connection)');
    expect(await limitCount(m, 'streams-per-connection')).toBe(1);

    // One stream the client cancels, one meshfed ends: both leave room for another.
    open[0]!.close();
    open[1]!.send({ type_url: '', resource_names: [] });
    expect((await open[1]!.ended()).code).toBe(status.INVALID_ARGUMENT);
    await vi.waitFor(() => expect(m.xds.streams.size).toBe(1));
    for (let i = 0; i < 2; i++) {
      const again = track(c.sotw('ads'));
      again.send({ node: SIDECAR, type_url: TypeUrl.Cluster, resource_names: [] });
      await again.next();
    }
  });

  it('refuses a connection over --max-connections-per-address', async () => {
    const m = await start({ maxConnectionsPerAddress: 2 });
    for (let i = 0; i < 2; i++) {
      const s = track(client(m).sotw('ads'));
      s.send({ node: SIDECAR, type_url: TypeUrl.Cluster, resource_names: [] });
      await s.next();
    }
    const third = track(client(m).sotw('ads'));
    third.send({ node: SIDECAR, type_url: TypeUrl.Cluster, resource_names: [] });
    const st = await third.ended();
    expect(st.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(st.details).toBe('too many connections with xDS streams from one address: the limit is 2 (--max-connections-per-address)');
    expect(await limitCount(m, 'connections-per-address')).toBe(1);
  });
});

describe('row 5: a huge resource name on delta', () => {
  for (const [what, size, code] of [
    ['64 KiB, over --max-name-bytes', 64 * 1024, status.INVALID_ARGUMENT],
    ['10 MiB, over the request size', 10 * 1024 * 1024, status.RESOURCE_EXHAUSTED],
  ] as const) {
    it(`(${what}) is refused, never echoed in removed_resources nor kept for /debug/syncz`, async () => {
      const m = await start();
      const name = `z${'z'.repeat(size)}`;
      const s: RawXdsStream<DeltaResponse> = track(client(m).delta('ads'));
      s.send({ node: SIDECAR, type_url: TypeUrl.Endpoint, resource_names_subscribe: [name] });
      const outcome = await Promise.race([s.ended(5000), s.next(5000)]);
      const syncz = await admin(m, '/debug/syncz');
      expect(syncz.status).toBe(200);
      expect(syncz.text.length).toBeLessThan(64 * 1024);
      expect(outcome).not.toHaveProperty('removed_resources');
      expect((outcome as { code: number }).code).toBe(code);
      if (code === status.INVALID_ARGUMENT)
        expect((outcome as { details: string }).details).toBe(
          `a resource name of ${name.length} bytes is over the limit of 4096 (--max-name-bytes)`,
        );
    });
  }
});
