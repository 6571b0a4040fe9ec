// Federation peers declared in a mesh file (no Kubernetes): meshfed fetches a peer's Deckhouse-shaped
// metadata over HTTPS (its own CA), with a token the peer checks by Deckhouse's rules, imports its public
// services and root, and keeps serving them through the peer's faults, with Deckhouse's reasons.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startMeshfed, type Meshfed } from '../../src/app.js';
import type { PeerRow } from '../../src/alliance/peers/controller.js';
import { fetchPeers, peerTable } from '../../src/cli/status.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import { createGenerators } from '../../src/generate/index.js';
import { proxyOf } from '../../src/model/proxy.js';
import { CertificateAuthority, memoryCaStore } from '../../src/pki/index.js';
import { localIdentity, type PeerFault, type PeerServer, startPeerServer } from '../helpers/peer-metadata.js';

const WAIT = { timeout: 5000, interval: 50 }; // for the peer exchange to move

const A_UUID = '11111111-1111-4111-8111-111111111111';
const B_UUID = '22222222-2222-4222-8222-222222222222';
const BAR = 'bar.xyz.svc.cluster-b.local';
const FOO = 'foo.abc.svc.cluster-a.local';

const idA = localIdentity(A_UUID);
let rootB: string;
let peer: PeerServer;
let mintFails = false;
/** Whether the peer has cluster-a in its own allow-list. */
let peerTrustsA = true;
const started: Meshfed[] = [];

function meshFile(endpoint: string, ca: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshfed-fed-'));
  const file = path.join(dir, 'mesh.json');
  writeFileSync(
    file,
    JSON.stringify({
      clusters: [{ id: 'cluster-a', network: 'net-a', domain: 'cluster-a.local' }],
      services: [
        {
          name: 'foo',
          namespace: 'abc',
          cluster: 'cluster-a',
          ports: [{ name: 'grpc', port: 9000 }],
          endpoints: [{ address: '10.0.0.1', serviceAccount: 'foo' }],
        },
      ],
      federations: [{ name: 'cluster-b', trustDomain: 'cluster-b.local', metadataEndpoint: endpoint, metadata: { ca } }],
    }),
  );
  return file;
}

async function start(remote?: { staleAfterMs: number; withdrawAfterMs: number }): Promise<Meshfed> {
  const m = await startMeshfed({
    config: meshFile(peer.endpoint, peer.caPem),
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 0,
    pki: { trustDomain: 'cluster-a.local', caStore: memoryCaStore() },
    federation: {
      mintToken: (aud, scope, ttl) => (mintFails ? Promise.reject(new Error('signing key unavailable')) : idA.mint(aud, scope, ttl)),
      pollIntervalMs: 3_600_000, // the tests poll explicitly
      fetchTimeoutMs: 500,
      remote,
    },
    log: pino({ level: 'silent' }),
  });
  started.push(m);
  return m;
}

const row = (m: Meshfed): PeerRow => m.peers.rows()[0]!;

/** Polls every peer once and resolves when the probe has finished. */
function probe(m: Meshfed): Promise<PeerRow> {
  return new Promise((resolve) => {
    const off = m.peers.onProbe(() => {
      off();
      m.registry.flush();
      resolve(row(m));
    });
    m.peers.pollAll();
  });
}

const sidecarA = proxyOf({
  id: 'sidecar~10.0.0.9~client-1.abc~abc.svc.cluster-a.local',
  metadata: { CLUSTER_ID: 'cluster-a', NETWORK: 'net-a', NAMESPACE: 'abc', SERVICE_ACCOUNT: 'client' },
}).view;

function generated(m: Meshfed, typeUrl: string, hostname: string): Array<{ name: string; body: Record<string, unknown> }> {
  const gen = createGenerators({ sdsConfig: 'ads' }).find((g) => g.typeUrl === typeUrl)!;
  return gen.generate(m.registry.snapshot, sidecarA, hostname).map((r) => ({ name: r.name, body: r.body as Record<string, unknown> }));
}

