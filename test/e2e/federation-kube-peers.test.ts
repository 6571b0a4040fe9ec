// Two clusters federate with no hand work (issue 9, must-show 1): two fake apiservers with the CRDs applied by kubectl,
// two `meshfed serve --kube --xds-tls` processes, and in each cluster an IstioFederation for the other. Both CRs reach
// Public/PrivateMetadataExchangeReady=True; a proxyless gRPC client abc/foo in A (certificates from its `meshfed agent`)
// calls bar in B through B's SNI gateway over mTLS, and bar (certificates from its agent) sees the client's SPIFFE id;
// unlabelling B's Service withdraws the import from A; deleting A's CR drops B's root from A's trust bundle.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { startFakeApiServer, type KubeObject } from '../fixtures/kube-apiserver/index.js';
import { sniClusterName } from '../fixtures/sni-gateway/routes.js';
import { MtlsClient, type MtlsEchoServer, startMtlsEchoServer, type Workload } from '../helpers/grpc-mtls.js';
import { namespace } from '../helpers/kube-cluster.js';
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

const FED = 'deckhouse.io/v1alpha1';
const BAR = 'bar.xyz.svc.cluster-b.local';
const BAR_CLUSTER = `outbound|9090||${BAR}`;

interface Side extends KubeSide {
  readonly name: 'cluster-a' | 'cluster-b';
  /** xDS over TLS (agents), and in plaintext (configuration only: proxyless gRPC, the gateway, these probes). */
  xds: number;
  plain: number;
  metadata: number;
}

const sides: Side[] = [];
const [A, B] = [() => sides[0]!, () => sides[1]!];

/** B's gateway: the SNI gateway fixture, fed by B's xDS as a `router` of cluster-b; B advertises it to its peers. */
const gateway = new EastWestGateway();
/** bar's pod in B listens here, on loopback; A's client reaches it only through the gateway. */
let barPort: number;
const workloads: Workload[] = [];
let barServer: MtlsEchoServer | undefined;
let channel: MtlsClient | undefined;

const bar = (): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'bar', namespace: 'xyz', labels: { 'meshfed.io/exported': 'true' } },
  spec: { type: 'ClusterIP', ports: [{ name: 'grpc', port: 9090, targetPort: barPort, protocol: 'TCP' }] },
});

/** bar's pod and its EndpointSlice, as the kubelet and the EndpointSlice controller would write them. */
const barPod = (): KubeObject[] => [
  {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'bar-1', namespace: 'xyz', labels: { app: 'bar' } },
    spec: { serviceAccountName: 'bar' },
    status: { podIP: '127.0.0.1' },
  },
  {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'bar-1', namespace: 'xyz', labels: { 'kubernetes.io/service-name': 'bar' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'bar-1', namespace: 'xyz' } }],
    ports: [{ name: 'grpc', port: barPort, protocol: 'TCP' }],
  },
];

function start(s: Side, gateway: string): void {
  const args = [
    'serve',
    '--kubeconfig',
    s.kubeconfig,
    '--namespace',
    'meshfed',
    '--cluster-id',
    s.name,
    '--cluster-domain',
    `${s.name}.local`,
    '--xds-address',
    `127.0.0.1:${s.xds}`,
    '--admin-address',
    '127.0.0.1:0',
    '--debug-address',
    '127.0.0.1:0',
    '--metadata-address',
    `127.0.0.1:${s.metadata}`,
    '--federation',
    '--advertise-gateway',
    gateway,
    '--peer-poll-interval',
    '1',
    // The mesh CA (a Secret in its apiserver) signs workload certificates for agents that show a service-account token.
    '--xds-tls',
    '--server-dns-names',
    SERVER_NAME,
    '--xds-plaintext-address',
    `127.0.0.1:${s.plain}`,
  ];
  spawnMeshfed(s, args);
}

const node = {
  id: 'sidecar~10.1.0.9~client-1.abc~abc.svc.cluster-a.local',
  metadata: {
    fields: { CLUSTER_ID: { string_value: 'cluster-a' }, NAMESPACE: { string_value: 'abc' }, SERVICE_ACCOUNT: { string_value: 'client' } },
  },
};

/** One SotW answer from side s's plaintext xDS (A's unless given) for a sidecar of cluster-a. */
async function ask(typeUrl: string, names: string[], s = A()): Promise<SotwResponse> {
  const client = new RawXdsClient(`127.0.0.1:${s.plain}`);
  try {
    const stream = client.sotw();
    stream.send({ node, type_url: typeUrl, resource_names: names });
    return await stream.next(10_000);
  } finally {
    client.close();
  }
}

/** `meshfed agent` for ns/sa of side `s`, which also trusts the peer's domain. */
async function workload(s: Side, ns: string, sa: string, peerDomain: string): Promise<Workload> {
  const w = await kubeWorkload(s, {
    xds: s.xds,
    plain: s.plain,
    network: s.name,
    namespace: ns,
    serviceAccount: sa,
    trustDomains: [peerDomain],
  });
  workloads.push(w);
  return w;
}

async function trustDomainsOfA(): Promise<string[]> {
  const sds = await ask(TypeUrl.Secret, ['ROOTCA']);
  const vc = sds.resources.find((r) => r.name === 'ROOTCA')!.body['validation_context'] as Record<string, Record<string, unknown>>;
  return (vc['custom_validator_config']!['typed_config'] as { trust_domains: Array<{ name: string }> }).trust_domains
    .map((d) => d.name)
    .sort();
}

