// Where the authn key pair lives: memory (development), a directory (`pub.pem`, `priv.pem` 0600), or a Secret in
// meshfed's namespace (as Deckhouse's `d8-remote-authn-keypair`). It is created once: replicas that race to create it
// each re-read what won, so every replica signs with the same key and peers see one `authnKeyPub`.
import { randomUUID } from 'node:crypto';
import { link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { kubeErrorLine } from './cluster-uuid.js';
import { generateAuthnKeyPem, loadAuthnKeyPair, publicPemOf, type AuthnKeyPair, type AuthnKeyPem } from './keys.js';

export const AUTHN_KEY_SECRET = 'meshfed-authn-keypair';
export const PUB_FILE = 'pub.pem';
export const PRIV_FILE = 'priv.pem';

export interface AuthnKeyStore {
  /** Where the pair lives, for logs. */
  readonly describe: string;
  load(): Promise<AuthnKeyPair | undefined>;
  /** Stores `pem` unless a pair is already stored; returns the stored pair (the winner's after a race). */
  createIfAbsent(pem: AuthnKeyPem): Promise<AuthnKeyPair>;
}

/** The stored pair, created on first use. */
export async function openAuthnKeys(store: AuthnKeyStore): Promise<AuthnKeyPair> {
  return (await store.load()) ?? (await store.createIfAbsent(generateAuthnKeyPem()));
}

export function memoryAuthnKeyStore(): AuthnKeyStore {
  let stored: AuthnKeyPair | undefined;
  const where = { pub: `memory ${PUB_FILE}`, priv: `memory ${PRIV_FILE}` };
  return {
    describe: 'memory',
    load: () => Promise.resolve(stored),
    createIfAbsent: (pem) => Promise.resolve((stored ??= loadAuthnKeyPair(pem, where))),
  };
}

/**
 * `pub.pem` and `priv.pem` in `dir`. priv.pem is the pair's identity: it is published with link(2), which fails when
 * the file exists, so of two racing processes one wins and the other reads the winner's. A missing pub.pem (a crash
 * between the two writes, or an operator who keeps only the private key) is derived from priv.pem.
 */
export function dirAuthnKeyStore(dir: string): AuthnKeyStore {
  const privPath = path.join(dir, PRIV_FILE);
  const pubPath = path.join(dir, PUB_FILE);
  const readOrUndefined = async (p: string): Promise<string | undefined> => {
    try {
      return await readFile(p, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`${p}: ${(err as Error).message}`);
    }
  };
  const load = async (): Promise<AuthnKeyPair | undefined> => {
    const priv = await readOrUndefined(privPath);
    const pub = await readOrUndefined(pubPath);
    if (priv === undefined) {
      if (pub !== undefined)
        throw new Error(`${pubPath}: found without ${PRIV_FILE}; remove it to have a new pair made, or restore ${privPath}`);
      return undefined;
    }
    return loadAuthnKeyPair({ priv, pub: pub ?? derivePub(priv, privPath) }, { pub: pubPath, priv: privPath });
  };
  return {
    describe: `directory ${dir}`,
    load,
    async createIfAbsent(pem) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const tmp = path.join(dir, `.${PRIV_FILE}.${randomUUID()}.tmp`);
      await writeFile(tmp, pem.priv, { mode: 0o600 });
      try {
        await link(tmp, privPath);
        const pubTmp = `${tmp}.pub`;
        await writeFile(pubTmp, pem.pub, { mode: 0o644 });
        await rename(pubTmp, pubPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`${privPath}: ${(err as Error).message}`);
      } finally {
        await unlink(tmp).catch(() => undefined);
      }
      const stored = await load();
      if (!stored) throw new Error(`${privPath}: vanished right after it was created`);
      return stored;
    },
  };
}

function derivePub(priv: string, where: string): string {
  try {
    return publicPemOf(priv);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
}

const statusOf = (err: unknown): number | undefined => {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
};

/** Secret `namespace/name` with keys pub.pem and priv.pem (base64 in `data`, as Kubernetes stores them). */
export function kubeAuthnKeyStore(kc: KubeConfig, namespace: string, name: string = AUTHN_KEY_SECRET): AuthnKeyStore {
  const api = kc.makeApiClient(CoreV1Api);
  const describe = `Secret ${namespace}/${name}`;
  const fromSecret = (s: V1Secret): AuthnKeyPair | undefined => {
    const data = s.data ?? {};
    const get = (k: string): string | undefined => (data[k] === undefined ? undefined : Buffer.from(data[k], 'base64').toString('utf8'));
    const priv = get(PRIV_FILE);
    if (priv === undefined) return undefined;
    return loadAuthnKeyPair(
      { priv, pub: get(PUB_FILE) ?? derivePub(priv, `${describe} key ${PRIV_FILE}`) },
      { pub: `${describe} key ${PUB_FILE}`, priv: `${describe} key ${PRIV_FILE}` },
    );
  };
  const load = async (): Promise<AuthnKeyPair | undefined> => {
    let s: V1Secret;
    try {
      s = await api.readNamespacedSecret({ name, namespace });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new Error(`reading ${describe}: ${kubeErrorLine(err)}`);
    }
    const pair = fromSecret(s);
    if (!pair) throw new Error(`${describe} exists but has no ${PRIV_FILE}`);
    return pair;
  };
  return {
    describe,
    load,
    async createIfAbsent(pem) {
      const body: V1Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'meshfed' } },
        data: { [PUB_FILE]: Buffer.from(pem.pub).toString('base64'), [PRIV_FILE]: Buffer.from(pem.priv).toString('base64') },
      };
      try {
        await api.createNamespacedSecret({ namespace, body });
      } catch (err) {
        // 409: another replica created it first; its pair is the one to use.
        if (statusOf(err) !== 409) throw new Error(`creating ${describe}: ${kubeErrorLine(err)}`);
      }
      const stored = await load();
      if (!stored) throw new Error(`${describe} vanished right after it was created`);
      return stored;
    },
  };
}
