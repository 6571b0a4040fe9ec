// Issue 14, row 1: a peer that stops reading must not stop the mesh. One HTTP/2 connection
// with a zero flow-control window opens many ADS streams asking for CDS and never lets a
// byte through; healthy proxies on their own connections must still get every change, new
// ones their first response, and the stuck streams are closed after the idle-write timeout.
import http2 from 'node:http2';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startMeshfed, type Meshfed } from '../../src/app.js';
import { DEFAULT_MESH_SOURCE } from '../../src/config/default-mesh.js';
import { DiscoveryRequest, TypeUrl } from '../../src/envoy/protos.js';
import type { XdsLimits } from '../../src/xds/limits.js';
import type { RawResource } from '../../src/model/mesh.js';
import { body, SIDECAR } from '../conformance/harness.js';
import { RawXdsClient, type RawXdsStream, type SotwResponse } from '../helpers/raw-client.js';

const CLUSTERS = 300; // ~100 KB of CDS: 40 stuck streams hold 4 MB, four times the budget below
const BUDGET = 1024 * 1024;
const STUCK_STREAMS = 40;
const HEALTHY = 8;

let meshfed: Meshfed | undefined;
const cleanups: Array<() => void> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0)) c();
  await meshfed?.stop(500);
  meshfed = undefined;
});

async function start(limits: Partial<XdsLimits> = {}): Promise<Meshfed> {
  meshfed = await startMeshfed({
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 0,
    sendBudgetBytes: BUDGET,
    xdsLimits: limits,
    log: pino({ level: 'silent' }),
  });
  meshfed.registry.removeSource(DEFAULT_MESH_SOURCE);
  setClusters(meshfed, 1);
  return meshfed;
}

/** Every cluster at revision `rev` (its connect_timeout), with long names to make CDS big. */
function setClusters(m: Meshfed, rev: number): void {
  const raw = new Map<string, RawResource>();
  for (let i = 0; i < CLUSTERS; i++) {
    const name = `cluster-${i}-${'x'.repeat(150)}`;
    raw.set(`${TypeUrl.Cluster} ${name}`, { typeUrl: TypeUrl.Cluster, name, body: body(TypeUrl.Cluster, name, rev) });
  }
  m.registry.patchSource('test', { raw });
  m.registry.flush();
}

/** A healthy proxy on its own connection, subscribed to every cluster and holding the first response. */
async function healthy(m: Meshfed): Promise<RawXdsStream<SotwResponse>> {
  const client = new RawXdsClient(`127.0.0.1:${m.xdsPort}`, { 'grpc.use_local_subchannel_pool': 1 });
  const s = client.sotw('ads');
  cleanups.push(() => {
    s.close();
    client.close();
  });
  s.send({ node: SIDECAR, type_url: TypeUrl.Cluster, resource_names: [] });
  const first = await s.next(5000);
  expect(first.resources).toHaveLength(CLUSTERS);
  s.send({ type_url: TypeUrl.Cluster, resource_names: [], version_info: first.version_info, response_nonce: first.nonce });
  return s;
}

interface StuckStream {
  /** grpc-status and grpc-message, once the server ends the stream with headers the window lets through. */
  status?: { code: number; message: string };
}

/**
 * One HTTP/2 connection whose streams have a zero flow-control window and never grant more:
 * the server can send headers and trailers, but not one byte of a response.
 */
function stuckConnection(m: Meshfed, streams: number): StuckStream[] {
  const session = http2.connect(`http://127.0.0.1:${m.xdsPort}`, { settings: { initialWindowSize: 0 } });
  session.on('error', () => {});
  cleanups.push(() => session.destroy());
  const msg = Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromObject({ node: SIDECAR, type_url: TypeUrl.Cluster })).finish());
  const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), msg]);
  frame.writeUInt32BE(msg.length, 1);
  const out: StuckStream[] = [];
  for (let i = 0; i < streams; i++) {
    const st: StuckStream = {};
    const req = session.request({
      ':method': 'POST',
      ':path': '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const onHeaders = (h: http2.IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined)
        st.status = { code: Number(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) };
    };
    req.on('response', onHeaders);
    req.on('trailers', onHeaders);
    req.on('error', () => {});
    req.write(frame);
    out.push(st);
  }
  return out;
}

