// Bad input to the command line, run as a user runs it (a process): one clear line on stderr and a
// non-zero exit, never a stack trace. Also what --help and --version print.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/ports.js';

const repo = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-cli-'));
const { version } = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; outside any cluster (no KUBERNETES_SERVICE_HOST). */
function run(cmd: string, args: string[]): Promise<Run> {
  const env = { ...process.env };
  delete env['KUBERNETES_SERVICE_HOST'];
  delete env['MESHFED_LOG_LEVEL'];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const meshfed = (...args: string[]): Promise<Run> => run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args]);
const bench = (...args: string[]): Promise<Run> => run('npm', ['run', '--silent', 'bench', '--', ...args]);
/** Free ports for the addresses a test does not care about, so nothing collides. */
const quietAddresses = async (): Promise<string[]> => [
  '--xds-address',
  `127.0.0.1:${await freePort()}`,
  '--admin-address',
  `127.0.0.1:${await freePort()}`,
  '--debug-address',
  '127.0.0.1:0',
];

/** The one line on stderr, after checking that it is one line, the exit failed, and no stack is anywhere. */
function oneLine(r: Run): string {
  expect(r.code, r.stdout + r.stderr).not.toBe(0);
  expect(r.stdout + r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stdout).not.toContain('"stack"');
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0]!;
}

const blockers: net.Server[] = [];
afterAll(() => {
  blockers.forEach((s) => s.close());
  rmSync(dir, { recursive: true, force: true });
});

/** A loopback port some other program holds. */
async function takenPort(): Promise<number> {
  const s = net.createServer();
  blockers.push(s);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return (s.address() as net.AddressInfo).port;
}

describe.concurrent('meshfed: bad input is one line and a non-zero exit', () => {
  it('validate: a Cluster with connect_timeout: 5 (not a duration string)', async () => {
    const file = path.join(dir, 'cluster.yaml');
    writeFileSync(file, '"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: a\nconnect_timeout: 5\n');
    const r = await meshfed('validate', file);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/^\s+at /m);
    const lines = (r.stdout + r.stderr).trim().split('\n');
    expect(lines, r.stdout + r.stderr).toHaveLength(1);
    expect(lines[0]).toContain('connect_timeout');
  });

  it('--peer-poll-interval 0 (it would poll every peer without pause)', async () => {
    expect(oneLine(await meshfed('serve', '--peer-poll-interval', '0'))).toMatch(/--peer-poll-interval must be above 0 seconds/);
  });

  it('--log-level bogus', async () => {
    expect(oneLine(await meshfed('serve', '--log-level', 'bogus'))).toMatch(/--log-level.*bogus.*trace, debug, info/);
  });

  it('agent --xds-ca naming a missing file', async () => {
    const missing = path.join(dir, 'no-such-root.pem');
    const r = await meshfed(
      'agent',
      '--xds-address',
      '127.0.0.1:1',
      '--xds-ca',
      missing,
      '--bootstrap-xds-address',
      '127.0.0.1:2',
      '--namespace',
      'abc',
      '--service-account',
      'foo',
      '--cluster-id',
      'c1',
      '--out-dir',
      dir,
    );
    expect(oneLine(r)).toBe(`meshfed: --xds-ca ${missing}: no such file or directory`);
  });

  it('a port already in use names the flag', async () => {
    const taken = await takenPort();
    const xds = await meshfed(
      'serve',
      '--xds-address',
      `127.0.0.1:${taken}`,
      '--admin-address',
      `127.0.0.1:${await freePort()}`,
      '--debug-address',
      '127.0.0.1:0',
    );
    expect(oneLine(xds)).toBe(`meshfed: --xds-address 127.0.0.1:${taken}: address already in use`);
    const admin = await meshfed(
      'serve',
      '--xds-address',
      `127.0.0.1:${await freePort()}`,
      '--admin-address',
      `127.0.0.1:${taken}`,
      '--debug-address',
      '127.0.0.1:0',
    );
    expect(oneLine(admin)).toBe(`meshfed: --admin-address 127.0.0.1:${taken}: address already in use`);
    const debug = await meshfed(
      'serve',
      '--xds-address',
      `127.0.0.1:${await freePort()}`,
      '--admin-address',
      `127.0.0.1:${await freePort()}`,
      '--debug-address',
      `127.0.0.1:${taken}`,
    );
    expect(oneLine(debug)).toBe(`meshfed: --debug-address 127.0.0.1:${taken}: address already in use`);
  });

  it('--ca-dir without --trust-domain', async () => {
    expect(oneLine(await meshfed('serve', '--ca-dir', dir, ...(await quietAddresses())))).toMatch(
      /--ca-dir needs the mesh CA: give --trust-domain/,
    );
  });

  it('--xds-tls outside a cluster says how to do without TokenReview', async () => {
    const line = oneLine(await meshfed('serve', '--xds-tls', '--trust-domain', 'cluster.local', ...(await quietAddresses())));
    expect(line).toMatch(/^meshfed: --xds-tls .*TokenReview.*--no-token-review/);
  });

  it('a broken mesh file at startup: plain text, naming file, line and path', async () => {
    const file = path.join(dir, 'mesh.yaml');
    writeFileSync(file, 'clusters:\n  - id: a\n    gateways:\n      - address: 1.2.3.4\n        port: 99999\n');
    const r = await meshfed('serve', '--config', file, ...(await quietAddresses()));
    expect(oneLine(r)).toBe(`meshfed: ${file}:5: clusters[0].gateways[0].port: must be between 1 and 65535`);
    expect(r.stdout).toBe(''); // no JSON copies of it
  });
});

describe('npm run bench: flags', () => {
  it('--help prints the usage and exits 0', async () => {
    const r = await bench('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: npm run bench/);
    expect(r.stdout).toContain('--clients <n>');
  });

  it('--clients abc', async () => {
    expect(oneLine(await bench('--clients', 'abc'))).toBe('bench: --clients abc: must be a positive whole number (--help for usage)');
  });

  it('--scenario bogus', async () => {
    expect(oneLine(await bench('--scenario', 'bogus'))).toMatch(
      /^bench: --scenario bogus: must be one of scale, churn, bare-churn, soak, all/,
    );
  });
});

describe('meshfed --help and --version', () => {
  it('--help shows defaults in the units the flags take, and addresses as written', async () => {
    const r = await meshfed('serve', '--help');
    expect(r.code).toBe(0);
    const help = r.stdout.replace(/\s+/g, ' '); // commander wraps long descriptions
    expect(help).toMatch(/--remote-sync-timeout <s> [^-]*\(default: 30\)/);
    expect(help).toMatch(/--remote-withdraw-after <s> [^-]*\(default: 900\)/);
    expect(help).toMatch(/--xds-address <host:port> [^-]*\(default: 0\.0\.0\.0:18000\)/);
  });

  it('--version prints the package version', async () => {
    const r = await meshfed('--version');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });
});
