// A real grpc-js-xds client resolves xds:///<host>:<port> through meshfed (LDS API listener →
// RDS → CDS → EDS) and round-robins its RPCs over every endpoint of the service.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type EchoBackend, startEchoBackends } from '../helpers/grpc-echo.js';
import {
  type EchoServiceSpec,
  type MeshHarness,
  clusterNameOf,
  hostnameOf,
  meshDocument,
  startMeshHarness,
  targetOf,
} from '../helpers/grpc-mesh.js';
import { XdsEchoClient, useProcessBootstrap } from '../helpers/grpc-xds-client.js';

const WAIT = { timeout: 5000, interval: 50 }; // for the clients to reach every backend

describe('grpc-js-xds client through meshfed', () => {
  let backends: EchoBackend[];
  let mesh: MeshHarness;
  let client: XdsEchoClient;
  let envClient: XdsEchoClient | undefined;
  let foo: EchoServiceSpec;

  beforeAll(async () => {
    backends = await startEchoBackends(['127.0.1.1', '127.0.1.2', '127.0.1.3']);
    foo = { name: 'foo', namespace: 'abc', port: 8080, endpoints: backends.map((b) => ({ address: b.address, port: b.port })) };
    mesh = await startMeshHarness(meshDocument([foo]));
    client = new XdsEchoClient(targetOf(foo), { xdsPort: mesh.meshfed.xdsPort, nodeId: 'e2e-spread' });
  });

  afterAll(async () => {
    client?.close();
    envClient?.close();
    await mesh?.stop();
    await Promise.all((backends ?? []).map((b) => b.stop()));
  });

  it('resolves the target and reaches every endpoint, evenly', async () => {
    const first = await client.call(10_000);
    expect(first.ok, first.value).toBe(true);
    expect(backends.map((b) => b.name)).toContain(first.value);

    // Round robin picks among READY subchannels only; wait until all are connected.
    await vi.waitFor(async () => {
      const counts = await client.spread(backends.length * 2);
      expect(
        backends.filter((b) => !counts.get(b.name)).map((b) => b.name),
        'backends not serving',
      ).toEqual([]);
    }, WAIT);

    const n = 90;
    const counts = await client.spread(n);
    expect([...counts.keys()].sort()).toEqual(backends.map((b) => b.name).sort());
    const mean = n / backends.length;
    for (const b of backends) {
      expect(counts.get(b.name), `${b.name} of ${JSON.stringify([...counts])}`).toBeGreaterThanOrEqual(mean * 0.8);
      expect(counts.get(b.name)).toBeLessThanOrEqual(mean * 1.2);
    }
  });

  it('works the same with the process-wide bootstrap (GRPC_XDS_BOOTSTRAP_CONFIG)', async () => {
    useProcessBootstrap({ xdsPort: mesh.meshfed.xdsPort, nodeId: 'e2e-spread-env' });
    envClient = new XdsEchoClient(targetOf(foo), 'process');
    const first = await envClient.call(10_000);
    expect(first.ok, first.value).toBe(true);
    await vi.waitFor(async () => {
      const counts = await envClient!.spread(backends.length * 2);
      expect(
        backends.filter((b) => !counts.get(b.name)).map((b) => b.name),
        'backends not serving the second client',
      ).toEqual([]);
    }, WAIT);
    const proxies = (await mesh.syncz()).map((e) => e.proxy).sort();
    expect(proxies).toEqual(['e2e-spread', 'e2e-spread-env']);
  });

  it('is served LDS, RDS, CDS and EDS, all acknowledged', async () => {
    const entry = await vi.waitFor(async () => {
      const e = (await mesh.syncz()).find((s) => s.proxy === 'e2e-spread');
      expect(e, 'the client in /debug/syncz').toBeDefined();
      expect(['LDS', 'RDS', 'CDS', 'EDS'].map((t) => `${t} ${e!.types.find((x) => x.type === t)?.state}`)).toEqual([
        'LDS SYNCED',
        'RDS SYNCED',
        'CDS SYNCED',
        'EDS SYNCED',
      ]);
      return e!;
    }, WAIT);
    expect(entry.view?.role).toBe('grpc');
    const subscribed = (t: string) => entry.types.find((x) => x.type === t)?.subscribed;
    expect(subscribed('LDS')).toEqual([`${hostnameOf(foo)}:8080`]);
    expect(subscribed('RDS')).toEqual([`${hostnameOf(foo)}:8080`]);
    expect(subscribed('CDS')).toEqual([clusterNameOf(foo)]);
    expect(subscribed('EDS')).toEqual([clusterNameOf(foo)]);
  });
});
