// `meshfed agent`: istio-agent for proxyless gRPC. It fetches its identity's certificate and the
// trust bundle from meshfed over SDS, writes them for gRPC's file_watcher certificate provider,
// writes the gRPC xDS bootstrap, and rewrites the files (atomically) on every SDS push.
//
// Files in the output directory:
//   cert-chain.pem, key.pem (0600)  the workload certificate (leaf first, root last) and its key
//   root-cert.pem                   every trusted root (the "default" provider's CA file)
//   roots/<trust-domain>.pem        one trust domain's roots (its "spiffe://<td>" provider)
//   bootstrap.json                  the gRPC xDS bootstrap (GRPC_XDS_BOOTSTRAP)
// grpc-js-xds 1.14 speaks only plaintext (or Google default credentials) to its xDS server, so the
// bootstrap points at meshfed's plaintext port, which serves configuration but never a secret.
import { X509Certificate } from 'node:crypto';
import { renameSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { pemBlob, ROOTCA_SECRET, SERVER_LISTENER_TEMPLATE } from '../envoy/names.js';
import { CsrClient } from './csr-client.js';
import { SdsClient, type SdsUpdate, type WorkloadCert } from './sds-client.js';

export interface AgentOptions {
  /** meshfed's TLS xDS address (for SDS). */
  readonly xdsAddress: string;
  /** meshfed's root (PEM); undefined for a plaintext development meshfed. */
  readonly xdsCaPem: string | undefined;
  readonly xdsServerName?: string;
  readonly tokenFile?: string;
  /** The xDS address the gRPC application uses (plaintext: CDS/EDS/LDS/RDS). */
  readonly bootstrapXdsAddress: string;
  readonly outDir: string;
  readonly nodeId: string;
  readonly clusterId: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly network?: string;
  /** Trust domains to declare certificate providers for even before their roots are known (peers). */
  readonly trustDomains?: readonly string[];
  /** file_watcher refresh interval, seconds. */
  readonly refreshIntervalSec?: number;
  /** Make the key pair here and have only a CSR signed (CA API); SDS then brings only the trust bundle. */
  readonly csr?: boolean;
  readonly log: Logger;
}

export interface Agent {
  /** Resolves once the certificate, the roots and the bootstrap are written. */
  readonly ready: Promise<void>;
  readonly bootstrapPath: string;
  /** The files' directory layout. */
  readonly files: AgentFiles;
  close(): void;
}

export interface AgentFiles {
  readonly certChain: string;
  readonly key: string;
  readonly roots: string;
  rootsOf(trustDomain: string): string;
  readonly bootstrap: string;
}

export function agentFiles(outDir: string): AgentFiles {
  return {
    certChain: path.join(outDir, 'cert-chain.pem'),
    key: path.join(outDir, 'key.pem'),
    roots: path.join(outDir, 'root-cert.pem'),
    rootsOf: (td) => path.join(outDir, 'roots', `${td.replace(/[^A-Za-z0-9.-]/g, '_')}.pem`),
    bootstrap: path.join(outDir, 'bootstrap.json'),
  };
}

export function startAgent(o: AgentOptions): Agent {
  const files = agentFiles(o.outDir);
  let cert: WorkloadCert | undefined;
  let bundles: ReadonlyMap<string, string> | undefined;
  let bootstrapDomains = '';
  let learnt = '';
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));
  let seq = 0;

  /** Readers see the old files or the new ones, never half of one. */
  const write = async (...entries: Array<[file: string, data: string, mode?: number]>): Promise<void> => {
    const tmps = await Promise.all(
      entries.map(async ([file, data, mode]) => {
        const tmp = `${file}.${process.pid}.${++seq}.tmp`;
        await writeFile(tmp, data, { mode: mode ?? 0o644 });
        return [tmp, file] as const;
      }),
    );
    // Back to back, with nothing awaited in between: gRPC reads certificate and key separately,
    // and a pair from two generations would not load.
    for (const [tmp, file] of tmps) renameSync(tmp, file);
  };

  const onUpdate = async (u: SdsUpdate): Promise<void> => {
    await mkdir(path.join(o.outDir, 'roots'), { recursive: true });
    if (u.bundles) {
      bundles = u.bundles;
      await write(...[...bundles].map(([td, pem]): [string, string] => [files.rootsOf(td), pem]), [
        files.roots,
        pemBlob([...bundles.values()]),
      ]);
      o.log.info({ trustDomains: [...bundles.keys()] }, 'trust bundle written');
    }
    if (u.cert) {
      cert = u.cert;
      await write([files.key, cert.privateKeyPem, 0o600], [files.certChain, cert.certChainPem]);
      o.log.info('workload certificate written');
    }
    if (!cert || !bundles) return;
    // meshfed's serving certificate comes from the same CA as ours: follow its roots through a rotation.
    learnt = bundles.get(trustDomainOfCert(cert.certChainPem)) ?? '';
    sds.trust(learnt);
    // gRPC reads its bootstrap once: it declares every trust domain known now or named up front.
    const domains = [...new Set([...bundles.keys(), ...(o.trustDomains ?? [])])].sort();
    if (domains.join(' ') !== bootstrapDomains) {
      for (const td of domains) if (!bundles.has(td)) await write([files.rootsOf(td), '']); // not trusted yet: handshakes fail
      await write([files.bootstrap, JSON.stringify(bootstrap(o, files, domains), null, 2) + '\n']);
      bootstrapDomains = domains.join(' ');
    }
    resolveReady();
  };

  const sds = new SdsClient({
    address: o.xdsAddress,
    caPem: o.xdsCaPem,
    serverName: o.xdsServerName,
    tokenFile: o.tokenFile,
    node: { id: o.nodeId, cluster: o.clusterId, metadata: nodeMetadata(o) },
    names: o.csr ? [ROOTCA_SECRET] : undefined,
    log: o.log.child({ module: 'sds-client' }),
    onUpdate,
  });
  sds.start();
  const csr = o.csr
    ? startCsrClient(
        o,
        (u) => onUpdate(u),
        () => learnt,
      )
    : undefined;
  return { ready, bootstrapPath: files.bootstrap, files, close: () => (sds.close(), csr?.close()) };
}

