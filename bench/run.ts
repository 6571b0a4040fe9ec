// npm run bench: meshfed and simulated proxies in separate processes, measured from outside.
//   scale: 5,000 services, 50,000 endpoints, 1,000 SotW ADS clients (CDS wildcard + EDS for all)
//   churn: 10 endpoint changes a second for 60 s with 1,000 delta ADS clients
//   bare:  the same fan-out as scale from a bare grpc-js server writing pre-encoded bytes
//   soak:  churn for --duration S while clients leave and join (one worker replaced every --rotate S),
//          the server's RSS and used heap sampled every --sample S: the series, slopes, and both once all
//          clients have left and the server has been quiet for --quiet S (not part of "all")
//   bare-churn: the same changes as churn, fanned out by that bare server over Delta (the churn baseline)
// Every scenario prints the response bytes per client by type, as the clients counted them.
// Flags: see USAGE (npm run bench -- --help).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { create, fromJson, toBinary, fromBinary } from '@bufbuild/protobuf';
import { ApplyMeshRequestSchema, ApplyMeshResponseSchema, ApplyMode } from '../src/gen/meshfed/v1/admin_pb.js';
import { MeshSchema } from '../src/gen/meshfed/v1/mesh_pb.js';
import { benchArgs } from './args.js';
import type { WorkerConfig } from './client-worker.js';
import { bytesByType, type Fleet, forkWorker, launchFleet, pct, sleep, within } from './fleet.js';
import { benchMesh, benchService, clusterName } from './mesh.js';
import { procStats, type ProcStats } from './proc-stats.js';
import { freePort } from '../test/helpers/ports.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.dirname(here);
const USAGE = `Usage: npm run bench -- [flags]
  --scenario <s>    scale, churn, bare-churn (the churn baseline; churn and all run it too), soak or all (default all; soak is not part of all); kube-sync or kube-churn run bench/kube.ts, with its own flags
  --clients <n>     simulated proxies (default 1000)
  --services <n>    services in the mesh (default 5000)
  --endpoints <n>   endpoints per service (default 10)
  --workers <n>     client processes (default 4)
  --duration <s>    churn, soak: seconds of changes (default 60)
  --rate <n>        churn, soak: endpoint changes a second (default 10)
  --sample <s>      soak: seconds between RSS samples (default 10)
  --rotate <s>      soak: one worker's clients replaced this often (default 10)
  --quiet <s>       soak: quiet seconds after all clients left, before the last sample (default 30)
`;
// kube-sync, kube-churn: bench/kube.ts reads the flags itself.
if (String(parseArgs({ options: { scenario: { type: 'string' } }, strict: false }).values.scenario).startsWith('kube-')) {
  await import('./kube.js');
  process.exit(0);
}
const args = benchArgs(USAGE, ['scale', 'churn', 'bare-churn', 'soak', 'all'], {
  scenario: 'all',
  clients: '1000',
  services: '5000',
  endpoints: '10',
  duration: '60',
  rate: '10',
  workers: '4',
  sample: '10',
  rotate: '10',
  quiet: '30',
});
const CLIENTS = Number(args.clients);
const SERVICES = Number(args.services);
const ENDPOINTS = Number(args.endpoints);
const PER_WORKER = Math.ceil(CLIENTS / Number(args.workers));
// Only as many workers as have clients (5 clients over 4 workers is 2+2+1): churn waits for every worker.
const WORKERS = Math.ceil(CLIENTS / PER_WORKER);

const tmp = mkdtempSync(path.join(os.tmpdir(), 'meshfed-bench-'));
const meshFile = path.join(tmp, 'mesh.json');
writeFileSync(meshFile, JSON.stringify(benchMesh({ services: SERVICES, endpointsPerService: ENDPOINTS })));

const children: ChildProcess[] = [];
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

