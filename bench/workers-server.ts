// The serving side of bench/workers.ts, the N-worker prototype (docs/ARCHITECTURE.md, "Serving from N processes"):
//   node --import tsx bench/workers-server.ts <mesh.json> <port> <workers>
// workers = 1: one process, shaped as meshfed serves today (registry → XdsStore → xDS server, in-process).
// workers > 1: this process is the node:cluster primary and runs only the discovery pipeline (the registry);
//   every published (snapshot, changes) goes to each worker as a MeshDelta over IPC, and each worker runs an
//   XdsStore and the gRPC xDS server on the shared port. With round-robin scheduling the primary accepts the
//   connections and hands each to the next worker; a connection stays on its worker for its life.
// stdin, one JSON line per command: {"services": [...]} applies a change as the admin API does (another source's
//   patch, merged with the file's) and publishes it at once (no debounce: the bench measures serving);
//   {"stats": true} prints the open xDS streams of each serving process.
// stdout: `ready {"pids": [...]}` (the primary first) once every process serves; `stats {...}` per request.
import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { fromJson } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { Metrics } from '../src/admin/metrics.js';
import { MeshSchema } from '../src/gen/meshfed/v1/mesh_pb.js';
import { createGenerators } from '../src/generate/index.js';
import { istioGenerators } from '../src/generate/istio.js';
import { EMPTY_SNAPSHOT, type MeshChanges, type MeshSnapshot } from '../src/model/mesh.js';
import { Registry } from '../src/registry/registry.js';
import { meshToSource } from '../src/sources/file/to-model.js';
import { XDS_LIMITS } from '../src/xds/limits.js';
import { meshStreamPolicy } from '../src/auth/policy.js';
import { XdsServer } from '../src/xds/server.js';
import { XdsStore } from '../src/xds/store.js';
import { applyMeshDelta, fullDelta, type MeshDelta, meshDelta } from './mesh-delta.js';

type ToWorker = { type: 'mesh'; delta: MeshDelta } | { type: 'stats' };
type FromWorker = { type: 'hello' } | { type: 'listening' } | { type: 'stats'; streams: number };
export interface ProcessStats {
  readonly pid: number;
  readonly role: 'primary' | 'worker' | 'single';
  readonly streams: number;
}

const [meshFile, portArg, workersArg] = process.argv.slice(2);
const PORT = Number(portArg);
const WORKERS = Number(workersArg);
// stdout is the bench's channel: logs (warnings and worse) go to stderr.
const log = pino({ level: 'warn', base: { pid: process.pid } }, pino.destination(2));

if (cluster.isPrimary) primary();
else worker();

