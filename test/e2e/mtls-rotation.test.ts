// Certificates change under running proxyless gRPC workloads: leaves with a lifetime of seconds are
// re-issued before they expire, and the root is rotated (new root in every bundle first, then it
// signs), while a client keeps calling a server over mTLS, both on long-lived and on fresh connections.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { freePort, MtlsClient, startWorkload, startXdsEchoServer, type Workload } from '../helpers/grpc-mtls.js';
import { startTlsMesh, type TlsMesh } from '../helpers/mesh-tls.js';
import type * as grpc from '@grpc/grpc-js';

const TD = 'cluster-a.local';
const TARGET = `xds:///bar.xyz.svc.${TD}:9000`;
const LEAF_TTL_MS = 8000;

let api: FakeApiServer;
let mesh: TlsMesh;
let client: Workload;
let serverWl: Workload;
let server: grpc.Server;
let longLived: MtlsClient;

beforeAll(async () => {
  api = await startFakeApiServer({ clusterName: 'cluster-a' });
  const port = await freePort();
  mesh = await startTlsMesh({
    trustDomain: TD,
    apiserver: api,
    workloadTtlMs: LEAF_TTL_MS,
    doc: {
      clusters: [{ id: 'cluster-a', network: 'net', domain: TD, rootCaPem: '' }],
      services: [
        {
          name: 'bar',
          namespace: 'xyz',
          cluster: 'cluster-a',
          ports: [{ name: 'grpc', port: 9000, protocol: 'GRPC' }],
          endpoints: [
            { address: '127.0.0.1', port, serviceAccount: 'bar', locality: { region: 'r', zone: 'z' }, health: 'HEALTHY', mtls: true },
          ],
        },
      ],
    },
  });
  const token = (ns: string, sa: string) => api.issueServiceAccountToken(ns, sa, { audiences: ['istio-ca'] });
  [client, serverWl] = await Promise.all([
    startWorkload({ mesh, token: token('abc', 'foo'), clusterId: 'cluster-a', namespace: 'abc', serviceAccount: 'foo' }),
    startWorkload({ mesh, token: token('xyz', 'bar'), clusterId: 'cluster-a', namespace: 'xyz', serviceAccount: 'bar' }),
  ]);
  server = await startXdsEchoServer(await serverWl.bootstrap(), port, 'bar');
  longLived = new MtlsClient(TARGET, await client.bootstrap());
  await vi.waitFor(async () => expect(await longLived.call(2000)).toMatchObject({ ok: true }), { timeout: 10_000, interval: 100 });
}, 30_000);

afterAll(async () => {
  longLived?.close();
  server?.forceShutdown();
  await Promise.all([client?.stop(), serverWl?.stop()]);
  await mesh?.stop();
  await api?.close();
});

interface Traffic {
  calls: number;
  failures: string[];
  /** Distinct leaf serials each workload's files held while traffic ran. */
  serials: { client: Set<string>; server: Set<string> };
}

/**
 * Calls until `done` resolves: every 50 ms on the long-lived channel, and every 500 ms on a fresh
 * channel, whose new TLS handshake uses whatever certificates the files hold at that moment.
 */
async function traffic(done: Promise<unknown>): Promise<Traffic> {
  const t: Traffic = { calls: 0, failures: [], serials: { client: new Set(), server: new Set() } };
  let stop = false;
  void done.finally(() => (stop = true));
  const record = (who: string, r: { ok: boolean; value: string }): void => {
    t.calls++;
    if (!r.ok) t.failures.push(`${who}: ${r.value}`);
  };
  const serial = async (w: Workload): Promise<string> => new X509Certificate(await readFile(w.agent.files.certChain, 'utf8')).serialNumber;
  const bootstrap = await client.bootstrap();
  await Promise.all([
    (async () => {
      while (!stop) {
        record('long-lived', await longLived.call(3000));
        await new Promise((r) => setTimeout(r, 50));
      }
    })(),
    (async () => {
      while (!stop) {
        const fresh = new MtlsClient(TARGET, bootstrap);
        record('fresh', await fresh.call(5000));
        fresh.close();
        t.serials.client.add(await serial(client));
        t.serials.server.add(await serial(serverWl));
        await new Promise((r) => setTimeout(r, 500));
      }
    })(),
  ]);
  await done;
  return t;
}

describe('certificate rotation under traffic', () => {
  it('leaves of a few seconds are re-issued before they expire; no call fails', async () => {
    const first = new X509Certificate(await readFile(serverWl.agent.files.certChain, 'utf8'));
    const pastExpiry = new Date(first.validTo).getTime() + 1500 - Date.now();
    const t = await traffic(new Promise((r) => setTimeout(r, Math.max(pastExpiry, 0))));
    expect(t.failures).toEqual([]);
    expect(t.calls).toBeGreaterThan(20);
    // Traffic ran past the first certificate's expiry, on new connections too: only renewals kept it going.
    expect(t.serials.server.size).toBeGreaterThanOrEqual(2);
    expect(t.serials.client.size).toBeGreaterThanOrEqual(2);
  }, 20_000);

  it('a root rotation keeps calls working throughout', async () => {
    const ca = mesh.meshfed.pki!.ca;
    const oldRoot = ca.roots[0]!;
    const rootsFile = (w: Workload) => readFile(w.agent.files.roots, 'utf8');
    const rotation = (async () => {
      await ca.rotateRoot(); // phase 1: the new root joins every bundle, signs nothing yet
      const newRoot = ca.roots.find((r) => r !== oldRoot)!;
      await vi.waitFor(
        async () => {
          expect(await rootsFile(client), 'the client trusts the new root').toContain(newRoot.trim());
          expect(await rootsFile(serverWl), 'the server trusts the new root').toContain(newRoot.trim());
        },
        { timeout: 10_000, interval: 50 },
      );
      await new Promise((r) => setTimeout(r, 1500)); // gRPC re-reads the files every second
      await ca.activateRotation(); // phase 2: the new root signs; every workload gets a new leaf
      await vi.waitFor(
        async () => {
          const key = new X509Certificate(newRoot).publicKey;
          const leaf = async (w: Workload) => new X509Certificate(await readFile(w.agent.files.certChain, 'utf8'));
          expect((await leaf(client)).verify(key), 'the client leaf is signed by the new root').toBe(true);
          expect((await leaf(serverWl)).verify(key), 'the server leaf is signed by the new root').toBe(true);
        },
        { timeout: 10_000, interval: 50 },
      );
      await new Promise((r) => setTimeout(r, 2000)); // and calls keep working on the new leaves
      return newRoot;
    })();
    const t = await traffic(rotation);
    const newRoot = await rotation;
    expect(t.failures).toEqual([]);
    expect(t.calls).toBeGreaterThan(20);
    // The old root stays trusted while leaves it signed may still be in use.
    const roots = await rootsFile(client);
    expect(roots).toContain(newRoot.trim());
    expect(roots).toContain(oldRoot.trim());
  }, 30_000);
});
