// Issue 3, "must show" 2: through a gateway, with real clients and real isolation.
//
// Three network namespaces (test/fixtures/netns.ts): A holds a proxyless @grpc/grpc-js-xds client
// of cluster-a, B holds an mTLS gRPC backend of cluster-b, and GW holds the SNI gateway fixture,
// the only thing with a foot in both networks (and it does not route IP). meshfed runs in this
// process; A's client and the gateway reach it over Unix sockets (test/fixtures/xds-pipe.ts),
// so the xDS channel opens no path between the networks. The client is told, by split-horizon
// EDS, only the gateway's address; the gateway, fed over xDS as a `router` of network-b, routes
// the TLS stream by SNI to B's backend without terminating it.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import {
  createGatewayTopology,
  GATEWAY_TOPOLOGY as NET,
  type GatewayTopology,
  NETNS_PREFIX,
  type NetnsProcess,
  removeLeftovers,
} from '../fixtures/netns.js';
import { sniClusterName } from '../fixtures/sni-gateway/routes.js';
import { XdsPipe } from '../fixtures/xds-pipe.js';
import { type MeshHarness, startMeshHarness } from '../helpers/grpc-mesh.js';
import { RawXdsClient } from '../helpers/raw-client.js';
import { issueWorkloadCert, makeRoot, type TestRoot, type WorkloadCert, writeBundle } from '../helpers/test-certs.js';

const HOST = 'echo.demo.svc.cluster-b.local';
const SERVICE_PORT = 9090;
const BACKEND_PORT = 8443;
const GATEWAY_PORT = 15443;
const OUTBOUND = `outbound|${SERVICE_PORT}||${HOST}`;
const SNI_CLUSTER = sniClusterName(SERVICE_PORT, HOST);
const BACKEND = `${NET.backendB}:${BACKEND_PORT}`;
const CALLS = 5;

const CLIENT_ID = `sidecar~${NET.clientA}~client-1.demo~demo.svc.cluster-a.local`;
const CLIENT_META = { CLUSTER_ID: 'cluster-a', NETWORK: 'network-a', NAMESPACE: 'demo', SERVICE_ACCOUNT: 'client' };
const GATEWAY_NODE = {
  id: `router~${NET.gatewayA}~eastwest-1.istio-system~istio-system.svc.cluster-b.local`,
  clusterId: 'cluster-b',
  network: 'network-b',
};

function meshDoc(rootA: TestRoot, rootB: TestRoot): Record<string, unknown> {
  return {
    clusters: [
      { id: 'cluster-a', network: 'network-a', domain: 'cluster-a.local', rootCaPem: rootA.certPem },
      {
        id: 'cluster-b',
        network: 'network-b',
        domain: 'cluster-b.local',
        rootCaPem: rootB.certPem,
        gateways: [{ address: NET.gatewayA, port: GATEWAY_PORT }],
      },
    ],
    services: [
      {
        name: 'echo',
        namespace: 'demo',
        cluster: 'cluster-b',
        exported: true,
        ports: [{ name: 'grpc', port: SERVICE_PORT, protocol: 'GRPC', targetPort: BACKEND_PORT }],
        endpoints: [
          {
            address: NET.backendB,
            port: BACKEND_PORT,
            serviceAccount: 'echo',
            locality: { region: 'region-b', zone: 'zone-b1' },
            health: 'HEALTHY',
          },
        ],
      },
    ],
  };
}