/** The store and the xDS server, as startMeshfed wires them for a plaintext port (no PKI: no secrets). */
function serving(): { store: XdsStore; xds: XdsServer; listen: () => Promise<void> } {
  const metrics = new Metrics();
  const store = new XdsStore(
    [...createGenerators({ sdsConfig: 'ads' }), ...istioGenerators({ namespace: 'meshfed', trustDomain: '' })],
    metrics,
  );
  // Every simulated proxy connects from 127.0.0.1.
  const xds = new XdsServer({ store, observer: metrics, log, policy: meshStreamPolicy, limits: { maxConnectionsPerAddress: 1_000_000 } });
  const server = new grpc.Server({
    'grpc.max_receive_message_length': XDS_LIMITS.maxRequestBytes,
    'grpc.max_send_message_length': -1,
    'grpc.keepalive_permit_without_calls': 1,
  });
  xds.register(server);
  const listen = (): Promise<void> =>
    new Promise((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${PORT}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
  return { store, xds, listen };
}

function primary(): void {
  const mesh = JSON.parse(readFileSync(meshFile!, 'utf8')) as { clusters: unknown[] };
  let latest: { mesh: MeshSnapshot; changedAt: number } = { mesh: EMPTY_SNAPSHOT, changedAt: Date.now() };
  const joined = new Set<Worker>();
  let single: ReturnType<typeof serving> | undefined;
  const publish = (snapshot: MeshSnapshot, changes: MeshChanges, changedAt: number): void => {
    latest = { mesh: snapshot, changedAt };
    if (single) return single.store.update(snapshot, changes, changedAt);
    // Serialized once per worker by process.send: only the changed services' values cross.
    const msg: ToWorker = { type: 'mesh', delta: meshDelta(snapshot, changes, changedAt) };
    for (const w of joined) w.send(msg);
  };
  const registry = new Registry({ quietMs: 0, maxMs: 0 }, publish, log);
  if (WORKERS === 1) single = serving();
  registry.setSource('bench', meshToSource(fromJson(MeshSchema, mesh as never), 'bench'));
  registry.flush();

  const ready = (pids: number[]): void => void process.stdout.write(`ready ${JSON.stringify({ pids })}\n`);
  let stats: { want: number; got: ProcessStats[] } | undefined;
  if (single) {
    const s = single;
    void s.listen().then(() => ready([process.pid]), fail);
  } else {
    cluster.schedulingPolicy = cluster.SCHED_RR; // the default on Linux; said here because the design depends on it
    cluster.setupPrimary({ serialization: 'advanced' }); // Maps and Sets cross as they are
    const listening = new Set<Worker>();
    for (let i = 0; i < WORKERS; i++) cluster.fork();
    cluster.on('exit', (w, code, signal) => fail(new Error(`worker ${w.process.pid} exited (${signal ?? code})`)));
    cluster.on('message', (w: Worker, m: FromWorker) => {
      if (m.type === 'hello') {
        // The whole mesh first, then every later delta in order (one IPC channel per worker keeps the order).
        w.send({ type: 'mesh', delta: fullDelta(latest.mesh, latest.changedAt) } satisfies ToWorker);
        joined.add(w);
      } else if (m.type === 'listening') {
        listening.add(w);
        if (listening.size === WORKERS) ready([process.pid, ...[...listening].map((x) => x.process.pid!)]);
      } else if (m.type === 'stats' && stats) {
        stats.got.push({ pid: w.process.pid!, role: 'worker', streams: m.streams });
        if (stats.got.length === stats.want) printStats(stats.got);
      }
    });
  }

  const printStats = (got: ProcessStats[]): void => void process.stdout.write(`stats ${JSON.stringify({ processes: got })}\n`);
  createInterface({ input: process.stdin }).on('line', (line) => {
    const cmd = JSON.parse(line) as { services?: unknown[]; stats?: boolean };
    if (cmd.stats) {
      if (single) return printStats([{ pid: process.pid, role: 'single', streams: single.xds.streams.size }]);
      stats = { want: joined.size + 1, got: [{ pid: process.pid, role: 'primary', streams: 0 }] };
      for (const w of joined) w.send({ type: 'stats' } satisfies ToWorker);
      return;
    }
    const patch = meshToSource(fromJson(MeshSchema, { clusters: mesh.clusters, services: cmd.services } as never), 'bench').services;
    registry.patchSource('bench-churn', { services: patch });
    registry.flush();
  });
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    process.exit(0);
  });
}

function worker(): void {
  const { store, xds, listen } = serving();
  const send = (m: FromWorker): void => void process.send!(m);
  let mesh = EMPTY_SNAPSHOT;
  let bound = false;
  process.on('message', (m: ToWorker) => {
    if (m.type === 'stats') return send({ type: 'stats', streams: xds.streams.size });
    mesh = applyMeshDelta(mesh, m.delta);
    store.update(mesh, m.delta.changes, m.delta.changedAt);
    if (bound) return;
    // Listen only with the whole mesh in hand: a proxy must never be served an empty mesh.
    bound = true;
    listen().then(() => send({ type: 'listening' }), fail);
  });
  send({ type: 'hello' });
}

function fail(err: Error): void {
  process.stderr.write(`workers-server ${process.pid}: ${err.message}\n`);
  process.exit(1);
}
