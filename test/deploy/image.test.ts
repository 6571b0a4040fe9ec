/**
 * The Dockerfile's runtime stage, run by hand (no container runtime here): dist/ built by scripts/build.ts,
 * package.json, and only the production dependencies of package-lock.json (what `npm ci --omit=dev` installs),
 * started with the stage's ENTRYPOINT and CMD as its USER, with the app directory and TMPDIR read-only.
 * Also `npx meshfed` (bin/meshfed.js) over the same build: it runs the compiled CLI and stops on SIGTERM.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { waitForHttpOk } from '../helpers/child-process.js';
import { freePort } from '../helpers/ports.js';
import { RawXdsClient } from '../helpers/raw-client.js';

const repo = path.resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };

/** The last stage of the Dockerfile: its instructions, JSON-array forms parsed. */
function runtimeStage(): { copies: string[]; runs: string[]; user: string; command: string[] } {
  const lines = readFileSync(path.join(repo, 'Dockerfile'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'));
  const stage = lines.slice(lines.findLastIndex((l) => l.startsWith('FROM ')));
  const args = (op: string): string[] => stage.filter((l) => l.startsWith(`${op} `)).map((l) => l.slice(op.length + 1).trim());
  const json = (op: string): string[] => JSON.parse(args(op)[0] ?? '[]') as string[];
  return { copies: args('COPY'), runs: args('RUN'), user: args('USER')[0] ?? 'root', command: [...json('ENTRYPOINT'), ...json('CMD')] };
}

/** Whether a user who is neither owner nor group can reach `p` (every directory above it searchable). */
function reachableByOthers(p: string): boolean {
  for (let d = path.dirname(realpathSync(p)); ; d = path.dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === path.dirname(d)) return true;
  }
}

/**
 * `npm ci --omit=dev`: the lockfile's top-level packages that are not dev-only, as symlinks into this
 * checkout's node_modules; copies when the checkout is out of the runtime user's reach (e.g. under /root).
 */
function productionNodeModules(dir: string): void {
  const link = reachableByOthers(path.join(repo, 'node_modules'));
  const lock = JSON.parse(readFileSync(path.join(repo, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; optional?: boolean }>;
  };
  for (const [key, entry] of Object.entries(lock.packages)) {
    if (!/^node_modules\/(@[^/]+\/)?[^/]+$/.test(key) || entry.dev) continue;
    const from = path.join(repo, key);
    if (!existsSync(from)) {
      if (entry.optional) continue; // another platform's binary
      throw new Error(`${key} is a production dependency but not installed`);
    }
    mkdirSync(path.dirname(path.join(dir, key)), { recursive: true });
    if (link) symlinkSync(from, path.join(dir, key));
    else cpSync(from, path.join(dir, key), { recursive: true, dereference: true });
  }
}

const root = mkdtempSync(path.join(os.tmpdir(), 'meshfed-image-'));
const app = path.join(root, 'app'); // WORKDIR /app
const tmp = path.join(root, 'tmp'); // TMPDIR, read-only
const stage = runtimeStage();
const running: ChildProcess[] = [];

beforeAll(() => {
  chmodSync(root, 0o755);
  mkdirSync(app);
  mkdirSync(tmp, { mode: 0o555 });
  // The runtime stage copies the package files and the build stage's dist/, nothing else.
  expect(stage.copies).toEqual(['package.json package-lock.json ./', '--from=build /src/dist ./dist']);
  expect(stage.runs.join('\n')).toMatch(/^npm ci --omit=dev --ignore-scripts/);
  for (const f of ['package.json', 'package-lock.json']) cpSync(path.join(repo, f), path.join(app, f));
  const t0 = Date.now();
  // The build stage's `npm run build`, less what `npm test` has done already (gen, typecheck).
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build.ts', path.join(app, 'dist'), '--noCheck'], {
    cwd: repo,
    stdio: 'pipe',
  });
  console.log(`scripts/build.ts took ${Date.now() - t0} ms`);
  productionNodeModules(app);
  execFileSync('chmod', ['-R', 'a-w', app]); // the read-only root filesystem, for a non-root user
}, 120_000);

