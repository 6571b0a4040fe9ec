// Federation import cost (issue 9, "numbers in the note"): peers whose federation.json lists --services public
// services each, and one meshfed importing them, in its own process (`serve --config` with `federations:` entries) so
// its CPU and RSS are its own. The mesh file goes from 0 peers to 1, then to --peers; for each step:
//   - time from the mesh-file write until an xDS client holds every imported service's ClusterLoadAssignment (the
//     peer's gateway as its endpoint): file watch, public.json, a token, federation.json, registry, EDS push;
//   - the server's CPU (user + sys) over that time;
//   - its RSS and used heap once quiet (2 s after the step), and per peer: the growth from 0 peers, divided.
// Each peer is a meshfed with the metadata exporter (src/alliance) in this process, publishing its local cluster's
// exported services, and checking the importer's Ed25519 tokens as it checks any peer's (deckhouse.md §2). Peers are
// polled once an hour here, so the numbers are the import's alone (the default poll is every 60 s).
//   npx tsx bench/federation.ts [--services 1000] [--peers 3]
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type DeckhousePeer, deckhousePeer, type ExporterUnderTest, startExporter } from '../test/alliance/deckhouse-peer.js';
import { meshFile } from '../test/helpers/grpc-mesh.js';
import { freePort } from '../test/helpers/ports.js';
import { benchArgs } from './args.js';
import { countIps, edsClient, until } from './eds-client.js';
import { benchService, namespaceOf, serviceName } from './mesh.js';
import { procStats } from './proc-stats.js';

const USAGE = `Usage: npx tsx bench/federation.ts [flags]
  --services <n>    public services in each peer's federation.json (default 1000)
  --peers <n>       peers at the last step (default 3; the steps are 0, 1 and this many)
`;
const args = benchArgs(USAGE, [], { services: '1000', peers: '3' });
const SERVICES = Number(args.services);
const PEERS = Number(args.peers);
const IMPORTER_UUID = '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9';

const peerId = (p: number): string => `peer-${p}`;
const peerDomain = (p: number): string => `${peerId(p)}.local`;
const peerGateway = (p: number): string => `192.0.2.${p}`;
const importName = (p: number, s: number): string => `outbound|8080||${serviceName(s)}.${namespaceOf(s)}.svc.${peerDomain(p)}`;

/** Peer p: a meshfed whose local cluster exports SERVICES services, reachable through one gateway. */
function startPeer(p: number, importer: DeckhousePeer): Promise<ExporterUnderTest> {
  const mesh = {
    clusters: [{ id: peerId(p), network: `net-${p}`, domain: peerDomain(p), gateways: [{ address: peerGateway(p), port: 15443 }] }],
    services: Array.from({ length: SERVICES }, (_, s) => ({ ...benchService(s, 1), cluster: peerId(p), exported: true })),
  };
  const uuid = `00000000-0000-4000-8000-${String(p).padStart(12, '0')}`;
  return startExporter({ peers: [importer], mesh: { text: JSON.stringify(mesh), clusterId: peerId(p), trustDomain: peerDomain(p), uuid } });
}

/** The importer's mesh file with the first `n` peers. */
const importerMesh = (peers: readonly ExporterUnderTest[], n: number): Record<string, unknown> => ({
  clusters: [{ id: 'cluster-a', network: 'net-a', domain: 'cluster-a.local' }],
  federations: peers
    .slice(0, n)
    .map((x, i) => ({ name: peerId(i + 1), trustDomain: peerDomain(i + 1), metadataEndpoint: x.url('/metadata/') })),
});

async function heapUsed(admin: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  return Number(/^nodejs_heap_size_used_bytes (\d+)/m.exec(text)?.[1] ?? NaN);
}

interface Row {
  peers: number;
  ms?: number;
  cpu?: number;
  rss: number;
  heap: number;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-bench-fed-'));
  // The importer's Ed25519 key pair, made here so the peers know its public key (as their own exchange would tell them).
  const importer = deckhousePeer(IMPORTER_UUID);
  const keyDir = path.join(dir, 'authn');
  mkdirSync(keyDir, { mode: 0o700 });
  writeFileSync(path.join(keyDir, 'pub.pem'), importer.pubPem);
  writeFileSync(path.join(keyDir, 'priv.pem'), importer.privPem, { mode: 0o600 });
  const peers: ExporterUnderTest[] = [];
  for (let p = 1; p <= PEERS; p++) peers.push(await startPeer(p, importer));
  const file = await meshFile('meshfed-bench-fed-', importerMesh(peers, 0));

