// Leaf re-issue at half-life and root rotation, on a fake clock with real crypto.
import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CertificateAuthority,
  memoryCaStore,
  spiffeId,
  WorkloadCertCache,
  type CaMaterial,
  type CaStore,
  type Identity,
  type IssuedCert,
} from '../../src/pki/index.js';

const TD = 'cluster-a.local';
const FOO: Identity = { trustDomain: TD, namespace: 'abc', serviceAccount: 'foo' };
const HOUR = 3600_000;

const leafOf = (chain: string): X509Certificate => new X509Certificate(chain);
const signedBy = (chain: string, rootPem: string): boolean => leafOf(chain).verify(new X509Certificate(rootPem).publicKey);

beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse('2026-03-01T00:00:00Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

/** The identity's certificate after the cache's next change for it (issued in the background). */
function nextCert(cache: WorkloadCertCache, id: Identity = FOO): Promise<IssuedCert> {
  return new Promise((resolve) => {
    const off = cache.onChange((changed) => {
      if (spiffeId(changed) !== spiffeId(id)) return;
      off();
      resolve(cache.get(id)!);
    });
  });
}

/** Asks for id's certificate and waits for it. */
function issued(cache: WorkloadCertCache, id: Identity = FOO): Promise<IssuedCert> {
  const cert = nextCert(cache, id);
  cache.want(id);
  return cert;
}

describe('workload certificate cache', () => {
  it('serves the same certificate until half its lifetime has passed, then re-issues and says so', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const cache = new WorkloadCertCache(ca);
    const first = await issued(cache);
    const renewed: string[] = [];
    cache.onChange((id) => renewed.push(id.serviceAccount));

    expect(cache.renewAt(FOO)).toEqual(new Date(Date.now() + 12 * HOUR));
    vi.advanceTimersByTime(6 * HOUR);
    expect(cache.get(FOO)).toBe(first);
    expect(renewed).toEqual([]);

    const next = nextCert(cache);
    vi.advanceTimersByTime(6 * HOUR);
    expect(cache.get(FOO)).toBe(first); // served until the new one is ready
    const second = await next;
    expect(renewed).toEqual(['foo']);
    expect(second.serial).not.toBe(first.serial);
    expect(second.notAfter.getTime()).toBe(first.notAfter.getTime() + 12 * HOUR);
    expect(cache.get(FOO)).toBe(second);
    cache.close();
    ca.close();
  });

  it('honours a shorter lifetime: 1 h certificates renew after 30 min', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const cache = new WorkloadCertCache(ca, { ttlMs: HOUR });
    const first = await issued(cache);
    const issue = vi.spyOn(ca, 'issueAsync');
    expect(first.notAfter.getTime() - Date.now()).toBe(HOUR);
    vi.advanceTimersByTime(30 * 60_000 - 1);
    expect(issue).not.toHaveBeenCalled();
    const next = nextCert(cache);
    vi.advanceTimersByTime(1);
    expect(issue).toHaveBeenCalledTimes(1);
    expect((await next).serial).not.toBe(first.serial);
    cache.close();
    ca.close();
  });

  it('re-issues when its renewal timer fires even if the wall clock reads a little earlier', async () => {
    // Under load libuv starts a timer from the loop's cached time, so it can fire before Date.now()
    // reaches the renewal time; the renewal must not be lost (the certificate would then expire).
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    let lag = 0;
    const cache = new WorkloadCertCache(ca, { ttlMs: HOUR, now: () => Date.now() - lag });
    const first = await issued(cache);
    let renewals = 0;
    cache.onChange(() => renewals++);
    lag = 5;
    let next = nextCert(cache);
    vi.advanceTimersByTime(30 * 60_000);
    const second = await next;
    expect(renewals).toBe(1);
    expect(second.serial).not.toBe(first.serial);
    expect(cache.get(FOO)).toBe(second);
    next = nextCert(cache);
    vi.advanceTimersByTime(30 * 60_000 + 10); // the next renewal is scheduled as usual
    await next;
    expect(renewals).toBe(2);
    cache.close();
    ca.close();
  });

  it("issues once for concurrent wants, in the background, and never on the caller's path", async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const cache = new WorkloadCertCache(ca);
    const sync = vi.spyOn(ca, 'issue');
    const issue = vi.spyOn(ca, 'issueAsync');
    const changes: string[] = [];
    cache.onChange((id) => changes.push(id.serviceAccount));
    const next = nextCert(cache);
    cache.want(FOO);
    cache.want(FOO);
    expect(cache.get(FOO)).toBeUndefined(); // nothing until it is issued
    const cert = await next;
    cache.want(FOO);
    expect(cache.get(FOO)).toBe(cert);
    expect(issue).toHaveBeenCalledTimes(1);
    expect(sync).not.toHaveBeenCalled();
    expect(changes).toEqual(['foo']);
    cache.close();
    ca.close();
  });

  it('drops an identity nobody wants at renewal time instead of renewing it forever; a later want issues again', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const cache = new WorkloadCertCache(ca, { ttlMs: HOUR });
    let wanted = true;
    const first = nextCert(cache);
    cache.want(FOO, () => wanted);
    await first;
    const issue = vi.spyOn(ca, 'issueAsync');
    const changes: string[] = [];
    cache.onChange((id) => changes.push(id.serviceAccount));
    wanted = false;
    vi.advanceTimersByTime(30 * 60_000);
    expect(changes).toEqual(['foo']); // told, so the SDS table lets the certificate go
    expect(cache.get(FOO)).toBeUndefined();
    vi.advanceTimersByTime(10 * HOUR);
    expect(issue).not.toHaveBeenCalled();
    expect(await issued(cache)).toBeDefined();
    expect(issue).toHaveBeenCalledTimes(1);
    cache.close();
    ca.close();
  });

  it('a failed issuance is logged in one line and retried with a growing backoff until it succeeds', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const warnings: string[] = [];
    const cache = new WorkloadCertCache(ca, { log: { warn: (_obj, msg) => void warnings.push(msg) } });
    const issue = vi
      .spyOn(ca, 'issueAsync')
      .mockRejectedValueOnce(new Error('key generation failed'))
      .mockRejectedValueOnce(new Error('key generation failed'));
    const next = nextCert(cache);
    cache.want(FOO);
    await vi.waitFor(() => expect(warnings).toHaveLength(1), { interval: 0 });
    expect(warnings[0]).toBe(`workload certificate for ${spiffeId(FOO)} not issued: key generation failed; retrying in 1 s`);
    vi.advanceTimersByTime(999);
    expect(issue).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(issue).toHaveBeenCalledTimes(2);
    await vi.waitFor(() => expect(warnings).toHaveLength(2), { interval: 0 });
    expect(warnings[1]).toMatch(/retrying in 2 s$/);
    vi.advanceTimersByTime(2000);
    expect((await next).certChainPem).toContain('BEGIN CERTIFICATE');
    expect(issue).toHaveBeenCalledTimes(3);
    cache.close();
    ca.close();
  });
  it('a listener that throws is logged and the others still hear of the certificate', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const warnings: string[] = [];
    const cache = new WorkloadCertCache(ca, { log: { warn: (_obj, msg) => void warnings.push(msg) } });
    cache.onChange(() => {
      throw new Error('store refresh failed');
    });
    const cert = await issued(cache);
    expect(cache.get(FOO)).toBe(cert);
    expect(warnings).toEqual([`pushing the workload certificate of ${spiffeId(FOO)} failed: store refresh failed`]);
    cache.close();
    ca.close();
  });
});

