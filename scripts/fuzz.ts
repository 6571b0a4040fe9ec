// xDS request fuzzer: a real `meshfed serve` process gets random and mutated DiscoveryRequests
// (valid messages with random fields, random bytes, truncated and mutated encodings; SotW and
// Delta; ADS and the per-type services) while a bystander proxy subscribes to one service.
// Every second it checks that the server is up, its memory bounded, and that the bystander
// still receives an edit of the mesh file. The same seed replays the same inputs.
//   npm run fuzz -- --seconds 60 [--seed 1234] [--max-rss-growth-mib 256]
// CI runs a few seconds with a fixed seed (test/robustness/fuzz.test.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { procStats } from '../bench/proc-stats.js';
import { DeltaDiscoveryRequest, DiscoveryRequest, TypeUrl } from '../src/envoy/protos.js';
import { freePort } from '../test/helpers/ports.js';
import { RawXdsClient, type RawXdsStream, SERVICE_METHODS, type ServiceName, type SotwResponse } from '../test/helpers/raw-client.js';

const repo = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const MiB = 1024 * 1024;

export interface FuzzOptions {
  readonly seconds: number;
  readonly seed: number;
  /** The server's RSS may grow this much over its RSS once the bystander synced. */
  readonly maxRssGrowthMiB?: number;
  /** Requests in flight at once. */
  readonly concurrency?: number;
}

export interface FuzzResult {
  readonly seed: number;
  readonly cases: number;
  readonly bystanderUpdates: number;
  readonly rssStartMiB: number;
  readonly rssPeakMiB: number;
}

const HOST = 'foo.abc.svc.cluster.local';
const CLUSTER = `outbound|8080||${HOST}`;
const LISTENER = `${HOST}:8080`;
const NODE = {
  id: 'sidecar~10.0.0.1~bystander.abc~abc.svc.cluster.local',
  user_agent_name: 'envoy',
  metadata: {
    fields: { CLUSTER_ID: { stringValue: 'cluster-a' }, NETWORK: { stringValue: 'network-a' }, NAMESPACE: { stringValue: 'abc' } },
  },
};

