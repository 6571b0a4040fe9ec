// The store's promises to many proxies: one encoded copy per view, and a slow proxy
// neither blocks the others nor queues stale responses.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startMeshfed, type Meshfed } from '../../src/app.js';
import { DEFAULT_MESH_SOURCE } from '../../src/config/default-mesh.js';
import { parseMeshText } from '../../src/sources/file/parse.js';
import { meshToSource } from '../../src/sources/file/to-model.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import { RawXdsClient, type RawXdsStream, type SotwResponse } from '../helpers/raw-client.js';

const SERVICES = 10;
const name = (i: number): string => `outbound|8080||svc-${i}.ns.svc.cluster.local`;

/** Ten services of 300 endpoints: one full EDS response is far larger than an HTTP/2 window. */
function mesh(rev: number): string {
  const lines = ['clusters: [{id: c1, network: n1, domain: cluster.local}]', 'services:'];
  for (let i = 0; i < SERVICES; i++) {
    const eps = Array.from({ length: 300 }, (_, j) => `{address: 10.${i}.${j >> 8}.${j & 255}, port: ${8000 + rev}}`).join(', ');
    lines.push(`  - {name: svc-${i}, namespace: ns, cluster: c1, ports: [{name: http, port: 8080}], endpoints: [${eps}]}`);
  }
  return lines.join('\n');
}

let meshfed: Meshfed | undefined;
let client: RawXdsClient | undefined;
afterEach(async () => {
  client?.close();
  await meshfed?.stop(500);
});

async function subscribe(c: RawXdsClient, id: string): Promise<{ s: RawXdsStream<SotwResponse>; first: SotwResponse }> {
  const s = c.sotw();
  const names = Array.from({ length: SERVICES }, (_, i) => name(i));
  s.send({ node: { id: `sidecar~10.0.0.9~${id}.ns~ns.svc.cluster.local` }, type_url: TypeUrl.Endpoint, resource_names: names });
  const first = await s.next();
  s.send({ type_url: TypeUrl.Endpoint, resource_names: names, version_info: first.version_info, response_nonce: first.nonce });
  return { s, first };
}

const port = (r: SotwResponse): number[] =>
  r.resources.map(
    (x) =>
      (x.body as { endpoints: Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { port_value: number } } } }> }> })
        .endpoints[0]!.lb_endpoints[0]!.endpoint.address.socket_address.port_value,
  );

describe('xDS store', () => {
  it('serves proxies with equal views from one table, and keeps a slow proxy from holding back the others', async () => {
    meshfed = await startMeshfed({
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      debugPort: 0,
      debounceMs: 0,
      log: pino({ level: 'silent' }),
    });
    const { registry } = meshfed;
    registry.removeSource(DEFAULT_MESH_SOURCE);
    registry.setSource('t', meshToSource(parseMeshText(mesh(0), 'test.yaml'), 't'));
    registry.flush();
    client = new RawXdsClient(`127.0.0.1:${meshfed.xdsPort}`);
    const slow = await subscribe(client, 'slow');
    const fast = await subscribe(client, 'fast');
    expect(fast.first.resources).toHaveLength(SERVICES);
    expect([...meshfed.store.allTables()].filter((t) => t.typeUrl === TypeUrl.Endpoint)).toHaveLength(1);

    slow.s.pause();
    const updates = 40; // more than the client library buffers (16 messages) and the HTTP/2 windows hold
    for (let rev = 1; rev <= updates; rev++) {
      registry.setSource('t', meshToSource(parseMeshText(mesh(rev), 'test.yaml'), 't'));
      registry.flush();
      const r = await fast.s.next(3000); // the fast proxy keeps getting every update
      expect(port(r)).toEqual(Array(SERVICES).fill(8000 + rev));
      fast.s.send({
        type_url: TypeUrl.Endpoint,
        resource_names: Array.from({ length: SERVICES }, (_, i) => name(i)),
        version_info: r.version_info,
        response_nonce: r.nonce,
      });
    }

    slow.s.resume();
    // The slow proxy ends at the latest state, with fewer responses than there were updates.
    const seen: SotwResponse[] = [];
    const latest = new Map<string, number>();
    while ([...Array(SERVICES).keys()].some((i) => latest.get(name(i)) !== 8000 + updates)) {
      const r = await slow.s.next(3000);
      seen.push(r);
      r.resources.forEach((x, k) => latest.set(x.name, port(r)[k]!));
    }
    expect(seen.length).toBeLessThan(updates);
    await slow.s.none(300);
  });
});
