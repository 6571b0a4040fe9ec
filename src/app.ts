// Wires one meshfed process: sources → registry → generators → store → xDS streams,
// plus the admin and debug HTTP servers. The CLI and the tests start meshfed through here.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { adminNotFound, adminRoutes, debugRoutes, HttpPages, NeedsFlag, type ReadinessCheck } from './admin/http.js';
import { type Alliance, type AllianceOptions, startAlliance } from './alliance/start.js';
import { Metrics } from './admin/metrics.js';
import { DEFAULT_MESH_SOURCE, loadDefaultMesh } from './config/default-mesh.js';
import type { KubeConfig } from '@kubernetes/client-node';
import type { SdsConfig } from './generate/generator.js';
import { createGenerators } from './generate/index.js';
import { istioGenerators } from './generate/istio.js';
import { PENDING, type WorkloadSecrets } from './generate/sds.js';
import { TypeUrl } from './envoy/protos.js';
import {
  CertificateAuthority,
  type CaStore,
  type KeyType,
  parseSpiffeId,
  serveSpiffeBundle,
  SPIFFE_BUNDLE_PATH,
  spiffeId,
  TrustBundles,
  WorkloadCertCache,
} from './pki/index.js';
import { MeshAuthenticator, TokenReviewer } from './auth/authenticators.js';
import { registerIstioCa } from './auth/istio-ca.js';
import { meshStreamPolicy } from './auth/policy.js';
import { PlaintextAuthenticator } from './xds/auth.js';
import { XdsServerCredentials } from './xds/tls.js';
import { createLogger } from './log.js';
import { Registry } from './registry/registry.js';
import { registerAdminApi } from './sources/admin/admin-api.js';
import type { MeshFileError } from './sources/file/errors.js';
import { FileSource } from './sources/file/file-source.js';
import { meshToSource } from './sources/file/to-model.js';
import { CLUSTER_STATES, KUBE_DEFAULTS, KubeSource, type KubeSourceOptions, localKubeConfig } from './sources/kube/index.js';
import { defaultIdentity, LeaseLeadership, SOLE_LEADER, type Leadership } from './leader/index.js';
import { XdsServer } from './xds/server.js';
import { XDS_LIMITS, type XdsLimits } from './xds/limits.js';
import { XdsStore } from './xds/store.js';
import { PEER_DEFAULTS, PeerController } from './alliance/peers/controller.js';
import { IstioPeerWatch } from './alliance/peers/kube.js';
import { type ApiTokenPolicy, DECKHOUSE_API_TOKEN } from './alliance/peers/api-token.js';
import { RemoteSecretWriter } from './alliance/peers/remote-secret-writer.js';
import { registerPeerMetrics } from './alliance/peers/metrics.js';
import type { TokenMinter } from './alliance/types.js';
import { FederationSource } from './sources/federation/federation-source.js';
import type { GuardOptions } from './sources/kube/remote-guard.js';
import { ServiceEntrySource } from './sources/kube/service-entries.js';

