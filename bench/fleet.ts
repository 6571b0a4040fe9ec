// The simulated proxies of a benchmark: client-worker processes, what they report, and the small
// waits the benchmarks share (bench/run.ts, bench/workers.ts).
import { type ChildProcess, fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkerConfig, WorkerMessage } from './client-worker.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface Fleet {
  readonly workers: ChildProcess[];
  /** When each client had every resource, as the workers report it. */
  readonly synced: number[];
  /** Per resource name: how many workers saw an update, and the latest time. */
  readonly updates: Map<string, { n: number; t: number }>;
  readonly errors: string[];
  /** Answers to a 'stats' request, one per worker. */
  readonly stats: Array<Extract<WorkerMessage, { type: 'stats' }>>;
  /** When the workers were told to start. */
  start: number;
}

/** `clients` proxies of one kind against `address`, in `procs` worker processes, started together. */
export async function launchFleet(
  address: string,
  kind: WorkerConfig['kind'],
  clients: number,
  procs: number,
  expect: number,
  children: ChildProcess[],
): Promise<Fleet> {
  const fleet: Fleet = { workers: [], synced: [], updates: new Map(), errors: [], stats: [], start: 0 };
  const per = Math.ceil(clients / procs);
  const n = Math.ceil(clients / per);
  await Promise.all(Array.from({ length: n }, () => forkWorker(fleet, children)));
  fleet.start = Date.now();
  fleet.workers.forEach((child, w) =>
    child.send({
      type: 'start',
      config: { address, kind, count: Math.min(per, clients - w * per), offset: w * per, expect } satisfies WorkerConfig,
    }),
  );
  return fleet;
}

/** A client worker process of the fleet, ready to be sent its config. */
export async function forkWorker(fleet: Fleet, children: ChildProcess[]): Promise<ChildProcess> {
  const child = fork(path.join(here, 'client-worker.ts'), [], { execArgv: ['--import', 'tsx'], cwd: path.dirname(here) });
  children.push(child);
  fleet.workers.push(child);
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
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  return child;
}

/** Response bytes the fleet's clients received so far, by type (CDS, EDS). */
export async function bytesByType(f: Fleet): Promise<Record<string, number>> {
  f.stats.length = 0;
  for (const w of f.workers) w.send({ type: 'stats' });
  await within(() => f.stats.length === f.workers.length, 10_000);
  const out: Record<string, number> = {};
  for (const st of f.stats) for (const [t, b] of Object.entries(st.bytesByType)) out[t] = (out[t] ?? 0) + b;
  return out;
}

/** Polls `cond` every 50 ms; false when it did not hold within `timeoutMs`. */
export async function within(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The p-th percentile (nearest rank); NaN for no values. */
export function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
