// `meshfed serve --metadata-address` as a user runs it: a real process with a mesh file, the key pair in a directory
// that survives a restart, HTTPS with --metadata-tls-cert/--metadata-tls-key, and one clear line for bad input.
import { type MeshfedProcess, spawnServe } from '../helpers/child-process.js';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitForHttpOk } from '../helpers/child-process.js';
import { freePort } from '../helpers/ports.js';
import { issueWorkloadCert, makeRoot } from '../helpers/test-certs.js';
import { startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { MESH_YAML } from './deckhouse-peer.js';

const repo = path.resolve(import.meta.dirname, '../..');
const running: ChildProcess[] = [];
afterEach(() => running.splice(0).forEach((p) => p.kill('SIGKILL')));

const UUID = '7a1e2b3c-4d5e-4f60-8172-839405a6b7c8';

const start = (args: string[]): MeshfedProcess => spawnServe(args, running);

async function serve(extra: string[]): Promise<{ metadata: number; admin: number; output: () => string; proc: ChildProcess }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-serve-exporter-'));
  writeFileSync(path.join(dir, 'mesh.yaml'), MESH_YAML);
  const [xds, admin, metadata] = [await freePort(), await freePort(), await freePort()];
  const s = start([
    '--config',
    path.join(dir, 'mesh.yaml'),
    '--cluster-id',
    'cluster-b',
    '--trust-domain',
    'cluster-b.local',
    '--xds-address',
    `127.0.0.1:${xds}`,
    '--admin-address',
    `127.0.0.1:${admin}`,
    '--debug-address',
    '127.0.0.1:0',
    '--metadata-address',
    `127.0.0.1:${metadata}`,
    ...extra,
  ]);
  await waitForHttpOk(s.proc, `http://127.0.0.1:${admin}/readyz`, s.output, 20_000);
  return { metadata, admin, output: s.output, proc: s.proc };
}

describe('meshfed serve --metadata-address', () => {
  it('serves the metadata over HTTP, keeps its key pair in --authn-key-dir across restarts, and counts refusals', async () => {
    const keys = mkdtempSync(path.join(os.tmpdir(), 'meshfed-keys-'));
    const args = ['--cluster-uuid', UUID, '--authn-key-dir', keys, '--federation'];
    const first = await serve(args);
    const base = `http://127.0.0.1:${first.metadata}`;
    expect(await (await fetch(`${base}/healthz`)).text()).toBe('Ok.');
    const pub = (await (await fetch(`${base}/metadata/public/public.json`)).json()) as { clusterUUID: string; authnKeyPub: string };
    expect(pub.clusterUUID).toBe(UUID);
    expect(pub.authnKeyPub).toBe(readFileSync(path.join(keys, 'pub.pem'), 'utf8'));
    // No peers are configured yet: a well-formed request is still refused, as from an unknown cluster.
    const r = await fetch(`${base}/metadata/private/federation.json`);
    expect(r.status).toBe(401);
    const metrics = await (await fetch(`http://127.0.0.1:${first.admin}/metrics`)).text();
    expect(metrics).toMatch(/^meshfed_metadata_auth_failures_total\{reason="missing_bearer"\} 1$/m);
    // The private key is on disk only.
    const privBody = readFileSync(path.join(keys, 'priv.pem'), 'utf8').split('\n')[1]!;
    for (const p of ['/metadata/public/public.json', '/metadata/public/spiffe-bundle-endpoint', '/metadata/private/federation.json']) {
      expect(await (await fetch(`${base}${p}`)).text()).not.toContain(privBody);
    }
    expect(first.output()).not.toContain(privBody);
    first.proc.kill('SIGKILL');

    const second = await serve(args);
    const again = (await (await fetch(`http://127.0.0.1:${second.metadata}/metadata/public/public.json`)).json()) as {
      authnKeyPub: string;
    };
    expect(again.authnKeyPub).toBe(pub.authnKeyPub);
  });

  it('serves HTTPS with --metadata-tls-cert and --metadata-tls-key', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-metadata-tls-'));
    const root = await makeRoot(dir, 'metadata.test');
    const server = await issueWorkloadCert(dir, root, 'meshfed', 'metadata');
    const s = await serve(['--cluster-uuid', UUID, '--metadata-tls-cert', server.certFile, '--metadata-tls-key', server.keyFile]);
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get(
          {
            host: '127.0.0.1',
            port: s.metadata,
            path: '/metadata/public/public.json',
            ca: root.certPem,
            checkServerIdentity: () => undefined,
          },
          (res) => {
            let b = '';
            res.on('data', (d: Buffer) => (b += d.toString()));
            res.on('end', () => resolve(b));
          },
        )
        .on('error', reject);
    });
    expect((JSON.parse(body) as { clusterUUID: string }).clusterUUID).toBe(UUID);
    // Plain HTTP on that port gets nothing.
    expect(
      await fetch(`http://127.0.0.1:${s.metadata}/healthz`).then(
        (r) => r.status,
        () => 'refused',
      ),
    ).not.toBe(200);
  });

  it('refuses a broken key file with one line naming it, and exits', async () => {
    const keys = mkdtempSync(path.join(os.tmpdir(), 'meshfed-keys-'));
    writeFileSync(path.join(keys, 'priv.pem'), '-----BEGIN ED25519 PRIVATE KEY-----\nbm90IGEga2V5\n-----END ED25519 PRIVATE KEY-----\n');
    const s = start([
      '--config',
      path.join(repo, 'src/config/default-mesh.yaml'),
      '--trust-domain',
      'cluster-b.local',
      '--xds-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
      '--debug-address',
      '127.0.0.1:0',
      '--metadata-address',
      '127.0.0.1:0',
      '--authn-key-dir',
      keys,
    ]);
    expect(await s.exited).toBe(1);
    expect(s.output()).toContain(`${path.join(keys, 'priv.pem')}: not a PEM private key (PKCS#8)`);
  });

  it('with --kube and no readable kube-system, says to give --cluster-uuid and exits (watches do not keep it alive)', async () => {
    const api = await startFakeApiServer();
    try {
      const kubeconfig = api.writeKubeconfig(mkdtempSync(path.join(os.tmpdir(), 'meshfed-kube-')));
      const s = start([
        '--kubeconfig',
        kubeconfig,
        '--namespace',
        'meshfed',
        '--xds-address',
        '127.0.0.1:0',
        '--admin-address',
        '127.0.0.1:0',
        '--debug-address',
        '127.0.0.1:0',
        '--metadata-address',
        '127.0.0.1:0',
      ]);
      expect(await s.exited).toBe(1);
      // One plain line on stderr (the CLI's error handler), not a JSON log with a stack.
      expect(s.output()).toContain(
        '\nmeshfed: the cluster UUID is the uid of Namespace kube-system, which could not be read (HTTP 404: namespaces "kube-system" not found); give --cluster-uuid\n',
      );
    } finally {
      await api.close();
    }
  });
});
