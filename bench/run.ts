// npm run bench: meshfed and simulated proxies in separate processes, measured from outside.
//   scale: 5,000 services, 50,000 endpoints, 1,000 SotW ADS clients (CDS wildcard + EDS for all)
//   churn: 10 endpoint changes a second for 60 s with 1,000 delta ADS clients
//   bare:  the same fan-out as scale from a bare grpc-js server writing pre-encoded bytes
//   bare-churn: the same changes as churn, fanned out by that bare server over Delta (the churn baseline)
// Every scenario prints the response bytes per client by type, as the clients counted them.
// Flags: --scenario scale|churn|bare-churn|all  --clients N  --services N  --endpoints N  --duration S  --workers N
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { create, fromJson, toBinary, fromBinary } from '@bufbuild/protobuf';
import { ApplyMeshRequestSchema, ApplyMeshResponseSchema, ApplyMode } from '../src/gen/meshfed/v1/admin_pb.js';
import { MeshSchema } from '../src/gen/meshfed/v1/mesh_pb.js';
import type { WorkerConfig, WorkerMessage } from './client-worker.js';
import { benchMesh, benchService, clusterName } from './mesh.js';
import { procStats, type ProcStats } from './proc-stats.js';
import { freePort } from '../test/helpers/ports.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.dirname(here);
const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'all' },
    clients: { type: 'string', default: '1000' },
    services: { type: 'string', default: '5000' },
    endpoints: { type: 'string', default: '10' },
    duration: { type: 'string', default: '60' },
    rate: { type: 'string', default: '10' },
    workers: { type: 'string', default: '4' },
  },
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
    [...(process.env['BENCH_PROF'] ? ['--cpu-prof', '--cpu-prof-dir', process.env['BENCH_PROF']] : []), '--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', meshFile, '--enable-admin-api', '--log-level', 'warn', '--xds-address', `127.0.0.1:${xds}`, '--admin-address', `127.0.0.1:${admin}`, '--debug-address', '127.0.0.1:0',
      // Every simulated proxy connects from 127.0.0.1.
      '--max-connections-per-address', String(CLIENTS + 100)],
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
  const proc = spawn(process.execPath, ['--import', 'tsx', 'bench/bare-server.ts', meshFile, String(xds)], { cwd: repo, stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(proc);
  await new Promise<void>((resolve) => proc.stdout!.once('data', () => resolve()));
  return { proc, xds };
}

interface Fleet {
  readonly workers: ChildProcess[];
  readonly synced: number[];
  readonly updates: Map<string, { n: number; t: number }>;
  readonly errors: string[];
  readonly start: number;
  /** Answers to a 'stats' request, one per worker. */
  readonly stats: Array<Extract<WorkerMessage, { type: 'stats' }>>;
}

async function launchFleet(address: string, kind: 'sotw' | 'delta'): Promise<Fleet> {
  const workers: ChildProcess[] = [];
  const fleet: Fleet = { workers, synced: [], updates: new Map(), errors: [], start: 0, stats: [] };
  await Promise.all(
    Array.from({ length: WORKERS }, () => {
      const child = fork(path.join(here, 'client-worker.ts'), [], { execArgv: ['--import', 'tsx'], cwd: repo });
      children.push(child);
      workers.push(child);
      child.on('message', (m: WorkerMessage) => {
        if (m.type === 'synced') fleet.synced.push(m.t);
        else if (m.type === 'update') {
          const u = fleet.updates.get(m.name) ?? { n: 0, t: 0 };
          u.n++;
          u.t = Math.max(u.t, m.t);
          fleet.updates.set(m.name, u);
        } else if (m.type === 'stats') fleet.stats.push(m);
        else if (m.type === 'error' && fleet.errors.length < 20) fleet.errors.push(m.message);
      });
      return new Promise<void>((resolve) => child.once('message', () => resolve()));
    }),
  );
  (fleet as { start: number }).start = Date.now();
  workers.forEach((child, w) => {
    const count = Math.min(PER_WORKER, CLIENTS - w * PER_WORKER);
    const config: WorkerConfig = { address, kind, count, offset: w * PER_WORKER, expect: SERVICES };
    child.send({ type: 'start', config });
  });
  return fleet;
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** Response bytes the fleet's clients received so far, by type (CDS, EDS). */
async function bytesByType(f: Fleet): Promise<Record<string, number>> {
  f.stats.length = 0;
  for (const w of f.workers) w.send({ type: 'stats' });
  await waitFor(() => f.stats.length === f.workers.length, 10_000);
  const out: Record<string, number> = {};
  for (const st of f.stats) for (const [t, b] of Object.entries(st.bytesByType)) out[t] = (out[t] ?? 0) + b;
  return out;
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
  for (const line of text.split('\n')) if (line.startsWith(name) && line.includes(filter) && !line.startsWith('#')) sum += Number(line.split(' ').pop());
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

function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** Applies changes to distinct services at `rate` per second; returns delays until every client had each. */
async function churn(apply: (s: object[]) => Promise<void>, fleet: Fleet, changes: number, rate: number, firstService: number): Promise<{ delays: number[]; missing: number }> {
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
  await waitFor(() => [...sentAt.keys()].every((n) => (fleet.updates.get(n)?.n ?? 0) >= WORKERS), 15_000);
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
  const fleet = await launchFleet(`127.0.0.1:${server.xds}`, 'sotw');
  const ok = await waitFor(() => fleet.synced.length === CLIENTS, 180_000);
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
  const fleet = await launchFleet(`127.0.0.1:${bare.xds}`, 'sotw');
  const ok = await waitFor(() => fleet.synced.length === CLIENTS, 180_000);
  const syncMs = Math.max(...fleet.synced) - fleet.start;
  const end = procStats(bare.proc.pid!);
  const byType = perClient(await bytesByType(fleet));
  stopFleet(fleet);
  bare.proc.kill('SIGKILL');
  return { scenario: 'bare', allSynced: ok ? 'yes' : `no (${fleet.synced.length}/${CLIENTS})`, initialSyncMs: syncMs, ...byType, serverCpuS: end.cpuSeconds, serverPeakRss: end.peakRssBytes };
}

/** The churn baseline: the same changes as scenarioChurn, each fanned out once as the same bytes to every Delta stream. */
async function scenarioBareChurn(): Promise<Report> {
  const bare = await startBare();
  const fleet = await launchFleet(`127.0.0.1:${bare.xds}`, 'delta');
  const ok = await waitFor(() => fleet.synced.length === CLIENTS, 180_000);
  const syncMs = Math.max(...fleet.synced) - fleet.start;
  const before = procStats(bare.proc.pid!);
  const bytesBefore = await bytesByType(fleet);
  const rate = Number(args.rate);
  const changes = Number(args.duration) * rate;
  const apply = (services: object[]): Promise<void> => new Promise((resolve) => bare.proc.stdin!.write(JSON.stringify({ services }) + '\n', () => resolve()));
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
  const fleet = await launchFleet(`127.0.0.1:${server.xds}`, 'delta');
  const ok = await waitFor(() => fleet.synced.length === CLIENTS, 180_000);
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

function print(r: Report): void {
  console.log(`\n== ${r['scenario']} ==`);
  for (const [k, v] of Object.entries(r)) {
    if (k === 'scenario' || v === undefined) continue;
    const shown = typeof v === 'number' ? (/Rss|bytes/i.test(k) ? mb(v) : /Ms$/.test(k) ? `${v.toFixed(0)} ms` : /CpuS$/.test(k) ? s(v * 1000) : Number.isInteger(v) ? String(v) : v.toFixed(2)) : v;
    console.log(`  ${k.padEnd(28)} ${shown}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const reports: Report[] = [];
const which = args.scenario;
if (which?.startsWith('kube-')) await import('./kube.js').then(() => process.exit(0)); // kube-sync, kube-churn: bench/kube.ts
console.log(`meshfed bench: ${CLIENTS} clients in ${WORKERS} processes, ${SERVICES} services × ${ENDPOINTS} endpoints, ${os.cpus().length} cores`);
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
