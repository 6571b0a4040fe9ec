// `meshfed serve --api-proxy-address` as a user runs it: a real process against the fake apiserver, the certificate
// from --api-proxy-tls-cert/--api-proxy-tls-key, refusals counted on /metrics; one clear line for what cannot work.
import { type MeshfedProcess, spawnServe } from '../helpers/child-process.js';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitForHttpOk } from '../helpers/child-process.js';
import { freePort } from '../helpers/ports.js';
import { startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { testPki } from '../fixtures/kube-apiserver/pki.js';

const running: ChildProcess[] = [];
afterEach(() => running.splice(0).forEach((p) => p.kill('SIGKILL')));

const start = (args: string[]): MeshfedProcess => spawnServe(args, running);

const local = ['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--debug-address', '127.0.0.1:0'];

describe('meshfed serve --api-proxy-address', () => {
  it('serves TLS with the given certificate, refuses a request without a token (401, counted) and sends nothing upstream', async () => {
    const api = await startFakeApiServer();
    try {
      api.upsert({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-system', uid: '3b0a9c1e-7d2f-4e5a-9b8c-1d2e3f4a5b6c' } });
      const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-serve-api-proxy-'));
      const pki = testPki();
      writeFileSync(path.join(dir, 'tls.crt'), pki.serverCertPem);
      writeFileSync(path.join(dir, 'tls.key'), pki.serverKeyPem, { mode: 0o600 });
      const [admin, proxy] = [await freePort(), await freePort()];
      const s = start([
        '--kubeconfig',
        api.writeKubeconfig(dir),
        '--namespace',
        'meshfed',
        '--xds-address',
        '127.0.0.1:0',
        '--admin-address',
        `127.0.0.1:${admin}`,
        '--debug-address',
        '127.0.0.1:0',
        '--api-proxy-address',
        `127.0.0.1:${proxy}`,
        '--api-proxy-tls-cert',
        path.join(dir, 'tls.crt'),
        '--api-proxy-tls-key',
        path.join(dir, 'tls.key'),
      ]);
      await waitForHttpOk(s.proc, `http://127.0.0.1:${admin}/readyz`, s.output, 30_000);
      const seen = api.requests.filter((r) => r.path.startsWith('/api/v1/secrets')).length;
      // Verified against the CA of the given certificate: the files were served.
      const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.request(`https://127.0.0.1:${proxy}/api/v1/secrets`, { ca: pki.caPem, agent: false }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
      expect(r).toEqual({ status: 401, body: 'Authentication error: Bearer authorization required\n' });
      expect(api.requests.filter((q) => q.path.startsWith('/api/v1/secrets')).length).toBe(seen);
      const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
      expect(metrics).toMatch(/^meshfed_api_proxy_auth_failures_total\{reason="missing_bearer"\} 1$/m);
    } finally {
      await api.close();
    }
  }, 40_000);

  it('without Kubernetes, says the proxy needs --kube or --kubeconfig, and exits', async () => {
    const s = start(['--trust-domain', 'cluster.local', ...local, '--api-proxy-address', '127.0.0.1:0']);
    expect(await s.exited).toBe(1);
    expect(s.output()).toContain('the api-proxy forwards to the local apiserver: give --kube or --kubeconfig');
  });

  it('with a certificate but no key, says they go together, and exits', async () => {
    const s = start([
      '--trust-domain',
      'cluster.local',
      ...local,
      '--api-proxy-address',
      '127.0.0.1:0',
      '--api-proxy-tls-cert',
      '/nonexistent.crt',
    ]);
    expect(await s.exited).toBe(1);
    expect(s.output()).toContain('--api-proxy-tls-cert and --api-proxy-tls-key go together');
  });
});
