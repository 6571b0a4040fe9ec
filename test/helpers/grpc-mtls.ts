// Proxyless gRPC with mTLS for end-to-end tests: a workload is a `meshfed agent` (SDS over TLS
// with a service-account token) plus a real @grpc/grpc-js-xds client or XdsServer reading the
// bootstrap and certificate files the agent writes.
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { type Agent, type AgentFiles, startAgent } from '../../src/agent/agent.js';
import { ECHO_SERVICE } from './grpc-echo.js';
import { echoCall } from './grpc-xds-client.js';
import { SERVER_NAME } from './mesh-tls.js';

grpcXds.register();

const BOOTSTRAP_OPTION = 'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config';

export interface Workload {
  readonly agent: Agent;
  readonly dir: string;
  bootstrap(): Promise<string>;
  stop(): Promise<void>;
}

/** What an agent needs of meshfed: an in-process TlsMesh, or the ports and root of a `meshfed serve` process. */
export interface AgentMesh {
  readonly meshfed: { readonly xdsPort: number };
  readonly rootPem: string;
  readonly plaintextPort: number;
}

export interface WorkloadOptions {
  readonly mesh: AgentMesh;
  readonly token: string;
  readonly clusterId: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly network?: string;
  readonly trustDomains?: readonly string[];
  /** `meshfed agent --csr`: the key is made by the agent, only a CSR goes to meshfed. */
  readonly csr?: boolean;
  /** Where the agent reaches meshfed's TLS port, when not directly (a tap in between). */
  readonly xdsPort?: number;
}

/** Runs `meshfed agent` (in process) for one workload; resolves once its files are written. */
export async function startWorkload(o: WorkloadOptions): Promise<Workload> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meshfed-agent-'));
  const tokenFile = path.join(dir, 'token');
  await writeFile(tokenFile, o.token);
  const agent = startAgent({
    xdsAddress: `127.0.0.1:${o.xdsPort ?? o.mesh.meshfed.xdsPort}`,
    xdsCaPem: o.mesh.rootPem,
    xdsServerName: SERVER_NAME,
    tokenFile,
    bootstrapXdsAddress: `127.0.0.1:${o.mesh.plaintextPort}`,
    outDir: path.join(dir, 'out'),
    nodeId: `${o.serviceAccount}.${o.namespace}`,
    clusterId: o.clusterId,
    namespace: o.namespace,
    serviceAccount: o.serviceAccount,
    network: o.network ?? 'net',
    trustDomains: o.trustDomains,
    refreshIntervalSec: 1,
    csr: o.csr,
    log: pino({ level: process.env['MESHFED_E2E_LOG'] ?? 'silent' }),
  });
  await Promise.race([
    agent.ready,
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`agent for ${o.namespace}/${o.serviceAccount} wrote no files within 10 s`)), 10_000),
    ),
  ]);
  return {
    agent,
    dir,
    bootstrap: () => readFile(agent.bootstrapPath, 'utf8'),
    async stop() {
      agent.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export { freePort } from './ports.js';

/** A real xDS-enabled gRPC server (XdsServer, XdsServerCredentials) answering the echo call with `name`. */
export async function startXdsEchoServer(bootstrapJson: string, port: number, name: string): Promise<grpcXds.XdsServer> {
  const server = new grpcXds.XdsServer({ [BOOTSTRAP_OPTION]: bootstrapJson } as grpc.ServerOptions);
  server.addService(ECHO_SERVICE, {
    Whoami: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(name)),
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`XdsServer on 127.0.0.1:${port} got no serving Listener within 10 s`)), 10_000);
    server.bindAsync(`127.0.0.1:${port}`, new grpcXds.XdsServerCredentials(grpc.ServerCredentials.createInsecure()), (err) => {
      clearTimeout(t);
      if (err) reject(err);
      else resolve();
    });
  });
  return server;
}

export interface MtlsEchoServer {
  /** The client certificate's SAN on every call served, in order. */
  readonly peerSans: readonly string[];
  stop(): void;
}

/**
 * A plain grpc-js server (no xDS) serving mTLS with the files an agent writes: its certificate, and every root it
 * trusts as the CA for client certificates, both re-read as the agent rewrites them. It requires a client certificate
 * and records the identity it carried, as an application reading its peer would.
 */
export async function startMtlsEchoServer(files: AgentFiles, port: number, name: string): Promise<MtlsEchoServer> {
  const peerSans: string[] = [];
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, {
    Whoami: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      peerSans.push(call.getAuthContext().sslPeerCertificate?.subjectaltname ?? '');
      cb(null, Buffer.from(name));
    },
  });
  const certs = new grpc.experimental.FileWatcherCertificateProvider({
    certificateFile: files.certChain,
    privateKeyFile: files.key,
    caCertificateFile: files.roots,
    refreshIntervalMs: 500,
  });
  // One provider for both roles (grpc-js's factory takes them in the opposite order to its constructor).
  const creds = grpc.experimental.createCertificateProviderServerCredentials(certs, certs, true);
  await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, creds, (err) => (err ? reject(err) : resolve())));
  return { peerSans, stop: () => server.forceShutdown() };
}

export interface CallOutcome {
  readonly ok: boolean;
  readonly value: string;
}

/** A real xDS client channel with XdsChannelCredentials. */
export class MtlsClient {
  readonly client: grpc.Client;
  constructor(target: string, bootstrapJson: string) {
    this.client = new grpc.Client(target, new grpcXds.XdsChannelCredentials(grpc.credentials.createInsecure()), {
      [BOOTSTRAP_OPTION]: bootstrapJson,
    });
  }

  async call(timeoutMs = 3000): Promise<CallOutcome> {
    const r = await echoCall(this.client, timeoutMs, false);
    return r.ok ? r : { ok: false, value: `${grpc.status[r.code!]}: ${r.value}` };
  }

  close(): void {
    this.client.close();
  }
}

/** One federated cluster of a two-cluster test: its meshfed, its apiserver (tokens), and its id and domain. */
export interface FederatedSide {
  readonly mesh: AgentMesh;
  readonly api: { issueServiceAccountToken(ns: string, sa: string, o: { audiences: string[] }): string };
  readonly id: string;
  readonly domain: string;
}

/** The federation tests' two workloads: client abc/foo in A trusting B's domain, server xyz/bar in B trusting A's. */
export function startFederatedPair(a: FederatedSide, b: FederatedSide): Promise<[Workload, Workload]> {
  const workload = (s: FederatedSide, peer: FederatedSide, namespace: string, serviceAccount: string): Promise<Workload> =>
    startWorkload({
      mesh: s.mesh,
      token: s.api.issueServiceAccountToken(namespace, serviceAccount, { audiences: ['istio-ca'] }),
      clusterId: s.id,
      namespace,
      serviceAccount,
      trustDomains: [peer.domain],
    });
  return Promise.all([workload(a, b, 'abc', 'foo'), workload(b, a, 'xyz', 'bar')]);
}