afterAll(() => {
  for (const p of running) {
    try {
      process.kill(-p.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  execFileSync('chmod', ['-R', 'u+w', root]);
  rmSync(root, { recursive: true, force: true });
});

/** Spawns in its own process group, so cleanup also reaches what it leaves behind. */
function start(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; uid?: number; gid?: number }): ChildProcess {
  const p = spawn(cmd, args, { ...opts, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(p);
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  Object.defineProperty(p, 'output', { get: () => out });
  return p;
}

const output = (p: ChildProcess): string => (p as ChildProcess & { output: string }).output;

const waitHealthy = (p: ChildProcess, admin: number): Promise<void> =>
  waitForHttpOk(p, `http://127.0.0.1:${admin}/healthz`, () => output(p), 30_000);

async function clusters(xds: number): Promise<string[]> {
  const c = new RawXdsClient(`127.0.0.1:${xds}`);
  try {
    const stream = c.sotw();
    stream.send({ node: { id: 'sidecar~10.0.0.1~p.abc~abc.svc.cluster.local' }, type_url: TypeUrl.Cluster, resource_names: [] });
    return (await stream.next()).resources.map((r) => r.name).sort();
  } finally {
    c.close();
  }
}

const DEFAULT_MESH_CLUSTERS = ['outbound|8080||foo.abc.svc.cluster-a.local', 'outbound|9090||bar.xyz.svc.cluster-b.local'];

describe('image runtime stage', () => {
  it('serves from dist/ with production dependencies only, as its non-root USER, with nothing writable', async () => {
    expect(stage.command.slice(0, 2)).toEqual(['node', 'dist/cli/main.js']);
    const [uid, gid] = stage.user.split(':').map(Number);
    expect(uid).toBeGreaterThan(0);
    const [xds, admin] = [await freePort(), await freePort()];
    const env = { PATH: process.env['PATH'], HOME: tmp, TMPDIR: tmp, NODE_ENV: 'production' };
    // As root here, drop to the stage's USER, or the read-only modes would not bind.
    const asUser = process.getuid?.() === 0 ? { uid, gid } : {};
    const p = start(
      process.execPath,
      [
        ...stage.command.slice(1),
        '--xds-address',
        `127.0.0.1:${xds}`,
        '--admin-address',
        `127.0.0.1:${admin}`,
        '--debug-address',
        '127.0.0.1:0',
      ],
      { cwd: app, env, ...asUser },
    );
    await waitHealthy(p, admin);
    expect(await clusters(xds)).toEqual(DEFAULT_MESH_CLUSTERS);
    expect(output(p)).not.toMatch(/EACCES|EROFS/);
  });
});

describe('npx meshfed', () => {
  // The package as npx links it: package.json (its scripts would rebuild from src/), bin/, dist/, node_modules/.
  const dir = path.join(root, 'pkg');
  const env = { ...process.env, npm_config_cache: path.join(root, 'npm-cache') };
  const npx = (args: string[]): ChildProcess => start('npx', ['--offline', 'meshfed', ...args], { cwd: dir, env });

  beforeAll(() => {
    mkdirSync(path.join(dir, 'bin'), { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { scripts?: unknown };
    delete manifest.scripts;
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify(manifest));
    for (const bin of Object.values(pkg.bin)) cpSync(path.join(repo, bin), path.join(dir, bin));
    symlinkSync(path.join(app, 'dist'), path.join(dir, 'dist'));
    symlinkSync(path.join(app, 'node_modules'), path.join(dir, 'node_modules'));
  });

  it('runs the compiled CLI', async () => {
    const p = npx(['--version']);
    const code = await new Promise<number | null>((resolve) => p.once('exit', resolve));
    expect(output(p).trim()).toBe(pkg.version);
    expect(code).toBe(0);
  });

  it('says to build when dist/ is missing', async () => {
    const bare = path.join(root, 'bare', 'bin');
    mkdirSync(bare, { recursive: true });
    cpSync(path.join(repo, pkg.bin['meshfed']!), path.join(bare, 'meshfed.js'));
    const p = start(process.execPath, [path.join(bare, 'meshfed.js'), '--help'], { cwd: root, env: process.env });
    const code = await new Promise<number | null>((resolve) => p.once('exit', resolve));
    expect(output(p).trim()).toBe('meshfed: dist/cli/main.js is missing; run `npm run build` first');
    expect(code).toBe(1);
  });

  it('stops meshfed when npx gets SIGTERM', async () => {
    const [xds, admin] = [await freePort(), await freePort()];
    const p = npx([
      'serve',
      '--xds-address',
      `127.0.0.1:${xds}`,
      '--admin-address',
      `127.0.0.1:${admin}`,
      '--debug-address',
      '127.0.0.1:0',
    ]);
    await waitHealthy(p, admin);
    p.kill('SIGTERM'); // npm alone, as a supervisor signals its child
    // meshfed shuts down too: its admin port stops answering.
    await vi.waitFor(
      async () => {
        const answers = await fetch(`http://127.0.0.1:${admin}/healthz`).then(
          (r) => r.ok,
          () => false,
        );
        expect(answers, `meshfed still serving after SIGTERM: ${output(p)}`).toBe(false);
      },
      { timeout: 15_000, interval: 100 },
    );
    expect(output(p)).toContain('shutting down');
  });
});
