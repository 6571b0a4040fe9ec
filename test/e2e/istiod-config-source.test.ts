// istiod's config source (meshConfig.configSources: xds://meshfed): a client that behaves as
// istiod's (test/helpers/istiod-client.ts) gets, for a federation, exactly one ServiceEntry and one
// DestinationRule per import, an answer for every other type it asks for, and versions that move
// only with the content they stand for.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMeshfed, type Meshfed } from '../../src/app.js';
import { configName } from '../../src/generate/istio.js';
import { ISTIOD_TYPES, ISTIOD_TYPES_1_23 } from '../../src/istio/config-types.js';
import { MCP_CREATE_TIME_MS } from '../../src/xds/mcp.js';
import { memoryCaStore } from '../../src/pki/index.js';
import { meshFile } from '../helpers/grpc-mesh.js';
import { IstiodClient, type StoredConfig } from '../helpers/istiod-client.js';

const SE = 'networking.istio.io/v1/ServiceEntry';
const DR = 'networking.istio.io/v1/DestinationRule';
const NS = 'istio-config';

const ep = (address: string, serviceAccount: string): Record<string, unknown> => ({
  address,
  serviceAccount,
  locality: { region: 'r', zone: 'z' },
});

/** Cluster A is local (trust domain cluster-a.local); B and C are federation peers; A2 a multicluster peer. */
function mesh(
  o: { bazPort?: number; withBaz?: boolean; bGateways?: Array<{ address: string; port: number }> } = {},
): Record<string, unknown> {
  const services: Record<string, unknown>[] = [
    {
      name: 'foo',
      namespace: 'abc',
      cluster: 'cluster-a',
      ports: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
      endpoints: [ep('10.1.0.1', 'foo')],
    },
    {
      name: 'qux',
      namespace: 'abc',
      cluster: 'cluster-a2',
      ports: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
      endpoints: [ep('10.3.0.1', 'qux')],
    },
    {
      name: 'bar',
      namespace: 'xyz',
      cluster: 'cluster-b',
      ports: [
        { name: 'http', port: 8080, protocol: 'HTTP' },
        { name: 'grpc', port: 9090, protocol: 'GRPC' },
      ],
      endpoints: [ep('10.2.0.1', 'bar'), ep('10.2.0.2', 'bar-admin')],
    },
    {
      name: 'web',
      namespace: 'shop',
      cluster: 'cluster-c',
      ports: [{ name: 'http', port: 80, protocol: 'HTTP' }],
      endpoints: [ep('10.4.0.1', 'web')],
    },
  ];
  if (o.withBaz !== false)
    services.push({
      name: 'baz',
      namespace: 'xyz',
      cluster: 'cluster-b',
      ports: [{ name: 'tcp-db', port: o.bazPort ?? 5432 }],
      endpoints: [ep('10.2.0.3', 'baz')],
    });
  return {
    clusters: [
      { id: 'cluster-a', network: 'network-a', domain: 'cluster-a.local', gateways: [{ address: '192.0.2.1', port: 15443 }] },
      { id: 'cluster-a2', network: 'network-a2', domain: 'cluster-a.local', gateways: [{ address: '192.0.2.9', port: 15443 }] },
      {
        id: 'cluster-b',
        network: 'network-b',
        domain: 'cluster-b.local',
        gateways: o.bGateways ?? [{ address: '192.0.2.2', port: 15443 }],
      },
      { id: 'cluster-c', network: 'network-c', domain: 'cluster-c.local', gateways: [{ address: 'gw.cluster-c.example', port: 31443 }] },
    ],
    services,
  };
}

const byName = (configs: StoredConfig[]): Record<string, StoredConfig> => Object.fromEntries(configs.map((c) => [c.name, c]));
const versions = (client: IstiodClient, type: string): Record<string, string> =>
  Object.fromEntries(client.configs(type).map((c) => [c.name, c.version]));
const BAR = configName('bar.xyz.svc.cluster-b.local');
const BAZ = configName('baz.xyz.svc.cluster-b.local');
const WEB = configName('web.shop.svc.cluster-c.local');

