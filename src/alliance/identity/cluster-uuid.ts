// The cluster's UUID: what peers know it by (`clusterUUID` in public.json, `sub`/`aud` of tokens). Deckhouse uses
// `global.discovery.clusterUUID`; with Kubernetes meshfed takes the kube-system Namespace's uid, which is set at
// cluster creation and never changes, so every replica and every restart agree without storing anything.
import { randomUUID } from 'node:crypto';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';

/** Characters a UUID flag may hold: it travels in JSON, tokens and metric labels. */
const UUID_RE = /^[0-9A-Za-z._-]{1,128}$/;

export function checkClusterUuid(v: string): string {
  if (!UUID_RE.test(v)) throw new Error(`cluster UUID "${v}" must be 1-128 characters of letters, digits, ".", "_" or "-"`);
  return v;
}

/** `metadata.uid` of Namespace kube-system. */
export async function kubeClusterUuid(kc: KubeConfig): Promise<string> {
  let uid: string | undefined;
  try {
    uid = (await kc.makeApiClient(CoreV1Api).readNamespace({ name: 'kube-system' })).metadata?.uid;
  } catch (err) {
    throw new Error(
      `the cluster UUID is the uid of Namespace kube-system, which could not be read (${kubeErrorLine(err)}); give --cluster-uuid`,
    );
  }
  if (!uid) throw new Error('Namespace kube-system has no metadata.uid; give --cluster-uuid');
  return checkClusterUuid(uid);
}

/** Without a flag or Kubernetes: a UUID for this run only (peers re-read public.json and learn the new one). */
export const ephemeralClusterUuid = (): string => randomUUID();

/** A client-node error on one line: `HTTP 404: namespaces "kube-system" not found`, not its multi-line dump. */
export function kubeErrorLine(err: unknown): string {
  const e = err as { code?: unknown; body?: unknown; message?: string };
  if (typeof e.code !== 'number') return (e.message ?? String(err)).split('\n')[0]!;
  let message: unknown;
  try {
    message = (JSON.parse(String(e.body)) as { message?: unknown }).message;
  } catch {
    message = undefined;
  }
  return typeof message === 'string' ? `HTTP ${e.code}: ${message}` : `HTTP ${e.code}`;
}