export interface MeshfedOptions {
  /** Mesh description file; the embedded two-cluster default when absent. */
  readonly config?: string;
  readonly xdsHost?: string;
  /** 0 picks a free port. */
  readonly xdsPort?: number;
  /** Probes, metrics and the SPIFFE bundle. */
  readonly adminHost?: string;
  readonly adminPort?: number;
  /** The /debug/* pages: mesh internals, loopback by default. */
  readonly debugHost?: string;
  readonly debugPort?: number; // default: any free port (the CLI passes 18002)
  readonly debounceMs?: number;
  readonly debounceMaxMs?: number;
  /** Serve meshfed.v1.AdminService on the xDS port: in plaintext for anyone (test harnesses), over TLS for adminIdentities. */
  readonly enableAdminApi?: boolean;
  /** With xdsTls: the SPIFFE ids whose mesh-CA certificates may call the admin API. */
  readonly adminIdentities?: readonly string[];
  /** Let the admin API apply raw Secrets (they would be pushed to every identity that asks for the name). */
  readonly adminApiAllowSecrets?: boolean;
  /** The mesh file's size limit (default DEFAULT_MAX_MESH_FILE_BYTES). */
  readonly maxConfigBytes?: number;
  readonly sendBudgetBytes?: number;
  /** What one client may ask of the xDS server (unset fields: XDS_LIMITS). */
  readonly xdsLimits?: Partial<XdsLimits>;
  /** Where sidecars and gateways fetch SDS secrets: meshfed over ADS (default), or istio-agent's `sds-grpc`. */
  readonly sdsConfig?: SdsConfig;
  /** Kubernetes discovery (local cluster and remote secrets); unset fields take KUBE_DEFAULTS. */
  readonly kube?: Partial<KubeSourceOptions>;
  readonly log?: Logger;
  /** The mesh CA: workload certificates and the trust bundle over SDS. Without it, no secrets. */
  readonly pki?: {
    readonly trustDomain: string;
    readonly caStore: CaStore;
    readonly workloadTtlMs?: number;
    readonly keyType?: KeyType;
  };
  /** Serve xDS over TLS, with a certificate from the mesh CA for these DNS names (needs pki). */
  readonly xdsTls?: { readonly dnsNames: readonly string[] };
  /** With xdsTls: also serve xDS in plaintext here (anonymous: configuration only, no secrets). */
  readonly xdsPlaintextHost?: string;
  readonly xdsPlaintextPort?: number;
  /** Development only: on plaintext, take the identity from node metadata (NAMESPACE, SERVICE_ACCOUNT). */
  readonly insecureDevIdentity?: boolean;
  /** Check service-account tokens with TokenReview against this apiserver. */
  readonly tokenReview?: { readonly kubeConfig: KubeConfig; readonly audience?: string };
  /**
   * Istio config for istiod's config source (ServiceEntry, DestinationRule per federation import):
   * the namespace it appears in (default: kube's namespace, else `meshfed`). Imports are services of
   * trust domains other than the mesh CA's (else the cluster domain with kube; none without either).
   */
  readonly istioConfig?: { readonly namespace?: string };
  /** The local cluster's id without kube (with kube: kube.clusterId); the CA API accepts this ClusterID header. */
  readonly clusterId?: string;
  /** Federation peers: IstioFederation CRs (with kube) and the mesh file's `federations:`. */
  readonly federation?: FederationOptions;
  /** This cluster's identity among peers (UUID, Ed25519 key) and the metadata exporter (src/alliance/). */
  readonly alliance?: AllianceOptions;
  /** With kube: leader election on a Lease in kube.namespace (holder: identity, the pod name by default). */
  readonly lease?: { readonly durationMs?: number; readonly identity?: string };
}

export interface FederationOptions {
  /** Mints the Bearer tokens for peers' private metadata. Default: none, so private fetches fail (TokenGenerationFailed). */
  readonly mintToken?: TokenMinter;
  /** The replica that writes CR status (Lease election); default: this one. */
  readonly isLeader?: () => boolean;
  readonly pollIntervalMs?: number;
  readonly fetchTimeoutMs?: number;
  /** Keep → demote → withdraw of an unanswering peer's imports; default: the remote-cluster defaults (or opts.kube.remote). */
  readonly remote?: Partial<GuardOptions>;
  /** With kube: watch IstioFederation CRs (default true). */
  readonly watchCrs?: boolean;
  /** With kube: watch IstioMulticluster CRs (default true). */
  readonly watchMulticlusterCrs?: boolean;
  /** The multicluster `api` token's lifetime and renewal; default Deckhouse's (366 days, re-minted under 30 left). */
  readonly apiToken?: ApiTokenPolicy;
  /** With kube: also write Istio's remote Secret of each multicluster peer into this namespace (for an istiod beside). */
  readonly writeRemoteSecrets?: string;
}

