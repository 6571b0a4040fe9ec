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
import type { WorkloadSecrets } from './generate/sds.js';
import { TypeUrl } from './envoy/protos.js';
import { CertificateAuthority, type CaStore, type KeyType, parseSpiffeId, serveSpiffeBundle, SPIFFE_BUNDLE_PATH, spiffeId, TrustBundles, WorkloadCertCache } from './pki/index.js';
import { MeshAuthenticator, PlaintextAuthenticator, TokenReviewer } from './xds/auth.js';
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
  readonly debugPort?: number;
  readonly debounceMs?: number;
  readonly debounceMaxMs?: number;
  /** Serve meshfed.v1.AdminService on the xDS port (test harnesses only: it is unauthenticated). */
  readonly enableAdminApi?: boolean;
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
  /** This cluster's identity among peers (UUID, Ed25519 key) and the metadata exporter (src/alliance/). */
  readonly alliance?: AllianceOptions;
  /** With kube: leader election on a Lease in kube.namespace (holder: identity, the pod name by default). */
  readonly lease?: { readonly durationMs?: number; readonly identity?: string };
}

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
  const log = opts.log ?? createLogger();
  const metrics = new Metrics();
  const lease = opts.kube && (await LeaseLeadership.start({
    kubeConfig: localKubeConfig(opts.kube.kubeconfig),
    namespace: opts.kube.namespace ?? KUBE_DEFAULTS.namespace,
    identity: opts.lease?.identity ?? defaultIdentity(),
    durationMs: opts.lease?.durationMs,
    log: log.child({ module: 'leader' }),
  }));
  const leadership = lease || SOLE_LEADER;
  const pki = opts.pki && (await openPki(opts.pki, leadership, log));
  const store = new XdsStore(createGenerators({ sdsConfig: opts.sdsConfig ?? 'ads' }, pki && workloadSecrets(pki)), metrics);
  if (pki) {
    // Certificates and bundles change outside the mesh: the PKI tells the store.
    pki.certs.onRenew((id) => store.refresh(TypeUrl.Secret, new Set([spiffeId(id)])));
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

  let fileSource: FileSource | undefined;
  if (opts.config) {
    let lastError: MeshFileError | null = null;
    const src: FileSource = new FileSource(opts.config, (mesh) => registry.setSource(src.source, mesh), {
      log: log.child({ module: 'file-source' }),
      onError: (err) => {
        lastError = err;
        metrics.configValid.set({ source: src.source }, err ? 0 : 1);
        if (err) metrics.configErrors.inc({ source: src.source });
      },
    });
    fileSource = src;
    await src.start(); // the first read must succeed: there is no last good state yet
    metrics.configValid.set({ source: src.source }, 1);
    readiness.push({
      name: src.source,
      check: () => (lastError ? { ready: true, detail: `serving the last good state; rejected edit: ${lastError.message}` } : { ready: true }),
    });
  } else if (!opts.kube) {
    registry.setSource(DEFAULT_MESH_SOURCE, meshToSource(loadDefaultMesh(), DEFAULT_MESH_SOURCE));
    readiness.push({ name: DEFAULT_MESH_SOURCE, check: () => ({ ready: true }) });
  }
  let kube: KubeSource | undefined;
  if (opts.kube) {
    const k = (kube = new KubeSource({ ...KUBE_DEFAULTS, ...opts.kube, remote: { ...KUBE_DEFAULTS.remote, ...opts.kube.remote } }, registry, log.child({ module: 'kube' }), metrics));
    k.start();
    readiness.push({ name: 'kubernetes', check: () => k.readiness() });
    metrics.remoteClusters(CLUSTER_STATES, () =>
      k.clusters().clusters.filter((c) => c.role === 'remote').map((c) => ({ ...c, heldServices: c.heldUpdates.services })),
    );
  }
  registry.flush(); // serve the initial state without waiting for the debounce

  let alliance: Alliance | undefined;
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
    throw err;
  }

  const xds = new XdsServer({ store, observer: metrics, log: log.child({ module: 'xds' }), sendBudgetBytes: opts.sendBudgetBytes, limits: opts.xdsLimits });
  const maxRequestBytes = opts.xdsLimits?.maxRequestBytes ?? XDS_LIMITS.maxRequestBytes;
  const grpcServer = new grpc.Server({
    // The admin API's whole-mesh requests may be larger; xDS requests are still held to the limit.
    'grpc.max_receive_message_length': opts.enableAdminApi ? Math.max(maxRequestBytes, 64 * 1024 * 1024) : maxRequestBytes,
    'grpc.max_send_message_length': -1,
    'grpc.keepalive_permit_without_calls': 1,
  });
  const { credentials, plaintextServer, authenticator } = xdsTransport(opts, pki, log, maxRequestBytes);
  xds.register(grpcServer, authenticator);
  if (opts.enableAdminApi) {
    log.warn('the admin API (meshfed.v1.AdminService) is enabled: anyone who reaches the xDS port can change the mesh');
    registerAdminApi(grpcServer, registry, log.child({ module: 'admin-api' }));
  }
  const xdsPort = await bind(grpcServer, `${opts.xdsHost ?? DEFAULTS.xdsHost}:${opts.xdsPort ?? DEFAULTS.xdsPort}`, credentials);
  let xdsPlaintextPort: number | undefined;
  if (plaintextServer) {
    xds.register(plaintextServer, new PlaintextAuthenticator(opts.insecureDevIdentity ? (pki?.ca.trustDomain ?? DEV_TRUST_DOMAIN) : undefined));
    xdsPlaintextPort = await bind(plaintextServer, `${opts.xdsPlaintextHost ?? DEFAULTS.xdsHost}:${opts.xdsPlaintextPort ?? 0}`, grpc.ServerCredentials.createInsecure());
  }

  const debugHost = opts.debugHost ?? DEFAULTS.debugHost;
  const debug = new HttpPages(
    debugRoutes({
      streams: () => xds.streams,
      pages: {
        '/debug/mesh': () => describeMesh(registry),
        '/debug/clusters': kube ? () => kube.clusters() : new NeedsFlag('/debug/clusters shows Kubernetes discovery: start meshfed with --kube (or --kubeconfig <file>)'),
      },
      noSecrets: pki ? undefined : 'meshfed serves no secrets: the mesh CA is off (start meshfed with --trust-domain <td>)',
    }),
    log.child({ module: 'debug' }),
  );
  const debugPort = await debug.listen(debugHost, opts.debugPort ?? DEFAULTS.debugPort);
  const admin = new HttpPages(
    adminRoutes({
      metrics,
      readiness,
      // The local trust domain's SPIFFE bundle (JWKS), for peers to poll.
      bundle: [
        SPIFFE_BUNDLE_PATH,
        pki ? (_url, req, res) => serveSpiffeBundle(pki.bundles, req, res) : new NeedsFlag('the SPIFFE bundle needs the mesh CA: start meshfed with --trust-domain <td>'),
      ],
    }),
    log.child({ module: 'admin' }),
    adminNotFound(`${debugHost}:${debugPort}`),
  );
  const adminPort = await admin.listen(opts.adminHost ?? DEFAULTS.adminHost, opts.adminPort ?? DEFAULTS.adminPort);

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5000): Promise<void> =>
    (stopping ??= (async () => {
      await lease?.stop(); // first, so another replica takes over while this one drains
      fileSource?.stop();
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

  log.info({ xdsPort, xdsPlaintextPort, xdsTls: !!opts.xdsTls, adminPort, debugPort, metadataPort: alliance?.metadataPort, apiProxyPort: alliance?.apiProxyPort, config: opts.config ?? DEFAULT_MESH_SOURCE }, 'meshfed is serving');
  return { xdsPort, xdsPlaintextPort, adminPort, debugPort, pki, leadership, registry, store, xds, metrics, log, alliance, stop };
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
  ca.onChange(() => caLog.info({ store: o.caStore.describe, roots: ca.roots.length, next: ca.nextRoot !== undefined, generation: ca.generation }, 'CA roots or signer changed'));
  return { ca, certs: new WorkloadCertCache(ca, { ttlMs: o.workloadTtlMs }), bundles: new TrustBundles(ca, { log: log.child({ module: 'trust-bundles' }) }) };
}

/** SDS's view of the PKI: certificates only for meshfed's own trust domain. */
function workloadSecrets(pki: MeshfedPki): WorkloadSecrets {
  return {
    certificate(id) {
      const identity = parseSpiffeId(id);
      return identity && identity.trustDomain === pki.ca.trustDomain ? pki.certs.get(identity) : undefined;
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
): { credentials: grpc.ServerCredentials; plaintextServer: grpc.Server | undefined; authenticator: MeshAuthenticator | PlaintextAuthenticator } {
  if (opts.insecureDevIdentity) {
    log.warn('--insecure-dev-identity: plaintext xDS streams get the secrets of whatever identity their node metadata claims; never use this outside development');
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
    new TokenReviewer({ kubeConfig: opts.tokenReview.kubeConfig, trustDomain: ca.trustDomain, audience: opts.tokenReview.audience ?? 'istio-ca', log: log.child({ module: 'token-review' }) });
  const plaintext =
    opts.xdsPlaintextPort !== undefined ? new grpc.Server({ 'grpc.keepalive_permit_without_calls': 1, 'grpc.max_receive_message_length': maxRequestBytes }) : undefined;
  return { credentials, plaintextServer: plaintext, authenticator: new MeshAuthenticator(ca.trustDomain, tokens) };
}

function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise<number>((resolve, reject) => server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))));
}

function describeMesh(registry: Registry): unknown {
  const m = registry.snapshot;
  return {
    clusters: [...m.clusters.values()],
    services: [...m.services.values()].map((s) => ({ ...s, endpoints: m.endpoints.get(s.hostname) ?? [] })),
    raw: [...m.raw.values()].flatMap((byName) => [...byName.values()].map((r) => ({ typeUrl: r.typeUrl, name: r.name }))),
    portConflicts: registry.portConflicts,
  };
}
