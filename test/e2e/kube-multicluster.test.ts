// Two clusters, one service: meshfed watches a local fake apiserver (kubeconfig) and a remote one (a
// remote Secret stored in the local one). foo.abc.svc.cluster.local exists in both; one outbound
// cluster's EDS holds both clusters' endpoints, and a real grpc-js-xds client's traffic follows a change
// to the remote's EndpointSlice. The pods are labelled sidecar.istio.io/inject=false, so their
// endpoints are plaintext like the echo backends.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Meshfed } from '../../src/app.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { type EchoBackend, startEchoBackend } from '../helpers/grpc-echo.js';
import { XdsEchoClient } from '../helpers/grpc-xds-client.js';
import {
  type Backend,
  type ClusterSpec,
  endpointSlice,
  pod,
  remoteSecret,
  seedCluster,
  startKubeMeshfed,
} from '../helpers/kube-cluster.js';
import { RawXdsClient } from '../helpers/raw-client.js';

const WAIT = { timeout: 10_000, interval: 20 }; // for meshfed to follow the apiservers, polled every 20 ms

const HOST = 'foo.abc.svc.cluster.local';
const TARGET = `xds:///${HOST}:8080`;

describe('two clusters behind one outbound cluster', () => {
  let local: FakeApiServer;
  let remote: FakeApiServer;
  let meshfed: Meshfed;
  let client: XdsEchoClient;
  let echo: EchoBackend[];
  let spec: ClusterSpec;
  const asBackend = (b: EchoBackend): Backend => ({ ip: b.address, pod: `echo-${b.address.replaceAll('.', '-')}` });

  /** Batches of RPCs until one is served by exactly `expected`. */
  const untilServedBy = (expected: readonly EchoBackend[], timeoutMs: number): Promise<unknown> => {
    const want = JSON.stringify(expected.map((b) => b.name).sort());
    return vi.waitFor(
      async () => {
        const got = JSON.stringify([...(await client.spread(expected.length * 6)).keys()].sort());
        if (got !== want) throw new Error(`served by ${got}`);
      },
      { timeout: timeoutMs, interval: 0 },
    );
  };

  beforeAll(async () => {
    const first = await startEchoBackend('127.0.3.1');
    // Every pod listens on the same port, as pods of one Deployment do.
    echo = [first, ...(await Promise.all(['127.0.4.1', '127.0.4.2', '127.0.4.3'].map((a) => startEchoBackend(a, first.port))))];
    spec = { namespace: 'abc', service: 'foo', portName: 'grpc-echo', port: 8080, targetPort: first.port, plaintext: true };
    [local, remote] = await Promise.all([startFakeApiServer({ clusterName: 'local' }), startFakeApiServer({ clusterName: 'remote' })]);
    seedCluster(local, spec, [asBackend(echo[0]!)]);
    seedCluster(remote, spec, [asBackend(echo[1]!), asBackend(echo[2]!)]);
    remote.upsert(pod(spec, asBackend(echo[3]!)));
    local.upsert(remoteSecret('istio-remote-secret-remote', 'remote', remote.kubeconfig()));
    meshfed = await startKubeMeshfed(local);
    client = new XdsEchoClient(TARGET, { xdsPort: meshfed.xdsPort, nodeId: 'e2e-kube-multicluster' });
  });

  afterAll(async () => {
    client?.close();
    await meshfed?.stop(100);
    await Promise.all([local?.close(), remote?.close(), ...(echo ?? []).map((b) => b.stop())]);
  });

  it("serves both clusters' endpoints in one outbound cluster's EDS", async () => {
    const xds = new RawXdsClient(`127.0.0.1:${meshfed.xdsPort}`);
    try {
      const s = xds.sotw('ads');
      // An istio-proxy (it announces ISTIO_VERSION) reads istio.workload, which names each endpoint's cluster.
      s.send({
        node: {
          id: 'sidecar~10.9.0.1~e2e.default~default.svc.cluster.local',
          metadata: { fields: { ISTIO_VERSION: { stringValue: '1.24.0' } } },
        },
        type_url: TypeUrl.Endpoint,
        resource_names: [`outbound|8080||${HOST}`],
      });
      const endpoints = await vi.waitFor(async () => {
        const r = await s.next(2000);
        const cla = r.resources[0]!.body as {
          endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: string } } }; metadata: unknown }[] }[];
        };
        const found = cla.endpoints.flatMap((l) =>
          l.lb_endpoints.map((e) => `${e.endpoint.address.socket_address.address} ${JSON.stringify(e.metadata)}`),
        );
        if (found.length !== 3) throw new Error(`EDS holds ${JSON.stringify(found)}`);
        return found.sort();
      }, WAIT); // EDS with both clusters
      expect(endpoints.map((e) => e.split(' ')[0])).toEqual(['127.0.3.1', '127.0.4.1', '127.0.4.2']);
      expect(endpoints[0]).toContain('local');
      expect(endpoints[2]).toContain('remote');
    } finally {
      xds.close();
    }
  });

  it("spreads a grpc-js-xds client's traffic over both clusters", async () => {
    const first = await client.call(10_000);
    expect(first.ok, first.value).toBe(true);
    await untilServedBy(echo.slice(0, 3), 10_000);
  });

  it("moves the traffic within 1 s of a change to the remote's EndpointSlice", async () => {
    const changedAt = Date.now();
    remote.upsert(endpointSlice(spec, 'foo-1', [asBackend(echo[3]!)]));
    // The acceptance bound: the client follows the remote's change within one second.
    await untilServedBy([echo[0]!, echo[3]!], 1000);
    expect(Date.now() - changedAt).toBeLessThan(1000);
  });
});
