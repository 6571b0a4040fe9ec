// Kubernetes discovery benchmarks against the fake apiserver (test/fixtures/kube-apiserver), with meshfed
// in its own process (`serve --kubeconfig`) so its CPU and RSS are its own.
//   kube-sync:  initial sync of a cluster with --services × --slices EndpointSlices × --endpoints each
//               (default 1000 × 5 × 10 = 50,000 endpoints in 5,000 slices): time until the registry and
//               an xDS client hold every endpoint, and meshfed's peak RSS.
//   kube-churn: --rate endpoint changes a second for --duration seconds: meshfed's CPU, and the push delay
//               from the apiserver write to the EDS response carrying it, seen by an xDS client.
// Usage: tsx bench/kube.ts [--scenario kube-sync|kube-churn|all] [--services N] [--slices N] [--endpoints N]
//        [--rate N] [--duration S]
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFakeApiServer, type FakeApiServer, type KubeObject } from '../test/fixtures/kube-apiserver/index.js';
import { freePort } from '../test/helpers/ports.js';
import { benchArgs } from './args.js';
import { countIps, edsClient, until } from './eds-client.js';
import { procStats } from './proc-stats.js';

const USAGE = `Usage: tsx bench/kube.ts [flags]   (or npm run bench -- --scenario kube-sync|kube-churn [flags])
  --scenario <s>    kube-sync, kube-churn or all (default all)
  --services <n>    services (default 1000)
  --slices <n>      EndpointSlices per service (default 5)
  --endpoints <n>   endpoints per slice (default 10)
  --rate <n>        kube-churn: endpoint changes a second (default 100)
  --duration <s>    kube-churn: seconds (default 30)
`;
const args = benchArgs(USAGE, ['kube-sync', 'kube-churn', 'all'], {
  scenario: 'all',
  services: '1000',
  slices: '5',
  endpoints: '10',
  rate: '100',
  duration: '30',
});
const SERVICES = Number(args.services);
const SLICES = Number(args.slices);
const PER_SLICE = Number(args.endpoints);
const TOTAL = SERVICES * SLICES * PER_SLICE;

const ip = (svc: number, slice: number, ep: number, gen = 0): string =>
  `10.${gen * 20 + (svc >> 8)}.${svc & 255}.${slice * PER_SLICE + ep + 1}`;
const host = (svc: number): string => `svc-${svc}.bench.svc.cluster.local`;
const clusterOf = (svc: number): string => `outbound|8080||${host(svc)}`;

function slice(svc: number, s: number, gens: readonly number[]): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `svc-${svc}-${s}`, namespace: 'bench', labels: { 'kubernetes.io/service-name': `svc-${svc}` } },
    addressType: 'IPv4',
    endpoints: gens.map((g, e) => ({ addresses: [ip(svc, s, e, g)], conditions: { ready: true }, nodeName: `node-${(svc + e) % 10}` })),
    ports: [{ name: 'grpc', port: 9000, protocol: 'TCP' }],
  };
}

