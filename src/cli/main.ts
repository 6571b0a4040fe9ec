#!/usr/bin/env node
// meshfed's command line.
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULTS, startMeshfed } from '../app.js';
import { KUBE_DEFAULTS } from '../sources/kube/index.js';
import { createLogger } from '../log.js';

const int = (what: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${what} must be a whole number`);
  return n;
};

const hostPort = (v: string): { host: string; port: number } => {
  const i = v.lastIndexOf(':');
  const port = Number(v.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`"${v}" is not host:port`);
  return { host: v.slice(0, i).replace(/^\[|\]$/g, '') || '0.0.0.0', port };
};

const sdsConfig = (v: string): 'ads' | 'sds-grpc' => {
  if (v !== 'ads' && v !== 'sds-grpc') throw new InvalidArgumentError('must be "ads" or "sds-grpc"');
  return v;
};

const share = (v: string): number => {
  const n = Number(v);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError('must be a share in (0, 1], e.g. 0.5');
  return n;
};

const secondsToMs = (what: string) => (v: string): number => int(what)(v) * 1000;

/** In a pod, meshfed's namespace is the service account's; else the flag's default. */
function inClusterNamespace(): string | undefined {
  try {
    return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

const program = new Command('meshfed').description('xDS control plane that joins Kubernetes clusters into one service mesh');

program
  .command('serve')
  .description('serve xDS (CDS, EDS, LDS, RDS, SDS) from a mesh description, or the embedded two-cluster default')
  .option('-c, --config <file>', 'mesh description (YAML or JSON); re-read on change', process.env['MESHFED_CONFIG'])
  .option('--xds-address <host:port>', 'xDS gRPC listen address', hostPort, hostPort(`${DEFAULTS.xdsHost}:${DEFAULTS.xdsPort}`))
  .option('--admin-address <host:port>', 'admin HTTP listen address', hostPort, hostPort(`${DEFAULTS.adminHost}:${DEFAULTS.adminPort}`))
  .option('--debounce <ms>', 'push a change once it has been quiet this long', int('--debounce'), DEFAULTS.debounceMs)
  .option('--debounce-max <ms>', 'push a change at the latest this long after it happened', int('--debounce-max'), DEFAULTS.debounceMaxMs)
  .option('--shutdown-grace <ms>', 'on SIGTERM, exit at the latest after this long', int('--shutdown-grace'), 5000)
  .option('--enable-admin-api', 'serve meshfed.v1.AdminService on the xDS port (unauthenticated; for test harnesses)', false)
  .option('--sds-config <source>', 'where Envoy fetches SDS secrets: ads (meshfed) or sds-grpc (istio-agent, beside istiod)', sdsConfig, 'ads')
  .option('--kube', 'discover services from Kubernetes (in-cluster, or --kubeconfig) and from remote secrets', false)
  .option('--kubeconfig <file>', 'kubeconfig of the local cluster (implies --kube); in-cluster configuration otherwise')
  .option('--cluster-id <id>', 'id of the local cluster', KUBE_DEFAULTS.clusterId)
  .option('--network <name>', 'network of the local cluster (default: the topology.istio.io/network label on --namespace, else the cluster id)')
  .option('--cluster-domain <domain>', 'cluster domain, also the trust domain', KUBE_DEFAULTS.clusterDomain)
  .option('--namespace <ns>', 'meshfed\'s own namespace, where remote secrets (istio/multiCluster=true) live', inClusterNamespace() ?? KUBE_DEFAULTS.namespace)
  .option('--discovery-selectors <selector...>', 'namespace label selectors; only services in matching namespaces are seen')
  .option('--remote-sync-timeout <s>', '/readyz waits at most this long for each remote cluster\'s first sync', secondsToMs('--remote-sync-timeout'), KUBE_DEFAULTS.remoteSyncTimeoutMs)
  .option('--remote-stale-after <s>', 'an unreachable remote\'s endpoints are demoted (lower priority) after this long', secondsToMs('--remote-stale-after'), KUBE_DEFAULTS.remote.staleAfterMs)
  .option('--remote-withdraw-after <s>', '...and withdrawn after this long', secondsToMs('--remote-withdraw-after'), KUBE_DEFAULTS.remote.withdrawAfterMs)
  .option('--remote-max-drop <share>', 'hold an update that withdraws more than this share of a remote\'s endpoints', share, KUBE_DEFAULTS.remote.maxDropShare)
  .option('--remote-confirm-after <s>', 'a held withdrawal stable this long (or seen again on a relist) goes through', secondsToMs('--remote-confirm-after'), KUBE_DEFAULTS.remote.confirmAfterMs)
  .option('--log-level <level>', 'trace, debug, info, warn or error', process.env['MESHFED_LOG_LEVEL'] ?? 'info')
  .action(async (o) => {
    const log = createLogger(o.logLevel);
    let meshfed;
    try {
      meshfed = await startMeshfed({
        config: o.config,
        xdsHost: o.xdsAddress.host,
        xdsPort: o.xdsAddress.port,
        adminHost: o.adminAddress.host,
        adminPort: o.adminAddress.port,
        debounceMs: o.debounce,
        debounceMaxMs: o.debounceMax,
        enableAdminApi: o.enableAdminApi,
        sdsConfig: o.sdsConfig,
        kube:
          o.kube || o.kubeconfig
            ? {
                kubeconfig: o.kubeconfig,
                clusterId: o.clusterId,
                network: o.network,
                clusterDomain: o.clusterDomain,
                namespace: o.namespace,
                discoverySelectors: o.discoverySelectors ?? [],
                remoteSyncTimeoutMs: o.remoteSyncTimeout,
                remote: {
                  ...KUBE_DEFAULTS.remote,
                  staleAfterMs: o.remoteStaleAfter,
                  withdrawAfterMs: o.remoteWithdrawAfter,
                  maxDropShare: o.remoteMaxDrop,
                  confirmAfterMs: o.remoteConfirmAfter,
                },
              }
            : undefined,
        log,
      });
    } catch (err) {
      log.fatal({ err }, (err as Error).message);
      process.exitCode = 1;
      return;
    }
    const m = meshfed;
    if (!o.config && !o.kube && !o.kubeconfig) printQuickStart(m.xdsPort, m.adminPort);
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.once(signal, () => {
        log.info({ signal }, 'shutting down');
        void m.stop(o.shutdownGrace).then(() => process.exit(0));
      });
    }
  });

program
  .command('validate <file>')
  .description('check Envoy resources (YAML/JSON: one with "@type", a list, or a Bootstrap) against the validate rules of Envoy\'s protos')
  .action(async (file: string) => {
    const { readFile } = await import('node:fs/promises');
    const { parseAllDocuments } = await import('yaml');
    const { validateDocument } = await import('../validate/index.js');
    let docs: unknown[];
    try {
      docs = parseAllDocuments(await readFile(file, 'utf8')).map((d) => {
        if (d.errors.length) throw new Error(d.errors[0]!.message);
        return d.toJS() as unknown;
      });
    } catch (err) {
      process.stderr.write(`${file}: ${(err as Error).message}\n`);
      process.exitCode = 1;
      return;
    }
    let failed = 0;
    for (const report of docs.flatMap((d) => validateDocument(d))) {
      if (report.errors.length === 0) continue;
      failed++;
      for (const e of report.errors) process.stdout.write(`${file}: ${report.resource}: ${e.path}: ${e.reason}\n`);
    }
    if (failed) process.exitCode = 1;
    else process.stdout.write(`${file}: ok\n`);
  });

function printQuickStart(xdsPort: number, adminPort: number): void {
  process.stderr.write(`
meshfed is serving the embedded two-cluster mesh (cluster-a: foo.abc, cluster-b: bar.xyz).

  Proxyless gRPC: GRPC_XDS_BOOTSTRAP_CONFIG='{"xds_servers":[{"server_uri":"localhost:${xdsPort}","channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":"client-1","locality":{}}}'
                  then dial xds:///foo.abc.svc.cluster-a.local:8080
  Envoy:          point an ADS cluster at 127.0.0.1:${xdsPort} (see deploy/examples/)
  What is served: http://localhost:${adminPort}/debug/syncz   http://localhost:${adminPort}/debug/mesh   http://localhost:${adminPort}/metrics

`);
}

await program.parseAsync();
