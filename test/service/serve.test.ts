// `meshfed serve` as a user runs it: a real process, real ports, real signals.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { validateBootstrapConfig } from '@grpc/grpc-js-xds/build/src/xds-bootstrap.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import { waitForHttpOk } from '../helpers/child-process.js';
import { freePort } from '../helpers/ports.js';
import { RawXdsClient } from '../helpers/raw-client.js';

const repo = path.resolve(import.meta.dirname, '../..');
const running: ChildProcess[] = [];
afterEach(() => running.splice(0).forEach((p) => p.kill('SIGKILL')));

interface Serving {
  proc: ChildProcess;
  xds: number;
  admin: number;
  debug: number;
  output: () => string;
}

async function serve(...args: string[]): Promise<Serving> {
  const [xds, admin, debug] = [await freePort(), await freePort(), await freePort()];
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--xds-address',
      `127.0.0.1:${xds}`,
      '--admin-address',
      `127.0.0.1:${admin}`,
      '--debug-address',
      `127.0.0.1:${debug}`,
      ...args,
    ],
    { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.push(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await waitForHttpOk(proc, `http://127.0.0.1:${admin}/readyz`, () => out, 20_000);
  return { proc, xds, admin, debug, output: () => out };
}

/** A page of the admin address, or of the debug address for /debug/*. */
const get = (s: Serving, p: string): Promise<Response> => fetch(`http://127.0.0.1:${p.startsWith('/debug/') ? s.debug : s.admin}${p}`);

describe('meshfed serve', () => {
  it('serves the embedded two-cluster mesh and says how to connect', async () => {
    const s = await serve();
    expect(s.output()).toContain('xds:///foo.abc.svc.cluster-a.local:8080');
    // The printed bootstrap is one grpc-js-xds accepts, with the certificate providers the TLS clusters name.
    const printed = /GRPC_XDS_BOOTSTRAP_CONFIG='([^']*)'/.exec(s.output())?.[1];
    const bootstrap = validateBootstrapConfig(JSON.parse(printed ?? 'null'));
    expect(Object.keys(bootstrap.certificateProviders).sort()).toEqual(['default', 'spiffe://cluster-a.local', 'spiffe://cluster-b.local']);
    expect(await (await get(s, '/healthz')).text()).toBe('ok\n');
    const c = new RawXdsClient(`127.0.0.1:${s.xds}`);
    const stream = c.sotw();
    const node = 'sidecar~10.0.0.1~p.abc~abc.svc.cluster.local';
    stream.send({ node: { id: node }, type_url: TypeUrl.Secret, resource_names: ['default', 'ROOTCA'] }); // as Envoy's TLS clusters do
    stream.send({ type_url: TypeUrl.Cluster, resource_names: [] });
    const r = await stream.next();
    expect(r.resources.map((x) => x.name).sort()).toEqual([
      'outbound|8080||foo.abc.svc.cluster-a.local',
      'outbound|9090||bar.xyz.svc.cluster-b.local',
    ]);
    // Pages that need a flag say which.
    const dump = (await (await get(s, `/debug/config_dump?proxy=${node}`)).json()) as Array<{ types: Record<string, { note?: string }> }>;
    expect(dump[0]!.types['SDS']!.note).toContain('--trust-domain');
    for (const [p, flag] of [
      ['/.well-known/spiffe-bundle', '--trust-domain'],
      ['/debug/clusters', '--kube'],
    ] as const) {
      const res = await get(s, p);
      expect(res.status, p).toBe(404);
      expect(((await res.json()) as { error: string }).error, p).toContain(flag);
    }
    expect(stream.status).toBeUndefined();
    c.close();
  });

  it('on SIGTERM asks connected proxies to reconnect elsewhere and exits within the grace period', async () => {
    const s = await serve('--shutdown-grace', '2000');
    const c = new RawXdsClient(`127.0.0.1:${s.xds}`);
    const stream = c.sotw();
    stream.send({ node: { id: 'p1' }, type_url: TypeUrl.Cluster, resource_names: [] });
    await stream.next();
    const exited = new Promise<number | null>((resolve) => s.proc.once('exit', (code) => resolve(code)));
    const t0 = Date.now();
    s.proc.kill('SIGTERM');
    const status = await stream.ended(5000);
    expect(status.code).toBe(14); // UNAVAILABLE: Envoy and gRPC reconnect on it
    expect(status.details).toContain('shutting down');
    expect(await exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(4000);
    c.close();
  });

  it('refuses to start on a broken description, naming the file and the path', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-serve-'));
    const file = path.join(dir, 'mesh.yaml');
    writeFileSync(file, 'clusters:\n  - id: a\n    gateways:\n      - address: 1.2.3.4\n        port: 99999\n');
    await expect(serve('--config', file)).rejects.toThrow(/mesh\.yaml:5: clusters\[0\]\.gateways\[0\]\.port/);
  });

  it('keeps serving the last good state after a broken edit, and reports it in /readyz and /metrics', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-serve-'));
    const file = path.join(dir, 'mesh.yaml');
    const mesh = (port: number): string =>
      [
        'clusters: [{id: c1, network: n1, domain: cluster.local}]',
        'services:',
        '  - {name: foo, namespace: abc, cluster: c1, ports: [{name: grpc, port: 8080}], endpoints: [{address: 10.0.0.1, port: ' +
          port +
          '}]}',
        '  - {name: bar, namespace: abc, cluster: c1, ports: [{name: grpc, port: 9090}], endpoints: [{address: 10.0.0.2}]}',
      ].join('\n');
    writeFileSync(file, mesh(8080));
    const s = await serve('--config', file, '--debounce', '20');
    const c = new RawXdsClient(`127.0.0.1:${s.xds}`);
    const stream = c.sotw();
    const foo = 'outbound|8080||foo.abc.svc.cluster.local';
    const bar = 'outbound|9090||bar.abc.svc.cluster.local';
    stream.send({ node: { id: 'p1' }, type_url: TypeUrl.Cluster, resource_names: [] });
    const cds = await stream.next();
    stream.send({ type_url: TypeUrl.Cluster, resource_names: [], version_info: cds.version_info, response_nonce: cds.nonce });
    stream.send({ type_url: TypeUrl.Endpoint, resource_names: [foo, bar] });
    const eds = await stream.next();
    expect(eds.resources.map((r) => r.name).sort()).toEqual([foo, bar]);
    stream.send({ type_url: TypeUrl.Endpoint, resource_names: [foo, bar], version_info: eds.version_info, response_nonce: eds.nonce });

    writeFileSync(file, mesh(8081)); // one endpoint of one service changes
    const update = await stream.next(5000);
    expect(update.type_url).toBe(TypeUrl.Endpoint); // no CDS push: no cluster changed
    expect(update.resources.map((r) => r.name)).toEqual([foo]); // only what changed
    expect(JSON.stringify(update.resources[0]!.body)).toContain('"port_value":8081');
    stream.send({
      type_url: TypeUrl.Endpoint,
      resource_names: [foo, bar],
      version_info: update.version_info,
      response_nonce: update.nonce,
    });

    writeFileSync(file, mesh(8081).replace('port: 8081', 'port: 70000'));
    const ready = await vi.waitFor(
      async () => {
        const body = (await (await get(s, '/readyz')).json()) as { ready: boolean; checks: Array<{ detail?: string }> };
        expect(body.checks[0]?.detail, 'the readyz detail').toBeTruthy();
        return body;
      },
      { timeout: 5000, interval: 50 },
    );
    expect(ready.ready).toBe(true); // the last good state still serves
    expect(ready.checks[0]!.detail).toMatch(/mesh\.yaml:3: services\[0\]\.endpoints\[0\]\.port: .*65535/);
    const metrics = await (await get(s, '/metrics')).text();
    expect(metrics).toMatch(/meshfed_config_valid\{source="file:[^"]+"\} 0/);
    expect(metrics).toMatch(/meshfed_config_errors_total\{source="file:[^"]+"\} 1/);
    await stream.none(300); // nothing pushed for the broken edit
    expect(s.output()).toContain('services[0].endpoints[0].port');

    const dump = (await (await get(s, '/debug/config_dump?proxy=p1')).json()) as Array<{
      types: Record<string, { resources: Array<{ name: string; resource: object }> }>;
    }>;
    expect(JSON.stringify(dump[0]!.types['EDS']!.resources.find((r) => r.name === foo)!.resource)).toContain('"port_value":8081');
    expect((await get(s, '/debug/config_dump?proxy=nobody')).status).toBe(404);
    c.close();
  });

  it('exposes the xDS metrics a dashboard needs', async () => {
    const s = await serve();
    const c = new RawXdsClient(`127.0.0.1:${s.xds}`);
    const stream = c.sotw();
    stream.send({ node: { id: 'p1' }, type_url: TypeUrl.Cluster, resource_names: [] });
    const r = await stream.next();
    stream.send({
      type_url: TypeUrl.Cluster,
      resource_names: [],
      version_info: '',
      response_nonce: r.nonce,
      error_detail: { code: 3, message: 'nope' },
    });
    const text = await vi.waitFor(
      async () => {
        const t = await (await get(s, '/metrics')).text();
        expect(t).toMatch(/meshfed_xds_nacks_total\{type="CDS"\} 1/); // the NACK counted
        return t;
      },
      { timeout: 5000, interval: 50 },
    );
    expect(text).toMatch(/meshfed_xds_connected_proxies\{kind="sotw"\} 1/);
    expect(text).toMatch(/meshfed_xds_pushes_total\{type="CDS"\} 1/);
    expect(text).toMatch(/meshfed_xds_pushed_bytes_total\{type="CDS"\} \d+/);
    expect(text).toMatch(/meshfed_xds_resources\{type="CDS"\} 2/);
    expect(text).toContain('# TYPE meshfed_xds_push_latency_seconds histogram');
    const syncz = (await (await get(s, '/debug/syncz')).json()) as Array<{
      types: Array<{ state: string; lastNack?: { message: string } }>;
    }>;
    expect(syncz[0]!.types[0]).toMatchObject({ state: 'ERROR', lastNack: { message: 'nope' } });
    c.close();
  });
});
