// Rows 6–8 of issue 14, and the mesh file's size limit: hostile mesh files given to a real
// `meshfed serve` process. Each is rejected with one line saying what and where, the process
// keeps serving the last good mesh, and /readyz and meshfed_config_valid say why.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { procStats } from '../../bench/proc-stats.js';
import { FileSource, MeshFileError, parseMeshText } from '../../src/sources/file/index.js';
import { waitForHttpOk } from '../helpers/child-process.js';
import { freePort } from '../helpers/ports.js';

const repo = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-hostile-'));
const file = path.join(dir, 'mesh.yaml');

function meshYaml(address: string, comment = ''): string {
  return `clusters:
  - id: c1
${comment}services:
  - name: foo
    namespace: abc
    cluster: c1
    ports: [{ name: grpc, port: 8080 }]
    endpoints:
      - address: ${address}
`;
}

interface Serving {
  readonly proc: ChildProcess;
  readonly admin: number;
  readonly debug: number;
  output(): string;
}

function spawnServe(args: readonly string[]): { proc: ChildProcess; output: () => string } {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--log-level', 'warn', ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, output: () => out };
}

async function serve(...args: string[]): Promise<Serving> {
  const [xds, admin, debug] = [await freePort(), await freePort(), await freePort()];
  const { proc, output } = spawnServe([
    '--xds-address',
    `127.0.0.1:${xds}`,
    '--admin-address',
    `127.0.0.1:${admin}`,
    '--debug-address',
    `127.0.0.1:${debug}`,
    ...args,
  ]);
  await waitForHttpOk(proc, `http://127.0.0.1:${admin}/readyz`, output, 30_000);
  return { proc, admin, debug, output };
}

let s: Serving;

const get = async (p: string): Promise<string> =>
  (await fetch(`http://127.0.0.1:${p.startsWith('/debug/') ? s.debug : s.admin}${p}`)).text();

/** The file source's /readyz detail: set while an edit is rejected. */
async function rejection(): Promise<string | undefined> {
  const body = JSON.parse(await get('/readyz')) as { checks: Array<{ name: string; detail?: string }> };
  return body.checks.find((c) => c.name === `file:${file}`)?.detail;
}

async function configValid(): Promise<number> {
  const m = /^meshfed_config_valid\{source="file:[^"]*"\} (\d+)$/m.exec(await get('/metrics'));
  return Number(m?.[1]);
}

async function served(): Promise<string[]> {
  const mesh = JSON.parse(await get('/debug/mesh')) as { services: Array<{ endpoints: Array<{ address: string }> }> };
  return mesh.services.flatMap((svc) => svc.endpoints.map((e) => e.address));
}

/** Writes a good mesh serving `address` and waits until it is served and the source is valid again. */
async function restore(address: string): Promise<void> {
  await writeFile(file, meshYaml(address));
  await vi.waitFor(
    async () => {
      expect(await served()).toContain(address);
      expect(await rejection()).toBeUndefined();
    },
    { timeout: 10_000, interval: 100 },
  );
}

/** Writes a hostile file and waits for its rejection; then checks the process kept the last good mesh. */
async function rejected(content: string | Buffer, timeoutMs = 10_000): Promise<string> {
  const lastGood = await served();
  await writeFile(file, content);
  const detail = await vi.waitFor(
    async () => {
      const d = await rejection();
      expect(d, 'the /readyz detail of the rejected edit').toBeDefined();
      return d!;
    },
    { timeout: timeoutMs, interval: 100 },
  );
  expect(s.proc.exitCode).toBeNull();
  expect(await served()).toEqual(lastGood);
  expect(await configValid()).toBe(0);
  expect(detail).not.toMatch(/\n\s+at /); // no stack trace
  return detail;
}

beforeAll(async () => {
  writeFileSync(file, meshYaml('10.0.0.1'));
  s = await serve('--config', file, '--max-config-bytes', String(40 * 1024 * 1024));
}, 40_000);

