// A resource grpc-js-xds rejects is NACKed: /debug/syncz shows ERROR with the client's own
// message for that proxy and type, the client keeps serving RPCs on its last good configuration,
// and fixing the file brings the type back to SYNCED.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type EchoBackend, startEchoBackends } from '../helpers/grpc-echo.js';
import {
  type EchoServiceSpec,
  type MeshHarness,
  type SynczType,
  clusterNameOf,
  hostnameOf,
  meshDocument,
  startMeshHarness,
  targetOf,
} from '../helpers/grpc-mesh.js';
import { XdsEchoClient } from '../helpers/grpc-xds-client.js';

const WAIT = { timeout: 5000, interval: 50 }; // for the client and /debug/syncz to follow an edit

const NODE = 'e2e-nack';
const T = 'type.googleapis.com/envoy.';
const HCM = `${T}extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
const ROUTER = `${T}extensions.filters.http.router.v3.Router`;

interface BadCase {
  readonly type: 'LDS' | 'RDS' | 'CDS' | 'EDS';
  /** A resource with the name of the generated one, which therefore replaces it. */
  readonly resource: (foo: EchoServiceSpec, outsider: EchoBackend) => object;
  /** What grpc-js-xds 1.14 reports in error_detail.message. */
  readonly message: (foo: EchoServiceSpec, outsider: EchoBackend) => string;
}

const validationErrors = (kind: string, errors: string): string =>
  `xDS response validation errors: [resource index 0: ${kind} message validation failed: [${errors}]]`;

const CASES: readonly BadCase[] = [
  {
    // An API listener whose RDS config source is neither ads nor self.
    type: 'LDS',
    resource: (foo) => ({
      '@type': `${T}config.listener.v3.Listener`,
      name: `${hostnameOf(foo)}:${foo.port}`,
      api_listener: {
        api_listener: {
          '@type': HCM,
          stat_prefix: 'bad',
          rds: { config_source: { path_config_source: { path: '/nonexistent' } }, route_config_name: `${hostnameOf(foo)}:${foo.port}` },
          http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
        },
      },
    }),
    message: () => validationErrors('Listener', 'api_listener.api_listener: rds.config_source.ads and rds.config_source.self both unset'),
  },
  {
    // Weighted clusters whose weights sum to 0.
    type: 'RDS',
    resource: (foo) => ({
      '@type': `${T}config.route.v3.RouteConfiguration`,
      name: `${hostnameOf(foo)}:${foo.port}`,
      virtual_hosts: [
        {
          name: 'bad',
          domains: ['*'],
          routes: [
            {
              name: 'zero',
              match: { prefix: '' },
              route: { weighted_clusters: { clusters: [{ name: clusterNameOf(foo), weight: { value: 0 } }] } },
            },
          ],
        },
      ],
    }),
    message: () => validationErrors('RouteConfiguration', 'virtual_hosts[bad].routes[zero].route.weighted_clusters sum of weights is 0'),
  },
  {
    // An lb_policy grpc-js does not implement.
    type: 'CDS',
    resource: (foo) => ({
      '@type': `${T}config.cluster.v3.Cluster`,
      name: clusterNameOf(foo),
      type: 'EDS',
      eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: clusterNameOf(foo) },
      connect_timeout: { seconds: 1 },
      lb_policy: 'CLUSTER_PROVIDED',
    }),
    message: () => validationErrors('Cluster', 'load_balancing_policy unset and unsupported lb_policy: CLUSTER_PROVIDED'),
  },
  {
    // The same address twice. Were it accepted, traffic would move to the outsider.
    type: 'EDS',
    resource: (foo, outsider) => {
      const lb = { endpoint: { address: { socket_address: { address: outsider.address, port_value: outsider.port } } } };
      return {
        '@type': `${T}config.endpoint.v3.ClusterLoadAssignment`,
        cluster_name: clusterNameOf(foo),
        endpoints: [{ locality: { region: 'region-a', zone: 'zone-a1' }, lb_endpoints: [lb, lb] }],
      };
    },
    message: (_foo, outsider) =>
      validationErrors(
        'ClusterLoadAssignment',
        `endpoints[0].lb_endpoints[1].endpoint: address is a duplicate of another address in the same endpoint: ${outsider.address}`,
      ),
  },
];

describe('a resource grpc-js-xds rejects', () => {
  let backends: EchoBackend[];
  let outsider: EchoBackend;
  let mesh: MeshHarness;
  let client: XdsEchoClient;
  let foo: EchoServiceSpec;
  const good = (): Record<string, unknown> => meshDocument([foo]);
  const goodNames = (): string[] => backends.map((b) => b.name).sort();

  const typeState = async (type: string): Promise<SynczType | undefined> => {
    const entries = (await mesh.syncz()).filter((e) => e.proxy === NODE);
    if (entries.length !== 1) throw new Error(`${entries.length} streams for ${NODE}`);
    return entries[0]!.types.find((t) => t.type === type);
  };

  /** Every RPC of a batch succeeds on the good endpoints, spread over all of them. */
  const expectServedByGoodConfig = async (): Promise<void> => {
    const counts = await client.spread(backends.length * 5, 3000);
    expect([...counts.keys()].sort(), JSON.stringify([...counts])).toEqual(goodNames());
  };

  beforeAll(async () => {
    const all = await startEchoBackends(['127.0.3.1', '127.0.3.2', '127.0.3.9']);
    backends = all.slice(0, 2);
    outsider = all[2]!;
    foo = { name: 'foo', namespace: 'abc', port: 8080, endpoints: backends.map((b) => ({ address: b.address, port: b.port })) };
    mesh = await startMeshHarness(good());
    client = new XdsEchoClient(targetOf(foo), { xdsPort: mesh.meshfed.xdsPort, nodeId: NODE });
    const first = await client.call(10_000);
    expect(first.ok, first.value).toBe(true);
    await vi.waitFor(async () => expect([...(await client.spread(6)).keys()].sort(), 'served by').toEqual(goodNames()), WAIT);
  });

  afterAll(async () => {
    client?.close();
    await mesh?.stop();
    await Promise.all([...(backends ?? []), ...(outsider ? [outsider] : [])].map((b) => b.stop()));
  });

  it.each(CASES)("$type: NACKed, shown as ERROR with the client's message, last good config kept, SYNCED once fixed", async (c) => {
    const synced = async (): Promise<SynczType> => {
      const st = await typeState(c.type);
      expect(st?.state, `${c.type}: ${JSON.stringify(st)}`).toBe('SYNCED');
      return st!;
    };
    const before = await vi.waitFor(synced, WAIT);
    const streamBefore = (await mesh.syncz()).find((e) => e.proxy === NODE)!.stream;

    await mesh.write(meshDocument([foo], [c.resource(foo, outsider)]));
    const nacked = await vi.waitFor(async () => {
      const st = await typeState(c.type);
      expect(st?.state, `${c.type} in /debug/syncz: ${JSON.stringify(st)}`).toBe('ERROR');
      return st!;
    }, WAIT);
    expect(nacked.lastNack?.message).toBe(c.message(foo, outsider));
    // The NACK names the last version the client accepted.
    expect(nacked.versionAcked).toBe(before.versionAcked);
    expect(nacked.versionSent).not.toBe(before.versionSent);

    // The client goes on with what it had: every RPC succeeds on the good endpoints.
    await expectServedByGoodConfig();
    expect(outsider.served()).toBe(0);
    // The other types are untouched.
    for (const t of ['LDS', 'RDS', 'CDS', 'EDS'].filter((t) => t !== c.type)) expect((await typeState(t))?.state).toBe('SYNCED');

    await mesh.write(good());
    const fixed = await vi.waitFor(synced, WAIT);
    expect(fixed.versionAcked).toBe(fixed.versionSent);
    await expectServedByGoodConfig();
    // Same ADS stream throughout: the client was never restarted.
    expect((await mesh.syncz()).find((e) => e.proxy === NODE)!.stream).toBe(streamBefore);
  });
});