// A peer accepts our tokens only once it has fetched our public.json (its allow-list): federating needs this
// cluster's exporter, and the exporter brings the identity that mints them.
const NO_MINTER: TokenMinter = () =>
  Promise.reject(
    new Error(
      'no cluster identity to sign with: start meshfed with --metadata-address (peers authenticate this cluster by the key it publishes there)',
    ),
  );

export interface MeshfedPki {
  readonly ca: CertificateAuthority;
  readonly certs: WorkloadCertCache;
  readonly bundles: TrustBundles;
}

export interface Meshfed {
  readonly xdsPort: number;
  /** The plaintext xDS port next to a TLS one, if any. */
  readonly xdsPlaintextPort: number | undefined;
  readonly adminPort: number;
  readonly debugPort: number;
  readonly pki: MeshfedPki | undefined;
  /** Whether this replica acts for all (CA creation and rotation, status writes); always outside Kubernetes. */
  readonly leadership: Leadership;
  readonly registry: Registry;
  readonly store: XdsStore;
  readonly xds: XdsServer;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Federation peers; also the PeerDirectory (allow-list of peers' public metadata) the exporter checks tokens against. */
  readonly peers: PeerController;
  readonly alliance: Alliance | undefined;
  /** Stops accepting, asks proxies to reconnect elsewhere, and closes within graceMs. */
  stop(graceMs?: number): Promise<void>;
}

export const DEFAULTS = {
  xdsHost: '0.0.0.0',
  xdsPort: 18000,
  adminHost: '0.0.0.0',
  adminPort: 18001,
  debugHost: '127.0.0.1',
  debugPort: 18002,
  debounceMs: 100,
  debounceMaxMs: 10_000,
} as const;

export async function startMeshfed(opts: MeshfedOptions = {}): Promise<Meshfed> {
  // An admin identity with a typo would never match, silently: only ids a mesh-CA certificate can carry.
  const td = opts.pki?.trustDomain;
  const badAdmin = opts.xdsTls && opts.adminIdentities?.find((id) => parseSpiffeId(id)?.trustDomain !== td);
  if (badAdmin)
    throw new Error(
      `--admin-identities: "${badAdmin}" is not a SPIFFE id of trust domain ${td} (spiffe://${td}/ns/<namespace>/sa/<service account>)`,
    );
  const log = opts.log ?? createLogger();
  const metrics = new Metrics();
  const lease =
    opts.kube &&
    (await LeaseLeadership.start({
      kubeConfig: localKubeConfig(opts.kube.kubeconfig),
      namespace: opts.kube.namespace ?? KUBE_DEFAULTS.namespace,
      identity: opts.lease?.identity ?? defaultIdentity(),
      durationMs: opts.lease?.durationMs,
      log: log.child({ module: 'leader' }),
    }));
  const leadership = lease || SOLE_LEADER;
  const pki = opts.pki && (await openPki(opts.pki, leadership, log));
  const istio = {
    namespace: opts.istioConfig?.namespace ?? opts.kube?.namespace ?? KUBE_DEFAULTS.namespace,
    trustDomain: opts.pki?.trustDomain ?? (opts.kube ? (opts.kube.clusterDomain ?? KUBE_DEFAULTS.clusterDomain) : ''),
  };
  const generators = [...createGenerators({ sdsConfig: opts.sdsConfig ?? 'ads' }, pki && workloadSecrets(pki)), ...istioGenerators(istio)];
  const store = new XdsStore(generators, metrics);
  if (pki) {
    // Certificates and bundles change outside the mesh: the PKI issues for the identities streams open SDS
    // tables for (in the background, off the push path), and tells the store when one is ready.
    store.onOpen((typeUrl, key) => {
      const id = typeUrl === TypeUrl.Secret ? parseSpiffeId(key) : undefined;
      if (id?.trustDomain === pki.ca.trustDomain) pki.certs.want(id, () => store.watched(typeUrl, key));
    });
    pki.certs.onChange((id) => store.refresh(TypeUrl.Secret, new Set([spiffeId(id)])));
    pki.bundles.onChange(() => store.refresh(TypeUrl.Secret, 'all'));
  }
  const registry = new Registry(
    { quietMs: opts.debounceMs ?? DEFAULTS.debounceMs, maxMs: opts.debounceMaxMs ?? DEFAULTS.debounceMaxMs },
    (snapshot, changes, changedAt) => {
      if (changes.clusters) pki?.bundles.setClusters(snapshot.clusters); // remote roots live in the mesh model
      store.update(snapshot, changes, changedAt);
    },
    log.child({ module: 'registry' }),
  );
  const readiness: ReadinessCheck[] = [];

  const fed = opts.federation ?? {};
  let alliance: Alliance | undefined;
  const peers = new PeerController({
    localTrustDomain: opts.pki?.trustDomain ?? opts.kube?.clusterDomain ?? KUBE_DEFAULTS.clusterDomain,
    localClusterDomain: opts.kube ? (opts.kube.clusterDomain ?? KUBE_DEFAULTS.clusterDomain) : undefined,
    // The alliance identity starts after the sources (it reads the mesh): until then, and without it, no minter.
    mintToken: (...args) => (fed.mintToken ?? alliance?.mintToken ?? NO_MINTER)(...args),
    isLeader: fed.isLeader ?? (() => leadership.isLeader()),
    pollIntervalMs: fed.pollIntervalMs ?? PEER_DEFAULTS.pollIntervalMs,
    fetchTimeoutMs: fed.fetchTimeoutMs ?? PEER_DEFAULTS.fetchTimeoutMs,
    maxPublicBytes: PEER_DEFAULTS.maxPublicBytes,
    maxPrivateBytes: PEER_DEFAULTS.maxPrivateBytes,
    source: new FederationSource(
      registry,
      { ...KUBE_DEFAULTS.remote, ...opts.kube?.remote, ...fed.remote },
      log.child({ module: 'federation-source' }),
    ),
    apiToken: fed.apiToken,
    // The token in a peer's remote Secret is one this cluster minted (verified with its own key) before a restart.
    storedApiToken: (peer, aud) =>
      remoteSecretWriter && alliance
        ? remoteSecretWriter.storedToken(peer, aud, alliance.authnKeyPub, fed.apiToken ?? DECKHOUSE_API_TOKEN)
        : Promise.resolve(undefined),
    multiclusterOrigins: [
      ...(opts.config ? ['file' as const] : []),
      ...(opts.kube && fed.watchMulticlusterCrs !== false ? ['kube' as const] : []),
    ],
    log: log.child({ module: 'peers' }),
  });
  registerPeerMetrics(metrics.registry, () => peers.rows());

  let fileSource: FileSource | undefined;
  if (opts.config) {
    let lastError: MeshFileError | null = null;
    const src: FileSource = new FileSource(
      opts.config,
      (mesh) => {
        registry.setSource(src.source, mesh);
        peers.setPeers('file', mesh.federations);
        peers.setPeers('file', mesh.multiclusters, 'multicluster');
      },
      {
        log: log.child({ module: 'file-source' }),
        maxBytes: opts.maxConfigBytes,
        onError: (err) => {
          lastError = err;
          metrics.configValid.set({ source: src.source }, err ? 0 : 1);
          if (err) metrics.configErrors.inc({ source: src.source });
        },
      },
    );
    fileSource = src;
    await src.start(); // the first read must succeed: there is no last good state yet
    metrics.configValid.set({ source: src.source }, 1);
    readiness.push({
      name: src.source,
      check: () =>
        lastError ? { ready: true, detail: `serving the last good state; rejected edit: ${lastError.message}` } : { ready: true },
    });
  } else if (!opts.kube) {
    registry.setSource(DEFAULT_MESH_SOURCE, meshToSource(loadDefaultMesh(), DEFAULT_MESH_SOURCE));
    readiness.push({ name: DEFAULT_MESH_SOURCE, check: () => ({ ready: true }) });
  }
  let kube: KubeSource | undefined;
  let remoteSecretWriter: RemoteSecretWriter | undefined;
  if (opts.kube) {
    const k = (kube = new KubeSource(
      { ...KUBE_DEFAULTS, ...opts.kube, remote: { ...KUBE_DEFAULTS.remote, ...opts.kube.remote } },
      registry,
      log.child({ module: 'kube' }),
      metrics,
    ));
    k.start();
    // Multicluster peers' clusters are remote clusters like the Secrets' (the kube source's second input).
    const writer = fed.writeRemoteSecrets
      ? (remoteSecretWriter = new RemoteSecretWriter(
          localKubeConfig(opts.kube.kubeconfig),
          fed.writeRemoteSecrets,
          () => leadership.isLeader(),
          log.child({ module: 'remote-secret-writer' }),
        ))
      : undefined;
    peers.useRemoteClusters({
      setPeerRemotes: (r, declared) => {
        k.setPeerRemotes(r);
        writer?.setPeerRemotes(r, declared);
      },
      clusterStatus: (id) => k.clusterStatus(id),
      networkOwner: (network, except) => k.networkOwner(network, except),
    });
    readiness.push({ name: 'kubernetes', check: () => k.readiness() });
    metrics.remoteClusters(CLUSTER_STATES, () =>
      k
        .clusters()
        .clusters.filter((c) => c.role === 'remote')
        .map((c) => ({ ...c, heldServices: c.heldUpdates.services })),
    );
  }
  let serviceEntries: ServiceEntrySource | undefined;
  if (opts.kube && opts.kube.serviceEntries !== false) {
    const k = { ...KUBE_DEFAULTS, ...opts.kube };
    serviceEntries = new ServiceEntrySource(
      localKubeConfig(opts.kube.kubeconfig),
      { clusterId: k.clusterId, localDomain: k.clusterDomain },
      registry,
      log.child({ module: 'serviceentries' }),
      metrics,
    );
    serviceEntries.start();
  }
  let federations: IstioPeerWatch | undefined;
  if (opts.kube && fed.watchCrs !== false) {
    federations = new IstioPeerWatch(localKubeConfig(opts.kube.kubeconfig), log.child({ module: 'istiofederations' }));
    peers.useStatusSink(federations);
    federations.start(peers);
  }
  let multiclusters: IstioPeerWatch | undefined;
  if (opts.kube && fed.watchMulticlusterCrs !== false) {
    multiclusters = new IstioPeerWatch(
      localKubeConfig(opts.kube.kubeconfig),
      log.child({ module: 'istiomulticlusters' }),
      'IstioMulticluster',
    );
    peers.useStatusSink(multiclusters, 'multicluster');
    multiclusters.start(peers);
  }
  registry.flush(); // serve the initial state without waiting for the debounce

  try {
    alliance =
      opts.alliance &&
      (await startAlliance(opts.alliance, {
        kubeConfig: opts.kube ? localKubeConfig(opts.kube.kubeconfig) : undefined,
        kubeClusterId: opts.kube ? (opts.kube.clusterId ?? KUBE_DEFAULTS.clusterId) : undefined,
        pki: pki && {
          trustDomain: pki.ca.trustDomain,
          roots: () => pki.ca.roots,
          bundles: pki.bundles,
          issueServer: (dnsNames) => pki.ca.issueServer(dnsNames),
          onCaChange: (fn) => pki.ca.onChange(fn),
        },
        snapshot: () => registry.snapshot,
        metrics: metrics.registry,
        log: log.child({ module: 'alliance' }),
      }));
  } catch (err) {
    // Nothing may keep the process alive after a failed start (watches, CA timers).
    fileSource?.stop();
    kube?.stop();
    registry.stop();
    pki?.certs.close();
    pki?.bundles.close();
    pki?.ca.close();
    federations?.stop();
    multiclusters?.stop();
    remoteSecretWriter?.stop();
    serviceEntries?.stop();
    peers.stop();
    throw err;
  }
  if (alliance && !opts.alliance?.peers) {
    // The peers this cluster federates with are the ones that may read its private metadata (an embedder may give
    // its own list instead); ask them again at once, now that tokens can be minted.
    alliance.usePeers(peers);
    peers.pollAll();
  }

  const xds = new XdsServer({
    store,
    observer: metrics,
    log: log.child({ module: 'xds' }),
    policy: meshStreamPolicy,
    sendBudgetBytes: opts.sendBudgetBytes,
    limits: opts.xdsLimits,
  });
  const maxRequestBytes = opts.xdsLimits?.maxRequestBytes ?? XDS_LIMITS.maxRequestBytes;
  const grpcServer = new grpc.Server({
    // The admin API's whole-mesh requests may be larger; xDS requests are still held to the limit.
    'grpc.max_receive_message_length': opts.enableAdminApi ? Math.max(maxRequestBytes, 64 * 1024 * 1024) : maxRequestBytes,
    'grpc.max_send_message_length': -1,
    'grpc.keepalive_permit_without_calls': 1,
  });
  const { credentials, plaintextServer, authenticator } = xdsTransport(opts, pki, log, maxRequestBytes);
  xds.register(grpcServer, authenticator);
  if (pki && authenticator instanceof MeshAuthenticator) {
    // istio-agent's CA API (CA_ADDR), authenticated as SDS is: only on the TLS port.
    registerIstioCa(grpcServer, {
      ca: pki.ca,
      auth: authenticator,
      clusterId: opts.kube?.clusterId ?? opts.clusterId ?? KUBE_DEFAULTS.clusterId,
      log: log.child({ module: 'istio-ca' }),
    });
  }
  if (opts.enableAdminApi) {
    const admins = opts.xdsTls ? (opts.adminIdentities ?? []) : undefined;
    if (!admins)
      log.warn('the admin API (meshfed.v1.AdminService) is enabled on a plaintext port: anyone who reaches it can change the mesh');
    else if (admins.length === 0) log.warn('the admin API is enabled on a TLS port without --admin-identities: every call is refused');
    registerAdminApi(grpcServer, registry, log.child({ module: 'admin-api' }), {
      authenticator: admins && authenticator,
      admins: admins ?? [],
      allowSecrets: opts.adminApiAllowSecrets ?? false,
    });
  }
  const xdsPort = await bind(
    '--xds-address',
    grpcServer,
    `${opts.xdsHost ?? DEFAULTS.xdsHost}:${opts.xdsPort ?? DEFAULTS.xdsPort}`,
    credentials,
  );
  let xdsPlaintextPort: number | undefined;
  if (plaintextServer) {
    xds.register(
      plaintextServer,
      new PlaintextAuthenticator(opts.insecureDevIdentity ? (pki?.ca.trustDomain ?? DEV_TRUST_DOMAIN) : undefined),
    );
    xdsPlaintextPort = await bind(
      '--xds-plaintext-address',
      plaintextServer,
      `${opts.xdsPlaintextHost ?? DEFAULTS.xdsHost}:${opts.xdsPlaintextPort ?? 0}`,
      grpc.ServerCredentials.createInsecure(),
    );
  }

  const debugHost = opts.debugHost ?? DEFAULTS.debugHost;
  const debug = new HttpPages(
    debugRoutes({
      streams: () => xds.streams,
      pages: {
        '/debug/mesh': () => ({ ...describeMesh(registry), ...(serviceEntries && { serviceEntries: serviceEntries.status() }) }),
        '/debug/clusters': kube
          ? () => kube.clusters()
          : new NeedsFlag('/debug/clusters shows Kubernetes discovery: start meshfed with --kube (or --kubeconfig <file>)'),
        '/debug/peers': () => ({ peers: peers.rows() }),
      },
      noSecrets: pki ? undefined : 'meshfed serves no secrets: the mesh CA is off (start meshfed with --trust-domain <td>)',
    }),
    log.child({ module: 'debug' }),
  );
  // Embedded (tests, harnesses) without a debug port: any free one, so several instances never collide on the
  // CLI's fixed default.
  const debugPort = await debug
    .listen(debugHost, opts.debugPort ?? 0)
    .catch(listenError('--debug-address', `${debugHost}:${opts.debugPort ?? 0}`));
  const admin = new HttpPages(
    adminRoutes({
      metrics,
      readiness,
      // The local trust domain's SPIFFE bundle (JWKS), for peers to poll.
      bundle: [
        SPIFFE_BUNDLE_PATH,
        pki
          ? (_url, req, res) => serveSpiffeBundle(pki.bundles, req, res)
          : new NeedsFlag('the SPIFFE bundle needs the mesh CA: start meshfed with --trust-domain <td>'),
      ],
    }),
    log.child({ module: 'admin' }),
    adminNotFound(`${debugHost}:${debugPort}`),
  );
  const adminHost = opts.adminHost ?? DEFAULTS.adminHost;
  const adminPort = await admin
    .listen(adminHost, opts.adminPort ?? DEFAULTS.adminPort)
    .catch(listenError('--admin-address', `${adminHost}:${opts.adminPort ?? DEFAULTS.adminPort}`));

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5000): Promise<void> =>
    (stopping ??= (async () => {
      await lease?.stop(); // first, so another replica takes over while this one drains
      fileSource?.stop();
      federations?.stop();
      multiclusters?.stop();
      remoteSecretWriter?.stop();
      serviceEntries?.stop();
      peers.stop();
      kube?.stop();
      registry.stop();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          grpcServer.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        xds.closeAll('meshfed is shutting down; reconnect to another replica');
        xds.close();
        plaintextServer?.forceShutdown();
        grpcServer.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      if (credentials instanceof XdsServerCredentials) credentials.close();
      pki?.certs.close();
      pki?.bundles.close();
      pki?.ca.close(); // its prune timer would otherwise write to the store after stop
      await admin.close();
      await debug.close();
      await alliance?.close();
    })());

