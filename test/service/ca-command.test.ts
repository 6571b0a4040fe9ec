// `meshfed ca rotate` / `meshfed ca activate` as an operator runs them: against the CA Secret through a
// kubeconfig (the fake apiserver), or a --ca-dir; one line of output each, one line and exit 1 on error.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, kubeCaStore } from '../../src/pki/index.js';
import { splitPems } from '../../src/pki/x509.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';

const repo = path.resolve(import.meta.dirname, '../..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'meshfed-ca-cmd-'));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function meshfed(...args: string[]): Promise<Run> {
  const env = { ...process.env };
  delete env['KUBERNETES_SERVICE_HOST'];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { cwd: repo, env, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const lines = (s: string): string[] => s.split('\n').filter(Boolean);

let api: FakeApiServer;
let kubeconfig: string;
beforeAll(async () => {
  api = await startFakeApiServer();
  kubeconfig = api.writeKubeconfig(tmp);
});
afterAll(() => api?.close());

function secretData(name: string): Record<string, string> {
  const s = api.get('v1', 'Secret', 'meshfed', name) as { data?: Record<string, string> } | undefined;
  return Object.fromEntries(Object.entries(s?.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
}

describe('meshfed ca', () => {
  it('rotate, then activate, through the CA Secret: one line each; a step out of order is one line and exit 1', async () => {
    const kc = new KubeConfig();
    kc.loadFromString(api.kubeconfig());
    const serving = await CertificateAuthority.open({ trustDomain: 'cluster.local', store: kubeCaStore(kc, 'meshfed') }); // what meshfed serve created
    const oldRoot = serving.signingRoot;
    serving.close();
    const flags = ['--kubeconfig', kubeconfig, '--namespace', 'meshfed'];

    const early = await meshfed('ca', 'activate', ...flags);
    expect(early).toEqual({
      code: 1,
      stdout: '',
      stderr: 'meshfed ca activate: no root rotation in progress: run `meshfed ca rotate` first\n',
    });

    const rotate = await meshfed('ca', 'rotate', ...flags);
    expect(rotate.stderr).toBe('');
    expect(rotate.code).toBe(0);
    expect(lines(rotate.stdout)).toEqual([
      expect.stringMatching(
        /^Secret meshfed\/meshfed-ca now holds the next root O=cluster\.local, CN=meshfed root CA .* every replica trusts it\. Once proxies have it, run `meshfed ca activate`$/,
      ),
    ]);
    const nextRoot = secretData('meshfed-ca')['next-root-cert.pem']!;
    expect(splitPems(nextRoot)).toHaveLength(1);
    expect(secretData('meshfed-ca')['root-cert.pem']).toBe(oldRoot); // nothing signs with it yet

    const again = await meshfed('ca', 'rotate', ...flags);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    expect(lines(again.stderr)).toEqual([
      expect.stringMatching(/^meshfed ca rotate: a root rotation is already in progress \(next root .*\): run `meshfed ca activate`$/),
    ]);

    const activate = await meshfed('ca', 'activate', ...flags);
    expect(activate.stderr).toBe('');
    expect(activate.code).toBe(0);
    expect(lines(activate.stdout)).toEqual([
      expect.stringMatching(
        /^Secret meshfed\/meshfed-ca: root .* signs from now on; the old root .* stays trusted until \d{4}-\d\d-\d\dT[\d:.]+Z$/,
      ),
    ]);
    const data = secretData('meshfed-ca');
    expect(data['ca-cert.pem']).toBe(nextRoot);
    expect(splitPems(data['root-cert.pem']!)).toEqual([nextRoot, oldRoot]);
    expect(Object.keys(data).filter((k) => k.startsWith('next-'))).toEqual([]);
  }, 120_000);

  it('says in one line where there is no CA, and where there is no cluster to reach', async () => {
    const dir = path.join(tmp, 'empty');
    expect(await meshfed('ca', 'rotate', '--ca-dir', dir)).toEqual({
      code: 1,
      stdout: '',
      stderr: `meshfed ca rotate: no CA material in directory ${dir}\n`,
    });
    expect(await meshfed('ca', 'activate')).toEqual({
      code: 1,
      stdout: '',
      stderr: 'meshfed ca activate: no Kubernetes configuration: give --kubeconfig, or run in a pod (KUBERNETES_SERVICE_HOST)\n',
    });
  }, 60_000);
});
