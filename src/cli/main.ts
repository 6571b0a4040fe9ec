#!/usr/bin/env node
// meshfed's command line.
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { startAgent } from '../agent/agent.js';
import { DEFAULTS, startMeshfed } from '../app.js';
import { DEFAULT_MAX_MESH_FILE_BYTES } from '../sources/file/file-source.js';
import { KUBE_DEFAULTS, localKubeConfig } from '../sources/kube/index.js';
import { fileCaStore, kubeCaStore, memoryCaStore } from '../pki/index.js';
import { dirAuthnKeyStore, kubeAuthnKeyStore, memoryAuthnKeyStore } from '../alliance/identity/key-store.js';
import { DEFAULT_API_PROXY_PORT } from '../alliance/api-proxy/server.js';
import { DEFAULT_METADATA_PORT } from '../alliance/exporter/server.js';
import { createLogger, LOG_LEVELS, routeGrpcLogs } from '../log.js';
import { XDS_LIMITS } from '../xds/limits.js';
import { DEFAULT_LEASE_DURATION_MS } from '../leader/index.js';
import { caCommand } from './ca.js';

const int =
  (what: string) =>
  (v: string): number => {
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

/** A gateway to advertise: `address:port`, the address required (an IP or a DNS name). */
const gatewayAddress = (v: string, prev: { address: string; port: number }[] = []): { address: string; port: number }[] => {
  const { host, port } = hostPort(v);
  if (!/^[\w.:-]+$/.test(host) || v.lastIndexOf(':') === 0 || port === 0) throw new InvalidArgumentError(`"${v}" is not address:port`);
  return [...prev, { address: host, port }];
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

const secondsToMs =
  (what: string) =>
  (v: string): number =>
    int(what)(v) * 1000;

/** Seconds above 0, as milliseconds: an interval of 0 would poll without pause. */
const positiveSecondsToMs =
  (what: string) =>
  (v: string): number => {
    const ms = secondsToMs(what)(v);
    if (ms <= 0) throw new InvalidArgumentError(`${what} must be above 0 seconds`);
    return ms;
  };

const logLevel = (v: string): string => {
  if (!LOG_LEVELS.includes(v)) throw new InvalidArgumentError(`must be one of ${LOG_LEVELS.join(', ')}`);
  return v;
};

/** A host:port flag whose default --help shows as written, not as the parsed object. */
const addressOption = (flags: string, description: string, def: string): Option =>
  new Option(flags, description).argParser(hostPort).default(hostPort(def), def);

/** A flag taken in seconds and used in milliseconds; --help shows the default in seconds. */
const secondsOption = (flags: string, description: string, defMs: number): Option =>
  new Option(flags, description).argParser(secondsToMs(flags.split(' ')[0]!)).default(defMs, String(defMs / 1000));

/** Reads a file a flag names; a failure names the flag ("--xds-ca root.pem: no such file or directory"). */
function readFlagFile(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(
      `${flag} ${file}: ${e.code === 'ENOENT' ? 'no such file or directory' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'is a directory' : e.message}`,
    );
  }
}

/** In a pod, meshfed's namespace is the service account's; else the flag's default. */
function inClusterNamespace(): string | undefined {
  try {
    return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const program = new Command('meshfed')
  .description('xDS control plane that joins Kubernetes clusters into one service mesh')
  .version(version);

program
  .command('serve')
  .description('serve xDS (CDS, EDS, LDS, RDS, SDS) from a mesh description, or the embedded two-cluster default')
  .option('-c, --config <file>', 'mesh description (YAML or JSON); re-read on change', process.env['MESHFED_CONFIG'])
  .addOption(addressOption('--xds-address <host:port>', 'xDS gRPC listen address', `${DEFAULTS.xdsHost}:${DEFAULTS.xdsPort}`))
  .addOption(addressOption('--admin-address <host:port>', 'admin HTTP listen address', `${DEFAULTS.adminHost}:${DEFAULTS.adminPort}`))
  .addOption(
    addressOption(
      '--debug-address <host:port>',
      'HTTP for the /debug/* pages (mesh internals; reach them with kubectl port-forward)',
      `${DEFAULTS.debugHost}:${DEFAULTS.debugPort}`,
    ),
  )
  .option('--debounce <ms>', 'push a change once it has been quiet this long', int('--debounce'), DEFAULTS.debounceMs)
  .option('--debounce-max <ms>', 'push a change at the latest this long after it happened', int('--debounce-max'), DEFAULTS.debounceMaxMs)
  .option('--shutdown-grace <ms>', 'on SIGTERM, exit at the latest after this long', int('--shutdown-grace'), 5000)
  .option(
    '--enable-admin-api',
    'serve meshfed.v1.AdminService on the xDS port (plaintext: unauthenticated, for test harnesses; TLS: --admin-identities only)',
    false,
  )
  .option('--admin-identities <spiffe-id...>', 'with --xds-tls: SPIFFE ids whose mesh-CA client certificates may call the admin API')
  .option('--admin-api-allow-secrets', 'let the admin API apply raw Secrets (served to any identity that asks for their name)', false)
  .option('--max-config-bytes <bytes>', 'reject a mesh file larger than this', int('--max-config-bytes'), DEFAULT_MAX_MESH_FILE_BYTES)
  .option(
    '--sds-config <source>',
    'where Envoy fetches SDS secrets: ads (meshfed) or sds-grpc (istio-agent, beside istiod)',
    sdsConfig,
    'ads',
  )
  .option('--kube', 'discover services from Kubernetes (in-cluster, or --kubeconfig) and from remote secrets', false)
  .option('--kubeconfig <file>', 'kubeconfig of the local cluster (implies --kube); in-cluster configuration otherwise')
  .option('--cluster-id <id>', 'id of the local cluster', KUBE_DEFAULTS.clusterId)
  .option(
    '--network <name>',
    'network of the local cluster (default: the topology.istio.io/network label on --namespace, else the cluster id)',
  )
  .option('--cluster-domain <domain>', 'cluster domain, also the trust domain', KUBE_DEFAULTS.clusterDomain)
  .option(
    '--namespace <ns>',
    "meshfed's own namespace, where remote secrets (istio/multiCluster=true) live",
    inClusterNamespace() ?? KUBE_DEFAULTS.namespace,
  )
  .option(
    '--config-namespace <ns>',
    'namespace of the ServiceEntries and DestinationRules istiod reads from meshfed (configSources: xds://…); default --namespace',
  )
  .option('--discovery-selectors <selector...>', 'namespace label selectors; only services in matching namespaces are seen')
  .addOption(
    secondsOption(
      '--remote-sync-timeout <s>',
      "/readyz waits at most this long for each remote cluster's first sync",
      KUBE_DEFAULTS.remoteSyncTimeoutMs,
    ),
  )
  .addOption(
    secondsOption(
      '--remote-stale-after <s>',
      "an unreachable remote's endpoints are demoted (lower priority) after this long",
      KUBE_DEFAULTS.remote.staleAfterMs,
    ),
  )
  .addOption(secondsOption('--remote-withdraw-after <s>', '...and withdrawn after this long', KUBE_DEFAULTS.remote.withdrawAfterMs))
  .option(
    '--remote-max-drop <share>',
    "hold an update that withdraws more than this share of a remote's endpoints",
    share,
    KUBE_DEFAULTS.remote.maxDropShare,
  )
  .addOption(
    secondsOption(
      '--remote-confirm-after <s>',
      'a held withdrawal stable this long (or seen again on a relist) goes through',
      KUBE_DEFAULTS.remote.confirmAfterMs,
    ),
  )
  .addOption(
    new Option('--peer-poll-interval <s>', "fetch each federation or multicluster peer's metadata this often (and on every change)")
      .argParser(positiveSecondsToMs('--peer-poll-interval'))
      .default(60_000, '60'),
  )
  .option('--no-istio-federations', 'with --kube, do not watch IstioFederation custom resources')
  .option('--no-istio-multiclusters', 'with --kube, do not watch IstioMulticluster custom resources')
  .option(
    '--write-remote-secrets <namespace>',
    "with --kube, also write Istio's remote Secret (istio-remote-secret-<peer>) of each multicluster peer into this namespace, for an istiod beside meshfed",
  )
  .option('--no-service-entries', 'with --kube, do not import Istio ServiceEntries (networking.istio.io)')
  .option(
    '--trust-domain <td>',
    "this cluster's trust domain: enables the mesh CA and SDS (workload certificates, trust bundle); with --kube, the cluster domain",
  )
  .option(
    '--ca-dir <dir>',
    'CA files (Istio cacerts layout); a self-signed root is created there when absent (default: in memory, lost on restart)',
  )
  .option('--workload-cert-ttl <seconds>', 'workload certificate lifetime', int('--workload-cert-ttl'))
  .option(
    '--xds-tls',
    'serve xDS over TLS with a certificate from the mesh CA; proxies authenticate with a token or a client certificate',
    false,
  )
  .option(
    '--server-dns-names <names>',
    "meshfed's DNS names for its xDS certificate, comma-separated",
    'meshfed.meshfed-system.svc,localhost',
  )
  .option(
    '--xds-plaintext-address <host:port>',
    'with --xds-tls, also serve xDS in plaintext here: configuration only, never secrets (proxyless gRPC)',
    hostPort,
  )
  .option('--token-review-kubeconfig <file>', 'check service-account tokens with TokenReview through this kubeconfig (default: in-cluster)')
  .option('--token-audience <aud>', 'audience service-account tokens must carry', 'istio-ca')
  .option('--no-token-review', 'do not accept service-account tokens')
  .option(
    '--insecure-dev-identity',
    'DEVELOPMENT ONLY: plaintext streams get the secrets of the identity their node metadata claims',
    false,
  )
  .option('--max-request-bytes <n>', 'largest xDS request accepted', int('--max-request-bytes'), XDS_LIMITS.maxRequestBytes)
  .option('--max-names <n>', 'resource names in one xDS request (and per type on a delta stream)', int('--max-names'), XDS_LIMITS.maxNames)
  .option('--max-name-bytes <n>', 'bytes of one resource name', int('--max-name-bytes'), XDS_LIMITS.maxNameBytes)
  .option(
    '--max-streams-per-connection <n>',
    'xDS streams on one client connection',
    int('--max-streams-per-connection'),
    XDS_LIMITS.maxStreamsPerConnection,
  )
  .option(
    '--max-connections-per-address <n>',
    'connections with xDS streams from one client address',
    int('--max-connections-per-address'),
    XDS_LIMITS.maxConnectionsPerAddress,
  )
  .option(
    '--stream-idle-write-timeout <s>',
    'close an xDS stream (UNAVAILABLE) whose peer leaves a response unread this long (0: never)',
    secondsToMs('--stream-idle-write-timeout'),
    XDS_LIMITS.idleWriteTimeoutMs,
  )
  .option(
    '--metadata-address <host:port>',
    `serve this cluster's federation metadata (Deckhouse's metadata-exporter paths) here; off unless given (manifests use port ${DEFAULT_METADATA_PORT})`,
    hostPort,
  )
  .option(
    '--metadata-tls-cert <file>',
    'with --metadata-tls-key: serve the metadata over HTTPS with this certificate chain (PEM); plain HTTP otherwise, for an Ingress that terminates TLS',
  )
  .option('--metadata-tls-key <file>', 'private key (PEM) of --metadata-tls-cert')
  .option('--federation', 'serve /metadata/private/federation.json (exported services and gateways) to federated peers', false)
  .option(
    '--multicluster-api-host <host>',
    'serve /metadata/private/multicluster.json to multicluster peers, naming this host as the API proxy',
  )
  .option(
    '--api-proxy-address <host:port>',
    `serve the read-only api-proxy for multicluster peers here (TLS; needs --kube); off unless given (manifests use port ${DEFAULT_API_PROXY_PORT})`,
    hostPort,
  )
  .option(
    '--api-proxy-tls-cert <file>',
    "with --api-proxy-tls-key: the api-proxy's certificate chain (PEM); else one from the mesh CA for --api-proxy-dns-names",
  )
  .option('--api-proxy-tls-key <file>', 'private key (PEM) of --api-proxy-tls-cert')
  .option(
    '--api-proxy-dns-names <names>',
    "the api-proxy's DNS names for its mesh CA certificate, comma-separated",
    'meshfed-peers.meshfed-system.svc,localhost',
  )
  .option('--advertise-gateway <address:port>', 'publish this gateway to peers instead of the discovered ones (repeatable)', gatewayAddress)
  .option(
    '--cluster-uuid <uuid>',
    "this cluster's UUID among peers (default: with --kube, the uid of Namespace kube-system; else one per run)",
  )
  .option(
    '--authn-key-dir <dir>',
    'where the Ed25519 key pair that signs tokens to peers is kept (pub.pem, priv.pem); default: with --kube, Secret meshfed-authn-keypair in --namespace; else memory',
  )
  .option(
    '--lease-duration <s>',
    'with --kube, replicas elect a leader on the Lease meshfed-leader in --namespace: a dead leader is replaced after this long',
    secondsToMs('--lease-duration'),
    DEFAULT_LEASE_DURATION_MS,
  )
  .option('--log-level <level>', 'trace, debug, info, warn or error', logLevel, process.env['MESHFED_LOG_LEVEL'] ?? 'info')
  .action(async (o) => {
    const log = createLogger(o.logLevel);
    routeGrpcLogs(log);
    const kube = Boolean(o.kube || o.kubeconfig);
    // With Kubernetes discovery the mesh CA is on by default, for the cluster domain.
    const trustDomain: string | undefined = o.trustDomain ?? (kube ? o.clusterDomain : undefined);
    const exporterOnly = ['federation', 'multiclusterApiHost', 'advertiseGateway', 'metadataTlsCert', 'metadataTlsKey'].filter((k) => o[k]);
    if (o.writeRemoteSecrets && !kube) throw new Error('--write-remote-secrets writes to the local apiserver: give --kube or --kubeconfig');
    if (!o.metadataAddress && exporterOnly.length)
      log.warn({ flags: exporterOnly }, 'these flags configure the metadata exporter, which is off without --metadata-address');
    const apiProxyOnly = ['apiProxyTlsCert', 'apiProxyTlsKey'].filter((k) => o[k]);
    if (!o.apiProxyAddress && apiProxyOnly.length)
      log.warn({ flags: apiProxyOnly }, 'these flags configure the api-proxy, which is off without --api-proxy-address');
    for (const [flag, given] of [
      ['--ca-dir', o.caDir],
      ['--workload-cert-ttl', o.workloadCertTtl],
      ['--xds-tls', o.xdsTls],
    ] as const) {
      if (given && !trustDomain) throw new Error(`${flag} needs the mesh CA: give --trust-domain (with --kube it is the cluster domain)`);
    }
    let meshfed;
    try {
      meshfed = await startMeshfed({
        config: o.config,
        xdsHost: o.xdsAddress.host,
        xdsPort: o.xdsAddress.port,
        adminHost: o.adminAddress.host,
        adminPort: o.adminAddress.port,
        debugHost: o.debugAddress.host,
        debugPort: o.debugAddress.port,
        debounceMs: o.debounce,
        debounceMaxMs: o.debounceMax,
        enableAdminApi: o.enableAdminApi,
        adminIdentities: o.adminIdentities,
        adminApiAllowSecrets: o.adminApiAllowSecrets,
        maxConfigBytes: o.maxConfigBytes,
        sdsConfig: o.sdsConfig,
        xdsLimits: {
          maxRequestBytes: o.maxRequestBytes,
          maxNames: o.maxNames,
          maxNameBytes: o.maxNameBytes,
          maxStreamsPerConnection: o.maxStreamsPerConnection,
          maxConnectionsPerAddress: o.maxConnectionsPerAddress,
          idleWriteTimeoutMs: o.streamIdleWriteTimeout,
        },
        kube: kube
          ? {
              kubeconfig: o.kubeconfig,
              clusterId: o.clusterId,
              network: o.network,
              clusterDomain: o.clusterDomain,
              namespace: o.namespace,
              discoverySelectors: o.discoverySelectors ?? [],
              serviceEntries: o.serviceEntries,
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
        ...(trustDomain && {
          pki: {
            trustDomain,
            // In a cluster the CA lives in a Secret (cacerts, else meshfed-ca), so replicas share one root.
            caStore: o.caDir ? fileCaStore(o.caDir) : kube ? kubeCaStore(localKubeConfig(o.kubeconfig), o.namespace) : memoryCaStore(),
            workloadTtlMs: o.workloadCertTtl && o.workloadCertTtl * 1000,
          },
        }),
        xdsTls: o.xdsTls ? { dnsNames: String(o.serverDnsNames).split(',').filter(Boolean) } : undefined,
        xdsPlaintextHost: o.xdsPlaintextAddress?.host,
        xdsPlaintextPort: o.xdsPlaintextAddress?.port,
        insecureDevIdentity: o.insecureDevIdentity,
        istioConfig: { namespace: o.configNamespace ?? o.namespace },
        clusterId: o.clusterId,
        federation: {
          pollIntervalMs: o.peerPollInterval,
          watchCrs: o.istioFederations,
          watchMulticlusterCrs: o.istioMulticlusters,
          writeRemoteSecrets: o.writeRemoteSecrets,
          remote: {
            staleAfterMs: o.remoteStaleAfter,
            withdrawAfterMs: o.remoteWithdrawAfter,
            maxDropShare: o.remoteMaxDrop,
            confirmAfterMs: o.remoteConfirmAfter,
          },
        },
        tokenReview:
          o.xdsTls && o.tokenReview
            ? { kubeConfig: tokenReviewConfig(o.tokenReviewKubeconfig ?? o.kubeconfig), audience: o.tokenAudience }
            : undefined,
        // The alliance identity is set up with the exporter. INTEGRATION: also when federation peers are configured
        // (the peer controller mints tokens with it), without an exporter then.
        alliance:
          o.metadataAddress || o.apiProxyAddress
            ? {
                clusterUuid: o.clusterUuid,
                keyStore: o.authnKeyDir
                  ? dirAuthnKeyStore(o.authnKeyDir)
                  : kube
                    ? kubeAuthnKeyStore(localKubeConfig(o.kubeconfig), o.namespace)
                    : memoryAuthnKeyStore(),
                localClusterId: o.clusterId,
                exporter: o.metadataAddress && {
                  host: o.metadataAddress.host,
                  port: o.metadataAddress.port,
                  tls: tlsFiles('--metadata', o.metadataTlsCert, o.metadataTlsKey),
                  federation: o.federation,
                  multiclusterApiHost: o.multiclusterApiHost,
                  advertise: o.advertiseGateway,
                },
                apiProxy: o.apiProxyAddress && {
                  host: o.apiProxyAddress.host,
                  port: o.apiProxyAddress.port,
                  tls: tlsFiles('--api-proxy', o.apiProxyTlsCert, o.apiProxyTlsKey) ?? {
                    dnsNames: String(o.apiProxyDnsNames).split(',').filter(Boolean),
                  },
                },
              }
            : undefined,
        lease: { durationMs: o.leaseDuration },
      });
    } catch (err) {
      log.debug({ err }, 'meshfed did not start'); // the stack, for a bug report; main prints the message
      throw err;
    }
    const m = meshfed;
    if (!o.config && !kube) printQuickStart(m.xdsPort, m.adminPort, m.debugPort);
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.once(signal, () => {
        log.info({ signal }, 'shutting down');
        void m.stop(o.shutdownGrace).then(() => process.exit(0));
      });
    }
  });

program
  .command('agent')
  .description(
    "for proxyless gRPC: fetch this workload's certificate and the trust bundle from meshfed over SDS, write them and a gRPC xDS bootstrap, keep them fresh",
  )
  .requiredOption('--xds-address <host:port>', "meshfed's TLS xDS address (SDS)")
  .option('--xds-ca <file>', "root that meshfed's xDS certificate chains to (PEM)")
  .option('--xds-server-name <name>', "name to check meshfed's certificate against (default: the address's host)")
  .option('--insecure-xds', 'DEVELOPMENT ONLY: talk to a plaintext meshfed (with --insecure-dev-identity)', false)
  .option('--token-file <file>', 'service-account token (audience istio-ca)', '/var/run/secrets/tokens/istio-token')
  .requiredOption('--bootstrap-xds-address <host:port>', "meshfed's plaintext xDS address, written into the gRPC bootstrap")
  .option('--out-dir <dir>', 'where certificates, roots and bootstrap.json go', '/etc/meshfed/grpc')
  .requiredOption('--namespace <ns>', 'workload namespace (node metadata NAMESPACE)')
  .requiredOption('--service-account <sa>', 'workload service account (node metadata SERVICE_ACCOUNT)')
  .requiredOption('--cluster-id <id>', 'cluster id (node metadata CLUSTER_ID)')
  .option('--network <name>', 'network (node metadata NETWORK)')
  .option('--node-id <id>', 'xDS node id (default: <hostname>.<namespace>)')
  .option('--trust-domain <td...>', 'peer trust domains to declare in the bootstrap before their roots are known')
  .option('--refresh-interval <seconds>', 'how often gRPC re-reads the certificate files', int('--refresh-interval'), 5)
  .option('--csr', 'make the key pair here and send meshfed only a CSR (Istio CA API): the private key never leaves the pod', false)
  .option('--log-level <level>', 'trace, debug, info, warn or error', logLevel, process.env['MESHFED_LOG_LEVEL'] ?? 'info')
  .action(async (o) => {
    const log = createLogger(o.logLevel);
    routeGrpcLogs(log);
    if (o.csr && o.insecureXds) throw new Error('--csr needs TLS to meshfed (--xds-ca): its CA API is served only there');
    if (!o.xdsCa && !o.insecureXds) throw new Error('--xds-ca is required (or --insecure-xds for a development meshfed)');
    const agent = startAgent({
      xdsAddress: o.xdsAddress,
      xdsCaPem: o.xdsCa ? readFlagFile('--xds-ca', o.xdsCa) : undefined,
      xdsServerName: o.xdsServerName,
      tokenFile: o.insecureXds ? undefined : o.tokenFile,
      bootstrapXdsAddress: o.bootstrapXdsAddress,
      outDir: o.outDir,
      nodeId: o.nodeId ?? `${process.env['HOSTNAME'] ?? 'grpc'}.${o.namespace}`,
      clusterId: o.clusterId,
      namespace: o.namespace,
      serviceAccount: o.serviceAccount,
      network: o.network,
      trustDomains: o.trustDomain,
      refreshIntervalSec: o.refreshInterval,
      csr: o.csr,
      log,
    });
    await agent.ready;
    log.info({ bootstrap: agent.bootstrapPath }, `ready: start the gRPC application with GRPC_XDS_BOOTSTRAP=${agent.bootstrapPath}`);
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => (agent.close(), process.exit(0)));
  });

caCommand(
  program.command('ca').description('root rotation of the mesh CA, in its Secret (--kubeconfig, in-cluster) or --ca-dir'),
  inClusterNamespace() ?? KUBE_DEFAULTS.namespace,
);

program
  .command('status')
  .description('one row per federation peer: trust domain, UUID, metadata exchange state, last success, imports, gateways')
  .option(
    '--debug-url <url>',
    "meshfed's debug HTTP address (--debug-address; from outside the pod: kubectl port-forward)",
    `http://127.0.0.1:${DEFAULTS.debugPort}`,
  )
  .option('-o, --output <format>', 'table or json', 'table')
  .action(async (o: { debugUrl: string; output: string }) => {
    const { fetchPeers, peerTable } = await import('./status.js');
    if (o.output !== 'table' && o.output !== 'json') {
      process.stderr.write(`meshfed status: --output must be table or json, not "${o.output}"\n`);
      process.exitCode = 1;
      return;
    }
    try {
      const rows = await fetchPeers(o.debugUrl);
      process.stdout.write(o.output === 'json' ? `${JSON.stringify(rows, null, 2)}\n` : peerTable(rows));
    } catch (err) {
      process.stderr.write(`meshfed status: ${(err as Error).message}\n`);
      process.exitCode = 1;
    }
  });

program
  .command('validate <file>')
  .description(
    'check Envoy resources (YAML/JSON: one with "@type", a list, or a Bootstrap) against the validate rules of Envoy\'s protos, or a mesh description as `serve --config` reads it',
  )
  .action(async (file: string) => {
    const { readFile } = await import('node:fs/promises');
    const { validateText } = await import('../validate/file.js');
    try {
      const { ok, lines } = validateText(await readFile(file, 'utf8'), file);
      process.stdout.write(lines.map((l) => `${l}\n`).join(''));
      if (!ok) process.exitCode = 1;
    } catch (err) {
      // An unreadable file, or a check that broke: one line, never a stack trace.
      process.stderr.write(`${file}: ${(err as Error).message.split('\n')[0]}\n`);
      process.exitCode = 1;
    }
  });

/** `<prefix>-tls-cert` and `<prefix>-tls-key`: both or neither. */
function tlsFiles(
  prefix: string,
  certFile: string | undefined,
  keyFile: string | undefined,
): { certFile: string; keyFile: string } | undefined {
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new Error(`${prefix}-tls-cert and ${prefix}-tls-key go together`);
  return { certFile, keyFile };
}

/** A client in cluster-a's network; grpc-js-xds NACKs clusters whose certificate providers its bootstrap lacks. */
function quickStartBootstrap(xdsPort: number): object {
  const caOnly = (td: string): object => ({
    plugin_name: 'file_watcher',
    config: { ca_certificate_file: `/etc/meshfed/grpc/roots/${td}.pem`, refresh_interval: '5s' },
  });
  return {
    xds_servers: [{ server_uri: `localhost:${xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: 'client-1', locality: {}, metadata: { CLUSTER_ID: 'cluster-a', NETWORK: 'network-a' } },
    certificate_providers: {
      default: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: '/etc/meshfed/grpc/cert-chain.pem',
          private_key_file: '/etc/meshfed/grpc/key.pem',
          ca_certificate_file: '/etc/meshfed/grpc/root-cert.pem',
          refresh_interval: '5s',
        },
      },
      'spiffe://cluster-a.local': caOnly('cluster-a.local'),
      'spiffe://cluster-b.local': caOnly('cluster-b.local'),
    },
  };
}

function printQuickStart(xdsPort: number, adminPort: number, debugPort: number): void {
  process.stderr.write(`
meshfed is serving the embedded two-cluster mesh (cluster-a: foo.abc, cluster-b: bar.xyz).

  Proxyless gRPC: GRPC_XDS_BOOTSTRAP_CONFIG='${JSON.stringify(quickStartBootstrap(xdsPort))}'
                  then dial xds:///foo.abc.svc.cluster-a.local:8080 (the endpoints take mTLS: with insecure
                  credentials the certificate providers are only declared; \`meshfed agent\` writes real ones)
  Envoy:          point an ADS cluster at 127.0.0.1:${xdsPort} (see deploy/examples/)
  What is served: http://localhost:${debugPort}/debug/syncz   http://localhost:${debugPort}/debug/mesh   http://localhost:${adminPort}/metrics

`);
}

/** TokenReview's apiserver; outside a cluster, say how to do without it. */
function tokenReviewConfig(kubeconfig: string | undefined): ReturnType<typeof localKubeConfig> {
  try {
    return localKubeConfig(kubeconfig);
  } catch (err) {
    throw new Error(
      `--xds-tls checks service-account tokens with TokenReview: ${(err as Error).message}; or pass --no-token-review (client certificates only)`,
    );
  }
}

// Bad input ends in one line on stderr and a non-zero exit, never a stack trace. Exit at once: a half-started
// server (one port bound, the other in use) would otherwise keep the process alive.
await program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`meshfed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
