// Serving from N processes (issue 12 item 9): the same mesh and the same clients (in their own processes,
// bench/client-worker.ts) against one serving process, as meshfed serves today, then against a discovery
// process feeding N serving workers that share the xDS port (bench/workers-server.ts). Measures, per mode:
// the initial sync of every client (wall time = serving throughput, and the CPU of all server processes),
// then --changes endpoint changes fanned out to every client (p50/p99 until all had each). Checks that
// both modes serve the same resources (a hash of what probe clients receive, over several connections, so
// every worker answers). Prints the ratio and the verdict: adopt when N=2 gives ≥ 1.7× one process.
//   npx tsx bench/workers.ts --workers 2 [--clients 1000 --services 5000 ...]   (--help: the flags)
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { DiscoveryRequest, DiscoveryResponse, TypeUrl } from '../src/envoy/protos.js';
import { freePort } from '../test/helpers/ports.js';
import { benchArgs } from './args.js';
import { bytesByType, type Fleet, launchFleet, pct, sleep, within } from './fleet.js';
import { benchMesh, benchNodeStruct, benchService, clusterName } from './mesh.js';
import { procStats } from './proc-stats.js';
import type { ProcessStats } from './workers-server.js';

const ADOPT_AT = 1.7;
const USAGE = `Usage: npx tsx bench/workers.ts [flags]
  --workers <n>       serving processes to compare with one (default 2); 1 measures one process only
  --clients <n>       simulated proxies (default 1000)
  --services <n>      services in the mesh (default 5000)
  --endpoints <n>     endpoints per service (default 10)
  --client-procs <n>  processes the clients run in (default 4)
  --changes <n>       endpoint changes fanned out after the sync (default 20)
  --rate <n>          changes a second (default 2)
  --scenario <s>      the clients' protocol: sotw or delta (default sotw)
`;
const args = benchArgs(USAGE, ['sotw', 'delta'], {
  scenario: 'sotw',
  workers: '2',
  clients: '1000',
  services: '5000',
  endpoints: '10',
  'client-procs': '4',
  changes: '20',
  rate: '2',
});
const KIND = args.scenario as 'sotw' | 'delta';
const [CLIENTS, SERVICES, ENDPOINTS, CHANGES, RATE, N] = [
  args.clients,
  args.services,
  args.endpoints,
  args.changes,
  args.rate,
  args.workers,
].map(Number) as [number, number, number, number, number, number];
const PER_PROC = Math.ceil(CLIENTS / Number(args['client-procs']));
const CLIENT_PROCS = Math.ceil(CLIENTS / PER_PROC);

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.dirname(here);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'meshfed-workers-'));
const meshFile = path.join(tmp, 'mesh.json');
writeFileSync(meshFile, JSON.stringify(benchMesh({ services: SERVICES, endpointsPerService: ENDPOINTS })));
const children: ChildProcess[] = [];
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

interface Server {
  readonly proc: ChildProcess;
  readonly address: string;
  /** The primary first. */
  readonly pids: readonly number[];
  /** Sends one command line (see bench/workers-server.ts). */
  command(cmd: object): void;
  /** The next stdout line starting with `prefix `, without the prefix. */
  line(prefix: string): Promise<string>;
}

async function startServer(workers: number): Promise<Server> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', 'bench/workers-server.ts', meshFile, String(port), String(workers)], {
    cwd: repo,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(proc);
  const waiting: Array<{ prefix: string; resolve: (rest: string) => void }> = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    const i = waiting.findIndex((w) => l.startsWith(`${w.prefix} `));
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(l.slice(l.indexOf(' ') + 1));
  });
  const line = (prefix: string): Promise<string> => new Promise((resolve) => waiting.push({ prefix, resolve }));
  const exited = new Promise<never>((_, reject) =>
    proc.once('exit', (code) => reject(new Error(`the server exited (${code}) before it was ready`))),
  );
  const { pids } = JSON.parse(await Promise.race([line('ready'), exited])) as { pids: number[] };
  exited.catch(() => {}); // later exits are ours
  return { proc, address: `127.0.0.1:${port}`, pids, line, command: (cmd) => void proc.stdin!.write(JSON.stringify(cmd) + '\n') };
}

/** Response bytes per client by type (CDS, EDS), as the clients counted them. */
async function bytesPerClient(f: Fleet): Promise<Report> {
  const out: Report = {};
  for (const [t, b] of Object.entries(await bytesByType(f))) out[`${t}bytesPerClient`] = b / CLIENTS;
  return out;
}