function seed(api: FakeApiServer): void {
  api.upsert({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bench' } });
  for (let n = 0; n < 10; n++) {
    api.upsert({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: `node-${n}`, labels: { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': `z${n % 3}` } },
    });
  }
  for (let svc = 0; svc < SERVICES; svc++) {
    api.upsert({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${svc}`, namespace: 'bench' },
      spec: { ports: [{ name: 'grpc', port: 8080, targetPort: 9000 }] },
    });
    for (let s = 0; s < SLICES; s++) api.upsert(slice(svc, s, Array<number>(PER_SLICE).fill(0)));
  }
}

interface Server {
  pid: number;
  xds: number;
  debug: number;
  stop(): void;
}

async function startServer(api: FakeApiServer): Promise<Server> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-bench-kube-'));
  const [xds, admin, debug] = [await freePort(), await freePort(), await freePort()];
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--kubeconfig',
      api.writeKubeconfig(dir),
      '--cluster-id',
      'bench',
      '--log-level',
      'warn',
      '--xds-address',
      `127.0.0.1:${xds}`,
      '--admin-address',
      `127.0.0.1:${admin}`,
      '--debug-address',
      `127.0.0.1:${debug}`,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  return { pid: proc.pid!, xds, debug, stop: () => proc.kill('SIGTERM') };
}

async function registryEndpoints(s: Server): Promise<number> {
  try {
    const r = (await (await fetch(`http://127.0.0.1:${s.debug}/debug/clusters`)).json()) as { clusters: { endpoints: number }[] };
    return r.clusters[0]?.endpoints ?? 0;
  } catch {
    return 0;
  }
}

async function main(): Promise<void> {
  const api = await startFakeApiServer({ clusterName: 'bench', bookmarkIntervalMs: 60_000 });
  const seedStart = Date.now();
  seed(api);
  console.log(`seeded ${SERVICES} services, ${SERVICES * SLICES} EndpointSlices, ${TOTAL} endpoints in ${Date.now() - seedStart} ms`);
  const t0 = Date.now();
  const server = await startServer(api);
  const perCla = new Map<string, number>();
  let xdsTotal = 0;
  // Pending changes by EDS resource: new IP → when it was written; a later write to the same endpoint supersedes.
  const watchers = new Map<string, Map<string, number>>();
  const latestIp = new Map<string, string>();
  let pending = 0;
  let superseded = 0;
  const delays: number[] = [];
  let eds: { close(): void } | undefined;
  try {
    const inRegistry = await until(async () => (await registryEndpoints(server)) >= TOTAL, 300_000);
    const registryMs = Date.now() - t0;
    const names = Array.from({ length: SERVICES }, (_, i) => clusterOf(i));
    eds = edsClient(
      `127.0.0.1:${server.xds}`,
      names,
      (name, body) => {
        xdsTotal += countIps(body) - (perCla.get(name) ?? 0);
        perCla.set(name, countIps(body));
        const waiting = watchers.get(name);
        for (const [newIp, at] of waiting ?? []) {
          if (body.includes(`"${newIp}"`)) {
            delays.push(Date.now() - at);
            waiting!.delete(newIp);
            pending--;
          }
        }
      },
      { id: 'bench-kube-eds' },
    );
    const inXds = await until(() => xdsTotal >= TOTAL, 120_000);
    const xdsMs = Date.now() - t0;
    const afterSync = procStats(server.pid);
    console.log(`\n== kube-sync (${TOTAL} endpoints, ${SERVICES * SLICES} slices) ==`);
    console.log(`  process start → registry holds all: ${inRegistry ? `${registryMs} ms` : 'TIMEOUT'} (includes ~1-2 s of tsx start-up)`);
    console.log(`  process start → an xDS client holds all (fresh ADS stream after the registry): ${inXds ? `${xdsMs} ms` : 'TIMEOUT'}`);
    console.log(
      `  meshfed peak RSS: ${(afterSync.peakRssBytes / 2 ** 20).toFixed(0)} MiB, CPU so far ${afterSync.cpuSeconds.toFixed(1)} s`,
    );
    if (args.scenario === 'kube-sync') return;

    const rate = Number(args.rate);
    const duration = Number(args.duration);
    const gens = new Map<string, number[]>();
    const cpu0 = procStats(server.pid).cpuSeconds;
    const start = Date.now();
    let changes = 0;
    while (Date.now() - start < duration * 1000) {
      const due = Math.floor(((Date.now() - start) / 1000) * rate);
      for (; changes < due; changes++) {
        const svc = Math.floor(Math.random() * SERVICES);
        const s = Math.floor(Math.random() * SLICES);
        const e = Math.floor(Math.random() * PER_SLICE);
        const key = `${svc}/${s}`;
        const g = gens.get(key) ?? Array<number>(PER_SLICE).fill(0);
        g[e] = (g[e]! % 9) + 1;
        gens.set(key, g);
        const endpointKey = `${key}/${e}`;
        const w = watchers.get(clusterOf(svc)) ?? new Map<string, number>();
        watchers.set(clusterOf(svc), w);
        const old = latestIp.get(endpointKey);
        if (old !== undefined && w.delete(old)) {
          superseded++;
          pending--;
        }
        latestIp.set(endpointKey, ip(svc, s, e, g[e]));
        w.set(ip(svc, s, e, g[e]), Date.now());
        pending++;
        api.upsert(slice(svc, s, g));
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await until(() => pending === 0, 5000);
    const cpu = procStats(server.pid).cpuSeconds - cpu0;
    delays.sort((a, b) => a - b);
    const q = (p: number): number => delays[Math.min(delays.length - 1, Math.floor(p * delays.length))] ?? NaN;
    console.log(`\n== kube-churn (${rate} endpoint changes/s for ${duration} s) ==`);
    console.log(
      `  changes written: ${changes}; seen by the xDS client: ${delays.length}; superseded before seen: ${superseded}; never seen: ${pending}`,
    );
    console.log(`  push delay (apiserver write → EDS response): p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${delays.at(-1)} ms`);
    console.log(
      `  meshfed CPU: ${cpu.toFixed(1)} s over ${duration} s (${((cpu / duration) * 100).toFixed(0)} % of a core); peak RSS ${(procStats(server.pid).peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
    );
  } finally {
    eds?.close();
    server.stop();
    await api.close();
  }
}

await main();