function meshText(address: string): string {
  return JSON.stringify({
    clusters: [{ id: 'cluster-a', network: 'network-a', domain: 'cluster.local' }],
    services: [
      {
        name: 'foo',
        namespace: 'abc',
        cluster: 'cluster-a',
        ports: [{ name: 'grpc', port: 8080, protocol: 'GRPC' }],
        endpoints: [{ address }],
      },
    ],
  });
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

const KNOWN_TYPES = Object.values(TypeUrl);
const NAMES = ['', '*', CLUSTER, LISTENER, HOST, 'default', 'ROOTCA', 'outbound|9999||nope.svc', 'xdstp://x/y/z'];

function randomString(r: Rng): string {
  switch (r.int(5)) {
    case 0:
      return r.pick(NAMES);
    case 1:
      return r.bytes(r.int(40)).toString('latin1');
    case 2:
      return String.fromCodePoint(...Array.from({ length: r.int(20) }, () => r.int(0x110000)).filter((c) => c < 0xd800 || c > 0xdfff));
    case 3:
      return 'x'.repeat(r.chance(0.9) ? r.int(1024) : r.int(64 * 1024));
    default:
      return `name-${r.int(1000)}`;
  }
}

function randomTypeUrl(r: Rng): string {
  if (r.chance(0.7)) return r.pick(KNOWN_TYPES);
  return r.chance(0.5) ? r.pick(KNOWN_TYPES).slice(0, r.int(60)) : randomString(r);
}

function randomNames(r: Rng): string[] {
  return Array.from({ length: r.chance(0.05) ? r.int(2000) : r.int(5) }, () => randomString(r));
}

function randomNode(r: Rng): object | undefined {
  if (r.chance(0.2)) return undefined;
  if (r.chance(0.5)) return NODE;
  return {
    id: randomString(r),
    cluster: randomString(r),
    user_agent_name: randomString(r),
    metadata: { fields: { [randomString(r)]: { stringValue: randomString(r) } } },
  };
}

function validRequest(r: Rng, delta: boolean): Buffer {
  const common = {
    node: randomNode(r),
    type_url: randomTypeUrl(r),
    response_nonce: r.chance(0.5) ? '' : randomString(r),
    ...(r.chance(0.1) && { error_detail: { code: r.int(17), message: randomString(r) } }),
  };
  if (!delta) {
    const m = DiscoveryRequest.fromObject({
      ...common,
      version_info: r.chance(0.5) ? '' : randomString(r),
      resource_names: randomNames(r),
    });
    return Buffer.from(DiscoveryRequest.encode(m).finish());
  }
  const m = DeltaDiscoveryRequest.fromObject({
    ...common,
    resource_names_subscribe: randomNames(r),
    resource_names_unsubscribe: randomNames(r),
    initial_resource_versions: Object.fromEntries(randomNames(r).map((n) => [n, randomString(r)])),
  });
  return Buffer.from(DeltaDiscoveryRequest.encode(m).finish());
}

/** One request's bytes and how they were made (for the failure report). */
function fuzzedRequest(r: Rng, delta: boolean): { bytes: Buffer; how: string } {
  const valid = validRequest(r, delta);
  switch (r.int(6)) {
    case 0:
    case 1:
      return { bytes: valid, how: 'valid' };
    case 2:
      return { bytes: r.bytes(r.int(4096)), how: 'random bytes' };
    case 3:
      return { bytes: valid.subarray(0, r.int(valid.length + 1)), how: 'truncated' };
    case 4: {
      const b = Buffer.from(valid);
      for (let k = 1 + r.int(8); k > 0 && b.length > 0; k--) b[r.int(b.length)] = r.int(256);
      return { bytes: b, how: 'mutated' };
    }
    default: {
      const at = r.int(valid.length + 1);
      return { bytes: Buffer.concat([valid.subarray(0, at), r.bytes(1 + r.int(16)), valid.subarray(at)]), how: 'inserted bytes' };
    }
  }
}

class FuzzFailure extends Error {}

export async function runFuzz(o: FuzzOptions): Promise<FuzzResult> {
  const r = new Rng(o.seed);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-fuzz-'));
  const file = path.join(dir, 'mesh.json');
  writeFileSync(file, meshText('10.1.0.0'));
  const [xds, admin, debug] = [await freePort(), await freePort(), await freePort()];
  const server: ChildProcess = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--config',
      file,
      '--log-level',
      process.env['FUZZ_LOG'] ?? 'error',
      '--xds-address',
      `127.0.0.1:${xds}`,
      '--admin-address',
      `127.0.0.1:${admin}`,
      '--debug-address',
      `127.0.0.1:${debug}`,
    ],
    { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (d: Buffer): void => void (output = (output + d.toString()).slice(-4000));
  server.stdout!.on('data', keep);
  server.stderr!.on('data', keep);
  const clients = Array.from({ length: 4 }, () => new RawXdsClient(`127.0.0.1:${xds}`));
  const open: Array<RawXdsStream<never>> = [];
  let cases = 0;
  let lastCase = '';
  let updates = 0;
  let rssStart = 0;
  let rssPeak = 0;
  const fail = (why: string): never => {
    throw new FuzzFailure(
      `fuzz failed (seed ${o.seed}, after ${cases} cases; last: ${lastCase}): ${why}\n--- server output (tail) ---\n${output}`,
    );
  };
  // Its own connection, as a real proxy has: the fuzzed clients share theirs.
  const bystanderClient = new RawXdsClient(`127.0.0.1:${xds}`, { 'grpc.use_local_subchannel_pool': 1 });
  try {
    await until(
      () =>
        fetch(`http://127.0.0.1:${admin}/readyz`).then(
          (res) => res.ok,
          () => false,
        ),
      30_000,
      () => fail(`meshfed did not start: ${server.exitCode}`),
    );
    const bystander = bystanderClient.sotw();
    bystander.send({ node: NODE, type_url: TypeUrl.Endpoint, resource_names: [CLUSTER] });
    /** Reads (and ACKs) the bystander's responses until one carries the address. */
    const sees = async (address: string): Promise<void> => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        let res: SotwResponse;
        try {
          res = await bystander.next(Math.max(1, deadline - Date.now()));
        } catch (e) {
          const syncz = await fetch(`http://127.0.0.1:${debug}/debug/syncz`).then(
            (x) => x.text(),
            (x: Error) => x.message,
          );
          const i = syncz.indexOf('bystander');
          return fail(
            `the bystander did not receive ${address}: ${(e as Error).message}; got ${bystander.responses.length}; status ${JSON.stringify(bystander.status)} syncz: ${syncz.slice(Math.max(0, i - 300), i + 600)}`,
          );
        }
        bystander.send({
          node: NODE,
          type_url: TypeUrl.Endpoint,
          resource_names: [CLUSTER],
          version_info: res.version_info,
          response_nonce: res.nonce,
        });
        if (JSON.stringify(res.resources).includes(`"${address}"`)) return;
      }
    };
    await sees('10.1.0.0');
    rssStart = rssPeak = procStats(server.pid!).rssBytes;

    /** The server is up (its health and metrics pages too), bounded, and still serving the bystander. */
    const check = async (): Promise<void> => {
      if (server.exitCode !== null || server.signalCode !== null) fail(`meshfed exited (${server.exitCode ?? server.signalCode})`);
      for (const page of ['/healthz', '/metrics']) {
        const got = await fetch(`http://127.0.0.1:${admin}${page}`, { signal: AbortSignal.timeout(5000) }).then(
          (res) => res.status,
          (e: Error) => e.message,
        );
        if (got !== 200) fail(`${page}: ${got}`);
      }
      const rss = procStats(server.pid!).rssBytes;
      rssPeak = Math.max(rssPeak, rss);
      if (rss - rssStart > (o.maxRssGrowthMiB ?? 256) * MiB)
        fail(`RSS grew from ${(rssStart / MiB).toFixed(0)} to ${(rss / MiB).toFixed(0)} MiB`);
      const address = `10.1.${(++updates >> 8) & 255}.${updates & 255}`;
      await writeFile(file, meshText(address));
      await sees(address);
    };

    const oneCase = async (): Promise<void> => {
      const service = r.pick(Object.keys(SERVICE_METHODS) as ServiceName[]);
      const delta = r.chance(0.5);
      const client = r.pick(clients);
      const stream = (delta ? client.delta(service) : client.sotw(service)) as RawXdsStream<never>;
      const hows: string[] = [];
      for (let k = 1 + r.int(4); k > 0; k--) {
        const { bytes, how } = fuzzedRequest(r, delta);
        hows.push(`${how} (${bytes.length} B)`);
        stream.sendRaw(bytes);
      }
      lastCase = `${delta ? 'delta' : 'sotw'} ${service}: ${hows.join(', ')}`;
      cases++;
      // Every draw happens before the first await, so a seed replays the same inputs.
      const fate = r.int(3);
      const victim = r.next();
      if (fate === 0) return stream.close();
      await stream.next(100).catch(() => undefined);
      if (fate === 1) return stream.close();
      open.push(stream); // left open for a while: many streams at once
      if (open.length > 50) open.splice(Math.floor(victim * open.length), 1)[0]!.close();
    };

    const end = Date.now() + o.seconds * 1000;
    let nextCheck = Date.now() + 1000;
    while (Date.now() < end) {
      // Cases draw their inputs in order (their timing may differ between runs).
      await Promise.all(Array.from({ length: o.concurrency ?? 8 }, () => oneCase()));
      if (Date.now() >= nextCheck) {
        await check();
        nextCheck = Date.now() + 1000;
      }
    }
    for (const s of open.splice(0)) s.close();
    await check();
    return { seed: o.seed, cases, bystanderUpdates: updates, rssStartMiB: rssStart / MiB, rssPeakMiB: rssPeak / MiB };
  } finally {
    for (const s of open) s.close();
    for (const c of [...clients, bystanderClient]) c.close();
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function until(cond: () => Promise<boolean>, timeoutMs: number, onTimeout: () => never): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) onTimeout();
    await new Promise((res) => setTimeout(res, 100));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '30' },
      seed: { type: 'string' },
      'max-rss-growth-mib': { type: 'string', default: '256' },
    },
  });
  const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 2 ** 31;
  console.log(`meshfed fuzz: seed ${seed}, ${values.seconds} s (replay: npm run fuzz -- --seconds ${values.seconds} --seed ${seed})`);
  try {
    const res = await runFuzz({ seconds: Number(values.seconds), seed, maxRssGrowthMiB: Number(values['max-rss-growth-mib']) });
    console.log(
      `ok: ${res.cases} cases, ${res.bystanderUpdates} bystander updates, server RSS ${res.rssStartMiB.toFixed(0)} → peak ${res.rssPeakMiB.toFixed(0)} MiB`,
    );
    process.exit(0);
  } catch (e) {
    console.error(e instanceof FuzzFailure ? e.message : e);
    process.exit(1);
  }
}
