// npx tsx bench/pki.ts: workload certificate issuance rate of the mesh CA.
//   Each certificate = a fresh key pair + an X.509 leaf signed by the CA, PEM-encoded, as SDS serves it.
// Flags: --seconds S (per case, default 3)  --rsa (also RSA-2048 workload keys; slow)  --rsa-ca (also an RSA-2048 CA key)
import { parseArgs } from 'node:util';
import { CertificateAuthority, memoryCaStore, type KeyType } from '../src/pki/index.js';

const { values: args } = parseArgs({
  options: { seconds: { type: 'string', default: '3' }, rsa: { type: 'boolean', default: false }, 'rsa-ca': { type: 'boolean', default: false } },
});
const SECONDS = Number(args.seconds);

async function rate(label: string, caKey: KeyType, leafKey: KeyType, mode: 'sync' | 'async'): Promise<void> {
  const ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', store: memoryCaStore(), keyType: caKey });
  const id = (i: number): { trustDomain: string; namespace: string; serviceAccount: string } => ({ trustDomain: 'cluster.local', namespace: `ns${i % 100}`, serviceAccount: `sa${i}` });
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

console.log(`pki issuance, ${SECONDS} s per case (the machine is shared: numbers are noisy)`);
await rate('P-256 CA, P-256 leaves, sync', 'ec', 'ec', 'sync');
await rate('P-256 CA, P-256 leaves, async keygen', 'ec', 'ec', 'async');
if (args['rsa-ca']) await rate('RSA-2048 CA, P-256 leaves, sync', 'rsa', 'ec', 'sync');
if (args.rsa) {
  await rate('P-256 CA, RSA-2048 leaves, sync', 'ec', 'rsa', 'sync');
  await rate('P-256 CA, RSA-2048 leaves, async keygen', 'ec', 'rsa', 'async');
}
