// Remote secrets, Istio's format: Secrets labelled istio/multiCluster=true in meshfed's namespace, each
// data key a cluster id and its value (base64) that cluster's kubeconfig. meshfed also reads two
// optional annotations on such a Secret, applying to every cluster in it:
//   meshfed.io/network         the clusters' network (else the remote's own meshfed namespace's
//                              topology.istio.io/network label, else the cluster id)
//   meshfed.io/cluster-domain  the clusters' domain, which is also their trust domain (default cluster.local)
//
// The second input: multicluster peers (IstioMulticluster CRs, mesh-file `multiclusters:`), whose metadata names an
// api-proxy. Each becomes the same RemoteSpec a Secret gives, with the kubeconfig Deckhouse writes into its remote
// Secret (server https://<apiHost>, the CR's CA settings, the `api` token), so the same watches, guard and
// make-before-break swaps apply: a new token or apiHost is a new kubeconfig, hence new watches beside the old.
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import type { SecretObj } from './objects.js';

export const LABEL_MULTICLUSTER = 'istio/multiCluster';
export const MULTICLUSTER_SELECTOR = `${LABEL_MULTICLUSTER}=true`;
export const ANNOTATION_NETWORK = 'meshfed.io/network';
export const ANNOTATION_DOMAIN = 'meshfed.io/cluster-domain';
/**
 * On a remote Secret meshfed wrote for a multicluster peer (--write-remote-secrets): a label (value `true`; an older
 * meshfed put the peer's name there) and an annotation with the peer's name. meshfed's own kube source skips such
 * Secrets: it watches the peer's cluster from the peer itself, with its network and root.
 */
export const MANAGED_BY_PEER = 'meshfed.io/multicluster-peer';

export interface RemoteSpec {
  readonly id: string;
  /** `namespace/name` of the Secret that names it. */
  readonly secret: string;
  readonly kubeconfig: string;
  readonly network?: string;
  readonly domain: string;
  /** Changes whenever anything above changes: a different hash means new watches. */
  readonly hash: string;
  /** A multicluster peer's: its name, root (joins the local trust domain's bundle) and gateways from its metadata. */
  readonly peer?: { readonly name: string; readonly rootCaPem: string; readonly gateways: readonly { address: string; port: number }[] };
}

/** A multicluster peer's remote cluster, as the peer controller learned it from the peer's metadata. */
export interface PeerRemote {
  /** The IstioMulticluster's (or mesh-file entry's) name. */
  readonly name: string;
  /** The peer's clusterID (multicluster.json), else Deckhouse's formula from its UUID. */
  readonly clusterId: string;
  /** `https://<apiHost>`. */
  readonly server: string;
  readonly ca?: string;
  readonly insecureSkipVerify?: boolean;
  /** Bearer token (scope `api`). */
  readonly token: string;
  /** The peer's networkName; undefined: a flat network (the local cluster's network, pod IPs directly). */
  readonly network: string | undefined;
  readonly rootCaPem: string;
  /** The peer's ingress gateways (empty on a flat network). */
  readonly gateways: readonly { address: string; port: number }[];
}

/** Istio's remote-secret kubeconfig for a peer, as Deckhouse writes it (deckhouse.md §3). */
export function peerKubeconfig(p: Pick<PeerRemote, 'clusterId' | 'server' | 'ca' | 'insecureSkipVerify' | 'token'>): string {
  const cluster = p.ca
    ? { server: p.server, 'certificate-authority-data': Buffer.from(p.ca).toString('base64') }
    : { server: p.server, ...(p.insecureSkipVerify ? { 'insecure-skip-tls-verify': true } : {}) };
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: p.clusterId, cluster }],
    users: [{ name: p.clusterId, user: { token: p.token } }],
    contexts: [{ name: p.clusterId, context: { cluster: p.clusterId, user: p.clusterId } }],
    'current-context': p.clusterId,
  });
}

/**
 * Adds the peers' clusters to a Secrets view. A cluster id already named by a Secret (or the local id, or an
 * earlier peer: `peers` come in the order they were declared) is refused for the peer: hand-made Secrets win, as
 * the first Secret wins among Secrets.
 */
export function addPeerRemotes(
  view: SecretsView,
  peers: Iterable<PeerRemote>,
  localId: string,
  domain: string,
  localNetwork: string,
): SecretsView {
  const remotes = new Map(view.remotes);
  const refused = [...view.refused];
  for (const p of peers) {
    const secret = `multicluster/${p.name}`;
    const owner =
      p.clusterId === localId
        ? "this is the local cluster's own id"
        : remotes.has(p.clusterId)
          ? `already named by ${remotes.get(p.clusterId)!.secret}`
          : undefined;
    if (owner) {
      refused.push({ secret, id: p.clusterId, reason: owner });
      continue;
    }
    const kubeconfig = peerKubeconfig(p);
    const network = p.network ?? localNetwork;
    const hash = specHash(kubeconfig, network, domain);
    remotes.set(p.clusterId, {
      id: p.clusterId,
      secret,
      kubeconfig,
      network,
      domain,
      hash,
      peer: { name: p.name, rootCaPem: p.rootCaPem, gateways: p.gateways },
    });
  }
  return { remotes, refused };
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
    if (s.metadata.labels?.[MANAGED_BY_PEER] !== undefined) continue;
    const secret = secretName(s);
    const network = s.metadata.annotations?.[ANNOTATION_NETWORK] || undefined;
    const domain = s.metadata.annotations?.[ANNOTATION_DOMAIN] || defaultDomain;
    for (const id of Object.keys(s.data ?? {}).sort()) {
      if (id === localId) {
        refused.push({ secret, id, reason: "this is the local cluster's own id" });
        continue;
      }
      const owner = remotes.get(id);
      if (owner) {
        refused.push({ secret, id, reason: `already named by secret ${owner.secret}` });
        continue;
      }
      const kubeconfig = Buffer.from(s.data![id]!, 'base64').toString('utf8');
      const hash = specHash(kubeconfig, network, domain);
      remotes.set(id, { id, secret, kubeconfig, network, domain, hash });
    }
  }
  return { remotes, refused };
}

function secretName(s: SecretObj): string {
  return `${s.metadata.namespace ?? ''}/${s.metadata.name}`;
}

/** What a remote cluster's watches depend on: a change of any of it starts new watches (make-before-break). */
function specHash(kubeconfig: string, network: string | undefined, domain: string): string {
  return createHash('sha256')
    .update(`${kubeconfig}\n${network ?? ''}\n${domain}`)
    .digest('hex')
    .slice(0, 16);
}
