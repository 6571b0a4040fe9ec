// Where CA material lives: memory (tests, dev), a directory (a mounted `cacerts` Secret), Kubernetes (kube-store.ts).
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CaMaterial } from './material.js';

export interface CaStore {
  /** Where the material lives, for logs. */
  readonly describe: string;
  load(): Promise<CaMaterial | undefined>;
  /** Stores m unless material already exists; returns what is stored after the race (the winner's). */
  createIfAbsent(m: CaMaterial): Promise<CaMaterial>;
  /** Replaces the stored material (a root rotation's steps, a retired root dropped). */
  save(m: CaMaterial): Promise<void>;
  /** Calls onChange when the stored material may have changed (load() tells what it is); returns the stop. */
  watch?(onChange: () => void): () => void;
}

/** File names of Istio's plug-in CA Secret `cacerts`, also used for the files of fileCaStore. */
export const CACERTS_KEYS = {
  caCertPem: 'ca-cert.pem',
  caKeyPem: 'ca-key.pem',
  rootCertPem: 'root-cert.pem',
  certChainPem: 'cert-chain.pem',
} as const satisfies Record<Exclude<keyof CaMaterial, 'next'>, string>;

/** A rotation's next CA is stored under the same names with this prefix (meshfed's own; Istio ignores them). */
export const NEXT_PREFIX = 'next-';

const FIELDS = Object.entries(CACERTS_KEYS) as [keyof typeof CACERTS_KEYS, string][];

/** Every file name meshfed stores CA material under. */
export const CA_FILES: readonly string[] = [...FIELDS.map(([, f]) => f), ...FIELDS.map(([, f]) => NEXT_PREFIX + f)];

/** Material from `cacerts`-style entries; undefined when ca-cert.pem is absent, an error when it is incomplete. */
export function materialFromEntries(get: (file: string) => string | undefined, where: string, prefix = ''): CaMaterial | undefined {
  const caCertPem = get(prefix + CACERTS_KEYS.caCertPem);
  if (caCertPem === undefined) return undefined;
  const caKeyPem = get(prefix + CACERTS_KEYS.caKeyPem);
  if (caKeyPem === undefined) throw new Error(`${where}: ${prefix}${CACERTS_KEYS.caCertPem} without ${prefix}${CACERTS_KEYS.caKeyPem}`);
  // A self-signed CA may omit the root and the chain: the CA certificate is then both.
  const rootCertPem = get(prefix + CACERTS_KEYS.rootCertPem) ?? caCertPem;
  const m: CaMaterial = { caCertPem, caKeyPem, rootCertPem, certChainPem: get(prefix + CACERTS_KEYS.certChainPem) ?? '' };
  const next = prefix ? undefined : materialFromEntries(get, where, NEXT_PREFIX);
  return next ? { ...m, next } : m;
}

/** File name → content of everything m stores, the next CA's files included when there is one. */
export function materialEntries(m: CaMaterial): Map<string, string> {
  const out = new Map<string, string>();
  for (const [field, file] of FIELDS) out.set(file, m[field]);
  if (m.next) for (const [field, file] of FIELDS) out.set(NEXT_PREFIX + file, m.next[field]);
  return out;
}

export function memoryCaStore(initial?: CaMaterial): CaStore {
  let stored = initial;
  const listeners = new Set<() => void>();
  return {
    describe: 'memory',
    load: () => Promise.resolve(stored),
    createIfAbsent: (m) => Promise.resolve((stored ??= m)),
    save: (m) => {
      stored = m;
      for (const fn of [...listeners]) queueMicrotask(fn);
      return Promise.resolve();
    },
    watch(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
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
    for (const f of CA_FILES) {
      try {
        files.set(f, await readFile(path.join(dir, f), 'utf8'));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    return materialFromEntries((f) => files.get(f), dir);
  };
  const writeAll = async (into: string, m: CaMaterial): Promise<void> => {
    for (const [file, content] of materialEntries(m)) await writeFile(path.join(into, file), content, { mode: 0o600 });
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
      // File by file, each replaced atomically (a reader may see old and new files mixed for a moment: it
      // finds the key not matching the certificate, and the last file's change makes it read again).
      const entries = materialEntries(m);
      for (const [file, content] of entries) {
        const tmp = path.join(dir, `.${file}.tmp`);
        await writeFile(tmp, content, { mode: 0o600 });
        await rename(tmp, path.join(dir, file));
      }
      for (const file of CA_FILES) if (!entries.has(file)) await rm(path.join(dir, file), { force: true });
    },
    // A mounted Secret changes by a symlink swap in the directory, an edit or `meshfed ca` by renames: both
    // are directory events. Bursts are coalesced.
    watch(onChange) {
      let timer: NodeJS.Timeout | undefined;
      let watcher: FSWatcher | undefined;
      try {
        watcher = watch(dir, () => {
          clearTimeout(timer);
          timer = setTimeout(onChange, 100);
        });
        watcher.on('error', () => watcher?.close());
      } catch {
        // no directory to watch (yet): nothing changes there
      }
      return () => {
        clearTimeout(timer);
        watcher?.close();
      };
    },
  };
}
