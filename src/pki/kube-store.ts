// CA material in Kubernetes Secrets: Istio's plug-in `cacerts` when present, else meshfed's own Secret, created
// once (409 AlreadyExists means a concurrent replica won: read its root back).
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { CaMaterial } from './material.js';
import { CACERTS_KEYS, materialFromEntries, type CaStore } from './store.js';

export const PLUGIN_CA_SECRET = 'cacerts';
export const DEFAULT_CA_SECRET = 'meshfed-ca';

function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export function secretToMaterial(secret: V1Secret): CaMaterial | undefined {
  const data = secret.data ?? {};
  const where = `Secret ${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}`;
  return materialFromEntries((f) => (data[f] === undefined ? undefined : Buffer.from(data[f], 'base64').toString('utf8')), where);
}

export function materialToSecret(m: CaMaterial, namespace: string, name: string, resourceVersion?: string): V1Secret {
  const data: Record<string, string> = {};
  for (const [field, file] of Object.entries(CACERTS_KEYS) as [keyof CaMaterial, string][]) data[file] = Buffer.from(m[field]).toString('base64');
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
      throw new Error(`reading Secret ${namespace}/${name}: ${(err as Error).message}`);
    }
  };
  // The Secret the material was loaded from: a rotation is saved back there.
  let source = secretName;
  const load = async (): Promise<CaMaterial | undefined> => {
    for (const name of [PLUGIN_CA_SECRET, secretName]) {
      const secret = await read(name);
      const m = secret && secretToMaterial(secret);
      if (m) {
        source = name;
        return m;
      }
    }
    return undefined;
  };
  return {
    describe: `Secret ${namespace}/${PLUGIN_CA_SECRET} or ${namespace}/${secretName}`,
    load,
    async createIfAbsent(m) {
      try {
        const created = await api.createNamespacedSecret({ namespace, body: materialToSecret(m, namespace, secretName) });
        source = secretName;
        return secretToMaterial(created) ?? m;
      } catch (err) {
        if (statusOf(err) !== 409) throw new Error(`creating Secret ${namespace}/${secretName}: ${(err as Error).message}`);
      }
      const stored = await load();
      if (!stored) throw new Error(`Secret ${namespace}/${secretName} already exists but holds no CA material`);
      return stored;
    },
    async save(m) {
      const current = await read(source);
      const body = materialToSecret(m, namespace, source, current?.metadata?.resourceVersion);
      body.data = { ...current?.data, ...body.data }; // keep whatever else an operator put there
      if (current) await api.replaceNamespacedSecret({ name: source, namespace, body });
      else await api.createNamespacedSecret({ namespace, body });
    },
  };
}
