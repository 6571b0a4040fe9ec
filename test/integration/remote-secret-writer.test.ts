// --write-remote-secrets against a (fake) apiserver: the Secrets Istio's istiod reads for multicluster peers.
// What a restarted leader, a peer that has not polled yet, and odd peer names do to them.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { RemoteSecretWriter, remoteSecret } from '../../src/alliance/peers/remote-secret-writer.js';
import { createLogger } from '../../src/log.js';
import type { PeerRemote } from '../../src/sources/kube/remote-secrets.js';
import { localKubeConfig } from '../../src/sources/kube/transport.js';
import { type FakeApiServer, type KubeObject, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { localIdentity } from '../helpers/peer-metadata.js';

/** A namespace per test: a writer of an earlier test may still be finishing its round. */
let NS = 'meshfed';
let tests = 0;
const dir = mkdtempSync(path.join(tmpdir(), 'meshfed-rsw-'));
let api: FakeApiServer;
let writer: RemoteSecretWriter | undefined;

const remote = (name: string, token = `token-${name}`): PeerRemote => ({
  name,
  clusterId: `cluster-${name}`,
  server: `https://api.${name}.example.com`,
  token,
  network: `network-${name}`,
  rootCaPem: '',
  gateways: [],
});
const secretOf = (name: string): (KubeObject & { data?: Record<string, string> }) | undefined =>
  api.get('v1', 'Secret', NS, `istio-remote-secret-${name}`) as never;
const seed = (p: PeerRemote): void => void api.upsert(remoteSecret(p, NS) as KubeObject);
const start = (): RemoteSecretWriter => (
  writer?.stop(), (writer = new RemoteSecretWriter(localKubeConfig(api.writeKubeconfig(dir)), NS, () => true, createLogger('silent')))
);

beforeAll(async () => {
  api = await startFakeApiServer({ clusterName: 'local' });
});
beforeEach(() => {
  NS = `meshfed-${++tests}`;
});
afterEach(() => writer?.stop());
afterAll(async () => {
  await api?.close();
});

describe('the remote Secret writer after a leader restart', () => {
  it('keeps the Secret of a declared peer that has not polled yet, and deletes only the one of a peer that is gone', async () => {
    // Written by the previous leader for b, c and d; d's IstioMulticluster has since been deleted.
    for (const n of ['b', 'c', 'd']) seed(remote(n, 'old'));
    // The new leader: b has polled (a new token), c's metadata endpoint is down so far.
    start().setPeerRemotes([remote('b')], new Set(['b', 'c']));
    await vi.waitFor(() => expect(secretOf('d')).toBeUndefined(), { timeout: 10_000, interval: 20 }); // d deleted
    expect(Buffer.from(secretOf('b')!.data!['cluster-b']!, 'base64').toString()).toContain('token-b');
    expect(secretOf('c')).toBeDefined();
    expect(Buffer.from(secretOf('c')!.data!['cluster-c']!, 'base64').toString()).toContain('token: old');
  });

  it('deletes nothing while the declared peers are not known yet (their custom resources not listed)', async () => {
    for (const n of ['b', 'c']) seed(remote(n, 'old'));
    const w = start();
    w.setPeerRemotes([remote('b')], undefined);
    await vi.waitFor(() => expect(Buffer.from(secretOf('b')!.data!['cluster-b']!, 'base64').toString()).toContain('token-b'), {
      timeout: 10_000,
      interval: 20,
    }); // b written
    await new Promise((r) => setTimeout(r, 200));
    expect(secretOf('c')).toBeDefined();
    w.setPeerRemotes([remote('b')], new Set(['b']));
    await vi.waitFor(() => expect(secretOf('c')).toBeUndefined(), { timeout: 10_000, interval: 20 }); // c gone once known
  });
});

describe('peer names the apiserver would refuse in a Secret', () => {
  it('writes each Secret on its own: a name too long for a Secret is skipped, one too long for a label value is written', async () => {
    const long = 'p'.repeat(100);
    const tooLong = 'q'.repeat(240);
    start().setPeerRemotes([remote(tooLong), remote(long), remote('b')], new Set([tooLong, long, 'b']));
    await vi.waitFor(() => expect(secretOf('b')).toBeDefined(), { timeout: 10_000, interval: 20 }); // b written
    const s = secretOf(long)!;
    expect(s.metadata).toMatchObject({
      labels: { 'istio/multiCluster': 'true', 'meshfed.io/multicluster-peer': 'true' },
      annotations: { 'meshfed.io/multicluster-peer': long },
    });
    expect(api.list('v1', 'Secret', NS)).toHaveLength(2);
  });

  it("still knows a Secret an older meshfed labelled with the peer's name, and rewrites it", async () => {
    const s = remoteSecret(remote('c', 'old'), NS);
    api.upsert({
      ...s,
      metadata: {
        ...s.metadata,
        labels: { 'istio/multiCluster': 'true', 'meshfed.io/multicluster-peer': 'c' },
        annotations: { 'networking.istio.io/cluster': 'cluster-c' },
      },
    } as KubeObject);
    const w = start();
    w.setPeerRemotes([], new Set(['c']));
    await new Promise((r) => setTimeout(r, 200));
    expect(secretOf('c')).toBeDefined(); // declared: kept
    w.setPeerRemotes([remote('c')], new Set(['c']));
    await vi.waitFor(() => expect(secretOf('c')!.metadata.annotations).toMatchObject({ 'meshfed.io/multicluster-peer': 'c' }), {
      timeout: 10_000,
      interval: 20,
    }); // rewritten
  });
});

describe("the api token kept in a remote Secret (Deckhouse's token lifecycle)", () => {
  const A_UUID = '11111111-1111-4111-8111-111111111111';
  const B_UUID = '22222222-2222-4222-8222-222222222222';
  const DAY = 24 * 3600;
  const idA = localIdentity(A_UUID);
  const policy = { ttlSeconds: 366 * DAY, renewBeforeSeconds: 30 * DAY };
  const stored = async (token: string, aud = B_UUID): Promise<string | undefined> => {
    seed(remote('b', token));
    return (await start().storedToken('b', aud, idA.publicPem, policy))?.token;
  };

  it('is taken up again when it is an `api` token for the peer, signed with the own key, with more than 30 days left', async () => {
    const token = await idA.mint(B_UUID, 'api', 300 * DAY);
    expect(await stored(token)).toBe(token);
  });

  it('is not, for another audience, another signer, another scope, or under 30 days left', async () => {
    expect(await stored(await idA.mint(B_UUID, 'api', 300 * DAY), A_UUID)).toBeUndefined();
    expect(await stored(await localIdentity(A_UUID).mint(B_UUID, 'api', 300 * DAY))).toBeUndefined();
    expect(await stored(await idA.mint(B_UUID, 'private-multicluster', 300 * DAY))).toBeUndefined();
    expect(await stored(await idA.mint(B_UUID, 'api', 29 * DAY))).toBeUndefined();
    expect(await stored('not a token')).toBeUndefined();
  });

  it('is not read from a Secret meshfed did not write', async () => {
    const token = await idA.mint(B_UUID, 'api', 300 * DAY);
    const s = remoteSecret(remote('b', token), NS);
    api.upsert({ ...s, metadata: { ...s.metadata, labels: { 'istio/multiCluster': 'true' } } } as KubeObject);
    expect(await start().storedToken('b', B_UUID, idA.publicPem, policy)).toBeUndefined();
  });
});
