// Per-resource NACK (gRFC A46) with two channels on grpc-js-xds' process-wide xDS client: one ADS
// stream carries both services. One file edit changes both CLAs, so one EDS response carries a
// good and a bad resource (observed: the bad one at index 1): grpc-js NACKs it, yet applies the good
// one (its traffic moves) while the bad one keeps its last good endpoints. meshfed shows ERROR for
// that stream's EDS until the file is fixed.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type EchoBackend, startEchoBackends } from '../helpers/grpc-echo.js';
import {
  type EchoServiceSpec,
  type MeshHarness,
  type SynczType,
  clusterNameOf,
  meshDocument,
  startMeshHarness,
  targetOf,
} from '../helpers/grpc-mesh.js';
import { XdsEchoClient, useProcessBootstrap } from '../helpers/grpc-xds-client.js';

const WAIT = { timeout: 5000, interval: 50 }; // for the clients and /debug/syncz to follow an edit

const NODE = 'e2e-partial-nack';

describe('one response, one good and one bad resource', () => {
  let fooBackends: EchoBackend[];
  let barBackends: EchoBackend[];
  let mesh: MeshHarness;
  let fooClient: XdsEchoClient;
  let barClient: XdsEchoClient;
  const svc = (name: string, bs: readonly EchoBackend[]): EchoServiceSpec => ({
    name,
    namespace: 'abc',
    port: 8080,
    endpoints: bs.map((b) => ({ address: b.address, port: b.port })),
  });
  const names = (bs: readonly EchoBackend[]): string[] => bs.map((b) => b.name).sort();
  const servedBy = async (client: XdsEchoClient, n: number): Promise<string[]> => [...(await client.spread(n, 3000)).keys()].sort();
  const untilServedBy = (client: XdsEchoClient, expected: readonly EchoBackend[]): Promise<void> =>
    vi.waitFor(
      async () => expect(await servedBy(client, expected.length * 4), `${client.target} served by`).toEqual(names(expected)),
      WAIT,
    );
  const eds = async (): Promise<SynczType | undefined> => {
    const entries = (await mesh.syncz()).filter((e) => e.proxy === NODE);
    if (entries.length !== 1) throw new Error(`${entries.length} streams for ${NODE}`);
    return entries[0]!.types.find((t) => t.type === 'EDS');
  };

  beforeAll(async () => {
    fooBackends = await startEchoBackends(['127.0.4.1', '127.0.4.2']);
    barBackends = await startEchoBackends(['127.0.5.1', '127.0.5.2', '127.0.5.3']);
    mesh = await startMeshHarness(meshDocument([svc('foo', fooBackends), svc('bar', barBackends.slice(0, 2))]));
    useProcessBootstrap({ xdsPort: mesh.meshfed.xdsPort, nodeId: NODE });
    fooClient = new XdsEchoClient(targetOf(svc('foo', fooBackends)), 'process');
    barClient = new XdsEchoClient(targetOf(svc('bar', barBackends)), 'process');
    await untilServedBy(fooClient, fooBackends);
    await untilServedBy(barClient, barBackends.slice(0, 2));
  });

  afterAll(async () => {
    fooClient?.close();
    barClient?.close();
    await mesh?.stop();
    await Promise.all([...(fooBackends ?? []), ...(barBackends ?? [])].map((b) => b.stop()));
  });

  it('applies the good resource, keeps the last good one for the bad, and reports the NACK', async () => {
    const before = await vi.waitFor(async () => {
      const st = await eds();
      expect(st?.state, JSON.stringify(st)).toBe('SYNCED');
      expect(st!.subscribed, 'EDS with both clusters').toHaveLength(2);
      return st!;
    }, WAIT);
    const foo = svc('foo', fooBackends);
    const dup = { endpoint: { address: { socket_address: { address: '127.0.4.9', port_value: 1 } } } };
    const badFoo = {
      '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
      cluster_name: clusterNameOf(foo),
      endpoints: [{ locality: { region: 'region-a', zone: 'zone-a1' }, lb_endpoints: [dup, dup] }],
    };
    // One edit: bar moves to 127.0.5.2/.3 (valid), foo's CLA becomes invalid.
    await mesh.write(meshDocument([foo, svc('bar', barBackends.slice(1))], [badFoo]));

    const nacked = await vi.waitFor(async () => {
      const st = await eds();
      expect(st?.state, JSON.stringify(st)).toBe('ERROR');
      return st!;
    }, WAIT);
    expect(nacked.lastNack?.message).toMatch(
      /^xDS response validation errors: \[resource index \d: ClusterLoadAssignment message validation failed: \[endpoints\[0\]\.lb_endpoints\[1\]\.endpoint: address is a duplicate of another address in the same endpoint: 127\.0\.4\.9\]\]$/,
    );
    // meshfed keeps the last ACKed version: a NACK's version_info is not an ACK of what was sent.
    expect(nacked.versionAcked).toBe(before.versionAcked);

    await untilServedBy(barClient, barBackends.slice(1));
    expect(await servedBy(fooClient, 10)).toEqual(names(fooBackends));

    await mesh.write(meshDocument([foo, svc('bar', barBackends.slice(1))]));
    await vi.waitFor(async () => expect((await eds())?.state, 'EDS after the fix').toBe('SYNCED'), WAIT);
    expect(await servedBy(fooClient, 10)).toEqual(names(fooBackends));
    await untilServedBy(barClient, barBackends.slice(1));
  });
});
