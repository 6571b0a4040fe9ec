// `meshfed ca rotate` / `meshfed ca activate`: the two steps of a root rotation, written to where the CA lives
// (its Secret, or a directory). Running replicas watch it and take each step up without a restart.
import { X509Certificate } from 'node:crypto';
import { InvalidArgumentError, type Command } from 'commander';
import { CertificateAuthority, fileCaStore, kubeCaStore, type CaStore } from '../pki/index.js';
import { DEFAULT_ROOT_TTL_MS, DEFAULT_WORKLOAD_TTL_MS } from '../pki/ca.js';
import { loadSigner, selfSignedRoot } from '../pki/material.js';
import { describeCert } from '../pki/x509.js';
import { localKubeConfig } from '../sources/kube/index.js';

interface CaFlags {
  kubeconfig?: string;
  namespace: string;
  caDir?: string;
  trustDomain?: string;
  workloadCertTtl?: number;
}

const DEFAULT_TRUST_DOMAIN = 'cluster.local';

export function caCommand(ca: Command, defaultNamespace: string): void {
  const common = (c: Command): Command =>
    c
      .option('--kubeconfig <file>', 'the cluster whose CA Secret (cacerts, else meshfed-ca) to change (default: in-cluster)')
      .option('--namespace <ns>', "meshfed's namespace, where the CA Secret lives", defaultNamespace)
      .option('--ca-dir <dir>', 'change CA files in this directory (Istio cacerts layout) instead of a Secret');

  common(ca.command('rotate'))
    .description(
      'step 1: store a new self-signed root beside the signing one; every replica trusts it from now on, nothing is signed with it yet',
    )
    .option('--trust-domain <td>', "the new root's organization (default: the current root's, else cluster.local)")
    .action((o: CaFlags) =>
      run('rotate', o, async (store, authority) => {
        if (authority.nextRoot)
          throw new Error(`a root rotation is already in progress (next root ${name(authority.nextRoot)}): run \`meshfed ca activate\``);
        const td = o.trustDomain ?? organization(authority.signingRoot) ?? DEFAULT_TRUST_DOMAIN;
        const next = selfSignedRoot(td, { keyType: keyTypeOf(authority), ttlMs: DEFAULT_ROOT_TTL_MS, now: Date.now() });
        await authority.rotateRoot(next);
        return `${store.describe} now holds the next root ${name(next.rootCertPem)} (valid until ${validTo(next.rootCertPem)}); every replica trusts it. Once proxies have it, run \`meshfed ca activate\``;
      }),
    );

  common(ca.command('activate'))
    .description(
      'step 2: the next root signs from now on (every workload certificate is re-issued); the old root stays trusted until certificates it signed have expired',
    )
    .option(
      '--workload-cert-ttl <seconds>',
      'the longest workload certificate lifetime the servers use: the old root stays trusted this long',
      positive,
      DEFAULT_WORKLOAD_TTL_MS / 1000,
    )
    .action((o: CaFlags) =>
      run('activate', o, async (store, authority) => {
        const next = authority.nextRoot;
        if (!next) throw new Error('no root rotation in progress: run `meshfed ca rotate` first');
        const old = authority.signingRoot;
        await authority.activateRotation();
        const until = loadSigner(authority.material).extraRoots.find((r) => r.pem === old)?.until;
        return `${store.describe}: root ${name(next)} signs from now on; the old root ${name(old)} stays trusted until ${until ? new Date(until).toISOString() : 'it is removed'}`;
      }),
    );
}

/** Opens the stored CA (never creating one), runs the step, prints one line; on error one line and exit 1. */
async function run(step: string, o: CaFlags, act: (store: CaStore, ca: CertificateAuthority) => Promise<string>): Promise<void> {
  let authority: CertificateAuthority | undefined;
  try {
    const store = o.caDir ? fileCaStore(o.caDir) : kubeCaStore(localKubeConfig(o.kubeconfig), o.namespace);
    try {
      authority = await CertificateAuthority.open({
        trustDomain: o.trustDomain ?? DEFAULT_TRUST_DOMAIN,
        store,
        create: false,
        workloadTtlMs: o.workloadCertTtl === undefined ? undefined : o.workloadCertTtl * 1000,
      });
    } catch (err) {
      const message = (err as Error).message;
      throw new Error(message.startsWith('invalid CA material') ? `${store.describe}: ${message}` : message);
    }
    process.stdout.write(`${await act(store, authority)}\n`);
  } catch (err) {
    process.stderr.write(`meshfed ca ${step}: ${(err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    authority?.close();
  }
}

function positive(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a whole number of seconds above 0');
  return n;
}

const name = (pem: string): string => describeCert(new X509Certificate(pem));
const validTo = (pem: string): string => new Date(new X509Certificate(pem).validTo).toISOString();

/** The O= of a root meshfed made (its trust domain), if it has one. */
function organization(pem: string): string | undefined {
  return (
    new X509Certificate(pem).subject
      .split('\n')
      .find((l) => l.startsWith('O='))
      ?.slice(2) || undefined
  );
}

/** The next root keeps the current CA's key type. */
function keyTypeOf(ca: CertificateAuthority): 'ec' | 'rsa' {
  return new X509Certificate(ca.signingRoot).publicKey.asymmetricKeyType === 'rsa' ? 'rsa' : 'ec';
}