  log.info(
    {
      xdsPort,
      xdsPlaintextPort,
      xdsTls: !!opts.xdsTls,
      adminPort,
      debugPort,
      metadataPort: alliance?.metadataPort,
      apiProxyPort: alliance?.apiProxyPort,
      config: opts.config ?? DEFAULT_MESH_SOURCE,
    },
    'meshfed is serving',
  );
  return { xdsPort, xdsPlaintextPort, adminPort, debugPort, pki, leadership, registry, store, xds, metrics, log, alliance, peers, stop };
}

/** The trust domain of development identities when meshfed runs without a CA (raw secrets only). */
const DEV_TRUST_DOMAIN = 'cluster.local';

async function openPki(o: NonNullable<MeshfedOptions['pki']>, leadership: Leadership, log: Logger): Promise<MeshfedPki> {
  const caLog = log.child({ module: 'ca' });
  const ca = await CertificateAuthority.open({
    trustDomain: o.trustDomain,
    store: o.caStore,
    keyType: o.keyType,
    workloadTtlMs: o.workloadTtlMs,
    leadership,
    follow: true, // a rotation stored by `meshfed ca` or another replica is taken up without a restart
    onStoreError: (err) => caLog.warn(err.message),
    onWaiting: () => caLog.info({ store: o.caStore.describe }, 'waiting for the leader to create the CA'),
  });
  ca.onChange(() =>
    caLog.info(
      { store: o.caStore.describe, roots: ca.roots.length, next: ca.nextRoot !== undefined, generation: ca.generation },
      'CA roots or signer changed',
    ),
  );
  const certs = new WorkloadCertCache(ca, { ttlMs: o.workloadTtlMs, log: log.child({ module: 'workload-certs' }) });
  return { ca, certs, bundles: new TrustBundles(ca, { log: log.child({ module: 'trust-bundles' }) }) };
}

