// Memory per remote cluster joined by multicluster metadata exchange (issue 10, numbers in the note). meshfed runs
// in its own process (`serve --kubeconfig`, so its RSS is its own) beside a local fake apiserver; every peer is a
// fake apiserver with --services × --endpoints, meshfed's api-proxy in front of it, and a Deckhouse-shaped metadata
// server (test/helpers/peer-metadata.ts) publishing multicluster.json. The peers are declared in a mesh file
// (`multiclusters:`, the same fields as IstioMulticluster) only after a baseline: the result is meshfed's RSS with
// every peer synced, minus the baseline, divided by --peers.
// Usage: tsx bench/multicluster.ts [--peers N] [--services N] [--endpoints N] [--settle S]
import { spawn } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import client from 'prom-client';
import { stringify } from 'yaml';
import { ApiProxy } from '../src/alliance/api-proxy/server.js';
import type { PeerDirectory, PublicMetadata } from '../src/alliance/types.js';
import { createLogger } from '../src/log.js';
import { localKubeConfig } from '../src/sources/kube/transport.js';
import { startFakeApiServer, type FakeApiServer, type KubeObject } from '../test/fixtures/kube-apiserver/index.js';
import { testPki } from '../test/fixtures/kube-apiserver/pki.js';
import { type LocalIdentity, type PeerServer, startPeerServer } from '../test/helpers/peer-metadata.js';
import { freePort } from '../test/helpers/ports.js';
import { benchArgs } from './args.js';
import { procStats } from './proc-stats.js';

const USAGE = `Usage: tsx bench/multicluster.ts [flags]
  --peers <n>       multicluster peers joined (default 10)
  --services <n>    services per peer (default 100)
  --endpoints <n>   endpoints per service (default 10)
  --settle <s>      seconds to let meshfed settle before each RSS reading (default 5)
`;
const args = benchArgs(USAGE, ['memory'], { scenario: 'memory', peers: '10', services: '100', endpoints: '10', settle: '5' });
const PEERS = Number(args.peers);
const SERVICES = Number(args.services);
const PER_SERVICE = Number(args.endpoints);
const SETTLE_MS = Number(args.settle) * 1000;
const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-bench-mc-'));
const log = createLogger('warn');