afterAll(async () => {
  s?.proc.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

describe('hostile mesh files (a real meshfed serve)', () => {
  it('row 6: a YAML alias bomb is a rejected edit, not an exit; the last good mesh keeps serving', async () => {
    const levels = Array.from({ length: 9 }, (_, i) => `l${i + 1}: &l${i + 1} [${Array(9).fill(`*l${i}`).join(', ')}]`);
    const bomb = `l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n${levels.join('\n')}\nclusters: *l9\n`;
    const detail = await rejected(bomb);
    expect(detail).toBe(
      `serving the last good state; rejected edit: ${file}: cannot parse: Excessive alias count indicates a resource exhaustion attack`,
    );
    await restore('10.0.0.2');
    expect(await configValid()).toBe(1);
  });

  it('row 8: invalid UTF-8 in a comment is rejected with its line', async () => {
    // The comment is line 3; in Latin-1, "é" is the single byte 0xe9, never valid alone in UTF-8.
    const bad = Buffer.from(meshYaml('10.0.0.3', '# café\n'), 'latin1');
    const detail = await rejected(bad);
    expect(detail).toContain(`${file}:3: not valid UTF-8 (byte 0xe9 at offset ${bad.indexOf(0xe9)})`);
    await restore('10.0.0.4');
  });

  it('row 7: a 25 MB JSON mesh with one bad port is rejected with its line, in bounded memory', async () => {
    const { text, badLine } = bigJsonMesh(15_000, 7000);
    expect(text.length).toBeGreaterThan(20 * 1024 * 1024);
    const before = procStats(s.proc.pid!);
    const detail = await rejected(text, 60_000);
    expect(detail).toBe(
      `serving the last good state; rejected edit: ${file}:${badLine}: services[7000].ports[0].port: must be between 1 and 65535`,
    );
    // Was: re-parsed with the YAML parser for line numbers, ~100× the file (24 MB → 2.8 GB).
    const grown = procStats(s.proc.pid!).peakRssBytes - before.rssBytes;
    expect(grown).toBeLessThan(512 * 1024 * 1024);
    await restore('10.0.0.5');
  }, 90_000);
});

describe('a file with very many problems', () => {
  it('lists the first 100 with their lines and counts the rest: the error, log line and /readyz stay readable', () => {
    const services = Array.from(
      { length: 3000 },
      (_, i) => `  - { name: s${i}, namespace: a, cluster: c1, ports: [{ name: p, port: 0 }] }`,
    );
    const text = `clusters:\n  - id: c1\nservices:\n${services.join('\n')}\n`;
    let err: unknown;
    try {
      parseMeshText(text, 'mesh.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MeshFileError);
    const lines = (err as MeshFileError).message.split('\n');
    expect(lines[0]).toBe('mesh.yaml: 3000 problems');
    expect(lines[1]).toBe('mesh.yaml:4: services[0].ports[0].port: must be between 1 and 65535 (not set)');
    expect(lines.at(-1)).toBe('mesh.yaml: …and 2900 more');
    expect(lines).toHaveLength(102);
  });
});

describe('a big file that is not valid JSON', () => {
  it("is not handed to the YAML parser (~100× its size in memory): JSON.parse's reason, with the line when it gives a position", () => {
    const head = `{\n "services": [\n${'  {},\n'.repeat(300_000)}`;
    const reasons = [`${head}  {} {}\n ]\n}\n`, `${head} ]\n}\n`].map((text) => {
      try {
        parseMeshText(text, 'big.json');
      } catch (e) {
        return (e as Error).message;
      }
      return 'accepted';
    });
    // (Newer V8s add "(line … column …)" to the first.)
    expect(reasons[0]).toMatch(
      new RegExp(`^big\\.json:300003: not valid JSON: Expected ',' or '\\]' after array element in JSON at position ${head.length + 5}`),
    );
    expect(reasons[1]).toBe("big.json: not valid JSON: Unexpected token ']'"); // no position given; the quoted piece of text is dropped
  });
});

describe('the mesh file size limit', () => {
  it('at start: a file over --max-config-bytes ends meshfed with one line naming the limit', async () => {
    const big = path.join(dir, 'big.yaml');
    const content = meshYaml('10.0.0.9') + `# ${'x'.repeat(2000)}\n`;
    writeFileSync(big, content);
    const { proc, output } = spawnServe([
      '--config',
      big,
      '--max-config-bytes',
      '1000',
      '--xds-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
      '--debug-address',
      '127.0.0.1:0',
    ]);
    const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
    expect(code).toBe(1);
    expect(output()).toContain(`${big}: file is ${Buffer.byteLength(content)} bytes, over the limit of 1000 (--max-config-bytes)`);
  }, 30_000);

  it('on an edit: a file over the limit is rejected unread and the last good mesh stays', async () => {
    const small = path.join(dir, 'small.yaml');
    writeFileSync(small, meshYaml('10.0.1.1'));
    const errors: (MeshFileError | null)[] = [];
    const log = { info: () => undefined, warn: () => undefined, error: () => undefined };
    const meshes: unknown[] = [];
    const src = new FileSource(small, (m) => meshes.push(m), {
      log,
      onError: (e) => errors.push(e),
      maxBytes: 1000,
      pollMs: 50,
      debounceMs: 10,
    });
    await src.start();
    try {
      await writeFile(small, meshYaml('10.0.1.2') + `# ${'x'.repeat(2000)}\n`);
      await vi.waitFor(() => expect(errors.at(-1), 'the rejection').toBeTruthy(), { timeout: 10_000, interval: 100 });
      expect(errors.at(-1)?.message).toMatch(/small\.yaml: file is \d+ bytes, over the limit of 1000 \(--max-config-bytes\)$/);
      expect(meshes).toHaveLength(1);
    } finally {
      src.stop();
    }
  });
});

/**
 * A pretty-printed JSON mesh (one field a line, as generators write them) with `services`
 * services of 8 endpoints; service `bad` has port 80800. Built line by line: no 300 MB object graph in the test.
 */
function bigJsonMesh(services: number, bad: number): { text: string; badLine: number } {
  const lines = ['{', ' "clusters": [{"id": "c1", "network": "n1", "domain": "cluster.local"}],', ' "services": ['];
  let badLine = 0;
  for (let i = 0; i < services; i++) {
    lines.push('  {', `   "name": "svc-${i}",`, `   "namespace": "ns-${i % 50}",`, '   "cluster": "c1",', '   "ports": [', '    {');
    lines.push('     "name": "http",');
    if (i === bad) badLine = lines.length + 1;
    lines.push(`     "port": ${i === bad ? 80800 : 8080},`, '     "protocol": "HTTP"', '    }', '   ],', '   "endpoints": [');
    for (let j = 0; j < 8; j++) {
      const n = i * 8 + j;
      lines.push('    {', `     "address": "10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}",`, `     "serviceAccount": "svc-${i}",`);
      lines.push('     "locality": {"region": "r1", "zone": "z1", "subzone": "a-rather-long-sub-zone-name-to-make-the-file-bigger"}');
      lines.push(j === 7 ? '    }' : '    },');
    }
    lines.push('   ]', i === services - 1 ? '  }' : '  },');
  }
  lines.push(' ]', '}');
  return { text: lines.join('\n') + '\n', badLine };
}