beforeAll(async () => {
  for (const name of ['cluster-a', 'cluster-b'] as const) {
    const dir = mkdtempSync(path.join(os.tmpdir(), `meshfed-fedkube-${name}-`));
    const api = await startFakeApiServer({ clusterName: name });
    const s: Side = {
      name,
      dir,
      api,
      kubeconfig: api.writeKubeconfig(dir),
      xds: await freePort(),
      plain: await freePort(),
      metadata: await freePort(),
      out: '',
    };
    sides.push(s);
    for (const ns of ['kube-system', 'meshfed', 'xyz']) api.upsert(namespace(ns));
    await kubectl(s, ['apply', '-f', CRDS]);
  }
  barPort = await freePort();
  await kubectl(B(), ['apply'], bar());
  barPod().forEach((o) => B().api.upsert(o));
  start(A(), '198.51.100.1:15443');
  start(B(), `127.0.0.1:${await gateway.listen()}`);
  await kubectl(A(), ['apply'], {
    apiVersion: FED,
    kind: 'IstioFederation',
    metadata: { name: 'cluster-b' },
    spec: { trustDomain: 'cluster-b.local', metadataEndpoint: `http://127.0.0.1:${B().metadata}/metadata/` },
  });
  await kubectl(B(), ['apply'], {
    apiVersion: FED,
    kind: 'IstioFederation',
    metadata: { name: 'cluster-a' },
    spec: { trustDomain: 'cluster-a.local', metadataEndpoint: `http://127.0.0.1:${A().metadata}/metadata/` },
  });
}, 30_000);

afterAll(async () => {
  channel?.close();
  barServer?.stop();
  await gateway.close();
  await Promise.all(workloads.map((w) => w.stop()));
  sides.forEach((s) => s.proc?.kill('SIGKILL'));
  await Promise.all(sides.map((s) => s.api.close()));
});

describe('two meshfed --kube processes federated by IstioFederation resources', () => {
  it("both CRs reach Public and Private MetadataExchangeReady=True, and A serves B's exported service over B's gateway", async () => {
    await untilPeersReady(sides, 'IstioFederation', ['PublicMetadataExchangeReady', 'PrivateMetadataExchangeReady'], 20_000);
    await vi.waitFor(async () => expect((await ask(TypeUrl.Cluster, [])).resources.map((r) => r.name)).toContain(BAR_CLUSTER), {
      timeout: 5_000,
      interval: 200,
    });
    const eds = JSON.stringify((await ask(TypeUrl.Endpoint, [BAR_CLUSTER])).resources[0]?.body);
    expect(eds).toContain(`"port_value":${gateway.port}`); // B's gateway, not bar's pod
    expect(await trustDomainsOfA()).toEqual(['cluster-a.local', 'cluster-b.local']);
  });

  it("a proxyless gRPC client abc/foo in A calls bar in B through B's gateway over mTLS, and bar sees spiffe://cluster-a.local/ns/abc/sa/foo", async () => {
    // The gateway learns bar's pod from B's xDS, as an Envoy gateway with only a bootstrap would.
    await vi.waitFor(() => ask(TypeUrl.Cluster, [], B()), { timeout: 10_000, interval: 100 }); // B's plaintext xDS port answers
    const sni = sniClusterName(9090, BAR);
    gateway.follow(`127.0.0.1:${B().plain}`, {
      id: 'router~127.0.0.1~eastwest-1.istio-system~istio-system.svc.cluster-b.local',
      clusterId: 'cluster-b',
      network: 'cluster-b',
    });
    await vi.waitFor(
      () => expect(gateway.routes.snapshot().get(sni), `the gateway's route ${sni}`).toEqual([{ address: '127.0.0.1', port: barPort }]),
      { timeout: 10_000, interval: 100 },
    );
    // Each workload's certificate comes from its own cluster's CA, through its own agent.
    const [client, server] = await Promise.all([
      workload(A(), 'abc', 'foo', 'cluster-b.local'),
      workload(B(), 'xyz', 'bar', 'cluster-a.local'),
    ]);
    barServer = await startMtlsEchoServer(server.agent.files, barPort, 'bar@cluster-b');
    channel = new MtlsClient(`xds:///${BAR}:9090`, await client.bootstrap());
    const ok = await firstOkCall(channel);
    expect(ok.value).toBe('bar@cluster-b');
    expect(barServer.peerSans).toEqual(['URI:spiffe://cluster-a.local/ns/abc/sa/foo']);
    // The connection went through the gateway, which routed it by name without terminating TLS.
    expect(gateway.forwarded()).toContainEqual([sni, barPort]);
  }, 60_000);

  it('unlabelling the Service in B removes the import from A', async () => {
    expect((await ask(TypeUrl.Cluster, [])).resources.map((r) => r.name)).toContain(BAR_CLUSTER);
    await kubectl(B(), ['label', 'service', 'bar', '-n', 'xyz', 'meshfed.io/exported-']);
    await vi.waitFor(async () => expect((await ask(TypeUrl.Cluster, [])).resources.map((r) => r.name)).not.toContain(BAR_CLUSTER), {
      timeout: 10_000,
      interval: 200,
    });
  });

  it("deleting A's IstioFederation removes B's root from A's bundle", async () => {
    expect(await trustDomainsOfA()).toEqual(['cluster-a.local', 'cluster-b.local']);
    await kubectl(A(), ['delete', 'istiofederation', 'cluster-b']);
    await vi.waitFor(async () => expect(await trustDomainsOfA()).toEqual(['cluster-a.local']), { timeout: 10_000, interval: 200 });
  });
});
