// Istio's CA API on meshfed's TLS xDS port, as istio-agent calls it (CA_ADDR): the certificate is
// for the caller's authenticated identity whatever its CSR asks for; callers without valid
// credentials get UNAUTHENTICATED; the chain (leaf first, root last) verifies with openssl.
import { status, type ServiceError } from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { createCertificate } from '../helpers/istio-ca-client.js';
import { startTlsMesh, type TlsMesh } from '../helpers/mesh-tls.js';

const run = promisify(execFile);
const TD = 'cluster-a.local';
const FOO = `spiffe://${TD}/ns/abc/sa/foo`;
const DOC = { clusters: [{ id: 'cluster-a', network: 'network-a', domain: TD, rootCaPem: '' }], services: [] };

let apiserver: FakeApiServer;
let mesh: TlsMesh;
let dir: string;
/** An openssl CSR (RSA 2048, as istio-agent's default) asking for someone else: kube-system/admin, with a CN and a DNS name. */
let foreignCsr: string;

async function openssl(...args: string[]): Promise<string> {
  return (await run('openssl', args)).stdout;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meshfed-ca-'));
  await openssl(
    'req',
    '-new',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    path.join(dir, 'key.pem'),
    '-out',
    path.join(dir, 'csr.pem'),
    '-subj',
    '/CN=admin',
    '-addext',
    `subjectAltName=URI:spiffe://${TD}/ns/kube-system/sa/admin,DNS:kubernetes.default`,
  );
  foreignCsr = await readFile(path.join(dir, 'csr.pem'), 'utf8');
  apiserver = await startFakeApiServer({ clusterName: 'cluster-a' });
  mesh = await startTlsMesh({ trustDomain: TD, doc: DOC, apiserver, workloadTtlMs: 6 * 3600_000 });
});

afterAll(async () => {
  await mesh?.stop();
  await apiserver?.close();
  await rm(dir, { recursive: true, force: true });
});

const token = (ns: string, sa: string, audiences = ['istio-ca']): string => apiserver.issueServiceAccountToken(ns, sa, { audiences });
const call = (c: Omit<Parameters<typeof createCertificate>[2], 'csr'> & { csr?: string }): Promise<string[]> =>
  createCertificate(mesh.meshfed.xdsPort, mesh.rootPem, { csr: foreignCsr, ...c });
const codeOf = (p: Promise<unknown>): Promise<number | undefined> =>
  p.then(
    () => undefined,
    (e: ServiceError) => e.code,
  );

describe('IstioCertificateService/CreateCertificate', () => {
  it("certifies the caller's own identity and the CSR's key, not what the CSR asks for", async () => {
    const chain = await call({ token: token('abc', 'foo'), clusterId: 'Kubernetes', validitySec: 3600 });
    expect(chain.length).toBeGreaterThanOrEqual(2);
    const leaf = new X509Certificate(chain[0]!);
    expect(leaf.subjectAltName).toBe(`URI:${FOO}`);
    expect(leaf.subject ?? '').not.toContain('admin');
    const csrKey = await openssl('req', '-in', path.join(dir, 'csr.pem'), '-noout', '-pubkey');
    expect(leaf.publicKey.export({ type: 'spki', format: 'pem' })).toBe(csrKey);
    // Validity from the request: an hour (the leaf is backdated a minute for clock skew).
    expect(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)).toBe(3600_000 + 60_000);
    // Root last, and it is the mesh's root bundle.
    expect(chain.at(-1)).toBe(mesh.rootPem);
  });

  it('the chain verifies with openssl against the root', async () => {
    const chain = await call({ token: token('abc', 'foo') });
    await writeFile(path.join(dir, 'root.pem'), chain.at(-1)!);
    await writeFile(path.join(dir, 'leaf.pem'), chain[0]!);
    await writeFile(path.join(dir, 'untrusted.pem'), chain.slice(1, -1).join('') || chain[0]!);
    const out = await openssl(
      'verify',
      '-CAfile',
      path.join(dir, 'root.pem'),
      '-untrusted',
      path.join(dir, 'untrusted.pem'),
      path.join(dir, 'leaf.pem'),
    );
    expect(out.trim()).toBe(`${path.join(dir, 'leaf.pem')}: OK`);
  });

  it('caps the lifetime at --workload-cert-ttl, and uses it when none is asked', async () => {
    for (const validitySec of [0, 365 * 86400]) {
      const leaf = new X509Certificate((await call({ token: token('abc', 'foo'), validitySec }))[0]!);
      expect(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)).toBe(6 * 3600_000 + 60_000);
    }
  });

  it('accepts a mesh-CA client certificate as the credential', async () => {
    const cert = mesh.meshfed.pki!.ca.issue({ trustDomain: TD, namespace: 'xyz', serviceAccount: 'bar' });
    const leaf = new X509Certificate((await call({ cert }))[0]!);
    expect(leaf.subjectAltName).toBe(`URI:spiffe://${TD}/ns/xyz/sa/bar`);
  });

  it.each([
    ['no token', () => ({})],
    ['an invalid token', () => ({ token: 'not-a-token' })],
    ['a token for another audience', () => ({ token: token('abc', 'foo', ['some-api']) })],
    ['a token naming another cluster', () => ({ token: token('abc', 'foo'), clusterId: 'cluster-elsewhere' })],
  ])('refuses %s with UNAUTHENTICATED', async (_what, creds) => {
    expect(await codeOf(call(creds()))).toBe(status.UNAUTHENTICATED);
  });

  it('refuses a CSR that is not one, or whose signature does not verify, with INVALID_ARGUMENT', async () => {
    expect(await codeOf(call({ token: token('abc', 'foo'), csr: 'hello' }))).toBe(status.INVALID_ARGUMENT);
    // Flip a byte in the middle of the signed part: the signature no longer matches.
    const b64 = foreignCsr.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
    const der = Buffer.from(b64, 'base64');
    der[200] = der[200]! ^ 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(await codeOf(call({ token: token('abc', 'foo'), csr: tampered }))).toBe(status.INVALID_ARGUMENT);
  });
});