describe('istiod config source', () => {
  let meshfed: Meshfed;
  let file: Awaited<ReturnType<typeof meshFile>>;
  const clients: IstiodClient[] = [];
  const connect = (types: readonly string[] = ISTIOD_TYPES): IstiodClient => {
    const c = new IstiodClient(`127.0.0.1:${meshfed.xdsPort}`);
    clients.push(c);
    c.subscribe(types);
    return c;
  };

  beforeAll(async () => {
    file = await meshFile('meshfed-istiod-', mesh());
    meshfed = await startMeshfed({
      config: file.file,
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      debounceMs: 20,
      log: pino({ level: 'silent' }),
      pki: { trustDomain: 'cluster-a.local', caStore: memoryCaStore() },
      istioConfig: { namespace: NS },
    });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await meshfed?.stop(500);
  });

  it('answers every type istiod asks for once, echoing its type_url, so istiod finishes starting', async () => {
    const c = connect();
    await c.receive('a response per type', () => c.synced(ISTIOD_TYPES));
    expect(c.received.map((r) => r.typeUrl).sort()).toEqual([...ISTIOD_TYPES].sort());
    for (const t of ISTIOD_TYPES.filter((t) => t !== SE && t !== DR)) expect(c.configs(t), t).toEqual([]);
  });

  it('answers a kind a later Istio may ask for, so a newer istiod starts too', async () => {
    const types = [...ISTIOD_TYPES, 'extensions.istio.io/v1alpha1/FutureKind'];
    const c = connect(types);
    await c.receive('a response per type', () => c.synced(types));
    expect(c.configs('extensions.istio.io/v1alpha1/FutureKind')).toEqual([]);
  });

  it('serves a ServiceEntry and a DestinationRule for each federation import only', async () => {
    const c = connect();
    await c.receive('a response per type', () => c.synced(ISTIOD_TYPES));
    const ses = byName(c.configs(SE));
    const drs = byName(c.configs(DR));
    // Neither the local service (foo) nor the multicluster peer's (qux): istiod reads those itself.
    expect(Object.keys(ses).sort()).toEqual([BAR, BAZ, WEB].sort());
    expect(Object.keys(drs).sort()).toEqual([BAR, BAZ, WEB].sort());
    expect(BAR).toMatch(/^bar-xyz-svc-cluster-b-local-[bcdfghjklmnpqrstvwxz2456789]+$/);
    const bar = ses[BAR]!;
    expect({ ...bar, version: undefined }).toEqual({
      namespace: NS,
      name: BAR,
      version: undefined,
      createTimeMs: MCP_CREATE_TIME_MS,
      labels: { 'app.kubernetes.io/managed-by': 'meshfed' },
      annotations: { 'meshfed.io/clusters': 'cluster-b' },
      bodyType: 'istio.networking.v1alpha3.ServiceEntry',
      spec: {
        hosts: ['bar.xyz.svc.cluster-b.local'],
        ports: [
          { number: 8080, protocol: 'HTTP', name: 'http' },
          { number: 9090, protocol: 'GRPC', name: 'grpc' },
        ],
        location: 'MESH_INTERNAL',
        resolution: 'STATIC',
        endpoints: [
          {
            address: '192.0.2.2',
            ports: { http: 15443, grpc: 15443 },
            labels: { 'security.istio.io/tlsMode': 'istio' },
            network: 'network-b',
          },
        ],
        subjectAltNames: ['spiffe://cluster-b.local/ns/xyz/sa/bar', 'spiffe://cluster-b.local/ns/xyz/sa/bar-admin'],
      },
    });
    expect(bar.version).toMatch(/^[0-9a-f]{16}$/);
    expect(drs[BAR]!.bodyType).toBe('istio.networking.v1alpha3.DestinationRule');
    expect(drs[BAR]!.spec).toEqual({
      host: 'bar.xyz.svc.cluster-b.local',
      trafficPolicy: {
        tls: {
          mode: 'ISTIO_MUTUAL',
          subjectAltNames: ['spiffe://cluster-b.local/ns/xyz/sa/bar', 'spiffe://cluster-b.local/ns/xyz/sa/bar-admin'],
        },
      },
    });
    // A gateway given by hostname: DNS resolution.
    expect(ses[WEB]!.spec).toMatchObject({
      resolution: 'DNS',
      endpoints: [{ address: 'gw.cluster-c.example', ports: { http: 31443 }, network: 'network-c' }],
    });
  });

  it('serves istiod 1.23 and earlier the same configs under the v1alpha3 spellings', async () => {
    const now = connect();
    const old = connect(ISTIOD_TYPES_1_23);
    await now.receive('sync', () => now.synced(ISTIOD_TYPES));
    await old.receive('sync', () => old.synced(ISTIOD_TYPES_1_23));
    expect(old.received.map((r) => r.typeUrl).sort()).toEqual([...ISTIOD_TYPES_1_23].sort());
    expect(old.configs('networking.istio.io/v1alpha3/ServiceEntry')).toEqual(now.configs(SE));
    expect(old.configs('networking.istio.io/v1alpha3/DestinationRule')).toEqual(now.configs(DR));
  });

  it('moves only the versions of the configs a change at a peer touches', async () => {
    const c = connect();
    await c.receive('sync', () => c.synced(ISTIOD_TYPES));
    const se0 = versions(c, SE);
    const dr0 = versions(c, DR);

    // baz's port: baz's ServiceEntry only (its DestinationRule does not name ports).
    await file.write(mesh({ bazPort: 5433 }));
    await c.receive("baz's new ServiceEntry", () => versions(c, SE)[BAZ] !== se0[BAZ]);
    expect(byName(c.configs(SE))[BAZ]!.spec).toMatchObject({ ports: [{ number: 5433, name: 'tcp-db' }] });
    expect(versions(c, SE)).toEqual({ ...se0, [BAZ]: versions(c, SE)[BAZ] });
    expect(versions(c, DR)).toEqual(dr0);
    const se1 = versions(c, SE);

    // A second gateway in cluster B: B's ServiceEntries, not C's, and no DestinationRule.
    await file.write(
      mesh({
        bazPort: 5433,
        bGateways: [
          { address: '192.0.2.2', port: 15443 },
          { address: '192.0.2.3', port: 15443 },
        ],
      }),
    );
    await c.receive("B's new ServiceEntries", () => versions(c, SE)[BAR] !== se1[BAR] && versions(c, SE)[BAZ] !== se1[BAZ]);
    expect(versions(c, SE)[WEB]).toBe(se1[WEB]);
    expect(versions(c, DR)).toEqual(dr0);
    expect((byName(c.configs(SE))[BAR]!.spec['endpoints'] as unknown[]).length).toBe(2);
  });

  it('drops a removed import from the next full-state response, and a reconnect gets the same versions', async () => {
    const c = connect();
    await c.receive('sync', () => c.synced(ISTIOD_TYPES));
    await file.write(
      mesh({
        withBaz: false,
        bazPort: 5433,
        bGateways: [
          { address: '192.0.2.2', port: 15443 },
          { address: '192.0.2.3', port: 15443 },
        ],
      }),
    );
    await c.receive('baz gone', () => !(BAZ in versions(c, SE)) && !(BAZ in versions(c, DR)));
    expect(Object.keys(versions(c, SE)).sort()).toEqual([BAR, WEB].sort());
    expect(Object.keys(versions(c, DR)).sort()).toEqual([BAR, WEB].sort());

    const again = connect();
    await again.receive('sync', () => again.synced(ISTIOD_TYPES));
    expect(versions(again, SE)).toEqual(versions(c, SE));
    expect(versions(again, DR)).toEqual(versions(c, DR));
  });

  it('another replica on the same mesh serves the same names and versions', async () => {
    const replica = await startMeshfed({
      config: file.file,
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      log: pino({ level: 'silent' }),
      pki: { trustDomain: 'cluster-a.local', caStore: memoryCaStore() }, // its own CA: configs do not depend on it
      istioConfig: { namespace: NS },
    });
    try {
      const here = connect();
      const there = new IstiodClient(`127.0.0.1:${replica.xdsPort}`);
      clients.push(there);
      there.subscribe(ISTIOD_TYPES);
      await here.receive('sync', () => here.synced(ISTIOD_TYPES));
      await there.receive('sync', () => there.synced(ISTIOD_TYPES));
      expect(versions(there, SE)).toEqual(versions(here, SE));
      expect(versions(there, DR)).toEqual(versions(here, DR));
      expect(Object.keys(versions(there, SE)).length).toBeGreaterThan(0);
    } finally {
      await replica.stop(500);
    }
  });
});
