// A real proxyless gRPC client (@grpc/grpc-js-xds) pointed at meshfed, for end-to-end tests.
//
// grpc-js-xds 1.14 reads the process-wide bootstrap once (GRPC_XDS_BOOTSTRAP /
// GRPC_XDS_BOOTSTRAP_CONFIG) for its singleton XdsClient, but a channel given the option
// 'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config' gets its own XdsClient (and ADS stream)
// built from that bootstrap. Tests use the option, so each client has its own node id and meshfed
// port, and test files need no environment set before import. `useProcessBootstrap` exercises
// the production path instead (the environment variable and the singleton client); since that is
// read once per process, a test file may use it with one bootstrap only (vitest runs each file in
// its own fork).
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { ECHO_PATH } from './grpc-echo.js';

grpcXds.register();

const BOOTSTRAP_OPTION = 'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config';

export interface BootstrapOptions {
  readonly xdsPort: number;
  readonly nodeId: string;
  readonly metadata?: Record<string, string>;
  /** Trust domains whose `spiffe://<td>` certificate-provider instances the bootstrap declares; default cluster-a.local. */
  readonly trustDomains?: readonly string[];
  /** certificate_providers to use instead of the placeholder ones (for channels with xDS credentials). */
  readonly certificateProviders?: Record<string, unknown>;
}

/**
 * grpc-js-xds checks the certificate-provider instance names of a cluster's mTLS config against
 * its bootstrap even on a channel with insecure credentials (which never reads the files). These
 * placeholder instances (`default`, `spiffe://<td>`) point at empty files made here.
 */
export function placeholderCertificateProviders(trustDomains: readonly string[]): Record<string, unknown> {
  const dir = path.join(os.tmpdir(), `meshfed-test-certs-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const file = (name: string): string => {
    const f = path.join(dir, name);
    writeFileSync(f, '');
    return f;
  };
  const ca = file('ca.pem');
  const providers: Record<string, unknown> = {
    default: {
      plugin_name: 'file_watcher',
      config: { certificate_file: file('cert.pem'), private_key_file: file('key.pem'), ca_certificate_file: ca, refresh_interval: '600s' },
    },
  };
  for (const td of trustDomains)
    providers[`spiffe://${td}`] = { plugin_name: 'file_watcher', config: { ca_certificate_file: ca, refresh_interval: '600s' } };
  return providers;
}

export function bootstrapConfig(o: BootstrapOptions): Record<string, unknown> {
  return {
    certificate_providers: o.certificateProviders ?? placeholderCertificateProviders(o.trustDomains ?? ['cluster-a.local']),
    xds_servers: [
      {
        server_uri: `127.0.0.1:${o.xdsPort}`,
        channel_creds: [{ type: 'insecure' }],
        server_features: ['xds_v3'],
      },
    ],
    node: { id: o.nodeId, locality: {}, metadata: o.metadata ?? {} },
  };
}

/**
 * Points the process-wide xDS client at meshfed through GRPC_XDS_BOOTSTRAP_CONFIG. Must run before
 * the first channel without a per-channel bootstrap; grpc-js-xds never reads it again.
 */
export function useProcessBootstrap(o: BootstrapOptions): void {
  const json = JSON.stringify(bootstrapConfig(o));
  const current = process.env['GRPC_XDS_BOOTSTRAP_CONFIG'];
  if (current !== undefined && current !== json) {
    throw new Error('GRPC_XDS_BOOTSTRAP_CONFIG is already set: grpc-js-xds reads it once per process');
  }
  process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = json;
}

export interface CallResult {
  readonly ok: boolean;
  /** Backend name on success, status details on failure. */
  readonly value: string;
  readonly code?: grpc.status;
}

/** One echo RPC; resolves with the backend's name, or the status on failure. */
export function echoCall(client: grpc.Client, timeoutMs: number, waitForReady: boolean): Promise<CallResult> {
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      ECHO_PATH,
      (b) => b,
      (b) => b,
      Buffer.alloc(0),
      new grpc.Metadata({ waitForReady }),
      { deadline: Date.now() + timeoutMs },
      (err, res) => resolve(err ? { ok: false, value: err.details, code: err.code } : { ok: true, value: res!.toString() }),
    );
  });
}

export class XdsEchoClient {
  readonly client: grpc.Client;
  readonly target: string;

  /** `bootstrap` 'process': the singleton xDS client (see useProcessBootstrap). */
  constructor(target: string, bootstrap: BootstrapOptions | 'process') {
    this.target = target;
    this.client = new grpc.Client(
      target,
      grpc.credentials.createInsecure(),
      bootstrap === 'process' ? {} : { [BOOTSTRAP_OPTION]: JSON.stringify(bootstrapConfig(bootstrap)) },
    );
  }

  /** One RPC; waits for the channel to resolve (waitForReady) up to the deadline. */
  call(timeoutMs = 5000): Promise<CallResult> {
    return echoCall(this.client, timeoutMs, true);
  }

  /** `n` sequential RPCs, counted by the backend that served them; failures under "ERROR: <details>". */
  async spread(n: number, timeoutMs = 5000): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const r = await this.call(timeoutMs);
      const key = r.ok ? r.value : `ERROR: ${r.value}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return counts;
  }

  close(): void {
    this.client.close();
  }
}
