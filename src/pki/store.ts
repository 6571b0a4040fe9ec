// Where CA material lives: memory (tests, dev), a directory (a mounted `cacerts` Secret), Kubernetes (kube-store.ts).
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CaMaterial } from './material.js';

export interface CaStore {
  /** Where the material lives, for logs. */
  readonly describe: string;
  load(): Promise<CaMaterial | undefined>;
  /** Stores m unless material already exists; returns what is stored after the race (the winner's). */
  createIfAbsent(m: CaMaterial): Promise<CaMaterial>;
  /** Replaces the stored material (a root rotation's activation). */
  save(m: CaMaterial): Promise<void>;
}

/** File names of Istio's plug-in CA Secret `cacerts`, also used for the files of fileCaStore. */
export const CACERTS_KEYS = {
  caCertPem: 'ca-cert.pem',
  caKeyPem: 'ca-key.pem',
  rootCertPem: 'root-cert.pem',
  certChainPem: 'cert-chain.pem',
} as const satisfies Record<keyof CaMaterial, string>;

/** Material from `cacerts`-style entries; undefined when ca-cert.pem is absent, an error when it is incomplete. */
export function materialFromEntries(get: (file: string) => string | undefined, where: string): CaMaterial | undefined {
  const caCertPem = get(CACERTS_KEYS.caCertPem);
  if (caCertPem === undefined) return undefined;
  const caKeyPem = get(CACERTS_KEYS.caKeyPem);
  if (caKeyPem === undefined) throw new Error(`${where}: ${CACERTS_KEYS.caCertPem} without ${CACERTS_KEYS.caKeyPem}`);
  // A self-signed CA may omit the root and the chain: the CA certificate is then both.
  const rootCertPem = get(CACERTS_KEYS.rootCertPem) ?? caCertPem;
  return { caCertPem, caKeyPem, rootCertPem, certChainPem: get(CACERTS_KEYS.certChainPem) ?? '' };
}

export function memoryCaStore(initial?: CaMaterial): CaStore {
  let stored = initial;
  return {
    describe: 'memory',
    load: () => Promise.resolve(stored),
    createIfAbsent: (m) => Promise.resolve((stored ??= m)),
    save: (m) => {
      stored = m;
      return Promise.resolve();
    },
  };
}

/**
 * A directory with `cacerts` file names (e.g. a mounted Secret). Creation is atomic: the files are written to a
 * sibling directory that is then renamed into place, which fails if another process got there first.
 */
export function fileCaStore(dir: string): CaStore {
  const load = async (): Promise<CaMaterial | undefined> => {
    const files = new Map<string, string>();
    for (const f of Object.values(CACERTS_KEYS)) {
      try {
        files.set(f, await readFile(path.join(dir, f), 'utf8'));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    return materialFromEntries((f) => files.get(f), dir);
  };
  const writeAll = async (into: string, m: CaMaterial): Promise<void> => {
    for (const [field, file] of Object.entries(CACERTS_KEYS) as [keyof CaMaterial, string][]) {
      await writeFile(path.join(into, file), m[field], { mode: 0o600 });
    }
  };
  return {
    describe: `directory ${dir}`,
    load,
    async createIfAbsent(m) {
      const existing = await load();
      if (existing) return existing;
      await mkdir(path.dirname(path.resolve(dir)), { recursive: true });
      const tmp = await mkdtemp(`${path.resolve(dir)}.tmp-`);
      await writeAll(tmp, m);
      try {
        await rename(tmp, dir); // replaces only a missing or empty directory
      } catch (err) {
        await rm(tmp, { recursive: true, force: true });
        if (!['EEXIST', 'ENOTEMPTY'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      }
      const stored = await load();
      if (!stored) throw new Error(`${dir}: CA material vanished right after it was created`);
      return stored;
    },
    async save(m) {
      await mkdir(dir, { recursive: true });
      // File by file, each replaced atomically (a reader may see old and new files mixed for a moment).
      for (const [field, file] of Object.entries(CACERTS_KEYS) as [keyof CaMaterial, string][]) {
        const tmp = path.join(dir, `.${file}.tmp`);
        await writeFile(tmp, m[field], { mode: 0o600 });
        await rename(tmp, path.join(dir, file));
      }
    },
  };
}
