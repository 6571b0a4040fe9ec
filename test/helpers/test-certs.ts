// Test certificates made with the openssl CLI (node_modules has no X.509 library): a root per
// trust domain and SPIFFE workload certificates it signs, written to files for gRPC's
// file_watcher certificate providers and returned as PEM for in-process TLS.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const OPENSSL = process.env['OPENSSL'] ?? 'openssl';

export interface PemFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface TestRoot extends PemFiles {
  readonly trustDomain: string;
}

export interface WorkloadCert extends PemFiles {
  readonly spiffeId: string;
}

async function openssl(args: readonly string[]): Promise<void> {
  try {
    await run(OPENSSL, args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error(`test certificates need the openssl CLI (${OPENSSL} not found); install the openssl package`);
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`);
  }
}

async function readPair(certFile: string, keyFile: string): Promise<PemFiles> {
  const [certPem, keyPem] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
  return { certFile, keyFile, certPem, keyPem };
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A self-signed root CA for `trustDomain`, valid for a day, files under `dir`. */
export async function makeRoot(dir: string, trustDomain: string): Promise<TestRoot> {
  const base = path.join(dir, `root-${trustDomain}`);
  await openssl([
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    `${base}.key`,
    '-out',
    `${base}.pem`,
    '-days',
    '1',
    '-subj',
    `/O=meshfed test/CN=root ${trustDomain}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-addext',
    `subjectAltName=URI:spiffe://${trustDomain}`,
  ]);
  return { trustDomain, ...(await readPair(`${base}.pem`, `${base}.key`)) };
}

/**
 * A workload certificate for `spiffe://<root's trust domain>/ns/<ns>/sa/<sa>`, usable as TLS
 * server and client, signed by `root`; the file holds the leaf only (the root is distributed
 * separately, as SDS ROOTCA / ca_certificate_file).
 */
export async function issueWorkloadCert(dir: string, root: TestRoot, namespace: string, serviceAccount: string): Promise<WorkloadCert> {
  const spiffeId = `spiffe://${root.trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
  const base = path.join(dir, `${serviceAccount}.${namespace}.${root.trustDomain}`);
  const ext = `${base}.ext`;
  await writeFile(
    ext,
    [
      `subjectAltName=critical,URI:${spiffeId}`,
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyAgreement',
      'extendedKeyUsage=serverAuth,clientAuth',
    ].join('\n'),
  );
  await openssl(['req', '-new', ...EC_KEY, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', '/O=meshfed test']);
  await openssl([
    'x509',
    '-req',
    '-in',
    `${base}.csr`,
    '-CA',
    root.certFile,
    '-CAkey',
    root.keyFile,
    '-set_serial',
    `0x${randomBytes(16).toString('hex')}`,
    '-days',
    '1',
    '-extfile',
    ext,
    '-out',
    `${base}.pem`,
  ]);
  return { spiffeId, ...(await readPair(`${base}.pem`, `${base}.key`)) };
}

/** Writes the concatenation of roots (a trust bundle) to `file`, returning the path. */
export async function writeBundle(file: string, roots: readonly TestRoot[]): Promise<string> {
  await writeFile(file, roots.map((r) => r.certPem.trim()).join('\n') + '\n');
  return file;
}
