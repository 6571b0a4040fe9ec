// Brings up this cluster's alliance identity (UUID, Ed25519 key pair, token minter) and, when asked, the metadata
// exporter. app.ts calls it once; the peer controller takes `mintToken` and supplies the PeerDirectory.
import { readFileSync } from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type client from 'prom-client';
import type { MeshSnapshot } from '../model/mesh.js';
import type { TrustBundles } from '../pki/index.js';
import type { IssuedCert } from '../pki/ca.js';
import { ApiProxy } from './api-proxy/server.js';
import { MetadataExporter } from './exporter/server.js';
import { checkClusterUuid, ephemeralClusterUuid, kubeClusterUuid } from './identity/cluster-uuid.js';
import { openAuthnKeys, type AuthnKeyStore } from './identity/key-store.js';
import { StaticPeerDirectory } from './static-peers.js';
import { tokenMinter } from './tokens/tokens.js';
import type { IngressGateway, PeerDirectory, TokenMinter } from './types.js';

export interface AllianceOptions {
  /** Else, with Kubernetes, the uid of Namespace kube-system; else a UUID for this run only. */
  readonly clusterUuid?: string;
  readonly keyStore: AuthnKeyStore;
  /** With a mesh file: the id of the local cluster (whose services and gateways are published). */
  readonly localClusterId?: string;
  /** Peers allowed to read private metadata; until the peer controller provides it, none. */
  readonly peers?: PeerDirectory;
  readonly exporter?: {
    readonly host: string;
    readonly port: number;
    /** Serve HTTPS with these PEM files, re-read when they change (a renewed certificate). */
    readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly reloadIntervalMs?: number };
    /** Serve federation.json (Deckhouse's FEDERATION_ENABLED). */
    readonly federation: boolean;
    /** Serve multicluster.json with this apiHost (Deckhouse's MULTICLUSTER_ENABLED + MULTICLUSTER_API_HOST). */
    readonly multiclusterApiHost?: string;
    readonly advertise?: readonly IngressGateway[];
  };
  /** The api-proxy (api-proxy/server.ts): peers read the local apiserver through it, with an `api` token. */
  readonly apiProxy?: {
    readonly host: string;
    readonly port: number;
    /** PEM files, re-read when they change; else a certificate from the mesh CA for these DNS names. */
    readonly tls: TlsFiles | { readonly dnsNames: readonly string[] };
    readonly maxInFlightPerPeer?: number;
  };
}

export interface AllianceDeps {
  /** The local cluster's apiserver, when meshfed runs with Kubernetes. */
  readonly kubeConfig?: KubeConfig;
  /** The local cluster's id in the mesh model with Kubernetes (the kube source's). */
  readonly kubeClusterId?: string;
  /** The mesh CA: its trust domain is the cluster domain; its roots are published. */
  readonly pki?: {
    readonly trustDomain: string;
    readonly roots: () => readonly string[];
    readonly bundles: TrustBundles;
    /** A serving certificate for these names (the api-proxy's, without certificate files). */
    readonly issueServer?: (dnsNames: readonly string[]) => IssuedCert;
    /** Called when the CA's roots change (a rotation): serving certificates are re-issued. */
    readonly onCaChange?: (fn: () => void) => () => void;
  };
  readonly snapshot: () => MeshSnapshot;
  readonly metrics: client.Registry;
  readonly log: Logger;
}

export interface Alliance {
  readonly clusterUuid: string;
  /** Deckhouse-labelled PEM, as public.json carries it. */
  readonly authnKeyPub: string;
  readonly mintToken: TokenMinter;
  readonly metadataPort: number | undefined;
  readonly apiProxyPort: number | undefined;
  /** Replaces the peers allowed to read private metadata and the api-proxy (the peer controller, built after it has mintToken). */
  usePeers(peers: PeerDirectory): void;
  close(): Promise<void>;
}