/** `--csr`: certificates for a key made here, through the CA API at the same address as SDS. */
function startCsrClient(o: AgentOptions, onUpdate: (u: SdsUpdate) => Promise<void>, learntRoots: () => string): CsrClient {
  const client = new CsrClient({
    address: o.xdsAddress,
    roots: () => (o.xdsCaPem ?? '') + learntRoots(),
    serverName: o.xdsServerName,
    tokenFile: o.tokenFile,
    clusterId: o.clusterId,
    log: o.log.child({ module: 'csr-client' }),
    onCert: (cert) => onUpdate({ cert }),
  });
  client.start();
  return client;
}

function trustDomainOfCert(chainPem: string): string {
  const uri = /URI:spiffe:\/\/([^/,\s]+)/.exec(new X509Certificate(chainPem).subjectAltName ?? '');
  return uri?.[1] ?? '';
}

function nodeMetadata(o: AgentOptions): Record<string, string> {
  return {
    CLUSTER_ID: o.clusterId,
    NAMESPACE: o.namespace,
    SERVICE_ACCOUNT: o.serviceAccount,
    GENERATOR: 'grpc',
    ...(o.network ? { NETWORK: o.network } : {}),
  };
}

/** The gRPC xDS bootstrap, with the certificate providers of CONTRACTS.md. */
export function bootstrap(o: AgentOptions, files: AgentFiles, trustDomains: readonly string[]): Record<string, unknown> {
  const refresh_interval = `${o.refreshIntervalSec ?? 5}s`;
  const providers: Record<string, unknown> = {
    default: {
      plugin_name: 'file_watcher',
      config: { certificate_file: files.certChain, private_key_file: files.key, ca_certificate_file: files.roots, refresh_interval },
    },
  };
  for (const td of trustDomains) {
    providers[`spiffe://${td}`] = { plugin_name: 'file_watcher', config: { ca_certificate_file: files.rootsOf(td), refresh_interval } };
  }
  return {
    xds_servers: [{ server_uri: o.bootstrapXdsAddress, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: o.nodeId, cluster: o.clusterId, locality: {}, metadata: nodeMetadata(o) },
    certificate_providers: providers,
    server_listener_resource_name_template: SERVER_LISTENER_TEMPLATE,
  };
}