/** EDS of bar:9000 for a sidecar in cluster-a: [address:port priority]. */
function barEndpoints(m: Meshfed): string[] {
  const cla = generated(m, TypeUrl.Endpoint, BAR).find((r) => r.name === `outbound|9000||${BAR}`)?.body as
    | {
        endpoints?: Array<{
          priority?: number;
          lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } } }>;
        }>;
      }
    | undefined;
  return (cla?.endpoints ?? []).flatMap((l) =>
    l.lb_endpoints.map(
      (e) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value} p${l.priority ?? 0}`,
    ),
  );
}

async function metric(m: Meshfed, name: string): Promise<string[]> {
  const text = await m.metrics.registry.metrics();
  return text.split('\n').filter((l) => l.startsWith(name));
}

beforeAll(async () => {
  const caB = await CertificateAuthority.open({ trustDomain: 'cluster-b.local', store: memoryCaStore() });
  rootB = caB.roots[0]!;
  caB.close();
  peer = await startPeerServer(
    {
      uuid: B_UUID,
      rootCA: rootB,
      ingressGateways: [{ address: '192.0.2.10', port: 15443 }],
      publicServices: [
        {
          hostname: BAR,
          ports: [
            { name: 'grpc', port: 9000 },
            { name: 'https-web', port: 8443 },
          ],
        },
        // A peer may only publish names of its own trust domain: this one would capture a local service.
        { hostname: FOO, ports: [{ name: 'grpc', port: 9000 }] },
      ],
    },
    () => (peerTrustsA ? [idA] : []),
  );
});

afterAll(async () => {
  await Promise.all(started.map((m) => m.stop(100)));
  await peer?.close();
});

describe('a federation peer from the mesh file', () => {
  let m: Meshfed;
  beforeAll(async () => {
    m = await start();
    await vi.waitFor(() => expect(row(m).private.status, 'the first exchange').toBe('True'), WAIT);
    m.registry.flush();
  });

  it('exchanges public and private metadata with a token the peer accepts', () => {
    const r = row(m);
    expect(r).toMatchObject({
      name: 'cluster-b',
      origin: 'file',
      trustDomain: 'cluster-b.local',
      clusterUUID: B_UUID,
      public: { status: 'True', reason: 'Succeeded' },
      private: { status: 'True', reason: 'Succeeded' },
      fetchError: 0,
      servicesImported: 1,
      gateways: ['192.0.2.10:15443'],
      imports: 'fresh',
      refusedServices: [FOO],
    });
    expect(peer.privateRequests.length).toBeGreaterThan(0);
    expect(peer.privateRequests.every((why) => why === '')).toBe(true);
    // The allow-list the exporter checks incoming tokens against.
    expect(m.peers.publicMetadata(B_UUID)).toEqual({ clusterUUID: B_UUID, authnKeyPub: 'peer key', rootCA: rootB });
    expect(m.peers.publicMetadata(A_UUID)).toBeUndefined();
  });

  it('imports the public services (protocol from the port name) and binds the peer root to its trust domain', () => {
    const snap = m.registry.snapshot;
    expect(snap.services.get(BAR)).toMatchObject({
      origin: 'federation',
      namespace: 'xyz',
      ports: [
        { name: 'https-web', port: 8443, protocol: 'TCP' },
        { name: 'grpc', port: 9000, protocol: 'HTTP2' },
      ],
    });
    // The peer's claim on a cluster-a name imported nothing: foo keeps only its own endpoint.
    expect(snap.endpoints.get(FOO)?.map((e) => e.address)).toEqual(['10.0.0.1']);
    expect(m.pki!.bundles.byDomain().get('cluster-b.local')).toEqual([rootB]);
  });

  it('gives a sidecar EDS = the peer gateway and SANs of the peer trust domain only', () => {
    expect(barEndpoints(m)).toEqual(['192.0.2.10:15443 p0']);
    const cluster = generated(m, TypeUrl.Cluster, BAR).find((r) => r.name === `outbound|9000||${BAR}`)!.body;
    const text = JSON.stringify(cluster);
    expect(text).toContain('"match_subject_alt_names":[{"prefix":"spiffe://cluster-b.local/ns/xyz/sa/"}]');
    expect(text).toContain(`"sni":"outbound_.9000_._.${BAR}"`);
  });

  it('shows the peer on /debug/peers, in `meshfed status` and in metrics', async () => {
    const rows = await fetchPeers(`http://127.0.0.1:${m.debugPort}`);
    expect(rows).toEqual(m.peers.rows());
    const table = peerTable(rows);
    expect(table.split('\n')[0]).toMatch(
      /^NAME\s+KIND\s+TRUST DOMAIN\s+UUID\s+PUBLIC\s+PRIVATE\s+API\s+LAST SUCCESS\s+SERVICES\s+GATEWAYS\s+REMOTE CLUSTER\s+IMPORTS$/,
    );
    expect(table.split('\n')[1]).toMatch(
      new RegExp(
        `^cluster-b\\s+federation\\s+cluster-b.local\\s+${B_UUID}\\s+Ready\\s+Ready\\s+-\\s+\\S+Z\\s+1\\s+192.0.2.10:15443\\s+-\\s+fresh$`,
      ),
    );
    expect(await metric(m, 'meshfed_federation_metadata_endpoints_fetch_error_count{')).toEqual([
      `meshfed_federation_metadata_endpoints_fetch_error_count{federation_name="cluster-b",endpoint="${peer.endpoint}"} 0`,
    ]);
  });

  it('`meshfed status` prints the row, and one clear line when the admin address does not answer', async () => {
    const cli = (url: string) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'status', '--debug-url', url], { timeout: 30_000 });
    const { stdout } = await cli(`http://127.0.0.1:${m.debugPort}`);
    expect(stdout).toMatch(new RegExp(`\\ncluster-b\\s+federation\\s+cluster-b.local\\s+${B_UUID}\\s+Ready\\s+Ready\\s`));
    const down = await cli('http://127.0.0.1:1').catch((err: { code: number; stderr: string }) => err);
    expect(down).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/^meshfed status: cannot reach http:\/\/127.0.0.1:1\/debug\/peers: .*\n$/),
    });
  });

  const faults: Array<[PeerFault, string, string]> = [
    ['down', 'FetchFailed', 'AwaitingPublic'],
    ['status500', 'NonOKResponse', 'AwaitingPublic'],
    ['garbage', 'InvalidJSON', 'AwaitingPublic'],
    ['huge', 'FetchFailed', 'AwaitingPublic'],
    ['stall', 'FetchFailed', 'AwaitingPublic'],
    ['invalid-public', 'InvalidPublicMetadata', 'AwaitingPublic'],
    ['invalid-private', 'Succeeded', 'InvalidPrivateMetadata'],
  ];
  it.each(faults)(
    'peer fault %s: conditions False (%s / %s), the last good imports and local services keep serving, then it recovers',
    async (fault, pub, priv) => {
      peer.fault = fault;
      const r = await probe(m);
      expect([r.public.reason, r.private.reason]).toEqual([pub, priv]);
      expect(r.private.status).toBe('False');
      expect(r.fetchError).toBe(1);
      expect(r.imports).toBe('fresh'); // within --remote-stale-after
      expect([r.public, r.private].find((c) => c.status === 'False' && c.reason !== 'AwaitingPublic')?.message).toMatch(
        /; the last good imports keep serving$/,
      );
      if (fault === 'huge') expect(r.public.message).toContain('bytes');
      if (fault === 'stall') expect(r.public.message).toContain('no complete answer');
      expect(barEndpoints(m)).toEqual(['192.0.2.10:15443 p0']);
      expect(m.registry.snapshot.endpoints.get(FOO)?.map((e) => e.address)).toEqual(['10.0.0.1']);
      expect(await metric(m, 'meshfed_federation_metadata_endpoints_fetch_error_count{')).toEqual([expect.stringMatching(/ 1$/)]);

      peer.fault = 'none';
      const back = await probe(m);
      expect([back.public.reason, back.private.reason, back.fetchError]).toEqual(['Succeeded', 'Succeeded', 0]);
    },
  );

  it("reports a token the peer refuses, and a token that cannot be minted, with Deckhouse's reasons", async () => {
    try {
      mintFails = true;
      let r = await probe(m);
      expect([r.public.reason, r.private.reason, r.private.message]).toEqual([
        'Succeeded',
        'TokenGenerationFailed',
        'signing key unavailable; the last good imports keep serving',
      ]);
      mintFails = false;
      peerTrustsA = false; // the peer has no IstioFederation for cluster-a
      r = await probe(m);
      expect([r.private.reason, r.private.message]).toEqual([
        'NonOKResponse',
        expect.stringContaining('HTTP 401: Authentication error: unknown source cluster'),
      ]);
      expect(r.imports).toBe('fresh');
    } finally {
      mintFails = false;
      peerTrustsA = true;
    }
    expect((await probe(m)).private.reason).toBe('Succeeded');
  });

  it('follows the peer: a new gateway and a withdrawn service', async () => {
    const before = peer.doc;
    peer.doc = { ...before, ingressGateways: [{ address: '192.0.2.11', port: 15443 }], publicServices: [] };
    await probe(m);
    expect(m.registry.snapshot.clusters.get('federation:cluster-b')?.gateways).toEqual([{ address: '192.0.2.11', port: 15443 }]);
    // Withdrawing every service is a mass drop: held until a second fetch confirms it.
    await probe(m);
    expect(m.registry.snapshot.services.has(BAR)).toBe(false);
    peer.doc = before;
    await probe(m);
    expect(barEndpoints(m)).toEqual(['192.0.2.10:15443 p0']);
  });
});

