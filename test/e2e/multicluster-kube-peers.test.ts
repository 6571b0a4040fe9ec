// Two clusters join with no hand work (issue 10, must-show 1): two fake apiservers with the same domain
// cluster.local on different networks, the CRDs applied by kubectl, two `meshfed serve --kube --xds-tls` processes,
// each with its own root (its mesh CA), its metadata exporter and its api-proxy, and in each cluster an
// IstioMulticluster for the other. Both CRs reach Public/PrivateMetadataExchangeReady and RemoteAPIServerReady True;
// A's EDS for foo holds B's endpoints as B's gateway (split horizon), B's root joins A's cluster.local bundle; a
// proxyless gRPC client abc/foo in A calls bar, which only B runs, through B's SNI gateway over mTLS; and when B's
// endpoints change A follows, through B's api-proxy, within a second.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { testPki } from '../fixtures/kube-apiserver/pki.js';
import { sniClusterName } from '../fixtures/sni-gateway/routes.js';
import { MtlsClient, type MtlsEchoServer, startMtlsEchoServer, type Workload } from '../helpers/grpc-mtls.js';
import { backends, type ClusterSpec, endpointSlice, namespace, pod, seedCluster } from '../helpers/kube-cluster.js';
import {
  CRDS,
  EastWestGateway,
  firstOkCall,
  kubectl,
  type KubeSide,
  kubeWorkload,
  spawnMeshfed,
  untilPeersReady,
} from '../helpers/kube-peers.js';
import { SERVER_NAME } from '../helpers/mesh-tls.js';
import { freePort } from '../helpers/ports.js';
import { RawXdsClient, type SotwResponse } from '../helpers/raw-client.js';

const repo = path.resolve(import.meta.dirname, '../..');
const DH = 'deckhouse.io/v1alpha1';
const FOO: ClusterSpec = { namespace: 'abc', service: 'foo', portName: 'grpc', port: 8080, targetPort: 9000 };
const FOO_EDS = 'outbound|8080||foo.abc.svc.cluster.local';
/** Only B runs bar; its one pod (account abc/bar-sa, with a sidecar) listens on loopback, behind B's gateway. */
const BAR = 'bar.abc.svc.cluster.local';

interface Side extends KubeSide {
  readonly name: 'cluster-a' | 'cluster-b';
  /** xDS over TLS (agents), and in plaintext (configuration only: proxyless gRPC, the gateway, these probes). */
  xds: number;
  plain: number;
  debug: number;
  metadata: number;
  apiProxy: number;
}

const sides: Side[] = [];
const [A, B] = [() => sides[0]!, () => sides[1]!];

/** B's east-west gateway: the SNI gateway fixture, fed by B's xDS as a `router` of cluster-b; B advertises it. */
const gateway = new EastWestGateway();
/** B's gateway as A's EDS shows B's endpoints (set once it listens); A's is only published, nothing dials it. */
let gatewayOfB = '';
let barPort: number;
const BAR_SPEC = (): ClusterSpec => ({ namespace: 'abc', service: 'bar', portName: 'grpc', port: 9090, targetPort: barPort });
const workloads: Workload[] = [];
let barServer: MtlsEchoServer | undefined;
let channel: MtlsClient | undefined;

function start(s: Side, advertised: string): void {
  const pki = testPki();
  const cert = path.join(s.dir, 'api-proxy.crt');
  const key = path.join(s.dir, 'api-proxy.key');
  writeFileSync(cert, pki.serverCertPem);
  writeFileSync(key, pki.serverKeyPem, { mode: 0o600 });
  const args = [
    'serve',
    '--kubeconfig',
    s.kubeconfig,
    '--namespace',
    'meshfed',
    '--cluster-id',
    s.name,
    '--network',
    `network-${s.name}`,
    '--xds-address',
    `127.0.0.1:${s.xds}`,
    '--admin-address',
    '127.0.0.1:0',
    '--debug-address',
    `127.0.0.1:${s.debug}`,
    '--metadata-address',
    `127.0.0.1:${s.metadata}`,
    '--advertise-gateway',
    advertised,
    '--peer-poll-interval',
    '1',
    // The api-proxy with a certificate from files (as behind an Ingress), and its address published in multicluster.json.
    '--api-proxy-address',
    `127.0.0.1:${s.apiProxy}`,
    '--api-proxy-tls-cert',
    cert,
    '--api-proxy-tls-key',
    key,
    '--multicluster-api-host',
    `127.0.0.1:${s.apiProxy}`,
    // The mesh CA (a Secret in its apiserver, each cluster its own root) signs certificates for agents showing a token.
    '--xds-tls',
    '--server-dns-names',
    SERVER_NAME,
    '--xds-plaintext-address',
    `127.0.0.1:${s.plain}`,
  ];
  spawnMeshfed(s, args);
}