describe('root rotation', () => {
  it('the new root is trusted before it signs anything; the old root stays until its last certificate expires', async () => {
    let stored: unknown;
    const inner = memoryCaStore();
    const store: CaStore = { ...inner, save: (m) => ((stored = m), inner.save(m)) };
    const ca = await CertificateAuthority.open({ trustDomain: TD, store });
    const cache = new WorkloadCertCache(ca);
    const beforeRotation = await issued(cache);
    const events: string[] = [];
    ca.onChange(() => events.push(`roots=${ca.roots.length}`));
    cache.onChange((id) => events.push(`renew ${id.serviceAccount}`));

    const oldRoot = ca.signingRoot;
    vi.advanceTimersByTime(HOUR);
    const longLived = ca.issue({ ...FOO, serviceAccount: 'batch' }, { ttlMs: 48 * HOUR }); // the old root's last expiry

    // Step 1: announce. Both roots are trusted, the old one still signs, no workload is re-issued.
    await ca.rotateRoot();
    expect(events).toEqual(['roots=2']);
    const newRoot = ca.roots[1]!;
    expect(ca.roots).toEqual([oldRoot, newRoot]);
    expect(newRoot).not.toBe(oldRoot);
    const duringAnnounce = ca.issue(FOO);
    expect(signedBy(duringAnnounce.certChainPem, oldRoot)).toBe(true);
    // Stored beside the signing CA, so that every replica (and a restart) trusts it too.
    expect(stored).toEqual({ ...ca.material, next: expect.objectContaining({ rootCertPem: newRoot }) });
    await expect(ca.rotateRoot()).rejects.toThrow(/already in progress/);

    // Step 2: after the bundle went out, the new root is stored and signs; cached workloads are re-issued.
    const reissued = nextCert(cache);
    await ca.activateRotation();
    expect(stored).toBe(ca.material);
    expect(ca.signingRoot).toBe(newRoot);
    expect(ca.roots).toEqual([newRoot, oldRoot]);
    const afterRotation = await reissued;
    expect(events.slice(1).sort()).toEqual(['renew foo', 'roots=2']);
    expect(afterRotation.serial).not.toBe(beforeRotation.serial);
    expect(afterRotation.rootPem).toBe(newRoot);
    expect(signedBy(afterRotation.certChainPem, newRoot)).toBe(true);
    expect(signedBy(afterRotation.certChainPem, oldRoot)).toBe(false);
    await expect(ca.activateRotation()).rejects.toThrow(/no root rotation in progress/);

    // The old root outlives every certificate it signed: here the 48 h one.
    vi.advanceTimersByTime(longLived.notAfter.getTime() - Date.now() - 1000);
    expect(ca.roots).toEqual([newRoot, oldRoot]);
    vi.advanceTimersByTime(2000);
    expect(ca.roots).toEqual([newRoot]);
    expect(events.at(-1)).toBe('roots=1');
    cache.close();
    ca.close();
  });

  it('without long-lived certificates the old root still stays a full default lifetime (replicas may have signed with it)', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    await ca.rotateRoot();
    await ca.activateRotation();
    expect(ca.roots).toHaveLength(2);
    vi.advanceTimersByTime(24 * HOUR - 1000);
    expect(ca.prune()).toBe(false);
    expect(ca.roots).toHaveLength(2);
    vi.advanceTimersByTime(2000);
    expect(ca.roots).toHaveLength(1);
    ca.close();
  });

  it('a restart keeps trusting the retiring root until its time, then drops it from the store too', async () => {
    const store = memoryCaStore();
    const before = await CertificateAuthority.open({ trustDomain: TD, store });
    const oldRoot = before.signingRoot;
    await before.rotateRoot();
    await before.activateRotation();
    const newRoot = before.signingRoot;
    before.close();

    const after = await CertificateAuthority.open({ trustDomain: TD, store }); // a restart, or another replica
    expect(after.signingRoot).toBe(newRoot);
    expect(after.roots).toEqual([newRoot, oldRoot]);
    vi.advanceTimersByTime(24 * HOUR - 1000);
    expect(after.roots).toEqual([newRoot, oldRoot]);
    vi.advanceTimersByTime(3000);
    expect(after.roots).toEqual([newRoot]);
    await vi.waitFor(async () => expect((await store.load())!.rootCertPem).toBe(newRoot));
    const again = await CertificateAuthority.open({ trustDomain: TD, store });
    expect(again.roots).toEqual([newRoot]);
    after.close();
    again.close();
  });

  it("keeps an operator's extra root (no meshfed note) for as long as it is stored", async () => {
    const other = (await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() })).signingRoot;
    const m = (await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() })).material;
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore({ ...m, rootCertPem: m.rootCertPem + other }) });
    vi.advanceTimersByTime(90 * 24 * HOUR);
    expect(ca.prune()).toBe(false);
    expect(ca.roots).toEqual([m.rootCertPem, other]);
    ca.close();
  });

  it('never stores while an activation is storing: a prune due meanwhile waits for it', async () => {
    const inner = memoryCaStore();
    let inFlight = 0;
    let maxInFlight = 0;
    let gate = Promise.resolve();
    const store: CaStore = {
      ...inner,
      save: async (m) => {
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await gate;
        await inner.save(m);
        inFlight--;
      },
    };
    const ca = await CertificateAuthority.open({ trustDomain: TD, store });
    const first = ca.signingRoot;
    await ca.rotateRoot();
    await ca.activateRotation(); // the first root retires for a day
    await ca.rotateRoot();
    let open!: () => void;
    gate = new Promise<void>((r) => (open = r));
    const second = ca.activateRotation(); // its save waits at the gate
    vi.advanceTimersByTime(25 * HOUR); // the first root's day ends meanwhile
    open();
    await second;
    expect(maxInFlight).toBe(1);
    await vi.advanceTimersByTimeAsync(2000);
    expect(ca.roots).not.toContain(first);
    expect((await inner.load())!.rootCertPem).not.toContain(first.trim());
    ca.close();
  });
});