function seed(api: FakeApiServer, peer: number): void {
  for (const ns of ['kube-system', 'meshfed', 'bench']) api.upsert({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  for (let s = 0; s < SERVICES; s++) {
    api.upsert({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${s}`, namespace: 'bench' },
      spec: { type: 'ClusterIP', ports: [{ name: 'grpc', port: 8080, targetPort: 9000, protocol: 'TCP' }] },
    });
    const slice: KubeObject = {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `svc-${s}-1`, namespace: 'bench', labels: { 'kubernetes.io/service-name': `svc-${s}` } },
      addressType: 'IPv4',
      endpoints: Array.from({ length: PER_SERVICE }, (_, e) => ({
        addresses: [`10.${peer + 1}.${s & 255}.${e + 1}`],
        conditions: { ready: true },
      })),
      ports: [{ name: 'grpc', port: 9000, protocol: 'TCP' }],
    };
    api.upsert(slice);
  }
}

interface Peer {
  readonly api: FakeApiServer;
  readonly proxy: ApiProxy;
  readonly metadata: PeerServer;
}

async function main(): Promise<void> {
  const pki = testPki();
  const local = await startFakeApiServer({ clusterName: 'local' });
  for (const ns of ['kube-system', 'meshfed']) local.upsert({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const mesh = path.join(dir, 'mesh.yaml');
  writeFileSync(mesh, stringify({ clusters: [] }));
  const [metadataPort, debugPort] = [await freePort(), await freePort()];
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--kubeconfig',
      local.writeKubeconfig(dir),
      '--cluster-id',
      'bench',
      '--config',
      mesh,
      '--log-level',
      'warn',
      '--xds-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
      '--debug-address',
      `127.0.0.1:${debugPort}`,
      '--metadata-address',
      `127.0.0.1:${metadataPort}`,
      '--peer-poll-interval',
      '60',
    ],
    { cwd: path.resolve(import.meta.dirname, '..'), stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const peers: Peer[] = [];
  try {
    // meshfed's identity, as the peers learn it (their allow-lists): its public.json.
    const pub = await until(
      async () => (await (await fetch(`http://127.0.0.1:${metadataPort}/metadata/public/public.json`)).json()) as PublicMetadata,
      60_000,
    );
    const publicKey = createPublicKey(pub.authnKeyPub.replace(/ED25519 PUBLIC KEY/g, 'PUBLIC KEY'));
    const trusted = [{ uuid: pub.clusterUUID, publicKey } as unknown as LocalIdentity];
    const directory: PeerDirectory = { publicMetadata: (uuid) => (uuid === pub.clusterUUID ? pub : undefined) };
    await until(async () => (await clusters(debugPort)).some((c) => c.cluster === 'bench' && c.state === 'synced'), 60_000);

    for (let i = 0; i < PEERS; i++) {
      const api = await startFakeApiServer({ clusterName: `peer-${i}` });
      seed(api, i);
      const uuid = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
      const proxy = new ApiProxy({
        clusterUuid: uuid,
        peers: directory,
        kubeConfig: localKubeConfig(api.writeKubeconfig(dir)),
        tls: { cert: pki.serverCertPem, key: pki.serverKeyPem },
        metrics: new client.Registry(),
        log,
      });
      const port = await proxy.listen('127.0.0.1', 0);
      const metadata = await startPeerServer(
        {
          uuid,
          rootCA: pki.caPem,
          ingressGateways: [{ address: `192.0.2.${i + 1}`, port: 15443 }],
          publicServices: [],
          multicluster: { apiHost: `127.0.0.1:${port}`, networkName: `network-${i}`, clusterID: `peer-${i}` },
        },
        () => trusted,
        { tls: false },
      );
      peers.push({ api, proxy, metadata });
    }

    await sleep(SETTLE_MS);
    const base = procStats(proc.pid!);
    const t0 = Date.now();
    writeFileSync(
      mesh,
      stringify({
        clusters: [],
        multiclusters: peers.map((p, i) => ({ name: `peer-${i}`, metadataEndpoint: p.metadata.endpoint, metadata: { ca: pki.caPem } })),
      }),
    );
    const want = SERVICES * PER_SERVICE;
    await until(async () => {
      const remote = (await clusters(debugPort)).filter((c) => c.role === 'remote' && c.state === 'synced' && c.endpoints === want);
      return remote.length === PEERS || undefined;
    }, 600_000);
    const joinedMs = Date.now() - t0;
    await sleep(SETTLE_MS);
    const after = procStats(proc.pid!);
    const perPeer = (after.rssBytes - base.rssBytes) / PEERS;
    process.stdout.write(
      `${JSON.stringify({
        scenario: 'multicluster-memory',
        peers: PEERS,
        endpointsPerPeer: want,
        joinedAllMs: joinedMs,
        rssBaseMiB: +(base.rssBytes / 2 ** 20).toFixed(1),
        rssAfterMiB: +(after.rssBytes / 2 ** 20).toFixed(1),
        peakRssMiB: +(after.peakRssBytes / 2 ** 20).toFixed(1),
        rssPerRemoteClusterKiB: Math.round(perPeer / 1024),
        rssPerRemoteEndpointBytes: Math.round(perPeer / want),
      })}\n`,
    );
  } finally {
    proc.kill('SIGKILL');
    await Promise.all(peers.flatMap((p) => [p.proxy.close(), p.metadata.close(), p.api.close()]));
    await local.close();
  }
}

interface ClusterRow {
  cluster: string;
  role: string;
  state: string;
  endpoints: number;
}

async function clusters(debugPort: number): Promise<ClusterRow[]> {
  return ((await (await fetch(`http://127.0.0.1:${debugPort}/debug/clusters`)).json()) as { clusters: ClusterRow[] }).clusters;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`bench: gave up after ${timeoutMs} ms`);
    await sleep(100);
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench: ${err.message}\n`);
  process.exit(1);
});
