// Wires one meshfed process: sources → registry → generators → store → xDS streams,
// plus the admin HTTP server. The CLI and the tests start meshfed through here.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { AdminServer, type ReadinessCheck } from './admin/http.js';
import { Metrics } from './admin/metrics.js';
import { DEFAULT_MESH_SOURCE, loadDefaultMesh } from './config/default-mesh.js';
import type { SdsConfig } from './generate/generator.js';
import { createGenerators } from './generate/index.js';
import { createLogger } from './log.js';
import { Registry } from './registry/registry.js';
import { registerAdminApi } from './sources/admin/admin-api.js';
import type { MeshFileError } from './sources/file/errors.js';
import { FileSource } from './sources/file/file-source.js';
import { meshToSource } from './sources/file/to-model.js';
import { CLUSTER_STATES, KUBE_DEFAULTS, KubeSource, type KubeSourceOptions } from './sources/kube/index.js';
import { XdsServer } from './xds/server.js';
import { XdsStore } from './xds/store.js';

export interface MeshfedOptions {
  /** Mesh description file; the embedded two-cluster default when absent. */
  readonly config?: string;
  readonly xdsHost?: string;
  /** 0 picks a free port. */
  readonly xdsPort?: number;
  readonly adminHost?: string;
  readonly adminPort?: number;
  readonly debounceMs?: number;
  readonly debounceMaxMs?: number;
  /** Serve meshfed.v1.AdminService on the xDS port (test harnesses only: it is unauthenticated). */
  readonly enableAdminApi?: boolean;
  readonly sendBudgetBytes?: number;
  /** Where sidecars and gateways fetch SDS secrets: meshfed over ADS (default), or istio-agent's `sds-grpc`. */
  readonly sdsConfig?: SdsConfig;
  /** Kubernetes discovery (local cluster and remote secrets); unset fields take KUBE_DEFAULTS. */
  readonly kube?: Partial<KubeSourceOptions>;
  readonly log?: Logger;
}

export interface Meshfed {
  readonly xdsPort: number;
  readonly adminPort: number;
  readonly registry: Registry;
  readonly store: XdsStore;
  readonly xds: XdsServer;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Stops accepting, asks proxies to reconnect elsewhere, and closes within graceMs. */
  stop(graceMs?: number): Promise<void>;
}

export const DEFAULTS = {
  xdsHost: '0.0.0.0',
  xdsPort: 18000,
  adminHost: '0.0.0.0',
  adminPort: 18001,
  debounceMs: 100,
  debounceMaxMs: 10_000,
} as const;

export async function startMeshfed(opts: MeshfedOptions = {}): Promise<Meshfed> {
  const log = opts.log ?? createLogger();
  const metrics = new Metrics();
  const store = new XdsStore(createGenerators({ sdsConfig: opts.sdsConfig ?? 'ads' }), metrics);
  const registry = new Registry(
    { quietMs: opts.debounceMs ?? DEFAULTS.debounceMs, maxMs: opts.debounceMaxMs ?? DEFAULTS.debounceMaxMs },
    (snapshot, changes, changedAt) => store.update(snapshot, changes, changedAt),
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

  const xds = new XdsServer({ store, observer: metrics, log: log.child({ module: 'xds' }), sendBudgetBytes: opts.sendBudgetBytes });
  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': -1,
    'grpc.keepalive_permit_without_calls': 1,
  });
  xds.register(grpcServer);
  if (opts.enableAdminApi) {
    log.warn('the admin API (meshfed.v1.AdminService) is enabled: anyone who reaches the xDS port can change the mesh');
    registerAdminApi(grpcServer, registry, log.child({ module: 'admin-api' }));
  }
  const xdsPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(
      `${opts.xdsHost ?? DEFAULTS.xdsHost}:${opts.xdsPort ?? DEFAULTS.xdsPort}`,
      grpc.ServerCredentials.createInsecure(),
      (err, port) => (err ? reject(err) : resolve(port)),
    ),
  );

  const admin = new AdminServer({
    metrics,
    streams: () => xds.streams,
    readiness,
    extra: { '/debug/mesh': () => describeMesh(registry), ...(kube ? { '/debug/clusters': () => kube.clusters() } : {}) },
    log: log.child({ module: 'admin' }),
  });
  const adminPort = await admin.listen(opts.adminHost ?? DEFAULTS.adminHost, opts.adminPort ?? DEFAULTS.adminPort);

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5000): Promise<void> =>
    (stopping ??= (async () => {
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
        grpcServer.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await admin.close();
    })());

  log.info({ xdsPort, adminPort, config: opts.config ?? DEFAULT_MESH_SOURCE }, 'meshfed is serving');
  return { xdsPort, adminPort, registry, store, xds, metrics, log, stop };
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
