// Editing the endpoints in the mesh file moves a running grpc-js-xds client's traffic to the new
// set, on the same channel, within a few seconds.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type EchoBackend, startEchoBackend, startEchoBackends } from '../helpers/grpc-echo.js';
import { type EchoServiceSpec, type MeshHarness, meshDocument, startMeshHarness, targetOf } from '../helpers/grpc-mesh.js';
import { XdsEchoClient } from '../helpers/grpc-xds-client.js';

describe("file edits move a grpc-js-xds client's traffic", () => {
  let backends: EchoBackend[];
  let mesh: MeshHarness;
  let client: XdsEchoClient;
  const serviceWith = (bs: readonly EchoBackend[]): EchoServiceSpec => ({
    name: 'foo',
    namespace: 'abc',
    port: 8080,
    endpoints: bs.map((b) => ({ address: b.address, port: b.port })),
  });
  const names = (bs: readonly EchoBackend[]): string[] => bs.map((b) => b.name).sort();

  /** Polls batches of RPCs until one batch is served by exactly `expected`; returns that batch. */
  const untilServedBy = (expected: readonly EchoBackend[]): Promise<Map<string, number>> =>
    vi.waitFor(
      async () => {
        const counts = await client.spread(expected.length * 4);
        expect([...counts.keys()].sort(), `served by ${JSON.stringify([...counts])}`).toEqual(names(expected));
        return counts;
      },
      { timeout: 5000, interval: 50 },
    );

  /** The id of the client's one ADS stream, from /debug/syncz. */
  const adsStream = async (): Promise<number> => {
    const entries = (await mesh.syncz()).filter((e) => e.proxy === 'e2e-file-edit');
    expect(entries).toHaveLength(1);
    return entries[0]!.stream;
  };

  beforeAll(async () => {
    // Four pods on one port; the mesh starts with the first three.
    backends = await startEchoBackends(['127.0.2.1', '127.0.2.2', '127.0.2.3', '127.0.2.4']);
    mesh = await startMeshHarness(meshDocument([serviceWith(backends.slice(0, 3))]));
    client = new XdsEchoClient(targetOf(serviceWith(backends)), { xdsPort: mesh.meshfed.xdsPort, nodeId: 'e2e-file-edit' });
  });

  afterAll(async () => {
    client?.close();
    await mesh?.stop();
    await Promise.all((backends ?? []).map((b) => b.stop()));
  });

  it('serves the initial endpoints', async () => {
    const first = await client.call(10_000);
    expect(first.ok, first.value).toBe(true);
    await untilServedBy(backends.slice(0, 3));
  });

  it('drops one endpoint and adds another when the file changes', async () => {
    const stream = await adsStream();
    const next = [backends[1]!, backends[2]!, backends[3]!];
    await mesh.write(meshDocument([serviceWith(next)]));
    const started = Date.now();
    await untilServedBy(next);
    const movedMs = Date.now() - started;
    expect(movedMs).toBeLessThan(5000);

    // Once moved, the traffic stays on the new set and spreads over all of it.
    const counts = await client.spread(60);
    expect([...counts.keys()].sort()).toEqual(names(next));
    for (const b of next) expect(counts.get(b.name)).toBeGreaterThanOrEqual(15);
    // The same ADS stream carried the change: the client was neither restarted nor reconnected.
    expect(await adsStream()).toBe(stream);
  });

  it('takes traffic off endpoints marked UNHEALTHY or TERMINATING, and back when HEALTHY again', async () => {
    const set = [backends[1]!, backends[2]!, backends[3]!];
    const svc = (health: Record<string, 'UNHEALTHY' | 'TERMINATING'>): EchoServiceSpec => ({
      ...serviceWith(set),
      endpoints: set.map((b) => ({ address: b.address, port: b.port, health: health[b.name] })),
    });
    await mesh.write(meshDocument([svc({ [set[0]!.name]: 'UNHEALTHY', [set[1]!.name]: 'TERMINATING' })]));
    await untilServedBy([set[2]!]);
    await mesh.write(meshDocument([svc({})]));
    await untilServedBy(set);
  });

  it('moves everything to a new pod, then back, without failed RPCs', async () => {
    const stream = await adsStream();
    const extra = await startEchoBackend('127.0.2.5', backends[0]!.port);
    backends.push(extra);
    await mesh.write(meshDocument([serviceWith([extra])]));
    await untilServedBy([extra]);

    // The old pods keep running, so no RPC may fail while the client switches.
    await mesh.write(meshDocument([serviceWith([backends[0]!, backends[1]!])]));
    const failures: string[] = [];
    await vi.waitFor(
      async () => {
        const counts = await client.spread(8);
        for (const k of counts.keys()) if (k.startsWith('ERROR')) failures.push(k);
        expect([...counts.keys()].sort(), `traffic back on 127.0.2.1 and 127.0.2.2; served by ${JSON.stringify([...counts])}`).toEqual(
          names([backends[0]!, backends[1]!]),
        );
      },
      { timeout: 5000, interval: 50 },
    );
    expect(failures).toEqual([]);
    expect(await adsStream()).toBe(stream);
  });
});