async function limitCount(m: Meshfed, limit: string): Promise<number> {
  const metric = m.metrics.registry.getSingleMetric('meshfed_xds_limited_total');
  if (!metric) return 0;
  return (await metric.get()).values.find((v) => v.labels['limit'] === limit)?.value ?? 0;
}

describe('a connection that never reads', () => {
  it('does not stop pushes to healthy proxies, nor first responses to new ones', async () => {
    const m = await start();
    const proxies = await Promise.all(Array.from({ length: HEALTHY }, () => healthy(m)));
    stuckConnection(m, STUCK_STREAMS);
    // Every stuck stream has asked for CDS and tried to send it (or waits for room to).
    await vi.waitFor(() => expect(m.xds.streams.size).toBe(HEALTHY + STUCK_STREAMS), { timeout: 5000 });
    await vi.waitFor(() => expect([...m.xds.streams].every((s) => s.typeStates().has(TypeUrl.Cluster))).toBe(true), { timeout: 5000 });
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));

    setClusters(m, 2);
    for (const p of proxies) {
      const r = await p.next(5000);
      expect(r.resources).toHaveLength(CLUSTERS);
      expect(r.resources[0]!.body['connect_timeout']).toEqual({ seconds: '2' });
    }
    const late = await healthy(m);
    expect(late.responses[0]!.resources[0]!.body['connect_timeout']).toEqual({ seconds: '2' });
  });

  it('nor do many such connections: their unread responses leave the global budget', async () => {
    // Eight connections of five streams hold ~1.6 MB, more than the 1 MiB budget, though each
    // stays within its share (128 KiB and the response that crossed it). Long before the
    // idle-write timeout (10 s) closes them, their responses count only against their own share.
    const m = await start({ idleWriteTimeoutMs: 10_000 });
    const proxies = await Promise.all(Array.from({ length: HEALTHY }, () => healthy(m)));
    for (let i = 0; i < 8; i++) stuckConnection(m, 5);
    await vi.waitFor(() => expect(m.xds.streams.size).toBe(HEALTHY + 40), { timeout: 5000 });
    await vi.waitFor(() => expect([...m.xds.streams].every((s) => s.typeStates().has(TypeUrl.Cluster))).toBe(true), { timeout: 5000 });

    setClusters(m, 2);
    for (const p of proxies) expect((await p.next(5000)).resources[0]!.body['connect_timeout']).toEqual({ seconds: '2' });
    expect(await limitCount(m, 'idle-write-timeout')).toBe(0);
  });

  it('has its streams closed with UNAVAILABLE after the idle-write timeout', async () => {
    const m = await start({ idleWriteTimeoutMs: 300 });
    const proxy = await healthy(m);
    const stuck = stuckConnection(m, 10);

    // meshfed closes every stuck stream, once; the healthy one stays.
    await vi.waitFor(
      async () => {
        expect(await limitCount(m, 'idle-write-timeout')).toBe(10);
        expect(m.xds.streams.size).toBe(1);
      },
      { timeout: 5000 },
    );
    // Streams that never got a byte out (they waited for their connection's share) end with a
    // status the client sees despite the window.
    await vi.waitFor(() => expect(stuck.filter((s) => s.status).length).toBeGreaterThan(0));
    for (const s of stuck.filter((x) => x.status)) {
      expect(s.status!.code).toBe(14);
      expect(s.status!.message).toMatch(/peer did not read for 0.3 s/);
    }
    setClusters(m, 2);
    expect((await proxy.next(5000)).resources).toHaveLength(CLUSTERS);
  });
});
