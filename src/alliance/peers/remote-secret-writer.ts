// --write-remote-secrets: Istio's remote Secret for each multicluster peer, as Deckhouse writes it (deckhouse.md §3),
// so an istiod beside meshfed watches the same remote clusters: `istio-remote-secret-<name>`, label
// istio/multiCluster=true, annotation networking.istio.io/cluster=<clusterID>, data <clusterID> = the kubeconfig
// (https://<apiHost>, the CR's CA settings, the `api` token). Written by the Lease holder only. A Secret it wrote is
// deleted only once its peer is no longer declared (CR or mesh-file entry gone), never because the peer has not
// polled yet (a restart, a metadata outage): istiod would drop that cluster. meshfed's own kube source ignores
// them (MANAGED_BY_PEER): it has the peer itself.
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { parse } from 'yaml';
import { apiErrorMessage, statusOf } from '../../kube/api-error.js';
import { type ApiTokenPolicy, type HeldToken, storedApiToken } from './api-token.js';
import { LABEL_MULTICLUSTER, MANAGED_BY_PEER, type PeerRemote, peerKubeconfig } from '../../sources/kube/remote-secrets.js';

const RESYNC_MS = 60_000;
export const ANNOTATION_ISTIO_CLUSTER = 'networking.istio.io/cluster';

export const remoteSecretName = (peer: string): string => `istio-remote-secret-${peer}`;

/** The peer a Secret meshfed wrote is for: the annotation, else (written by an older meshfed) the label's value. */
const peerOf = (s: V1Secret): string => s.metadata?.annotations?.[MANAGED_BY_PEER] ?? s.metadata?.labels?.[MANAGED_BY_PEER] ?? '';

export function remoteSecret(p: PeerRemote, namespace: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: remoteSecretName(p.name),
      namespace,
      // The peer's name is no label value (those are at most 63 characters): a fixed label finds the Secrets.
      labels: { [LABEL_MULTICLUSTER]: 'true', [MANAGED_BY_PEER]: 'true' },
      annotations: { [ANNOTATION_ISTIO_CLUSTER]: p.clusterId, [MANAGED_BY_PEER]: p.name },
    },
    type: 'Opaque',
    data: { [p.clusterId]: Buffer.from(peerKubeconfig(p)).toString('base64') },
  };
}

