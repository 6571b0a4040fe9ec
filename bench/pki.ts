// npx tsx bench/pki.ts: workload certificate issuance rate of the mesh CA.
//   Each certificate = a fresh key pair + an X.509 leaf signed by the CA, PEM-encoded, as SDS serves it.
//   Also the same certificate built by @peculiar/x509 (WebCrypto), the maintained library the hand-written
//   DER in src/pki/der.ts + x509.ts was measured against (issue 12 item 6).
// Flags: --seconds S (per case, default 3)  --rsa (also RSA-2048 workload keys; slow)  --rsa-ca (also an RSA-2048 CA key)
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { CertificateAuthority, memoryCaStore, type KeyType } from '../src/pki/index.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    rsa: { type: 'boolean', default: false },
    'rsa-ca': { type: 'boolean', default: false },
  },
});
const SECONDS = Number(args.seconds);

async function rate(label: string, caKey: KeyType, leafKey: KeyType, mode: 'sync' | 'async'): Promise<void> {
  const ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', store: memoryCaStore(), keyType: caKey });
  const id = (i: number): { trustDomain: string; namespace: string; serviceAccount: string } => ({
    trustDomain: 'cluster.local',
    namespace: `ns${i % 100}`,
    serviceAccount: `sa${i}`,
  });
  for (let i = 0; i < (leafKey === 'rsa' ? 1 : 50); i++) ca.issue(id(i), { keyType: leafKey }); // warm up
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  let n = 0;
  if (mode === 'sync') {
    while (performance.now() < end) ca.issue(id(n++), { keyType: leafKey });
  } else {
    // Keep the libuv pool (4 threads) busy with key generation while the main thread signs.
    const lane = async (): Promise<void> => {
      while (performance.now() < end) await ca.issueAsync(id(n++), { keyType: leafKey });
    };
    await Promise.all(Array.from({ length: 8 }, lane));
  }
  const secs = (performance.now() - start) / 1000;
  console.log(`${label.padEnd(44)} ${String(n).padStart(7)} certs in ${secs.toFixed(1)} s = ${Math.round(n / secs)} certs/s`);
  ca.close();
}

// The same workload certificate built by @peculiar/x509 (WebCrypto signing), to decide whether a maintained
// library could replace src/pki/der.ts + x509.ts (issue 12 item 6: it must sustain >= 2,000 P-256 certs/s).
async function peculiarRate(withKeygen: boolean): Promise<void> {
  await import('reflect-metadata'); // tsyringe, under @peculiar/x509, needs the Reflect polyfill
  const x509 = await import('@peculiar/x509');
  const subtle = globalThis.crypto.subtle;
  x509.cryptoProvider.set(globalThis.crypto);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const caKeys = await subtle.generateKey(alg, false, ['sign', 'verify']);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'O=cluster.local',
    keys: caKeys,
    signingAlgorithm: alg,
    notAfter: new Date(Date.now() + 365 * 86400e3),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const caKeyId = await x509.AuthorityKeyIdentifierExtension.create(caCert);
  const leafKeys = await subtle.generateKey(alg, true, ['sign', 'verify']);
  const issueOne = async (i: number): Promise<string> => {
    const keys = withKeygen ? await subtle.generateKey(alg, true, ['sign', 'verify']) : leafKeys;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomBytes(16)
        .toString('hex')
        .replace(/^[89a-f]/, '1'),
      subject: '',
      issuer: caCert.subject,
      notBefore: new Date(Date.now() - 300_000),
      notAfter: new Date(Date.now() + 86400e3),
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: alg,
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.BasicConstraintsExtension(false, undefined, true),
        caKeyId,
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://cluster.local/ns/ns${i % 100}/sa/sa${i}` }], true),
      ],
    });
    const keyPem = withKeygen ? x509.PemConverter.encode(await subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY') : '';
    return cert.toString('pem') + keyPem;
  };
  for (let i = 0; i < 50; i++) await issueOne(i); // warm up
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  let n = 0;
  const lane = async (): Promise<void> => {
    while (performance.now() < end) await issueOne(n++);
  };
  await Promise.all(Array.from({ length: 8 }, lane));
  const secs = (performance.now() - start) / 1000;
  const label = `@peculiar/x509, P-256, ${withKeygen ? 'fresh key each' : 'certificate only'}`;
  console.log(`${label.padEnd(44)} ${String(n).padStart(7)} certs in ${secs.toFixed(1)} s = ${Math.round(n / secs)} certs/s`);
}

console.log(`pki issuance, ${SECONDS} s per case (the machine is shared: numbers are noisy)`);
await rate('P-256 CA, P-256 leaves, sync', 'ec', 'ec', 'sync');
await rate('P-256 CA, P-256 leaves, async keygen', 'ec', 'ec', 'async');
await peculiarRate(false);
await peculiarRate(true);
if (args['rsa-ca']) await rate('RSA-2048 CA, P-256 leaves, sync', 'rsa', 'ec', 'sync');
if (args.rsa) {
  await rate('P-256 CA, RSA-2048 leaves, sync', 'ec', 'rsa', 'sync');
  await rate('P-256 CA, RSA-2048 leaves, async keygen', 'ec', 'rsa', 'async');
}