  const [xds, admin] = [await freePort(), await freePort()];
  const server = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--config',
      file.file,
      '--cluster-id',
      'cluster-a',
      '--trust-domain',
      'cluster-a.local',
      '--cluster-uuid',
      IMPORTER_UUID,
      '--authn-key-dir',
      keyDir,
      '--metadata-address',
      '127.0.0.1:0',
      '--peer-poll-interval',
      '3600',
      '--xds-address',
      `127.0.0.1:${xds}`,
      '--admin-address',
      `127.0.0.1:${admin}`,
      '--debug-address',
      '127.0.0.1:0',
      '--log-level',
      'warn',
    ],
    { cwd: path.dirname(import.meta.dirname), stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const pid = server.pid!;
  const held = new Set<string>();
  let lastChange = Date.now();
  /** The step's goal, and when the CLA that reached it arrived. */
  let target = 0;
  let reachedAt = 0;
  let eds: { close(): void } | undefined;
  try {
    const ready = await until(async () => (await fetch(`http://127.0.0.1:${admin}/readyz`).catch(() => undefined))?.status === 200, 60_000);
    if (!ready) throw new Error('meshfed was not ready within 60 s');
    const names = peers.flatMap((_, i) => Array.from({ length: SERVICES }, (_, s) => importName(i + 1, s)));
    const node = {
      id: 'sidecar~10.250.0.1~bench-1.bench~bench.svc.cluster-a.local',
      metadata: { fields: { CLUSTER_ID: { string_value: 'cluster-a' } } },
    };
    eds = edsClient(
      `127.0.0.1:${xds}`,
      names,
      (name, body) => {
        // An import is served once its CLA names its peer's gateway.
        const before = held.size;
        if (countIps(body) > 0 && body.includes(`"address":"${peerGateway(Number(/\.peer-(\d+)\.local$/.exec(name)?.[1]))}"`))
          held.add(name);
        else held.delete(name);
        if (held.size !== before) lastChange = Date.now();
        if (held.size === target && !reachedAt) reachedAt = performance.now();
      },
      node,
    );
    const quiet = (): Promise<void> => new Promise((r) => setTimeout(r, 2000));
    const sample = async (): Promise<{ rss: number; heap: number }> => {
      await quiet();
      return { rss: procStats(pid).rssBytes, heap: await heapUsed(admin) };
    };
    const rows: Row[] = [{ peers: 0, ...(await sample()) }];
    for (const n of [...new Set([1, PEERS])]) {
      [target, reachedAt, lastChange] = [n * SERVICES, 0, Date.now()];
      const cpu0 = procStats(pid).cpuSeconds;
      const t0 = performance.now();
      await file.write(importerMesh(peers, n));
      // Done, or stuck: no import arrived for a minute (the server's warnings above say why).
      await until(() => reachedAt > 0 || Date.now() - lastChange > 60_000, Infinity);
      const cpu = procStats(pid).cpuSeconds - cpu0;
      const ms = reachedAt - t0;
      if (!reachedAt) throw new Error(`${n} peer(s): ${held.size} of ${n * SERVICES} imports in EDS, none more for 60 s`);
      rows.push({ peers: n, ms, cpu, ...(await sample()) });
    }
    print(rows);
  } finally {
    eds?.close();
    server.kill('SIGTERM');
    await Promise.all(peers.map((x) => x.stop()));
    for (const d of [dir, file.dir]) rmSync(d, { recursive: true, force: true });
  }
}

function print(rows: readonly Row[]): void {
  const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
  console.log(
    `\n== federation import: ${SERVICES} public services per peer (each row: the peers after a step; time and CPU: that step's) ==`,
  );
  const line = (cells: readonly string[]): void => console.log(cells.map((c, i) => c.padEnd([7, 10, 21, 12, 13, 0][i]!)).join(''));
  line(['peers', 'imported', 'write → all in EDS', 'server CPU', 'RSS', 'heap used']);
  for (const r of rows) {
    line([
      String(r.peers),
      String(r.peers * SERVICES),
      r.ms === undefined ? '-' : `${r.ms.toFixed(0)} ms`,
      r.cpu === undefined ? '-' : `${r.cpu.toFixed(2)} s`,
      mib(r.rss),
      mib(r.heap),
    ]);
  }
  const [base, last] = [rows[0]!, rows.at(-1)!];
  // Heap is read without a forced GC: a few MiB of garbage either way; more peers divide it down.
  console.log(
    `per peer (0 → ${last.peers} peers): RSS +${mib((last.rss - base.rss) / last.peers)}, heap +${mib((last.heap - base.heap) / last.peers)}`,
  );
}

await main();
process.exit(0);
