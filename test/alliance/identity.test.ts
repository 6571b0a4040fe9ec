// The cluster's alliance identity: the Ed25519 pair kept in a directory or a Secret (Deckhouse's PEM labels), and the
// cluster UUID from Namespace kube-system, against real files and the fake kube-apiserver over HTTPS.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dirAuthnKeyStore, kubeAuthnKeyStore, openAuthnKeys } from '../../src/alliance/identity/key-store.js';
import { kubeClusterUuid } from '../../src/alliance/identity/cluster-uuid.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';

const tmp = (): string => mkdtempSync(path.join(os.tmpdir(), 'meshfed-authn-'));
const spki = (pem: string): Buffer =>
  createPublicKey(pem.replace(/ED25519 PUBLIC KEY/g, 'PUBLIC KEY')).export({ type: 'spki', format: 'der' });

describe('authn key pair in a directory', () => {
  it('is created once with Deckhouse labels (PKIX / PKCS#8), priv.pem 0600, and read back the same', async () => {
    const dir = tmp();
    const first = await openAuthnKeys(dirAuthnKeyStore(dir));
    const pub = readFileSync(path.join(dir, 'pub.pem'), 'utf8');
    const priv = readFileSync(path.join(dir, 'priv.pem'), 'utf8');
    expect(pub).toMatch(/^-----BEGIN ED25519 PUBLIC KEY-----\n[\s\S]+\n-----END ED25519 PUBLIC KEY-----\n$/);
    expect(priv).toMatch(/^-----BEGIN ED25519 PRIVATE KEY-----\n[\s\S]+\n-----END ED25519 PRIVATE KEY-----\n$/);
    expect(statSync(path.join(dir, 'priv.pem')).mode & 0o777).toBe(0o600);
    // The bodies are standard PKIX and PKCS#8 under the label.
    const key = createPrivateKey(priv.replace(/ED25519 PRIVATE KEY/g, 'PRIVATE KEY'));
    expect(key.asymmetricKeyType).toBe('ed25519');
    expect(spki(pub).equals(createPublicKey(key).export({ type: 'spki', format: 'der' }))).toBe(true);
    expect(first.pubPem).toBe(pub);
    const again = await openAuthnKeys(dirAuthnKeyStore(dir));
    expect(again.pubPem).toBe(first.pubPem);
  });

  it('two processes racing to create it end with the same pair', async () => {
    const dir = tmp();
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => openAuthnKeys(dirAuthnKeyStore(dir))));
    expect(b!.pubPem).toBe(a!.pubPem);
    expect(c!.pubPem).toBe(a!.pubPem);
  });

  it("reads the standard labels too, and publishes Deckhouse's", async () => {
    const dir = tmp();
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(path.join(dir, 'pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(path.join(dir, 'priv.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const pair = await openAuthnKeys(dirAuthnKeyStore(dir));
    expect(pair.pubPem).toContain('-----BEGIN ED25519 PUBLIC KEY-----');
    expect(spki(pair.pubPem).equals(publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
  });

  it('refuses broken files with one line naming the file', async () => {
    const garbage = tmp();
    writeFileSync(path.join(garbage, 'priv.pem'), 'not a key\n');
    await expect(openAuthnKeys(dirAuthnKeyStore(garbage))).rejects.toThrow(
      `${path.join(garbage, 'priv.pem')}: not a PEM private key (PKCS#8)`,
    );

    const rsa = tmp();
    writeFileSync(
      path.join(rsa, 'priv.pem'),
      generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    await expect(openAuthnKeys(dirAuthnKeyStore(rsa))).rejects.toThrow(`${path.join(rsa, 'priv.pem')}: a rsa key, not Ed25519`);

    const mismatched = tmp();
    writeFileSync(path.join(mismatched, 'priv.pem'), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(path.join(mismatched, 'pub.pem'), generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
    await expect(openAuthnKeys(dirAuthnKeyStore(mismatched))).rejects.toThrow(
      `${path.join(mismatched, 'pub.pem')}: not the public key of ${path.join(mismatched, 'priv.pem')}`,
    );

    const orphan = tmp();
    writeFileSync(path.join(orphan, 'pub.pem'), generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
    await expect(openAuthnKeys(dirAuthnKeyStore(orphan))).rejects.toThrow(`${path.join(orphan, 'pub.pem')}: found without priv.pem`);
  });
});

describe('authn key pair and cluster UUID in Kubernetes', () => {
  let api: FakeApiServer;
  let kc: KubeConfig;
  beforeAll(async () => {
    api = await startFakeApiServer();
    kc = new KubeConfig();
    kc.loadFromString(api.kubeconfig());
  });
  afterAll(() => api.close());

  it("replicas racing to create Secret meshfed-authn-keypair all sign with the winner's key", async () => {
    const ns = 'meshfed';
    const pairs = await Promise.all([1, 2, 3].map(() => openAuthnKeys(kubeAuthnKeyStore(kc, ns))));
    expect(new Set(pairs.map((p) => p.pubPem)).size).toBe(1);
    const data = (api.get('v1', 'Secret', ns, 'meshfed-authn-keypair') as { data?: Record<string, string> } | undefined)?.data ?? {};
    expect(Object.keys(data).sort()).toEqual(['priv.pem', 'pub.pem']);
    expect(Buffer.from(data['pub.pem']!, 'base64').toString()).toBe(pairs[0]!.pubPem);
    expect(Buffer.from(data['priv.pem']!, 'base64').toString()).toContain('-----BEGIN ED25519 PRIVATE KEY-----');
    // A restart reads it back.
    expect((await openAuthnKeys(kubeAuthnKeyStore(kc, ns))).pubPem).toBe(pairs[0]!.pubPem);
  });

  it("takes the cluster UUID from Namespace kube-system's uid, and says what to do without it", async () => {
    await expect(kubeClusterUuid(kc)).rejects.toThrow(
      /^the cluster UUID is the uid of Namespace kube-system, which could not be read \(HTTP 404: namespaces "kube-system" not found\); give --cluster-uuid$/,
    );
    api.upsert({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-system' } });
    const uid = (api.get('v1', 'Namespace', undefined, 'kube-system') as { metadata: { uid: string } }).metadata.uid;
    expect(uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(await kubeClusterUuid(kc)).toBe(uid);
  });
});
