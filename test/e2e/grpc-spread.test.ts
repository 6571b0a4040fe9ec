// A real grpc-js-xds client resolves xds:///<host>:<port> through meshfed (LDS API listener →
// RDS → CDS → EDS) and round-robins its RPCs over every endpoint of the service.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoBackend, startEchoBackends } from '../helpers/grpc-echo.js';
import {
  type EchoServiceSpec,
  type MeshHarness,
  clusterNameOf,
  hostnameOf,
  meshDocument,
  startMeshHarness,
  targetOf,
  waitFor,
} from '../helpers/grpc-mesh.js';
import { XdsEchoClient, useProcessBootstrap } from '../helpers/grpc-xds-client.js';

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
    await waitFor('every backend to serve', async () => {
      const counts = await client.spread(backends.length * 2);
      return backends.every((b) => (counts.get(b.name) ?? 0) > 0) || undefined;
    });

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
    await waitFor('every backend to serve the second client', async () => {
      const counts = await envClient!.spread(backends.length * 2);
      return backends.every((b) => (counts.get(b.name) ?? 0) > 0) || undefined;
    });
    const proxies = (await mesh.syncz()).map((e) => e.proxy).sort();
    expect(proxies).toEqual(['e2e-spread', 'e2e-spread-env']);
  });

  it('is served LDS, RDS, CDS and EDS, all acknowledged', async () => {
    const entry = await waitFor('the client in /debug/syncz with four types SYNCED', async () => {
      const e = (await mesh.syncz()).find((s) => s.proxy === 'e2e-spread');
      return e && ['LDS', 'RDS', 'CDS', 'EDS'].every((t) => e.types.find((x) => x.type === t)?.state === 'SYNCED') && e;
    });
    expect(entry.view?.role).toBe('grpc');
    const subscribed = (t: string) => entry.types.find((x) => x.type === t)?.subscribed;
    expect(subscribed('LDS')).toEqual([`${hostnameOf(foo)}:8080`]);
    expect(subscribed('RDS')).toEqual([`${hostnameOf(foo)}:8080`]);
    expect(subscribed('CDS')).toEqual([clusterNameOf(foo)]);
    expect(subscribed('EDS')).toEqual([clusterNameOf(foo)]);
  });
});