describe('replicas following one store', () => {
  const follower = { isLeader: () => false, onChange: () => () => {} };

  it("a follower trusts a rotation's next root as soon as it is stored, and signs with it once activated", async () => {
    const store = memoryCaStore();
    const leader = await CertificateAuthority.open({ trustDomain: TD, store });
    const errors: string[] = [];
    const other = await CertificateAuthority.open({
      trustDomain: TD,
      store,
      follow: true,
      leadership: follower,
      onStoreError: (e) => errors.push(e.message),
    });
    const cache = new WorkloadCertCache(other);
    const before = await issued(cache);
    const renewed: string[] = [];
    cache.onChange((id) => renewed.push(id.serviceAccount));
    const oldRoot = leader.signingRoot;

    await leader.rotateRoot();
    const newRoot = leader.nextRoot!;
    await vi.waitFor(() => expect(other.roots).toEqual([oldRoot, newRoot]));
    expect(other.signingRoot).toBe(oldRoot);
    expect(renewed).toEqual([]);

    const reissued = nextCert(cache);
    await leader.activateRotation();
    await vi.waitFor(() => expect(other.signingRoot).toBe(newRoot));
    expect(other.roots).toEqual([newRoot, oldRoot]);
    const after = await reissued;
    expect(renewed).toEqual(['foo']); // every workload certificate is re-issued by the new root
    expect(after.serial).not.toBe(before.serial);
    expect(signedBy(after.certChainPem, newRoot)).toBe(true);

    // The old root's time ends: both drop it; only the leader writes the store.
    const saves: CaMaterial[] = [];
    const unwatch = store.watch!(() => void store.load().then((m) => saves.push(m!)));
    vi.advanceTimersByTime(25 * HOUR);
    expect(other.roots).toEqual([newRoot]);
    await vi.waitFor(() => expect(saves).toHaveLength(1));
    expect(saves[0]!.rootCertPem).toBe(newRoot);
    expect(errors).toEqual([]);
    unwatch();
    cache.close();
    leader.close();
    other.close();
  });

  it('refuses invalid stored material and keeps signing with the CA it has', async () => {
    const store = memoryCaStore();
    const errors: string[] = [];
    const ca = await CertificateAuthority.open({ trustDomain: TD, store, follow: true, onStoreError: (e) => errors.push(e.message) });
    const root = ca.signingRoot;
    const other = (await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() })).material;
    await store.save({ ...ca.material, caKeyPem: other.caKeyPem });
    await vi.waitFor(() =>
      expect(errors).toEqual([
        expect.stringMatching(/^memory: invalid CA material: ca-key.pem does not match ca-cert.pem; the current CA keeps signing$/),
      ]),
    );
    expect(ca.signingRoot).toBe(root);
    expect(signedBy(ca.issue(FOO).certChainPem, root)).toBe(true);
    ca.close();
  });

  it("a follower does not create the CA: it waits for the leader's, or to become the leader", async () => {
    const store = memoryCaStore();
    let leading = false;
    const changed = new Set<(l: boolean) => void>();
    const leadership = { isLeader: () => leading, onChange: (fn: (l: boolean) => void) => (changed.add(fn), () => changed.delete(fn)) };
    let waiting = 0;
    const opening = CertificateAuthority.open({ trustDomain: TD, store, leadership, onWaiting: () => waiting++ });
    await vi.advanceTimersByTimeAsync(5000);
    expect(await store.load()).toBeUndefined();
    expect(waiting).toBe(1);
    leading = true;
    for (const fn of changed) fn(true);
    const ca = await opening;
    expect((await store.load())!.rootCertPem).toBe(ca.signingRoot);
    await expect(CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore(), create: false })).rejects.toThrow(
      'no CA material in memory',
    );
    ca.close();
  });
});