const node = {
  id: 'sidecar~10.1.0.9~client-1.abc~abc.svc.cluster.local',
  metadata: {
    fields: {
      CLUSTER_ID: { string_value: 'cluster-a' },
      NETWORK: { string_value: 'network-cluster-a' },
      NAMESPACE: { string_value: 'abc' },
      SERVICE_ACCOUNT: { string_value: 'client' },
    },
  },
};

/** One SotW answer from A's plaintext xDS for a sidecar of cluster-a. */
async function askA(typeUrl: string, names: string[]): Promise<SotwResponse> {
  const client = new RawXdsClient(`127.0.0.1:${A().plain}`);
  try {
    const s = client.sotw();
    s.send({ node, type_url: typeUrl, resource_names: names });
    return await s.next(10_000);
  } finally {
    client.close();
  }
}

/** A's EDS for a cluster (foo's unless given) as `address:port weight`, sorted. */
async function endpointsOfA(cluster = FOO_EDS): Promise<string[]> {
  const cla = (await askA(TypeUrl.Endpoint, [cluster])).resources[0]?.body as
    | { endpoints?: Array<{ lb_endpoints: Array<Record<string, unknown>> }> }
    | undefined;
  const out: string[] = [];
  for (const group of cla?.endpoints ?? []) {
    for (const e of group.lb_endpoints) {
      const sa = ((e['endpoint'] as Record<string, unknown>)['address'] as { socket_address: { address: string; port_value: number } })
        .socket_address;
      out.push(`${sa.address}:${sa.port_value} ${String((e['load_balancing_weight'] as { value?: number } | undefined)?.value ?? 1)}`);
    }
  }
  return out.sort();
}

async function rootsOfA(): Promise<string[]> {
  const sds = await askA(TypeUrl.Secret, ['ROOTCA']);
  const vc = sds.resources.find((r) => r.name === 'ROOTCA')!.body['validation_context'] as Record<string, Record<string, unknown>>;
  const domains = (
    vc['custom_validator_config']!['typed_config'] as { trust_domains: Array<{ name: string; trust_bundle: { inline_bytes: Uint8Array } }> }
  ).trust_domains;
  return domains.map((d) => `${d.name} ${Buffer.from(d.trust_bundle.inline_bytes).toString().split('BEGIN CERTIFICATE').length - 1}`);
}

beforeAll(async () => {
  for (const name of ['cluster-a', 'cluster-b'] as const) {
    const dir = mkdtempSync(path.join(os.tmpdir(), `meshfed-mckube-${name}-`));
    const api = await startFakeApiServer({ clusterName: name });
    const s: Side = {
      name,
      dir,
      api,
      kubeconfig: api.writeKubeconfig(dir),
      xds: await freePort(),
      plain: await freePort(),
      debug: await freePort(),
      metadata: await freePort(),
      apiProxy: await freePort(),
      out: '',
    };
    sides.push(s);
    for (const ns of ['kube-system', 'meshfed']) api.upsert(namespace(ns));
    await kubectl(s, ['apply', '-f', CRDS]);
  }
  seedCluster(A().api, FOO, backends('10.1.0', 2));
  seedCluster(B().api, FOO, backends('10.2.0', 3));
  barPort = await freePort();
  seedCluster(B().api, BAR_SPEC(), [{ ip: '127.0.0.1', pod: 'bar-1' }]);
  // bar is not exported: B's gateway passes it through because B's domain also has a cluster (A) on another
  // network, whose proxies route every shared service through it (Istio's east-west gateway exposes *.local).
  gatewayOfB = `127.0.0.1:${await gateway.listen()}`;
  start(A(), '198.51.100.1:15443');
  start(B(), gatewayOfB);
  const ca = testPki().caPem;
  for (const [s, peer] of [
    [A(), B()],
    [B(), A()],
  ] as const) {
    await kubectl(s, ['apply'], {
      apiVersion: DH,
      kind: 'IstioMulticluster',
      metadata: { name: peer.name },
      spec: { metadataEndpoint: `http://127.0.0.1:${peer.metadata}/metadata/`, metadata: { ca } },
    });
  }
}, 30_000);

afterAll(async () => {
  channel?.close();
  barServer?.stop();
  await gateway.close();
  await Promise.all(workloads.map((w) => w.stop()));
  sides.forEach((s) => s.proc?.kill('SIGKILL'));
  await Promise.all(sides.map((s) => s.api.close()));
});