/** Changes to distinct services at RATE a second; the delays until every client had each. */
async function churn(server: Server, fleet: Fleet): Promise<{ delays: number[]; missing: number }> {
  const sentAt = new Map<string, number>();
  const t0 = Date.now();
  for (let k = 0; k < CHANGES; k++) {
    const due = t0 + (k * 1000) / RATE;
    if (due > Date.now()) await sleep(due - Date.now());
    const i = (11 + k * 7) % SERVICES;
    sentAt.set(clusterName(i), Date.now());
    server.command({ services: [benchService(i, ENDPOINTS, 1 + Math.floor((11 + k) / SERVICES))] });
  }
  await within(() => [...sentAt.keys()].every((n) => (fleet.updates.get(n)?.n ?? 0) >= CLIENT_PROCS), 60_000);
  const delays: number[] = [];
  let missing = 0;
  for (const [name, t] of sentAt) {
    const u = fleet.updates.get(name);
    if (u && u.n >= CLIENT_PROCS) delays.push(u.t - t);
    else missing++;
  }
  return { delays, missing };
}

/**
 * What one fresh SotW connection is served: CDS (wildcard) and EDS for every cluster, hashed over the
 * resources' bytes in byte order (versions and nonces left out). The stream stays open until close(),
 * so the servers' stream counts show which process answered.
 */
async function probe(address: string): Promise<{ hash: string; close(): void }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.max_receive_message_length': -1,
  });
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(
    '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
    (b) => b,
    (b) => b,
  );
  const close = (): void => {
    call.cancel();
    client.close();
  };
  const request = (m: object): boolean => call.write(Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromObject(m)).finish()));
  const node = { id: 'sidecar~10.249.0.1~probe.bench~bench.svc.cluster.local', cluster: 'bench', metadata: benchNodeStruct() };
  try {
    const hash = await new Promise<string>((resolve, reject) => {
      const got = new Map<string, Buffer[]>();
      call.on('error', reject);
      call.on('data', (buf: Buffer) => {
        const r = DiscoveryResponse.decode(buf) as unknown as {
          type_url: string;
          version_info: string;
          nonce: string;
          resources: Array<{ value: Uint8Array }>;
        };
        got.set(
          r.type_url,
          r.resources.map((a) => Buffer.from(a.value)),
        );
        if (r.type_url === TypeUrl.Cluster) {
          request({ type_url: r.type_url, version_info: r.version_info, response_nonce: r.nonce });
          if (!got.has(TypeUrl.Endpoint))
            request({ type_url: TypeUrl.Endpoint, resource_names: Array.from({ length: SERVICES }, (_, i) => clusterName(i)) });
        }
        if (got.get(TypeUrl.Cluster)?.length === SERVICES && got.get(TypeUrl.Endpoint)?.length === SERVICES) {
          const h = createHash('sha256');
          for (const t of [TypeUrl.Cluster, TypeUrl.Endpoint]) for (const b of got.get(t)!.sort(Buffer.compare)) h.update(b);
          resolve(h.digest('hex').slice(0, 16));
        }
      });
      request({ node, type_url: TypeUrl.Cluster, resource_names: [] });
      setTimeout(() => reject(new Error('probe: no full CDS and EDS within 60 s')), 60_000).unref();
    });
    return { hash, close };
  } catch (err) {
    close();
    throw err;
  }
}

/** Open xDS streams per serving process (the primary of N workers serves none and is left out). */
async function streamsPerProcess(server: Server): Promise<Map<number, number>> {
  server.command({ stats: true });
  const { processes } = JSON.parse(await server.line('stats')) as { processes: ProcessStats[] };
  return new Map(processes.filter((p) => p.role !== 'primary').map((p) => [p.pid, p.streams]));
}

/** 2 probes per serving process, all open at once: the hash they all saw (or each), and how many each process answered. */
async function probes(server: Server, workers: number): Promise<string> {
  const before = await streamsPerProcess(server);
  const open = [];
  for (let i = 0; i < 2 * workers; i++) open.push(await probe(server.address));
  const after = await streamsPerProcess(server);
  open.forEach((p) => p.close());
  const hashes = new Set(open.map((p) => p.hash));
  const answered = [...after].map(([pid, n]) => n - (before.get(pid) ?? 0)).join(' / ');
  return `${hashes.size === 1 ? [...hashes][0]! : `DIFFER: ${[...hashes].join(' ')}`} (probes answered per process: ${answered})`;
}

/** CPU seconds of every server process (primary and workers), and the sum of their peak RSS. */
function serverStats(s: Server): { cpu: number; primaryCpu: number; peakRss: number } {
  const all = s.pids.map(procStats);
  return {
    cpu: all.reduce((a, p) => a + p.cpuSeconds, 0),
    primaryCpu: all[0]!.cpuSeconds,
    peakRss: all.reduce((a, p) => a + p.peakRssBytes, 0),
  };
}