/** SDS's view of the PKI: certificates only for meshfed's own trust domain, as already issued. */
function workloadSecrets(pki: MeshfedPki): WorkloadSecrets {
  return {
    certificate(id) {
      const identity = parseSpiffeId(id);
      return identity && identity.trustDomain === pki.ca.trustDomain ? (pki.certs.get(identity) ?? PENDING) : undefined;
    },
    bundles: () => pki.bundles.byDomain(),
  };
}

/**
 * The xDS port's credentials and authenticator: TLS (client certificate or token) when xdsTls is
 * set, else plaintext (anonymous, or node metadata in development); and the extra plaintext server.
 */
function xdsTransport(
  opts: MeshfedOptions,
  pki: MeshfedPki | undefined,
  log: Logger,
  maxRequestBytes: number,
): {
  credentials: grpc.ServerCredentials;
  plaintextServer: grpc.Server | undefined;
  authenticator: MeshAuthenticator | PlaintextAuthenticator;
} {
  if (opts.insecureDevIdentity) {
    log.warn(
      '--insecure-dev-identity: plaintext xDS streams get the secrets of whatever identity their node metadata claims; never use this outside development',
    );
  }
  if (!opts.xdsTls) {
    if (opts.tokenReview) log.warn('service-account tokens are only accepted over TLS (--xds-tls); the plaintext xDS port ignores them');
    return {
      credentials: grpc.ServerCredentials.createInsecure(),
      plaintextServer: undefined,
      authenticator: new PlaintextAuthenticator(opts.insecureDevIdentity ? (pki?.ca.trustDomain ?? DEV_TRUST_DOMAIN) : undefined),
    };
  }
  if (!pki) throw new Error('xDS over TLS needs the mesh CA (a trust domain)');
  const { ca } = pki;
  const tlsLog = log.child({ module: 'xds-tls' });
  const credentials = new XdsServerCredentials({ issue: () => ca.issueServer(opts.xdsTls!.dnsNames), roots: () => ca.roots }, tlsLog);
  ca.onChange(() => credentials.refresh());
  const tokens =
    opts.tokenReview &&
    new TokenReviewer({
      kubeConfig: opts.tokenReview.kubeConfig,
      trustDomain: ca.trustDomain,
      audience: opts.tokenReview.audience ?? 'istio-ca',
      log: log.child({ module: 'token-review' }),
    });
  const plaintext =
    opts.xdsPlaintextPort !== undefined
      ? new grpc.Server({ 'grpc.keepalive_permit_without_calls': 1, 'grpc.max_receive_message_length': maxRequestBytes })
      : undefined;
  return { credentials, plaintextServer: plaintext, authenticator: new MeshAuthenticator(ca.trustDomain, tokens) };
}

function bind(flag: string, server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise<number>((resolve, reject) =>
    server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))),
  ).catch(listenError(flag, address));
}

const LISTEN_ERRORS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'not an address of this host',
  EACCES: 'permission denied (a port below 1024 needs privileges)',
};

/**
 * A listen failure in one line naming the flag that sets the address ("--xds-address 127.0.0.1:18000:
 * address already in use"). grpc-js reports the errno only inside its message.
 */
function listenError(flag: string, address: string): (err: Error) => never {
  return (err) => {
    const code = (err as NodeJS.ErrnoException).code ?? /\b(E[A-Z]+):/.exec(err.message)?.[1];
    throw new Error(`${flag} ${address}: ${(code && LISTEN_ERRORS[code]) ?? err.message}`, { cause: err });
  };
}

function describeMesh(registry: Registry): Record<string, unknown> {
  const m = registry.snapshot;
  return {
    clusters: [...m.clusters.values()],
    services: [...m.services.values()].map((s) => ({ ...s, endpoints: m.endpoints.get(s.hostname) ?? [] })),
    raw: [...m.raw.values()].flatMap((byName) => [...byName.values()].map((r) => ({ typeUrl: r.typeUrl, name: r.name }))),
    portConflicts: registry.portConflicts,
  };
}
