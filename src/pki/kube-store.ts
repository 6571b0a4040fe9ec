// CA material in Kubernetes Secrets: Istio's plug-in `cacerts` when present, else meshfed's own Secret, created
// once (409 AlreadyExists means a concurrent replica won: read its root back). Writes carry the resourceVersion
// last read, so a write based on stale material fails (409) instead of undoing another writer's change.
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { apiErrorMessage, statusOf } from '../kube/api-error.js';
import { DEFAULT_LIMITS, GuardedWatch, KubeClient } from '../sources/kube/transport.js';
import type { CaMaterial } from './material.js';
import { CA_FILES, materialEntries, materialFromEntries, type CaStore } from './store.js';

export const PLUGIN_CA_SECRET = 'cacerts';
export const DEFAULT_CA_SECRET = 'meshfed-ca';

export function secretToMaterial(secret: V1Secret): CaMaterial | undefined {
  const data = secret.data ?? {};
  const where = `Secret ${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}`;
  return materialFromEntries((f) => (data[f] === undefined ? undefined : Buffer.from(data[f], 'base64').toString('utf8')), where);
}

export function materialToSecret(m: CaMaterial, namespace: string, name: string, resourceVersion?: string): V1Secret {
  const data: Record<string, string> = {};
  for (const [file, content] of materialEntries(m)) data[file] = Buffer.from(content).toString('base64');
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: { name, namespace, resourceVersion, labels: { 'app.kubernetes.io/managed-by': 'meshfed' } },
    data,
  };
}

export function kubeCaStore(kc: KubeConfig, namespace: string, secretName: string = DEFAULT_CA_SECRET): CaStore {
  const api = kc.makeApiClient(CoreV1Api);
  const read = async (name: string): Promise<V1Secret | undefined> => {
    try {
      return await api.readNamespacedSecret({ name, namespace });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new Error(`reading Secret ${namespace}/${name}: ${apiErrorMessage(err)}`);
    }
  };
  // The Secret the material was loaded from (a rotation is saved back there), as last read or written.
  let source = secretName;
  let seen: V1Secret | undefined;
  let loaded = false;
  const load = async (): Promise<CaMaterial | undefined> => {
    for (const name of [PLUGIN_CA_SECRET, secretName]) {
      const secret = await read(name);
      const m = secret && secretToMaterial(secret);
      if (m) {
        [source, seen, loaded] = [name, secret, true];
        return m;
      }
    }
    [source, seen, loaded] = [secretName, undefined, true];
    return undefined;
  };
  return {
    get describe() {
      return loaded ? `Secret ${namespace}/${source}` : `Secret ${namespace}/${PLUGIN_CA_SECRET} or ${namespace}/${secretName}`;
    },
    load,
    async createIfAbsent(m) {
      try {
        seen = await api.createNamespacedSecret({ namespace, body: materialToSecret(m, namespace, secretName) });
        [source, loaded] = [secretName, true];
        return secretToMaterial(seen) ?? m;
      } catch (err) {
        if (statusOf(err) !== 409) throw new Error(`creating Secret ${namespace}/${secretName}: ${apiErrorMessage(err)}`);
      }
      const stored = await load();
      if (!stored) throw new Error(`Secret ${namespace}/${secretName} already exists but holds no CA material`);
      return stored;
    },
    async save(m) {
      const body = materialToSecret(m, namespace, source, seen?.metadata?.resourceVersion);
      // Keep whatever else an operator put there; CA files m does not hold (a finished rotation's next-*) go.
      const others = Object.entries(seen?.data ?? {}).filter(([k]) => !CA_FILES.includes(k));
      body.data = { ...Object.fromEntries(others), ...body.data };
      try {
        seen = seen
          ? await api.replaceNamespacedSecret({ name: source, namespace, body })
          : await api.createNamespacedSecret({ namespace, body });
      } catch (err) {
        if (statusOf(err) === 409)
          throw new Error(`Secret ${namespace}/${source} changed since it was read; nothing was written, try again`);
        throw new Error(`writing Secret ${namespace}/${source}: ${apiErrorMessage(err)}`);
      }
    },
    watch: (onChange) => watchSecrets(kc, namespace, [PLUGIN_CA_SECRET, secretName], onChange),
  };
}

/**
 * Watches each named Secret (a field selector per name) and calls onChange on every event. Each (re)connect
 * starts without a resourceVersion, so its first event is the Secret's current state: a change made while
 * disconnected is seen then. Reconnects with backoff after errors.
 */
function watchSecrets(kc: KubeConfig, namespace: string, names: readonly string[], onChange: () => void): () => void {
  const client = new KubeClient(kc, DEFAULT_LIMITS, () => onChange());
  let stopped = false;
  const controllers = new Map<string, AbortController>();
  const timers = new Set<NodeJS.Timeout>();
  const follow = (name: string, attempt: number): void => {
    const again = (err: unknown): void => {
      if (stopped) return;
      const next = err ? attempt + 1 : 0;
      const t = setTimeout(() => (timers.delete(t), follow(name, next)), Math.min(250 * 2 ** next, 30_000));
      t.unref();
      timers.add(t);
    };
    const watch = new GuardedWatch(client, 'Secret', () => {});
    void watch
      .watch(
        `/api/v1/namespaces/${namespace}/secrets`,
        { fieldSelector: `metadata.name=${name}` },
        (type) => {
          if (type !== 'BOOKMARK') onChange();
        },
        again,
      )
      .then((c) => (stopped ? c.abort() : controllers.set(name, c)));
  };
  for (const name of names) follow(name, 0);
  return () => {
    stopped = true;
    for (const t of timers) clearTimeout(t);
    for (const c of controllers.values()) c.abort();
    client.close();
  };
}