async function measure(workers: number): Promise<Report> {
  const server = await startServer(workers);
  const before = serverStats(server);
  const fleet = await launchFleet(server.address, KIND, CLIENTS, CLIENT_PROCS, SERVICES, children);
  const ok = await within(() => fleet.synced.length === CLIENTS, 600_000);
  const syncMs = Math.max(...fleet.synced) - fleet.start;
  const synced = serverStats(server);
  const streams = await streamsPerProcess(server);
  const afterSyncHash = await probes(server, workers);
  const beforeChurn = serverStats(server);
  const { delays, missing } = await churn(server, fleet);
  const churned = serverStats(server);
  const afterChangesHash = await probes(server, workers);
  const bytes = await bytesPerClient(fleet);
  for (const p of fleet.workers) p.kill('SIGKILL');
  server.proc.kill('SIGTERM');
  await new Promise((r) => server.proc.once('exit', r));
  return {
    mode: workers === 1 ? '1 process (as today)' : `1 discovery + ${workers} serving processes`,
    clients: CLIENTS,
    services: SERVICES,
    endpoints: SERVICES * ENDPOINTS,
    allSynced: ok ? 'yes' : `no (${fleet.synced.length}/${CLIENTS})`,
    initialSyncMs: syncMs,
    syncClientsPerS: (CLIENTS * 1000) / syncMs,
    syncCpuS: synced.cpu - before.cpu,
    syncPrimaryCpuS: workers === 1 ? undefined : synced.primaryCpu - before.primaryCpu,
    streamsPerProcess: [...streams.values()].join(' / '),
    changes: CHANGES,
    changeP50Ms: pct(delays, 50),
    changeP99Ms: pct(delays, 99),
    changesMissing: missing,
    changeCpuS: churned.cpu - beforeChurn.cpu,
    ...bytes,
    serverPeakRssSum: churned.peakRss,
    resourcesAfterSync: afterSyncHash,
    resourcesAfterChanges: afterChangesHash,
    errors: fleet.errors.join(' | ') || undefined,
  };
}

interface Report {
  [k: string]: number | string | undefined;
}

function print(r: Report): void {
  console.log(`\n== ${r['mode']} ==`);
  for (const [k, v] of Object.entries(r)) {
    if (k === 'mode' || v === undefined) continue;
    const shown =
      typeof v !== 'number'
        ? v
        : /Rss|bytes/i.test(k)
          ? `${(v / 1024 / 1024).toFixed(2)} MB`
          : /Ms$/.test(k)
            ? `${v.toFixed(0)} ms`
            : /CpuS$/.test(k)
              ? `${v.toFixed(2)} s`
              : Number.isInteger(v)
                ? String(v)
                : v.toFixed(1);
    console.log(`  ${k.padEnd(24)} ${shown}`);
  }
}

console.log(
  `meshfed workers bench: ${CLIENTS} ${KIND} clients in ${CLIENT_PROCS} processes, ${SERVICES} services × ${ENDPOINTS} endpoints, ${os.cpus().length} cores`,
);
const reports: Report[] = [];
for (const workers of N === 1 ? [1] : [1, N]) {
  reports.push(await measure(workers));
  print(reports.at(-1)!);
}
if (reports.length === 2) {
  const [one, many] = reports as [Report, Report];
  const throughput = Number(one['initialSyncMs']) / Number(many['initialSyncMs']);
  const hash = (r: Report, k: string): string => String(r[k]).split(' ')[0]!;
  const same = ['resourcesAfterSync', 'resourcesAfterChanges'].every(
    (k) => !hash(one, k).startsWith('DIFFER') && hash(one, k) === hash(many, k),
  );
  const was = (k: string, unit: string, digits = 0): string =>
    `${Number(one[k]).toFixed(digits)} → ${Number(many[k]).toFixed(digits)} ${unit}`;
  console.log(`\n  same resources in both modes: ${same ? 'yes' : 'NO'}`);
  console.log(
    `  1 → ${N} processes: initial sync ${was('initialSyncMs', 'ms')}, server CPU for it ${was('syncCpuS', 's', 2)}, change p99 ${was('changeP99Ms', 'ms')}`,
  );
  console.log(`  serving throughput, ${N} processes ÷ 1: ${throughput.toFixed(2)}× (initial sync wall time)`);
  const verdict = !same
    ? 'no verdict: the modes served different resources'
    : throughput >= ADOPT_AT
      ? `adopt (≥ ${ADOPT_AT}×)`
      : `do not adopt (< ${ADOPT_AT}×)`;
  console.log(`  verdict${N === 2 ? '' : ` (the rule is for 2 processes; this is ${N})`}: ${verdict}`);
  reports.push({ mode: 'ratio', workers: N, throughput, same: same ? 'yes' : 'no', verdict });
}
mkdirSync(path.join(here, 'results'), { recursive: true });
writeFileSync(path.join(here, 'results', `workers-${Date.now()}.json`), JSON.stringify(reports, null, 2));
process.exit(0);
