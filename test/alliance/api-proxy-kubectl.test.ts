// The real kubectl, as a peer's operator or istiod would use the api-proxy: a kubeconfig with the proxy as server
// (its CA) and the peer's `api` token. Reads work; a watch streams an EndpointSlice change as it happens; a write
// and a Secret are refused with the proxy's reason, and never reach the apiserver.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startApiProxy, type ApiProxyUnderTest } from './api-proxy-harness.js';
import { deckhousePeer } from './deckhouse-peer.js';

const PEER = deckhousePeer('5e3b1c2a-9d8f-4e7a-b6c5-0a1b2c3d4e5f');
const run = promisify(execFile);

const slice = (name: string, ip: string) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: 'abc', labels: { 'kubernetes.io/service-name': 'foo' } },
  addressType: 'IPv4',
  endpoints: [{ addresses: [ip] }],
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
});

describe("kubectl through the api-proxy with a peer's token", () => {
  let p: ApiProxyUnderTest;
  let kubeconfig: string;
  beforeAll(async () => {
    p = await startApiProxy({ peers: [PEER] });
    kubeconfig = p.kubeconfig(p.token(PEER));
    p.api.upsert({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'foo', namespace: 'abc' },
      spec: { ports: [{ name: 'http', port: 8080 }] },
    });
    p.api.upsert({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'bar', namespace: 'xyz' },
      spec: { ports: [{ name: 'grpc', port: 9090 }] },
    });
    p.api.upsert(slice('foo-1', '10.1.0.1'));
  });
  afterAll(() => p.stop());

  it('get svc -A lists the services of every namespace', async () => {
    const { stdout } = await run('kubectl', [
      '--kubeconfig',
      kubeconfig,
      'get',
      'svc',
      '-A',
      '-o',
      'custom-columns=NS:.metadata.namespace,NAME:.metadata.name',
      '--no-headers',
    ]);
    expect(
      stdout
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/).join('/'))
        .sort(),
    ).toEqual(['abc/foo', 'xyz/bar']);
  });

  it('get endpointslices -w prints a change made in the cluster while it watches', async () => {
    const watch = spawn(
      'kubectl',
      [
        '--kubeconfig',
        kubeconfig,
        'get',
        'endpointslices',
        '-n',
        'abc',
        '-w',
        '-o',
        'custom-columns=NAME:.metadata.name,ADDR:.endpoints[*].addresses[*]',
        '--no-headers',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    watch.stdout.on('data', (d: Buffer) => (out += d.toString()));
    watch.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const WAIT = { timeout: 30_000, interval: 20 }; // as long as the test may take
    /** Waits for kubectl to print `re`; stops waiting if it exits, and then says why. */
    const printed = async (re: RegExp): Promise<void> => {
      await vi.waitFor(() => {
        if (watch.exitCode === null) expect(out).toMatch(re);
      }, WAIT);
      expect(out, `kubectl exited ${watch.exitCode}: ${err}`).toMatch(re);
    };
    try {
      await printed(/foo-1\s+10\.1\.0\.1/); // the initial list
      // Only after the watch is open at the apiserver, so the line below can only come from the watch.
      const watching = () =>
        p.api.requests.some(
          (r) => r.path.startsWith('/apis/discovery.k8s.io/v1/namespaces/abc/endpointslices?') && r.path.includes('watch=true'),
        );
      await vi.waitFor(() => expect(watching(), 'the watch open at the apiserver').toBe(true), WAIT);
      p.api.upsert(slice('foo-1', '10.1.0.2'));
      await printed(/foo-1\s+10\.1\.0\.2/);
    } finally {
      watch.kill('SIGKILL');
    }
  }, 30_000);

  it("a write and a Secret are refused with the proxy's reason and never reach the apiserver", async () => {
    p.api.upsert({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cacerts', namespace: 'abc' }, data: { k: 'dg==' } });
    const seen = p.api.requests.length;
    const del = await run('kubectl', ['--kubeconfig', kubeconfig, 'delete', 'svc', '-n', 'abc', 'foo']).then(
      () => '',
      (e: { stderr: string }) => e.stderr,
    );
    expect(del).toMatch(/Forbidden.*api-proxy: DELETE is not allowed: the api-proxy is read-only/);
    const secret = await run('kubectl', ['--kubeconfig', kubeconfig, 'get', 'secret', '-n', 'abc', 'cacerts']).then(
      () => '',
      (e: { stderr: string }) => e.stderr,
    );
    expect(secret).toMatch(/Forbidden.*api-proxy: secrets is not readable through the api-proxy/);
    expect(p.api.requests.slice(seen).filter((r) => r.method !== 'GET' || r.path.includes('secrets'))).toEqual([]);
    expect(p.api.get('v1', 'Service', 'abc', 'foo')).toBeDefined();
  }, 30_000);
});
