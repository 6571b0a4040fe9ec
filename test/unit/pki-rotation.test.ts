// Leaf re-issue at half-life and root rotation, on a fake clock with real crypto.
import { X509Certificate } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CertificateAuthority, memoryCaStore, WorkloadCertCache, type CaMaterial, type CaStore, type Identity } from '../../src/pki/index.js';

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

describe('workload certificate cache', () => {
  it('serves the same certificate until half its lifetime has passed, then re-issues and says so', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const cache = new WorkloadCertCache(ca);
    const renewed: string[] = [];
    cache.onRenew((id) => renewed.push(id.serviceAccount));

    const first = cache.get(FOO);
    expect(cache.renewAt(FOO)).toEqual(new Date(Date.now() + 12 * HOUR));
    vi.advanceTimersByTime(6 * HOUR);
    expect(cache.get(FOO)).toBe(first);
    expect(renewed).toEqual([]);

    vi.advanceTimersByTime(6 * HOUR);
    expect(renewed).toEqual(['foo']);
    const second = cache.get(FOO);
    expect(second.serial).not.toBe(first.serial);
    expect(second.notAfter.getTime()).toBe(first.notAfter.getTime() + 12 * HOUR);
    expect(cache.get(FOO)).toBe(second);
    cache.close();
    ca.close();
  });

  it('honours a shorter lifetime: 1 h certificates renew after 30 min', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const cache = new WorkloadCertCache(ca, { ttlMs: HOUR });
    let renewals = 0;
    cache.onRenew(() => renewals++);
    const first = cache.get(FOO);
    expect(first.notAfter.getTime() - Date.now()).toBe(HOUR);
    vi.advanceTimersByTime(30 * 60_000 - 1);
    expect(renewals).toBe(0);
    vi.advanceTimersByTime(1);
    expect(renewals).toBe(1);
    expect(cache.get(FOO).serial).not.toBe(first.serial);
    cache.close();
    ca.close();
  });
  it('re-issues when its renewal timer fires even if the wall clock reads a little earlier', async () => {
    // Under load libuv starts a timer from the loop's cached time, so it can fire before Date.now()
    // reaches the renewal time; the renewal must not be lost (the certificate would then expire).
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    let lag = 0;
    const cache = new WorkloadCertCache(ca, { ttlMs: HOUR, now: () => Date.now() - lag });
    let renewals = 0;
    cache.onRenew(() => renewals++);
    const first = cache.get(FOO);
    lag = 5;
    vi.advanceTimersByTime(30 * 60_000);
    expect(renewals).toBe(1);
    const second = cache.get(FOO);
    expect(second.serial).not.toBe(first.serial);
    expect(cache.get(FOO)).toBe(second);
    vi.advanceTimersByTime(30 * 60_000 + 10); // the next renewal is scheduled as usual
    expect(renewals).toBe(2);
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
    const events: string[] = [];
    ca.onChange(() => events.push(`roots=${ca.roots.length}`));
    cache.onRenew((id) => events.push(`renew ${id.serviceAccount}`));

    const oldRoot = ca.signingRoot;
    const beforeRotation = cache.get(FOO);
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
    await ca.activateRotation();
    expect(stored).toBe(ca.material);
    expect(ca.signingRoot).toBe(newRoot);
    expect(ca.roots).toEqual([newRoot, oldRoot]);
    expect(events.slice(1).sort()).toEqual(['renew foo', 'roots=2']);
    const afterRotation = cache.get(FOO);
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

  it('keeps an operator\'s extra root (no meshfed note) for as long as it is stored', async () => {
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

  it('a follower trusts a rotation\'s next root as soon as it is stored, and signs with it once activated', async () => {
    const store = memoryCaStore();
    const leader = await CertificateAuthority.open({ trustDomain: TD, store });
    const errors: string[] = [];
    const other = await CertificateAuthority.open({ trustDomain: TD, store, follow: true, leadership: follower, onStoreError: (e) => errors.push(e.message) });
    const cache = new WorkloadCertCache(other);
    const renewed: string[] = [];
    cache.onRenew((id) => renewed.push(id.serviceAccount));
    const oldRoot = leader.signingRoot;
    const before = cache.get(FOO);

    await leader.rotateRoot();
    const newRoot = leader.nextRoot!;
    await vi.waitFor(() => expect(other.roots).toEqual([oldRoot, newRoot]));
    expect(other.signingRoot).toBe(oldRoot);
    expect(renewed).toEqual([]);

    await leader.activateRotation();
    await vi.waitFor(() => expect(other.signingRoot).toBe(newRoot));
    expect(other.roots).toEqual([newRoot, oldRoot]);
    expect(renewed).toEqual(['foo']); // every workload certificate is re-issued by the new root
    const after = cache.get(FOO);
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
    await vi.waitFor(() => expect(errors).toEqual([expect.stringMatching(/^memory: invalid CA material: ca-key.pem does not match ca-cert.pem; the current CA keeps signing$/)]));
    expect(ca.signingRoot).toBe(root);
    expect(signedBy(ca.issue(FOO).certChainPem, root)).toBe(true);
    ca.close();
  });

  it('a follower does not create the CA: it waits for the leader\'s, or to become the leader', async () => {
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
    await expect(CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore(), create: false })).rejects.toThrow('no CA material in memory');
    ca.close();
  });
});
