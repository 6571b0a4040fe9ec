// `meshfed agent` as meshfed sees it: what it puts on the wire, and the development path
// (`serve --insecure-dev-identity` + `agent --insecure-xds`) run as processes, as the README says.
import * as grpc from '@grpc/grpc-js';
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startAgent } from '../../src/agent/agent.js';
import { DiscoveryRequest, TypeUrl } from '../../src/envoy/protos.js';
import { structToJson } from '../../src/xds/struct.js';
import { waitForHttpOk } from '../helpers/child-process.js';
import { freePort } from '../helpers/ports.js';

const repo = path.resolve(import.meta.dirname, '../..');
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

interface SentRequest {
  node: { id: string; cluster: string; metadata: Parameters<typeof structToJson>[0] };
  type_url: string;
  resource_names: string[];
}

/** A loopback ADS server that records the raw DiscoveryRequests it is sent and answers nothing. */
async function captureServer(): Promise<{ port: number; first: Promise<Buffer> }> {
  const server = new grpc.Server();
  const raw = (b: Buffer): Buffer => b;
  let got!: (b: Buffer) => void;
  const first = new Promise<Buffer>((r) => (got = r));
  server.addService(
    {
      StreamAggregatedResources: {
        path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
        requestStream: true,
        responseStream: true,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
      },
    },
    { StreamAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => call.on('data', (b: Buffer) => got(b)) },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  cleanup.push(() => server.forceShutdown());
  return { port, first };
}

function run(args: string[]): { proc: ChildProcess; output: () => string } {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  cleanup.push(() => proc.kill('SIGKILL'));
  return { proc, output: () => out };
}

describe('meshfed agent', () => {
  it("sends its workload's identity, cluster and network as node metadata meshfed can read", async () => {
    const { port, first } = await captureServer();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'meshfed-agent-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const agent = startAgent({
      xdsAddress: `127.0.0.1:${port}`,
      xdsCaPem: undefined,
      bootstrapXdsAddress: `127.0.0.1:${port}`,
      outDir: dir,
      nodeId: 'app-1.abc',
      clusterId: 'cluster-a',
      namespace: 'abc',
      serviceAccount: 'foo',
      network: 'network-a',
      log: pino({ level: 'silent' }),
    });
    cleanup.push(() => agent.close());
    const req = DiscoveryRequest.toObject(DiscoveryRequest.decode(await first)) as unknown as SentRequest;
    expect(req.type_url).toBe(TypeUrl.Secret);
    expect(req.resource_names).toEqual(['default', 'ROOTCA']);
    expect(req.node.id).toBe('app-1.abc');
    expect(req.node.cluster).toBe('cluster-a');
    expect(structToJson(req.node.metadata)).toEqual({
      CLUSTER_ID: 'cluster-a',
      NAMESPACE: 'abc',
      SERVICE_ACCOUNT: 'foo',
      NETWORK: 'network-a',
      GENERATOR: 'grpc',
    });
  });

  it('gets its certificate from `serve --insecure-dev-identity` over plaintext (the README development path)', async () => {
    const [xds, admin] = [await freePort(), await freePort()];
    const dir = await mkdtemp(path.join(os.tmpdir(), 'meshfed-agent-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const server = run([
      'serve',
      '--insecure-dev-identity',
      '--trust-domain',
      'cluster-a.local',
      '--xds-address',
      `127.0.0.1:${xds}`,
      '--admin-address',
      `127.0.0.1:${admin}`,
      '--debug-address',
      '127.0.0.1:0',
    ]);
    await waitForHttpOk(server.proc, `http://127.0.0.1:${admin}/readyz`, server.output, 20_000);
    const agent = run([
      'agent',
      '--insecure-xds',
      '--xds-address',
      `127.0.0.1:${xds}`,
      '--bootstrap-xds-address',
      `127.0.0.1:${xds}`,
      '--namespace',
      'abc',
      '--service-account',
      'foo',
      '--cluster-id',
      'cluster-a',
      '--out-dir',
      dir,
    ]);
    const output = (): string => `meshfed:\n${server.output()}\nagent:\n${agent.output()}`;
    const bootstrap = await vi.waitFor(
      async () => {
        const text = await readFile(path.join(dir, 'bootstrap.json'), 'utf8').catch(() => undefined);
        expect(text, `no bootstrap.json yet;\n${output()}`).toBeDefined();
        return text!;
      },
      { timeout: 20_000, interval: 100 },
    );
    const cert = new X509Certificate(await readFile(path.join(dir, 'cert-chain.pem'), 'utf8'));
    expect(cert.subjectAltName).toBe('URI:spiffe://cluster-a.local/ns/abc/sa/foo');
    expect(await readFile(path.join(dir, 'key.pem'), 'utf8')).toContain('PRIVATE KEY');
    expect(new X509Certificate(await readFile(path.join(dir, 'root-cert.pem'), 'utf8')).ca).toBe(true);
    expect(JSON.parse(bootstrap).node.metadata).toMatchObject({ NAMESPACE: 'abc', SERVICE_ACCOUNT: 'foo', CLUSTER_ID: 'cluster-a' });
    expect(agent.output()).not.toContain('UNAUTHENTICATED');
  });
});