export async function startAlliance(o: AllianceOptions, deps: AllianceDeps): Promise<Alliance> {
  const log = deps.log;
  let clusterUuid: string;
  if (o.clusterUuid) clusterUuid = checkClusterUuid(o.clusterUuid);
  else if (deps.kubeConfig) clusterUuid = await kubeClusterUuid(deps.kubeConfig);
  else {
    clusterUuid = ephemeralClusterUuid();
    log.warn({ clusterUuid }, 'no --cluster-uuid: using a cluster UUID for this run only (peers learn the new one from public.json)');
  }
  const keys = await openAuthnKeys(o.keyStore);
  log.info({ clusterUuid, keys: o.keyStore.describe }, 'alliance identity ready');
  const mintToken = tokenMinter({ clusterUuid, privateKey: keys.privateKey });

  let peers: PeerDirectory = o.peers ?? new StaticPeerDirectory();
  let exporter: MetadataExporter | undefined;
  const stops: Array<() => void> = [];
  let metadataPort: number | undefined;
  // The exporter and the api-proxy read the same directory, whichever usePeers() installed last.
  const livePeers: PeerDirectory = { publicMetadata: (uuid, scope) => peers.publicMetadata(uuid, scope) };
  const e = o.exporter;
  if (e) {
    const pki = deps.pki;
    if (!pki) throw new Error("the metadata exporter publishes the mesh CA's root: give --trust-domain (or --kube)");
    const clusterId = deps.kubeClusterId ?? o.localClusterId;
    if (!clusterId) throw new Error("the metadata exporter needs the local cluster's id: give --cluster-id");
    if (!deps.kubeClusterId && !deps.snapshot().clusters.has(clusterId)) {
      log.warn(
        { clusterId },
        `metadata exporter: cluster ${clusterId} is not in the mesh (yet); it publishes no services or gateways (--cluster-id names the local cluster of the mesh file)`,
      );
    }
    exporter = new MetadataExporter({
      local: { clusterUuid, clusterDomain: pki.trustDomain, clusterId },
      authnKeyPub: keys.pubPem,
      rootCA: () => pki.roots().join(''),
      bundles: pki.bundles,
      snapshot: deps.snapshot,
      // INTEGRATION: the peer controller (branch fed-sources) hands over the PeerDirectory built from the peers'
      // fetched public metadata (o.peers, or usePeers() once it exists), for the exporter and the api-proxy alike;
      // until then every private request is refused as from an unknown cluster.
      peers: livePeers,
      federation: e.federation,
      multiclusterApiHost: e.multiclusterApiHost,
      advertise: e.advertise,
      tls: e.tls && readTls(e.tls),
      metrics: deps.metrics,
      log: log.child({ module: 'metadata-exporter' }),
    });
    metadataPort = await exporter.listen(e.host, e.port);
    if (e.tls) stops.push(watchTls(e.tls, exporter, 'metadata exporter', log));
    log.info(
      { metadataPort, scheme: exporter.scheme, federation: e.federation, multicluster: !!e.multiclusterApiHost },
      'metadata exporter is serving',
    );
  }
  let apiProxy: ApiProxy | undefined;
  let apiProxyPort: number | undefined;
  const a = o.apiProxy;
  if (a) {
    try {
      if (!deps.kubeConfig) throw new Error('the api-proxy forwards to the local apiserver: give --kube or --kubeconfig');
      const files = 'certFile' in a.tls ? a.tls : undefined;
      const issue = !files && deps.pki?.issueServer;
      if (!files && !issue)
        throw new Error(
          'the api-proxy needs a certificate: give --api-proxy-tls-cert and --api-proxy-tls-key, or the mesh CA (--trust-domain or --kube)',
        );
      const dnsNames = 'dnsNames' in a.tls ? a.tls.dnsNames : [];
      const issued = issue ? issue(dnsNames) : undefined;
      const first = issued ? { cert: issued.certChainPem, key: issued.privateKeyPem } : readTls(files!, 'api-proxy');
      const proxy = (apiProxy = new ApiProxy({
        clusterUuid,
        peers: livePeers,
        kubeConfig: deps.kubeConfig,
        tls: first,
        maxInFlightPerPeer: a.maxInFlightPerPeer,
        metrics: deps.metrics,
        log: log.child({ module: 'api-proxy' }),
      }));
      apiProxyPort = await proxy.listen(a.host, a.port);
      if (issue && issued) stops.push(renewFromMeshCa(issue, dnsNames, issued.notAfter, deps.pki?.onCaChange, proxy, log));
      else if (files) stops.push(watchTls(files, proxy, 'api-proxy', log));
      log.info({ apiProxyPort, certificate: files ? files.certFile : 'mesh CA' }, 'api-proxy is serving');
    } catch (err) {
      // Nothing started here may keep the process alive after a failed start.
      for (const stop of stops) stop();
      await exporter?.close();
      throw err;
    }
  }
  return {
    clusterUuid,
    authnKeyPub: keys.pubPem,
    mintToken,
    metadataPort,
    apiProxyPort,
    usePeers: (p) => {
      peers = p;
    },
    close: async () => {
      for (const stop of stops) stop();
      await Promise.all([exporter?.close(), apiProxy?.close()]);
    },
  };
}

type TlsFiles = NonNullable<NonNullable<AllianceOptions['exporter']>['tls']>;

function readTls(f: TlsFiles, server = 'metadata'): { cert: string; key: string } {
  const read = (what: string, file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`${server} TLS ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  return { cert: read('certificate', f.certFile), key: read('key', f.keyFile) };
}

interface TlsServer {
  reloadTls(tls: { cert: string; key: string }): void;
}

/** Polls the files (a mounted Secret is replaced, not written in place) and hands a changed pair to the server. */
function watchTls(f: TlsFiles, server: TlsServer, name: string, log: Logger): () => void {
  let last = JSON.stringify(readTls(f, name));
  const check = (): void => {
    try {
      const next = readTls(f, name);
      const text = JSON.stringify(next);
      if (text === last) return;
      server.reloadTls(next);
      last = text;
      log.info({ cert: f.certFile }, `${name}: serving the renewed TLS certificate`);
    } catch (err) {
      log.warn((err as Error).message);
    }
  };
  const timer = setInterval(check, f.reloadIntervalMs ?? 30_000);
  timer.unref();
  return () => clearInterval(timer);
}

/** Re-issues the serving certificate at half its remaining lifetime and when the CA's roots change (as xDS TLS does). */
function renewFromMeshCa(
  issue: (dnsNames: readonly string[]) => IssuedCert,
  dnsNames: readonly string[],
  firstNotAfter: Date,
  onCaChange: ((fn: () => void) => () => void) | undefined,
  server: TlsServer,
  log: Logger,
): () => void {
  let timer: NodeJS.Timeout | undefined;
  const schedule = (notAfter: Date): void => {
    clearTimeout(timer);
    timer = setTimeout(renew, Math.min(Math.max(1000, (notAfter.getTime() - Date.now()) / 2), 2 ** 31 - 1));
    timer.unref();
  };
  const renew = (): void => {
    try {
      const c = issue(dnsNames);
      server.reloadTls({ cert: c.certChainPem, key: c.privateKeyPem });
      schedule(c.notAfter);
      log.info({ notAfter: c.notAfter.toISOString() }, 'api-proxy: serving certificate issued by the mesh CA');
    } catch (err) {
      log.warn((err as Error).message);
      schedule(new Date(Date.now() + 60_000));
    }
  };
  schedule(firstNotAfter);
  const off = onCaChange?.(renew) ?? (() => undefined);
  return () => {
    clearTimeout(timer);
    off();
  };
}