describe('a peer that stays down', () => {
  it('keeps its imports, then demotes them, then withdraws them; they come back when it answers', async () => {
    const m = await start({ staleAfterMs: 300, withdrawAfterMs: 900 });
    await vi.waitFor(() => expect(row(m).private.status, 'the first exchange').toBe('True'), WAIT);
    peer.fault = 'down';
    try {
      await probe(m);
      await vi.waitFor(() => expect(row(m).imports).toBe('stale'), WAIT); // demoted
      m.registry.flush();
      // Demoted: EDS priority 1 in the model (EDS renumbers from 0 when nothing healthier is left).
      expect(m.registry.snapshot.endpoints.get(BAR)?.map((e) => e.priority)).toEqual([1]);
      expect((await probe(m)).public.message).toMatch(/; the last good imports are demoted/);
      await vi.waitFor(() => expect(row(m).imports).toBe('withdrawn'), WAIT);
      m.registry.flush();
      expect(barEndpoints(m)).toEqual([]);
      expect(m.registry.snapshot.services.has(BAR)).toBe(true);
      expect(await metric(m, 'meshfed_federation_peer_imports{federation_name="cluster-b",state="withdrawn"}')).toEqual([
        expect.stringMatching(/ 1$/),
      ]);
    } finally {
      peer.fault = 'none';
    }
    const r = await probe(m);
    expect(r.imports).toBe('fresh');
    expect(barEndpoints(m)).toEqual(['192.0.2.10:15443 p0']);
  });
});