describe('two meshfed --kube processes joined by IstioMulticluster resources', () => {
  it('both CRs reach all three conditions True', async () => {
    await untilPeersReady(
      sides,
      'IstioMulticluster',
      ['PublicMetadataExchangeReady', 'PrivateMetadataExchangeReady', 'RemoteAPIServerReady'],
      30_000,
    );
  });

  it("A serves B's endpoints of foo as B's gateway (split horizon), beside its own pods", async () => {
    await vi
      .waitFor(
        async () =>
          expect(
            (await endpointsOfA()).some((e) => e.startsWith(`${gatewayOfB} `)),
            "B behind its gateway in A's EDS",
          ).toBe(true),
        { timeout: 15_000, interval: 200 },
      )
      .catch((err: Error) => {
        throw new Error(`${err.message}\n--- A:\n${A().out.slice(-3000)}`);
      });
    expect(await endpointsOfA()).toEqual(['10.1.0.1:9000 1', '10.1.0.2:9000 1', `${gatewayOfB} 3`]);
    // One trust domain, two roots: A's own and B's.
    expect(await rootsOfA()).toEqual(['cluster.local 2']);
    const peers = JSON.parse(
      execFileSync(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', 'status', '--debug-url', `http://127.0.0.1:${A().debug}`, '-o', 'json'],
        { cwd: repo, encoding: 'utf8' },
      ),
    ) as Array<Record<string, unknown>>;
    // B's endpoints: foo's three pods and bar's one.
    expect(peers).toMatchObject([
      { name: 'cluster-b', kind: 'multicluster', api: { status: 'True' }, remoteCluster: { state: 'synced', endpoints: 4 } },
    ]);
  });

  it("a proxyless gRPC client abc/foo in A calls bar, which only B runs, through B's SNI gateway over mTLS; bar sees spiffe://cluster.local/ns/abc/sa/foo", async () => {
    const sni = sniClusterName(9090, BAR);
    // A knows bar only from B, through B's api-proxy: its one endpoint is B's gateway.
    await vi.waitFor(async () => expect(await endpointsOfA(`outbound|9090||${BAR}`)).toEqual([`${gatewayOfB} 1`]), {
      timeout: 10_000,
      interval: 200,
    });
    // The gateway learns bar's pod from B's xDS, as an Envoy gateway with only a bootstrap would.
    gateway.follow(`127.0.0.1:${B().plain}`, {
      id: 'router~127.0.0.1~eastwest-1.istio-system~istio-system.svc.cluster.local',
      clusterId: 'cluster-b',
      network: 'network-cluster-b',
    });
    await vi.waitFor(
      () =>
        expect(gateway.routes.snapshot().get(sni), `the gateway's route ${sni} (xDS errors: ${gateway.errors.join('; ')})`).toEqual([
          { address: '127.0.0.1', port: barPort },
        ]),
      { timeout: 10_000, interval: 100 },
    );
    // One trust domain, two roots: each workload's certificate comes from its own cluster's CA, through its own agent,
    // and each side verifies the other against the peer's root that joined its cluster.local bundle.
    const [client, server] = await Promise.all([
      kubeWorkload(A(), { xds: A().xds, plain: A().plain, network: 'network-cluster-a', namespace: 'abc', serviceAccount: 'foo' }),
      kubeWorkload(B(), { xds: B().xds, plain: B().plain, network: 'network-cluster-b', namespace: 'abc', serviceAccount: 'bar-sa' }),
    ]);
    workloads.push(client, server);
    barServer = await startMtlsEchoServer(server.agent.files, barPort, 'bar@cluster-b');
    channel = new MtlsClient(`xds:///${BAR}:9090`, await client.bootstrap());
    expect((await firstOkCall(channel)).value).toBe('bar@cluster-b');
    expect(barServer.peerSans).toEqual(['URI:spiffe://cluster.local/ns/abc/sa/foo']);
    // The connection went through B's gateway, which routed it by name without terminating TLS.
    expect(gateway.forwarded()).toContainEqual([sni, barPort]);
  }, 60_000);

  it("B's endpoints change and A follows within a second", async () => {
    // Pods first (with sidecars, so reachable through the gateway), then the slice: the change A must follow.
    for (const b of backends('10.2.0', 5)) B().api.upsert(pod(FOO, b));
    B().api.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 5)));
    // Bounded: the watch event crosses B's api-proxy to A's watch, then A's debounce (100 ms).
    await vi.waitFor(async () => expect(await endpointsOfA()).toContain(`${gatewayOfB} 5`), { timeout: 1000, interval: 20 });
    // Fewer, but not so many fewer that the remote guard holds them back as a mass withdrawal.
    B().api.upsert(endpointSlice(FOO, 'foo-1', backends('10.2.0', 3, 3)));
    await vi.waitFor(async () => expect(await endpointsOfA()).toContain(`${gatewayOfB} 3`), { timeout: 1000, interval: 20 });
  });
});