/** The client's bootstrap: meshfed over the pipe, and the certificate providers of CONTRACTS.md. */
function clientBootstrap(xds: string, client: WorkloadCert, bundleFile: string, roots: readonly TestRoot[]): Record<string, unknown> {
  const providers: Record<string, unknown> = {
    default: {
      plugin_name: 'file_watcher',
      config: {
        certificate_file: client.certFile,
        private_key_file: client.keyFile,
        ca_certificate_file: bundleFile,
        refresh_interval: '600s',
      },
    },
  };
  for (const r of roots) {
    providers[`spiffe://${r.trustDomain}`] = {
      plugin_name: 'file_watcher',
      config: { ca_certificate_file: r.certFile, refresh_interval: '600s' },
    };
  }
  return {
    xds_servers: [{ server_uri: xds, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: CLIENT_ID, locality: {}, metadata: CLIENT_META },
    certificate_providers: providers,
  };
}

/** A root per trust domain, the client's certificate (cluster-a) and the backend's (cluster-b). */
async function makeCerts(dir: string) {
  const [rootA, rootB] = await Promise.all([makeRoot(dir, 'cluster-a.local'), makeRoot(dir, 'cluster-b.local')]);
  const [bundle, client, server] = await Promise.all([
    writeBundle(path.join(dir, 'roots.pem'), [rootA, rootB]),
    issueWorkloadCert(dir, rootA, 'demo', 'client'),
    issueWorkloadCert(dir, rootB, 'demo', 'echo'),
  ]);
  return { rootA, rootB, bundle, client, server };
}

describe("a proxyless gRPC client in network A calls a service in network B through B's gateway", () => {
  let dir: string;
  let topo: GatewayTopology | undefined;
  let h: MeshHarness | undefined;
  const pipes: XdsPipe[] = [];
  let pipeA: XdsPipe;
  let pipeGw: XdsPipe;
  let backend: NetnsProcess;
  let gateway: NetnsProcess;
  let client: NetnsProcess;
  let clientCert: WorkloadCert;
  let bundleFile: string;
  /** The gateway's reports up to the end of the client's RPCs (later tests add probes of their own). */
  let rpcEvents = 0;
  const gatewayEventsOfRpcs = () => gateway.lines.slice(0, rpcEvents);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'meshfed-gw-'));
    const [t, certs] = await Promise.all([createGatewayTopology(), makeCerts(dir)]);
    topo = t;
    const { rootA, rootB, bundle, server } = certs;
    clientCert = certs.client;
    bundleFile = bundle;
    h = await startMeshHarness(meshDoc(rootA, rootB));
    const meshfed = { host: '127.0.0.1', port: h.meshfed.xdsPort };
    pipes.push((pipeA = await XdsPipe.open(path.join(dir, 'xds-a.sock'), meshfed)));
    pipes.push((pipeGw = await XdsPipe.open(path.join(dir, 'xds-gw.sock'), meshfed)));
    backend = topo.spawnTs(topo.b, 'backend', 'test/fixtures/tls-echo-backend-main.ts', [
      JSON.stringify({ host: NET.backendB, port: BACKEND_PORT, certFile: server.certFile, keyFile: server.keyFile, caFile: bundle }),
    ]);
    gateway = topo.spawnTs(topo.gw, 'gateway', 'test/fixtures/sni-gateway/main.ts', [
      JSON.stringify({ host: NET.gatewayA, port: GATEWAY_PORT, xds: pipeGw.target, node: GATEWAY_NODE }),
    ]);
    await backend.reported('the backend listening', (l) => l['event'] === 'listening');
    await gateway.reported('the gateway listening', (l) => l['event'] === 'listening');
    await gateway.reported(
      `the gateway's route ${SNI_CLUSTER} → ${BACKEND}`,
      (l) =>
        l['event'] === 'routes' &&
        JSON.stringify((l['clusters'] as Record<string, unknown>)[SNI_CLUSTER]) ===
          JSON.stringify([{ address: NET.backendB, port: BACKEND_PORT }]),
    );
    client = topo.spawnTs(topo.a, 'client', 'test/fixtures/xds-grpc-client-main.ts', [
      JSON.stringify({
        target: `xds:///${HOST}:${SERVICE_PORT}`,
        bootstrap: clientBootstrap(pipeA.target, clientCert, bundle, [rootA, rootB]),
        calls: CALLS,
        timeoutMs: 15_000,
      }),
    ]);
    await client.reported('the client to finish its RPCs', (l) => l['event'] === 'done', 25_000);
    rpcEvents = gateway.lines.length;
  }, 45_000);

  afterAll(async () => {
    await topo?.destroy();
    await Promise.all(pipes.map((p) => p.close()));
    await h?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("isolates the networks: from A, B's backend is unreachable and only the gateway answers", async () => {
    const direct = await topo!.canConnect(topo!.a, NET.backendB, BACKEND_PORT);
    expect(direct.ok, `A → ${BACKEND} must fail, got ${direct.detail}`).toBe(false);
    expect(['timeout', 'EHOSTUNREACH', 'ENETUNREACH']).toContain(direct.detail);
    // The probe itself works: the gateway's namespace reaches the backend, and A reaches the gateway.
    expect(await topo!.canConnect(topo!.gw, NET.backendB, BACKEND_PORT)).toEqual({ ok: true, detail: 'connected' });
    expect(await topo!.canConnect(topo!.a, NET.gatewayA, GATEWAY_PORT)).toEqual({ ok: true, detail: 'connected' });
  });

  it("serves every RPC from B's backend, over mTLS with the client's own certificate", () => {
    const rpcs = client.lines.filter((l) => l['event'] === 'rpc');
    expect(rpcs, client.stderr.slice(-20).join('\n')).toEqual(Array(CALLS).fill({ event: 'rpc', ok: true, value: BACKEND }));
    const calls = backend.lines.filter((l) => l['event'] === 'call');
    expect(calls).toHaveLength(CALLS);
    for (const c of calls) {
      expect(c['transport']).toBe('ssl');
      // The TLS peer is the client in A; the TCP peer is the gateway's B-side address.
      expect(c['peerSan']).toBe(`URI:${clientCert.spiffeId}`);
      expect(String(c['peer'])).toMatch(new RegExp(`^${NET.gatewayB.replaceAll('.', '\\.')}:`));
    }
  });

  it('the gateway routed the stream by its SNI (the bare hostname gRPC sends) without terminating TLS', () => {
    const forwards = gatewayEventsOfRpcs().filter((l) => l['event'] === 'forward');
    expect(forwards.length).toBeGreaterThanOrEqual(1);
    for (const f of forwards) {
      expect(f).toMatchObject({ sni: HOST, cluster: SNI_CLUSTER, upstream: { address: NET.backendB, port: BACKEND_PORT } });
      expect(String(f['from'])).toMatch(new RegExp(`^${NET.clientA.replaceAll('.', '\\.')}:`));
    }
    expect(gatewayEventsOfRpcs().filter((l) => l['event'] === 'reject' || l['event'] === 'upstream-error')).toEqual([]);
  });

  it("also routes Istio's SNI form (what an Envoy sidecar sends) and closes a connection naming no cluster", async () => {
    const handshake = async (servername: string) =>
      JSON.parse(
        await topo!.execNode(
          topo!.a,
          `const fs=require('fs');
const s=require('tls').connect({host:${JSON.stringify(NET.gatewayA)},port:${GATEWAY_PORT},servername:${JSON.stringify(servername)},
  cert:fs.readFileSync(${JSON.stringify(clientCert.certFile)}),key:fs.readFileSync(${JSON.stringify(clientCert.keyFile)}),
  ca:fs.readFileSync(${JSON.stringify(bundleFile)}),ALPNProtocols:['h2'],checkServerIdentity:()=>undefined});
s.on('secureConnect',()=>{console.log(JSON.stringify({ok:true,peerSan:s.getPeerX509Certificate().subjectAltName}));process.exit(0)});
s.on('error',(e)=>{console.log(JSON.stringify({ok:false,error:e.code||e.message}));process.exit(1)});`,
        ),
      ) as { ok: boolean; peerSan?: string; error?: string };
    const before = gateway.lines.length;
    expect(await handshake(SNI_CLUSTER)).toEqual({ ok: true, peerSan: `URI:spiffe://cluster-b.local/ns/demo/sa/echo` });
    expect(await handshake(sniClusterName(SERVICE_PORT, 'nope.demo.svc.cluster-b.local'))).toMatchObject({ ok: false });
    expect(gateway.lines.slice(before).map((l) => [l['event'], l['sni']])).toEqual([
      ['forward', SNI_CLUSTER],
      ['reject', sniClusterName(SERVICE_PORT, 'nope.demo.svc.cluster-b.local')],
    ]);
  });

  it("tells A only the gateway address: B's backend address never reaches A", async () => {
    // Every byte meshfed sent over A's xDS channel: the gateway address is there, the backend's never.
    const toA = pipeA.sentToClients();
    expect(toA.includes(NET.gatewayA)).toBe(true);
    expect(toA.includes(NET.backendB)).toBe(false);
    expect(pipeGw.sentToClients().includes(NET.backendB), 'the gateway, in network B, is told the backend').toBe(true);

    // What meshfed holds as sent to the client, decoded.
    const res = await fetch(`http://127.0.0.1:${h!.meshfed.debugPort}/debug/config_dump?proxy=${encodeURIComponent(CLIENT_ID)}`);
    const dump = JSON.stringify(await res.json());
    expect(dump).toContain(OUTBOUND);
    expect(dump).toContain(NET.gatewayA);
    expect(dump).not.toContain(NET.backendB);

    // The same node view, asked directly: one endpoint, the gateway on 15443.
    const observer = new RawXdsClient(`127.0.0.1:${h!.meshfed.xdsPort}`);
    try {
      const s = observer.sotw('ads');
      const metadata = { fields: Object.fromEntries(Object.entries(CLIENT_META).map(([k, v]) => [k, { stringValue: v }])) };
      s.send({
        node: { id: `sidecar~${NET.clientA}~observer.demo~demo.svc.cluster-a.local`, user_agent_name: 'gRPC Node Pure JS', metadata },
        type_url: TypeUrl.Endpoint,
        resource_names: [OUTBOUND],
      });
      const eds = await s.next(5000);
      const cla = eds.resources.find((r) => r.name === OUTBOUND)?.body as {
        endpoints: Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } } }> }>;
      };
      const addresses = cla.endpoints.flatMap((l) => l.lb_endpoints.map((e) => e.endpoint.address.socket_address));
      expect(addresses).toEqual([{ address: NET.gatewayA, port_value: GATEWAY_PORT }]);
      s.close();
    } finally {
      observer.close();
    }
  });
});

