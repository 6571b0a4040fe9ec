// Two `meshfed serve --kube` processes on two fake apiservers, as the peer e2e tests (federation, multicluster) run
// them: kubectl against one side, the serve process, a `meshfed agent` workload of one side, and a side's east-west
// gateway (the SNI gateway fixture fed by that side's xDS as a `router`).
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { expect, vi } from 'vitest';
import type { V1Secret } from '@kubernetes/client-node';
import { DEFAULT_CA_SECRET, secretToMaterial } from '../../src/pki/kube-store.js';
import type { FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { type GatewayEvent, SniGateway } from '../fixtures/sni-gateway/gateway.js';
import { SniRoutes } from '../fixtures/sni-gateway/routes.js';
import { type GatewayNode, XdsRoutes } from '../fixtures/sni-gateway/xds-routes.js';
import { type CallOutcome, type MtlsClient, startWorkload, type Workload } from './grpc-mtls.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../..');
const KUBECTL = execFileSync('which', ['kubectl'], { encoding: 'utf8' }).trim();
export const CRDS = path.join(repo, 'deploy/kubernetes/crds');

/** What these helpers need of a side: its apiserver, a kubeconfig for it, a scratch dir, and its process's output. */
export interface KubeSide {
  readonly name: string;
  readonly dir: string;
  readonly api: FakeApiServer;
  readonly kubeconfig: string;
  proc?: ChildProcess;
  out: string;
}

/** The real kubectl against side s; `input` is written to a file and passed with -f. */
export async function kubectl(s: KubeSide, args: string[], input?: object): Promise<string> {
  let file: string | undefined;
  if (input) {
    file = path.join(s.dir, `in-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, stringify(input));
  }
  const { stdout } = await run(KUBECTL, [...args, ...(file ? ['-f', file] : [])], {
    env: { ...process.env, KUBECONFIG: s.kubeconfig },
    timeout: 20_000,
  });
  return stdout;
}

/** `meshfed <args>` as a child process; its stdout and stderr collect in s.out. */
export function spawnMeshfed(s: KubeSide, args: string[]): void {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  s.proc = proc;
  proc.stdout!.on('data', (d: Buffer) => (s.out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (s.out += d.toString()));
}

export interface WorkloadOf {
  /** meshfed's xDS ports: TLS (the agent's SDS, with a token) and plaintext (the proxyless bootstrap). */
  readonly xds: number;
  readonly plain: number;
  readonly network: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly trustDomains?: readonly string[];
}

/** `meshfed agent` for a pod of side s: a token from s's apiserver, meshfed's root from s's mesh CA Secret. */
export function kubeWorkload(s: KubeSide, o: WorkloadOf): Promise<Workload> {
  const rootPem = secretToMaterial(s.api.get('v1', 'Secret', 'meshfed', DEFAULT_CA_SECRET) as V1Secret)!.rootCertPem;
  return startWorkload({
    mesh: { meshfed: { xdsPort: o.xds }, rootPem, plaintextPort: o.plain },
    token: s.api.issueServiceAccountToken(o.namespace, o.serviceAccount, { audiences: ['istio-ca'] }),
    clusterId: s.name,
    network: o.network,
    namespace: o.namespace,
    serviceAccount: o.serviceAccount,
    trustDomains: o.trustDomains,
  });
}

/**
 * A side's east-west gateway: the SNI gateway fixture on loopback (listen first, to advertise its port), then fed by
 * that side's xDS as a `router`, as an Envoy gateway with only a bootstrap would be.
 */
export class EastWestGateway {
  readonly routes = new SniRoutes();
  readonly events: GatewayEvent[] = [];
  /** Errors of the xDS stream feeding the routes (none expected; shown when a route never comes). */
  readonly errors: string[] = [];
  private readonly server = new SniGateway({ routes: this.routes, host: '127.0.0.1', port: 0, onEvent: (e) => this.events.push(e) });
  private xds?: XdsRoutes;

  listen(): Promise<number> {
    return this.server.listen();
  }

  get port(): number {
    return this.server.port;
  }

  /** Follows meshfed's xDS at `xds` (host:port) as `node`. */
  follow(xds: string, node: GatewayNode): void {
    this.xds = new XdsRoutes({ xds, node, routes: this.routes, onError: (e) => this.errors.push(e.message) });
  }

  /** The connections forwarded so far, as [SNI cluster, upstream port]. */
  forwarded(): Array<[string, number]> {
    return this.events.flatMap((e) => (e.kind === 'forward' ? [[e.cluster, e.upstream.port] as [string, number]] : []));
  }

  async close(): Promise<void> {
    this.xds?.close();
    await this.server.close();
  }
}

/** Calls until a call succeeds (the client's xDS settling), then returns that call's outcome. */
export function firstOkCall(channel: MtlsClient, timeoutMs = 20_000): Promise<CallOutcome> {
  return vi.waitFor(
    async () => {
      const r = await channel.call(2000);
      if (!r.ok) throw new Error(r.value);
      return r;
    },
    { timeout: timeoutMs, interval: 200 },
  );
}

/**
 * Waits until each of the two sides' `kind` resource naming the other side has every condition of `types` True.
 * A side that exits fails at once; any failure carries both sides' output.
 */
export async function untilPeersReady(
  sides: readonly KubeSide[],
  kind: 'IstioFederation' | 'IstioMulticluster',
  types: readonly string[],
  timeoutMs: number,
): Promise<void> {
  const condition = (s: KubeSide, peer: string, type: string): string | undefined =>
    (
      (s.api.get('deckhouse.io/v1alpha1', kind, undefined, peer)?.['status'] as { conditions?: Array<Record<string, string>> } | undefined)
        ?.conditions ?? []
    ).find((c) => c['type'] === type)?.['status'];
  const [a, b] = sides as [KubeSide, KubeSide];
  await vi
    .waitFor(
      () => {
        for (const s of sides) if (s.proc!.exitCode !== null) throw new Error(`${s.name} exited: ${s.out}`);
        for (const [s, peer] of [
          [a, b.name],
          [b, a.name],
        ] as const) {
          for (const t of types) expect(condition(s, peer, t), `${s.name}'s ${peer} ${t}`).toBe('True');
        }
      },
      { timeout: timeoutMs, interval: 200 },
    )
    .catch((err: Error) => {
      throw new Error(`${err.message}\n--- ${a.name}:\n${a.out.slice(-3000)}\n--- ${b.name}:\n${b.out.slice(-3000)}`);
    });
}
