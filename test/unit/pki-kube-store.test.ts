// CA material in Kubernetes Secrets, against the fake kube-apiserver over real HTTPS with @kubernetes/client-node.
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { CertificateAuthority, kubeCaStore, memoryCaStore, type CaMaterial } from '../../src/pki/index.js';
import { splitPems } from '../../src/pki/x509.js';

const TD = 'cluster-a.local';
let api: FakeApiServer;
let kc: KubeConfig;
beforeAll(async () => {
  api = await startFakeApiServer();
  kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
});
afterAll(() => api.close());

const b64 = (s: string): string => Buffer.from(s).toString('base64');
function secretData(ns: string, name: string): Record<string, string> {
  const s = api.get('v1', 'Secret', ns, name) as { data?: Record<string, string> } | undefined;
  return Object.fromEntries(Object.entries(s?.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
}

describe('kubeCaStore', () => {
  it('creates meshfed-ca once: two replicas racing end with the same root (the loser gets 409 and re-reads)', async () => {
    const ns = 'race';
    const [a, b] = await Promise.all([
      CertificateAuthority.open({ trustDomain: TD, store: kubeCaStore(kc, ns) }),
      CertificateAuthority.open({ trustDomain: TD, store: kubeCaStore(kc, ns) }),
    ]);
    expect(a.roots).toEqual(b.roots);
    const creates = api.requests.filter((r) => r.method === 'POST' && r.path === `/api/v1/namespaces/${ns}/secrets`);
    expect(creates).toHaveLength(2);
    const data = secretData(ns, 'meshfed-ca');
    expect(Object.keys(data).sort()).toEqual(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    expect(data['root-cert.pem']).toBe(a.roots[0]);
    // A restart reads the stored root back.
    const again = await CertificateAuthority.open({ trustDomain: TD, store: kubeCaStore(kc, ns) });
    expect(again.roots).toEqual(a.roots);
  });

  it('prefers Istio’s plug-in cacerts Secret, and a rotation is saved back there, keeping other keys', async () => {
    const ns = 'istio-system';
    const plugin: CaMaterial = (await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() })).material;
    api.upsert({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'cacerts', namespace: ns },
      data: {
        'ca-cert.pem': b64(plugin.caCertPem),
        'ca-key.pem': b64(plugin.caKeyPem),
        'root-cert.pem': b64(plugin.rootCertPem),
        'cert-chain.pem': b64(plugin.certChainPem),
        'note.txt': b64('hi'),
      },
    });
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: kubeCaStore(kc, ns) });
    expect(ca.roots).toEqual([plugin.rootCertPem]);
    expect(api.get('v1', 'Secret', ns, 'meshfed-ca')).toBeUndefined();

    await ca.rotateRoot();
    await ca.activateRotation();
    const data = secretData(ns, 'cacerts');
    // The new root signs; the old one stays trusted, with meshfed's note saying until when.
    expect(data['root-cert.pem']!.startsWith(ca.signingRoot)).toBe(true);
    expect(splitPems(data['root-cert.pem']!)).toEqual([ca.signingRoot, plugin.rootCertPem]);
    expect(data['root-cert.pem']).toMatch(/\n# meshfed: retiring, trusted until \d{4}-\d\d-\d\dT[^\n]+\n-----BEGIN/);
    expect(data['note.txt']).toBe('hi');
  });

  it('every replica watching the Secret takes up a rotation written by another client, and stale writes fail', async () => {
    const ns = 'follow';
    const serving = await CertificateAuthority.open({ trustDomain: TD, store: kubeCaStore(kc, ns), follow: true });
    const oldRoot = serving.signingRoot;
    // As `meshfed ca rotate` does it: its own client, the stored material only.
    const operator = await CertificateAuthority.open({ trustDomain: TD, store: kubeCaStore(kc, ns), create: false });
    const stale = await CertificateAuthority.open({ trustDomain: TD, store: kubeCaStore(kc, ns), create: false });
    await operator.rotateRoot();
    const newRoot = operator.nextRoot!;
    expect(Object.keys(secretData(ns, 'meshfed-ca')).sort()).toEqual([
      'ca-cert.pem',
      'ca-key.pem',
      'cert-chain.pem',
      'next-ca-cert.pem',
      'next-ca-key.pem',
      'next-cert-chain.pem',
      'next-root-cert.pem',
      'root-cert.pem',
    ]);
    await vi.waitFor(() => expect(serving.roots).toEqual([oldRoot, newRoot]), { timeout: 5000 });
    // A client that read the Secret before that write cannot overwrite it.
    await expect(stale.rotateRoot()).rejects.toThrow(
      `storing the next root in Secret ${ns}/meshfed-ca: Secret ${ns}/meshfed-ca changed since it was read; nothing was written, try again`,
    );

    await operator.activateRotation();
    await vi.waitFor(() => expect(serving.signingRoot).toBe(newRoot), { timeout: 5000 });
    expect(serving.roots).toEqual([newRoot, oldRoot]);
    expect(Object.keys(secretData(ns, 'meshfed-ca')).sort()).toEqual(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    for (const ca of [serving, operator, stale]) ca.close();
  });

  it('reports an incomplete Secret and an unreachable apiserver clearly', async () => {
    api.upsert({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cacerts', namespace: 'broken' }, data: { 'ca-cert.pem': b64('x') } });
    await expect(CertificateAuthority.open({ trustDomain: TD, store: kubeCaStore(kc, 'broken') })).rejects.toThrow(
      /Secret broken\/cacerts: ca-cert.pem without ca-key.pem/,
    );

    api.faults.set({ kind: 'status500', path: /secrets/ });
    try {
      await expect(CertificateAuthority.open({ trustDomain: TD, store: kubeCaStore(kc, 'down') })).rejects.toThrow(
        /reading Secret down\/cacerts/,
      );
    } finally {
      api.faults.set(null);
    }
  });
});