describe('network-namespace cleanup', () => {
  it("removes namespaces (and the processes in them) that a crashed run left behind, but not a live run's", async () => {
    // A pid that has just exited stands for the crashed run.
    const gone = spawn(process.execPath, ['-e', '']);
    const deadPid = gone.pid!;
    await new Promise((r) => gone.once('exit', r));
    const stale = `${NETNS_PREFIX}${deadPid}-test-a`;
    const live = `${NETNS_PREFIX}${process.pid}-test-a`;
    const names = () => execFileSync('ip', ['netns', 'list']).toString();
    try {
      for (const ns of [stale, live]) execFileSync('ip', ['netns', 'add', ns]);
      const orphan = spawn('ip', ['netns', 'exec', stale, 'sleep', '60'], { stdio: 'ignore' });
      const orphanExit = new Promise((r) => orphan.once('exit', (_code, signal) => r(signal)));
      await new Promise((r) => setTimeout(r, 100)); // let it enter the namespace

      expect(await removeLeftovers()).toContain(stale);
      expect(await orphanExit).toBe('SIGKILL');
      expect(names()).not.toContain(stale);
      expect(names()).toContain(live);
    } finally {
      for (const ns of [stale, live]) if (names().includes(ns)) execFileSync('ip', ['netns', 'del', ns]);
    }
  });
});
