// Same-hostname services in two clusters on one network merge into one outbound cluster: a real
// grpc-js-xds client's RPCs spread over the pods of both clusters, and when one cluster's
// endpoints go away, all traffic moves to the other on the same channel.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type EchoBackend, startEchoBackends } from '../helpers/grpc-echo.js';
import { type MeshHarness, startMeshHarness } from '../helpers/grpc-mesh.js';
import { XdsEchoClient } from '../helpers/grpc-xds-client.js';

const DOMAIN = 'cluster.local';
const HOST = `foo.abc.svc.${DOMAIN}`;
const CLUSTER = `outbound|8080||${HOST}`;

function meshDoc(a: EchoBackend[], b: EchoBackend[]): Record<string, unknown> {
  const service = (cluster: string, pods: EchoBackend[]): Record<string, unknown> => ({
    name: 'foo',
    namespace: 'abc',
    cluster,
    ports: [{ name: 'grpc', port: 8080, protocol: 'GRPC' }],
    endpoints: pods.map((p) => ({ address: p.address, port: p.port, serviceAccount: 'foo', locality: { region: 'r1', zone: cluster } })),
  });
  return {
    // Both clusters on one network (pods reach each other directly) and one trust domain.
    clusters: [
      { id: 'cluster-1', network: 'net-1', domain: DOMAIN, gateways: [{ address: '127.0.9.1', port: 15443 }] },
      { id: 'cluster-2', network: 'net-1', domain: DOMAIN, gateways: [{ address: '127.0.9.2', port: 15443 }] },
    ],
    services: [
      service('cluster-1', a),
      service('cluster-2', b),
      {
        name: 'bar',
        namespace: 'abc',
        cluster: 'cluster-1',
        ports: [{ name: 'grpc', port: 9090, protocol: 'GRPC' }],
        endpoints: [{ address: '127.0.9.9', port: 9090 }],
      },
    ],
  };
}

describe('one hostname in two clusters on one network', () => {
  let one: EchoBackend[];
  let two: EchoBackend[];
  let mesh: MeshHarness;
  let client: XdsEchoClient;

  beforeAll(async () => {
    one = await startEchoBackends(['127.0.3.1', '127.0.3.2']);
    two = await startEchoBackends(['127.0.4.1', '127.0.4.2']);
    mesh = await startMeshHarness(meshDoc(one, two));
    client = new XdsEchoClient(`xds:///${HOST}:8080`, {
      xdsPort: mesh.meshfed.xdsPort,
      nodeId: 'e2e-merge',
      metadata: { CLUSTER_ID: 'cluster-1', NETWORK: 'net-1' },
      trustDomains: [DOMAIN],
    });
  });

  afterAll(async () => {
    client?.close();
    await mesh?.stop();
    await Promise.all([...(one ?? []), ...(two ?? [])].map((b) => b.stop()));
  });

  it("spreads RPCs over both clusters' pods, sent directly (same network), not through a gateway", async () => {
    const first = await client.call(10_000);
    expect(first.ok, first.value).toBe(true);
    const counts = await client.spread(40);
    expect([...counts.keys()].sort()).toEqual([...one, ...two].map((b) => b.name).sort());
  });

  it('never sends the gRPC client a cluster it did not ask for', async () => {
    const res = await fetch(`http://127.0.0.1:${mesh.meshfed.debugPort}/debug/config_dump?proxy=e2e-merge`);
    const dump = (await res.json()) as Array<{ types: Record<string, { resources: Array<{ name: string }> }> }>;
    expect(dump).toHaveLength(1);
    expect(dump[0]!.types['CDS']!.resources.map((r) => r.name)).toEqual([CLUSTER]);
    expect(dump[0]!.types['EDS']!.resources.map((r) => r.name)).toEqual([CLUSTER]);
  });

  it("moves all traffic to cluster-1 when cluster-2's endpoints go away, on the same channel", async () => {
    await mesh.write(meshDoc(one, []));
    const onlyOne = one.map((b) => b.name).sort();
    await vi.waitFor(
      async () => {
        const counts = await client.spread(8);
        expect(
          [...counts.keys()].filter((k) => !onlyOne.includes(k)),
          'traffic off cluster-1',
        ).toEqual([]);
      },
      { timeout: 10_000, interval: 50 },
    );
    const counts = await client.spread(20);
    expect([...counts.keys()].sort()).toEqual(onlyOne);
    const servedByTwo = two.map((b) => b.served());
    await client.spread(10);
    expect(two.map((b) => b.served())).toEqual(servedByTwo);
  });
});