export class RemoteSecretWriter {
  private readonly api: CoreV1Api;
  private wanted: readonly PeerRemote[] = [];
  /** Names of every declared multicluster peer; undefined until every origin has declared its peers. */
  private declared: ReadonlySet<string> | undefined;
  private running = false;
  private again = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly isLeader: () => boolean,
    private readonly log: Logger,
  ) {
    this.api = kc.makeApiClient(CoreV1Api);
    // Also after a leadership change, and over a Secret someone edited or deleted.
    this.timer = setInterval(() => this.sync(), RESYNC_MS);
    this.timer.unref();
  }

  /** `remotes`: the peers with metadata to write; `declared`: every declared peer's name (undefined: not known yet). */
  setPeerRemotes(remotes: readonly PeerRemote[], declared: ReadonlySet<string> | undefined): void {
    this.wanted = remotes;
    this.declared = declared;
    this.sync();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * The `api` token in the peer's Secret, if it may be kept (storedApiToken): found as Deckhouse's merge hook finds
   * it (the annotation names the data key, else the first key; its kubeconfig's first users[].user.token).
   */
  async storedToken(peer: string, audience: string, publicKeyPem: string, policy: ApiTokenPolicy): Promise<HeldToken | undefined> {
    let s: V1Secret;
    try {
      s = await this.api.readNamespacedSecret({ name: remoteSecretName(peer), namespace: this.namespace });
    } catch (err) {
      if (statusOf(err) !== 404)
        this.log.warn({ peer }, `could not read the remote Secret of multicluster peer ${peer}: ${apiErrorMessage(err)}`);
      return undefined;
    }
    if (s.metadata?.labels?.[MANAGED_BY_PEER] === undefined) return undefined;
    const key = s.metadata.annotations?.[ANNOTATION_ISTIO_CLUSTER] ?? Object.keys(s.data ?? {}).sort()[0];
    const value = key === undefined ? undefined : s.data?.[key];
    if (!value) return undefined;
    try {
      let text = Buffer.from(value, 'base64').toString('utf8');
      // Deckhouse also accepts a kubeconfig that is base64 once more.
      if (!/^\s*(apiVersion|kind|clusters|users|contexts|current-context|preferences)\s*:|^\s*\{/m.test(text))
        text = Buffer.from(text, 'base64').toString('utf8');
      const token = (parse(text) as { users?: Array<{ user?: { token?: unknown } }> } | null)?.users?.[0]?.user?.token;
      return typeof token === 'string' ? await storedApiToken(token, audience, publicKeyPem, policy) : undefined;
    } catch {
      return undefined;
    }
  }

  private sync(): void {
    if (!this.isLeader()) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.write()
      .catch((err: unknown) =>
        this.log.warn({ namespace: this.namespace }, `could not list the multicluster peers' remote Secrets: ${apiErrorMessage(err)}`),
      )
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.sync();
        }
      });
  }

  private async write(): Promise<void> {
    const ns = this.namespace;
    const want = new Map<string, V1Secret>();
    for (const p of this.wanted) {
      const name = remoteSecretName(p.name);
      // Each Secret on its own: one peer's unusable name or a failed write does not stop the others.
      if (name.length > 253)
        this.log.warn(
          { peer: p.name },
          `multicluster peer ${p.name}: no remote Secret, its name ${name.slice(0, 40)}… is longer than 253 characters`,
        );
      else want.set(name, remoteSecret(p, ns));
    }
    for (const [name, body] of want) {
      try {
        await this.writeOne(name, body);
      } catch (err) {
        this.log.warn({ secret: `${ns}/${name}` }, `could not write the remote Secret ${ns}/${name}: ${apiErrorMessage(err)}`);
      }
    }
    const declared = this.declared;
    if (!declared) return;
    const mine = await this.api.listNamespacedSecret({ namespace: ns, labelSelector: MANAGED_BY_PEER });
    for (const s of mine.items) {
      const name = s.metadata?.name ?? '';
      if (want.has(name) || declared.has(peerOf(s))) continue;
      try {
        await this.api.deleteNamespacedSecret({ name, namespace: ns });
        this.log.info({ secret: `${ns}/${name}` }, 'deleted the remote Secret of a multicluster peer that is gone');
      } catch (err) {
        if (statusOf(err) !== 404)
          this.log.warn({ secret: `${ns}/${name}` }, `could not delete the remote Secret ${ns}/${name}: ${apiErrorMessage(err)}`);
      }
    }
  }

  private async writeOne(name: string, body: V1Secret): Promise<void> {
    const ns = this.namespace;
    let cur: V1Secret | undefined;
    try {
      cur = await this.api.readNamespacedSecret({ name, namespace: ns });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    if (cur && cur.metadata?.labels?.[MANAGED_BY_PEER] === undefined) {
      this.log.warn({ secret: `${ns}/${name}` }, 'a remote Secret of that name exists and was not written by meshfed; left alone');
      return;
    }
    const same = (k: string) => cur?.metadata?.annotations?.[k] === body.metadata!.annotations![k];
    if (
      cur &&
      JSON.stringify(cur.data) === JSON.stringify(body.data) &&
      same(ANNOTATION_ISTIO_CLUSTER) &&
      same(MANAGED_BY_PEER) &&
      cur.metadata?.labels?.[MANAGED_BY_PEER] === 'true'
    )
      return;
    if (cur)
      await this.api.replaceNamespacedSecret({
        name,
        namespace: ns,
        body: { ...body, metadata: { ...body.metadata, resourceVersion: cur.metadata?.resourceVersion } },
      });
    else await this.api.createNamespacedSecret({ namespace: ns, body });
    this.log.info({ secret: `${ns}/${name}` }, 'wrote the remote Secret of a multicluster peer');
  }
}