async function startMeshfed(): Promise<{ proc: ChildProcess; xds: number; admin: number }> {
  const [xds, admin] = [await freePort(), await freePort()];
  const proc = spawn(
    process.execPath,
    [
      ...(process.env['BENCH_PROF'] ? ['--cpu-prof', '--cpu-prof-dir', process.env['BENCH_PROF']] : []),
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--config',
      meshFile,
      '--enable-admin-api',
      '--log-level',
      'warn',
      '--xds-address',
      `127.0.0.1:${xds}`,
      '--admin-address',
      `127.0.0.1:${admin}`,
      '--debug-address',
      '127.0.0.1:0',
      // Every simulated proxy connects from 127.0.0.1.
      '--max-connections-per-address',
      String(CLIENTS + 100),
    ],
    { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  children.push(proc);
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error('meshfed did not become ready');
    try {
      if ((await fetch(`http://127.0.0.1:${admin}/readyz`)).ok) break;
    } catch {
      /* not listening yet */
    }
    await sleep(200);
  }
  return { proc, xds, admin };
}

async function startBare(): Promise<{ proc: ChildProcess; xds: number }> {
  const xds = await freePort();
  // stdin carries churn changes (see bench/bare-server.ts).
  const proc = spawn(process.execPath, ['--import', 'tsx', 'bench/bare-server.ts', meshFile, String(xds)], {
    cwd: repo,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(proc);
  await new Promise<void>((resolve) => proc.stdout!.once('data', () => resolve()));
  return { proc, xds };
}

/** The clients of worker slot w. */
function workerConfig(address: string, kind: 'sotw' | 'delta', w: number): WorkerConfig {
  return { address, kind, count: Math.min(PER_WORKER, CLIENTS - w * PER_WORKER), offset: w * PER_WORKER, expect: SERVICES };
}

/** Bytes per client by type, between two bytesByType() readings (from zero when `before` is absent). */
function perClient(after: Record<string, number>, before: Record<string, number> = {}): Report {
  const out: Report = {};
  for (const t of Object.keys(after).sort()) out[`${t}bytesPerClient`] = (after[t]! - (before[t] ?? 0)) / CLIENTS;
  return out;
}

function stopFleet(f: Fleet): void {
  for (const w of f.workers) w.kill('SIGKILL');
}

function adminClient(port: number): (services: object[]) => Promise<void> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const mesh0 = benchMesh({ services: 0, endpointsPerService: 0 }) as { clusters: object[] };
  return (services) =>
    new Promise((resolve, reject) => {
      const req = create(ApplyMeshRequestSchema, {
        source: 'bench-churn',
        mode: ApplyMode.MERGE,
        mesh: fromJson(MeshSchema, { clusters: mesh0.clusters, services } as never),
      });
      client.makeUnaryRequest(
        '/meshfed.v1.AdminService/ApplyMesh',
        (m: typeof req) => Buffer.from(toBinary(ApplyMeshRequestSchema, m)),
        (b: Buffer) => fromBinary(ApplyMeshResponseSchema, b),
        req,
        (err) => (err ? reject(err) : resolve()),
      );
    });
}

async function metric(adminPort: number, name: string, filter = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n'))
    if (line.startsWith(name) && line.includes(filter) && !line.startsWith('#')) sum += Number(line.split(' ').pop());
  return sum;
}

/** What a change pushes, by type: responses, resources in them, and resources whose bytes changed (new versions). */
async function pushCounters(adminPort: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of ['CDS', 'EDS', 'LDS', 'RDS']) {
    out[`${t}pushes`] = await metric(adminPort, 'meshfed_xds_pushes_total', `type="${t}"`);
    out[`${t}resourcesPushed`] = await metric(adminPort, 'meshfed_xds_pushed_resources_total', `type="${t}"`);
    out[`${t}versionChanges`] = await metric(adminPort, 'meshfed_xds_resource_encodes_total', `type="${t}",changed="true"`);
  }
  return out;
}

/** Counter deltas over a churn run: only EDS should move, one resource per change per client. */
function pushReport(before: Record<string, number>, after: Record<string, number>, changes: number): Report {
  const d = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
  return {
    cdsPushesDuringChurn: d('CDSpushes'),
    cdsVersionChangesDuringChurn: d('CDSversionChanges'),
    ldsRdsPushesDuringChurn: d('LDSpushes') + d('RDSpushes'),
    edsVersionChangesPerChange: d('EDSversionChanges') / changes,
    edsResourcesPushedPerChangePerClient: d('EDSresourcesPushed') / changes / CLIENTS,
  };
}

/** Applies changes to distinct services at `rate` per second; returns delays until every client had each. */
async function churn(
  apply: (s: object[]) => Promise<void>,
  fleet: Fleet,
  changes: number,
  rate: number,
  firstService: number,
): Promise<{ delays: number[]; missing: number }> {
  const sentAt = new Map<string, number>();
  const interval = 1000 / rate;
  const t0 = Date.now();
  for (let k = 0; k < changes; k++) {
    const due = t0 + k * interval;
    if (due > Date.now()) await sleep(due - Date.now());
    const i = (firstService + k * 7) % SERVICES;
    sentAt.set(clusterName(i), Date.now());
    await apply([benchService(i, ENDPOINTS, 1 + Math.floor((firstService + k) / SERVICES))]);
  }
  await within(() => [...sentAt.keys()].every((n) => (fleet.updates.get(n)?.n ?? 0) >= WORKERS), 15_000);
  const delays: number[] = [];
  let missing = 0;
  for (const [name, t] of sentAt) {
    const u = fleet.updates.get(name);
    if (u && u.n >= WORKERS) delays.push(u.t - t);
    else missing++;
  }
  return { delays, missing };
}

interface Report {
  [k: string]: number | string | undefined;
}

const mb = (b: number): string => (b >= 1024 * 1024 ? `${(b / 1024 / 1024).toFixed(1)} MB` : `${(b / 1024).toFixed(1)} KB`);
const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

async function scenarioScale(): Promise<Report> {
  const server = await startMeshfed();
  const before: ProcStats = procStats(server.proc.pid!);
  const fleet = await launchFleet(`127.0.0.1:${server.xds}`, 'sotw', CLIENTS, WORKERS, SERVICES, children);
  const ok = await within(() => fleet.synced.length === CLIENTS, 180_000);
  const syncMs = Math.max(...fleet.synced) - fleet.start;
  const afterSync = procStats(server.proc.pid!);
  const encodesBefore = await metric(server.admin, 'meshfed_xds_resource_encodes_total');
  const pushesBefore = await pushCounters(server.admin);
  const apply = adminClient(server.xds);
  const changes = 20;
  const { delays, missing } = await churn(apply, fleet, changes, 2, 11);
  const encodes = (await metric(server.admin, 'meshfed_xds_resource_encodes_total')) - encodesBefore;
  const pushes = pushReport(pushesBefore, await pushCounters(server.admin), changes);
  const bytes = await metric(server.admin, 'meshfed_xds_pushed_bytes_total');
  const byType = perClient(await bytesByType(fleet));
  const end = procStats(server.proc.pid!);
  stopFleet(fleet);
  server.proc.kill('SIGTERM');
  await new Promise((r) => server.proc.once('exit', r));
  return {
    scenario: 'scale',
    clients: CLIENTS,
    services: SERVICES,
    endpoints: SERVICES * ENDPOINTS,
    allSynced: ok ? 'yes' : `no (${fleet.synced.length}/${CLIENTS})`,
    initialSyncMs: syncMs,
    initialSyncCpuS: afterSync.cpuSeconds - before.cpuSeconds,
    changeP50Ms: pct(delays, 50),
    changeP99Ms: pct(delays, 99),
    changesMissing: missing,
    encodesPerChangedResource: encodes / changes,
    ...pushes,
    bytesSent: bytes,
    ...byType,
    serverCpuS: end.cpuSeconds,
    serverPeakRss: end.peakRssBytes,
    errors: fleet.errors.join(' | ') || undefined,
  };
}

async function scenarioBare(): Promise<Report> {
  const bare = await startBare();
  const fleet = await launchFleet(`127.0.0.1:${bare.xds}`, 'sotw', CLIENTS, WORKERS, SERVICES, children);
  const ok = await within(() => fleet.synced.length === CLIENTS, 180_000);
  const syncMs = Math.max(...fleet.synced) - fleet.start;
  const end = procStats(bare.proc.pid!);
  const byType = perClient(await bytesByType(fleet));
  stopFleet(fleet);
  bare.proc.kill('SIGKILL');
  return {
    scenario: 'bare',
    allSynced: ok ? 'yes' : `no (${fleet.synced.length}/${CLIENTS})`,
    initialSyncMs: syncMs,
    ...byType,
    serverCpuS: end.cpuSeconds,
    serverPeakRss: end.peakRssBytes,
  };
}

/** The churn baseline: the same changes as scenarioChurn, each fanned out once as the same bytes to every Delta stream. */
async function scenarioBareChurn(): Promise<Report> {
  const bare = await startBare();
  const fleet = await launchFleet(`127.0.0.1:${bare.xds}`, 'delta', CLIENTS, WORKERS, SERVICES, children);
  const ok = await within(() => fleet.synced.length === CLIENTS, 180_000);
  const syncMs = Math.max(...fleet.synced) - fleet.start;
  const before = procStats(bare.proc.pid!);
  const bytesBefore = await bytesByType(fleet);
  const rate = Number(args.rate);
  const changes = Number(args.duration) * rate;
  const apply = (services: object[]): Promise<void> =>
    new Promise((resolve) => bare.proc.stdin!.write(JSON.stringify({ services }) + '\n', () => resolve()));
  const { delays, missing } = await churn(apply, fleet, changes, rate, 101);
  const byType = perClient(await bytesByType(fleet), bytesBefore);
  const end = procStats(bare.proc.pid!);
  stopFleet(fleet);
  bare.proc.kill('SIGKILL');
  return {
    scenario: 'bare-churn',
    clients: CLIENTS,
    allSynced: ok ? 'yes' : `no (${fleet.synced.length}/${CLIENTS})`,
    initialSyncMs: syncMs,
    changes,
    changeP50Ms: pct(delays, 50),
    changeP99Ms: pct(delays, 99),
    changesMissing: missing,
    ...byType,
    churnCpuS: end.cpuSeconds - before.cpuSeconds,
    churnCpuPercent: (100 * (end.cpuSeconds - before.cpuSeconds)) / Number(args.duration),
    serverPeakRss: end.peakRssBytes,
    errors: fleet.errors.join(' | ') || undefined,
  };
}

async function scenarioChurn(): Promise<Report> {
  const server = await startMeshfed();
  const fleet = await launchFleet(`127.0.0.1:${server.xds}`, 'delta', CLIENTS, WORKERS, SERVICES, children);
  const ok = await within(() => fleet.synced.length === CLIENTS, 180_000);
  const syncMs = Math.max(...fleet.synced) - fleet.start;
  const before = procStats(server.proc.pid!);
  const encodesBefore = await metric(server.admin, 'meshfed_xds_resource_encodes_total');
  const bytesBefore = await metric(server.admin, 'meshfed_xds_pushed_bytes_total');
  const pushesBefore = await pushCounters(server.admin);
  const clientBytesBefore = await bytesByType(fleet);
  const rate = Number(args.rate);
  const changes = Number(args.duration) * rate;
  const apply = adminClient(server.xds);
  const { delays, missing } = await churn(apply, fleet, changes, rate, 101);
  const encodes = (await metric(server.admin, 'meshfed_xds_resource_encodes_total')) - encodesBefore;
  const bytes = (await metric(server.admin, 'meshfed_xds_pushed_bytes_total')) - bytesBefore;
  const pushes = pushReport(pushesBefore, await pushCounters(server.admin), changes);
  const byType = perClient(await bytesByType(fleet), clientBytesBefore);
  const end = procStats(server.proc.pid!);
  stopFleet(fleet);
  server.proc.kill('SIGTERM');
  return {
    scenario: 'churn',
    clients: CLIENTS,
    allSynced: ok ? 'yes' : `no (${fleet.synced.length}/${CLIENTS})`,
    initialSyncMs: syncMs,
    changes,
    changeP50Ms: pct(delays, 50),
    changeP99Ms: pct(delays, 99),
    changesMissing: missing,
    encodesPerChangedResource: encodes / changes,
    ...pushes,
    bytesSentDuringChurn: bytes,
    ...byType,
    churnCpuS: end.cpuSeconds - before.cpuSeconds,
    churnCpuPercent: (100 * (end.cpuSeconds - before.cpuSeconds)) / Number(args.duration),
    serverPeakRss: end.peakRssBytes,
    errors: fleet.errors.join(' | ') || undefined,
  };
}

/**
 * Long-run memory: churn at --rate while one worker's clients leave (SIGKILL, like a deleted pod)
 * and a new worker's join every --rotate s, alternating SotW and delta; the server's RSS every
 * --sample s. A leak shows as a slope that does not flatten, and as RSS after everyone left
 * (and --quiet s of nothing, so V8's idle GC has run) well above the RSS before anyone came.
 */
async function scenarioSoak(): Promise<Report> {
  const server = await startMeshfed();
  const pid = server.proc.pid!;
  const address = `127.0.0.1:${server.xds}`;
  const rssBeforeClients = procStats(pid).rssBytes;
  const fleet = await launchFleet(address, 'delta', CLIENTS, WORKERS, SERVICES, children);
  const ok = await within(() => fleet.synced.length === CLIENTS, 180_000);
  const apply = adminClient(server.xds);
  const [duration, rate, sampleMs, rotateMs] = [
    Number(args.duration),
    Number(args.rate),
    Number(args.sample) * 1000,
    Number(args.rotate) * 1000,
  ];
  // RSS from /proc, and V8's used heap from meshfed's default Prometheus metrics (what GC keeps).
  const series: Array<{ t: number; rss: number; heap: number }> = [];
  const t0 = Date.now();
  const heapUsed = (): Promise<number> => metric(server.admin, 'nodejs_heap_size_used_bytes');
  const sample = async (): Promise<void> =>
    void series.push({ t: (Date.now() - t0) / 1000, rss: procStats(pid).rssBytes, heap: await heapUsed() });
  let [changes, rotations, joined, nextSample, nextRotate] = [0, 0, 0, t0, t0 + rotateMs];
  while (Date.now() < t0 + duration * 1000) {
    const now = Date.now();
    if (now >= nextSample) {
      await sample();
      nextSample += sampleMs;
    }
    if (now >= nextRotate) {
      const slot = rotations % WORKERS;
      fleet.workers[slot]!.kill('SIGKILL');
      const child = await forkWorker(fleet, children);
      fleet.workers.splice(slot, 1, fleet.workers.pop()!); // the new worker takes the slot
      const config = workerConfig(address, rotations % 2 === 0 ? 'sotw' : 'delta', slot);
      child.send({ type: 'start', config });
      joined += config.count;
      rotations++;
      nextRotate += rotateMs;
    }
    const i = (changes * 7) % SERVICES;
    await apply([benchService(i, ENDPOINTS, 1 + Math.floor(changes / SERVICES))]);
    changes++;
    await sleep(Math.max(0, t0 + (changes * 1000) / rate - Date.now()));
  }
  await sample();
  const syncedAfterJoining = fleet.synced.length - CLIENTS;
  stopFleet(fleet);
  await sleep(Number(args.quiet) * 1000);
  const rssAfterClientsLeft = procStats(pid).rssBytes;
  const heapAfterClientsLeft = await heapUsed();
  const end = procStats(pid);
  server.proc.kill('SIGTERM');
  const MiB = 1024 * 1024;
  const show = (k: 'rss' | 'heap'): string => series.map((p) => `${p.t.toFixed(0)}s ${(p[k] / MiB).toFixed(1)}`).join(', ');
  console.log(`\n  server RSS every ${args.sample} s (MiB): ${show('rss')}\n  server heap used (MiB):       ${show('heap')}`);
  return {
    scenario: 'soak',
    clients: CLIENTS,
    allSynced: ok ? 'yes' : `no (${fleet.synced.length}/${CLIENTS})`,
    durationS: duration,
    changes,
    clientsLeftAndJoined: `${joined} (${rotations} workers replaced; ${syncedAfterJoining} synced)`,
    rssBeforeClients,
    rssFirstSample: series[0]!.rss,
    rssLastSample: series.at(-1)!.rss,
    rssSlope: `${slope(series.map((p) => [p.t / 60, p.rss / MiB])).toFixed(2)} MiB/min`,
    rssAfterClientsLeft,
    heapFirstSample: series[0]!.heap,
    heapLastSample: series.at(-1)!.heap,
    heapSlope: `${slope(series.map((p) => [p.t / 60, p.heap / MiB])).toFixed(2)} MiB/min`,
    heapAfterClientsLeft,
    serverPeakRss: end.peakRssBytes,
    serverCpuS: end.cpuSeconds,
    errors: fleet.errors.join(' | ') || undefined,
  };
}

/** Least-squares slope of y over x. */
function slope(points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const sxy = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return sxx === 0 ? NaN : sxy / sxx;
}

function print(r: Report): void {
  console.log(`\n== ${r['scenario']} ==`);
  for (const [k, v] of Object.entries(r)) {
    if (k === 'scenario' || v === undefined) continue;
    const shown =
      typeof v === 'number'
        ? /Rss|Heap|bytes/i.test(k)
          ? mb(v)
          : /Ms$/.test(k)
            ? `${v.toFixed(0)} ms`
            : /CpuS$/.test(k)
              ? s(v * 1000)
              : Number.isInteger(v)
                ? String(v)
                : v.toFixed(2)
        : v;
    console.log(`  ${k.padEnd(28)} ${shown}`);
  }
}

const reports: Report[] = [];
const which = args.scenario;
console.log(
  `meshfed bench: ${CLIENTS} clients in ${WORKERS} processes, ${SERVICES} services × ${ENDPOINTS} endpoints, ${os.cpus().length} cores`,
);
if (which === 'scale' || which === 'all') {
  reports.push(await scenarioScale());
  print(reports.at(-1)!);
  reports.push(await scenarioBare());
  print(reports.at(-1)!);
  const ratio = Number(reports.at(-2)!['initialSyncMs']) / Number(reports.at(-1)!['initialSyncMs']);
  console.log(`\n  meshfed / bare initial sync: ${ratio.toFixed(2)}× (goal ≤ 1.5×)`);
}
if (which === 'churn' || which === 'all') {
  reports.push(await scenarioChurn());
  print(reports.at(-1)!);
}
if (which === 'soak') {
  reports.push(await scenarioSoak());
  print(reports.at(-1)!);
}
if (which === 'bare-churn' || which === 'churn' || which === 'all') {
  reports.push(await scenarioBareChurn());
  print(reports.at(-1)!);
  const m = reports.find((r) => r['scenario'] === 'churn');
  if (m) {
    const b = reports.at(-1)!;
    const ratio = (k: string): string => (Number(m[k]) / Number(b[k])).toFixed(2);
    console.log(`\n  meshfed / bare churn: p99 ${ratio('changeP99Ms')}×, CPU ${ratio('churnCpuS')}× (goal ≤ 1.3×)`);
  }
}
mkdirSync(path.join(here, 'results'), { recursive: true });
writeFileSync(path.join(here, 'results', `bench-${Date.now()}.json`), JSON.stringify(reports, null, 2));
process.exit(0);
