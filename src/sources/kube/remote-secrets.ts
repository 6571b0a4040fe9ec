// Remote secrets, Istio's format: Secrets labelled istio/multiCluster=true in meshfed's namespace, each
// data key a cluster id and its value (base64) that cluster's kubeconfig. meshfed also reads two
// optional annotations on such a Secret, applying to every cluster in it:
//   meshfed.io/network         the clusters' network (else the remote's own meshfed namespace's
//                              topology.istio.io/network label, else the cluster id)
//   meshfed.io/cluster-domain  the clusters' domain, which is also their trust domain (default cluster.local)
import { createHash } from 'node:crypto';
import type { SecretObj } from './objects.js';

export const LABEL_MULTICLUSTER = 'istio/multiCluster';
export const MULTICLUSTER_SELECTOR = `${LABEL_MULTICLUSTER}=true`;
export const ANNOTATION_NETWORK = 'meshfed.io/network';
export const ANNOTATION_DOMAIN = 'meshfed.io/cluster-domain';

export interface RemoteSpec {
  readonly id: string;
  /** `namespace/name` of the Secret that names it. */
  readonly secret: string;
  readonly kubeconfig: string;
  readonly network?: string;
  readonly domain: string;
  /** Changes whenever anything above changes: a different hash means new watches. */
  readonly hash: string;
}

export interface SecretsView {
  readonly remotes: Map<string, RemoteSpec>;
  /** Cluster ids refused, with why (duplicate, the local cluster's own id, bad data). */
  readonly refused: { secret: string; id: string; reason: string }[];
}

/** Which remote clusters the Secrets name. The first Secret (by name) that names an id wins it. */
export function remotesFromSecrets(secrets: Iterable<SecretObj>, localId: string, defaultDomain: string): SecretsView {
  const remotes = new Map<string, RemoteSpec>();
  const refused: SecretsView['refused'] = [];
  const sorted = [...secrets].sort((a, b) => (secretName(a) < secretName(b) ? -1 : 1));
  for (const s of sorted) {
    const secret = secretName(s);
    const network = s.metadata.annotations?.[ANNOTATION_NETWORK] || undefined;
    const domain = s.metadata.annotations?.[ANNOTATION_DOMAIN] || defaultDomain;
    for (const id of Object.keys(s.data ?? {}).sort()) {
      if (id === localId) {
        refused.push({ secret, id, reason: 'this is the local cluster\'s own id' });
        continue;
      }
      const owner = remotes.get(id);
      if (owner) {
        refused.push({ secret, id, reason: `already named by secret ${owner.secret}` });
        continue;
      }
      const kubeconfig = Buffer.from(s.data![id]!, 'base64').toString('utf8');
      const hash = createHash('sha256').update(`${kubeconfig}\n${network ?? ''}\n${domain}`).digest('hex').slice(0, 16);
      remotes.set(id, { id, secret, kubeconfig, network, domain, hash });
    }
  }
  return { remotes, refused };
}

function secretName(s: SecretObj): string {
  return `${s.metadata.namespace ?? ''}/${s.metadata.name}`;
}
