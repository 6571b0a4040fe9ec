// The mesh CA of one trust domain: workload and server certificates, and root rotation in two steps.
import { generateKeyPair } from 'node:crypto';
import { checkIdentity, spiffeId, type Identity } from './identity.js';
import {
  generateKey,
  loadSigner,
  rootsPem,
  selfSignedRoot,
  type CaMaterial,
  type ExtraRoot,
  type KeyType,
  type Signer,
} from './material.js';
import type { CaStore } from './store.js';
import { SOLE_LEADER, type Leadership } from '../leader/index.js';
import { buildCertificate, KeyUsage, OID, toPem } from './x509.js';

export interface IssuedCert {
  /** Leaf first, then intermediates, the root last. */
  readonly certChainPem: string;
  /** PKCS#8 PEM. */
  readonly privateKeyPem: string;
  /** The root that anchors certChainPem. */
  readonly rootPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Hex. */
  readonly serial: string;
}

export interface CaOptions {
  readonly trustDomain: string;
  readonly store: CaStore;
  /** Key type of a self-signed root created here, and the default for workload keys; 'ec' (P-256). */
  readonly keyType?: KeyType;
  /** Default workload certificate lifetime; 24 h. */
  readonly workloadTtlMs?: number;
  /** Lifetime of a self-signed root created here; 10 years. */
  readonly rootTtlMs?: number;
  /** Clock (ms since epoch); Date.now. */
  readonly now?: () => number;
  /** Told when a background store operation fails: dropping an expired root, reading a changed store. */
  readonly onStoreError?: (err: Error) => void;
  /** Only the leader creates the CA and drops expired roots from the store; SOLE_LEADER when absent. */
  readonly leadership?: Leadership;
  /** With no material stored: create a root (default), or fail (`meshfed ca`, which must not create one). */
  readonly create?: boolean;
  /** Follow the store (its watch): a rotation or a replaced CA stored by anyone is taken up at once. */
  readonly follow?: boolean;
  /** Told once when open() waits for the leader to create the CA. */
  readonly onWaiting?: () => void;
}

export interface IssueOptions {
  readonly ttlMs?: number;
  readonly keyType?: KeyType;
  readonly dnsNames?: readonly string[];
}

export const DEFAULT_WORKLOAD_TTL_MS = 24 * 3600_000;
export const MAX_WORKLOAD_TTL_MS = 90 * 24 * 3600_000;
export const DEFAULT_ROOT_TTL_MS = 10 * 365 * 24 * 3600_000;
/** Leaves start a minute in the past so small clock skew between nodes does not reject fresh certificates. */
const BACKDATE_MS = 60_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

function generateKeyAsync(type: KeyType): Promise<{ spki: Buffer; keyPem: string }> {
  const enc = { publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } } as const;
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, spki: Buffer, keyPem: string): void => (err ? reject(err) : resolve({ spki, keyPem }));
    if (type === 'rsa') generateKeyPair('rsa', { modulusLength: 2048, ...enc }, done);
    else generateKeyPair('ec', { namedCurve: 'P-256', ...enc }, done);
  });
}

export class CertificateAuthority {
  readonly trustDomain: string;
  private readonly now: () => number;
  private readonly keyType: KeyType;
  /** Default (and, for CSRs, the longest) workload certificate lifetime. */
  readonly workloadTtlMs: number;
  private readonly rootTtlMs: number;
  private readonly store: CaStore;
  private readonly onStoreError: (err: Error) => void;
  private active: Signer;
  /** Latest notAfter the active signer has issued. */
  private activeLastNotAfter = 0;
  private pending: Signer | undefined;
  /** A write of ours is in flight (rotation, activation): store changes seen meanwhile are read after it. */
  private activating = false;
  private retiring: ExtraRoot[] = [];
  private readonly listeners = new Set<() => void>();
  private pruneTimer: NodeJS.Timeout | undefined;
  /** Bumps whenever the signer changes: certificates from an older generation should be re-issued. */
  private gen = 0;
  private readonly leadership: Leadership;
  private readonly stopFollowing: () => void;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;

  private constructor(opts: CaOptions, material: CaMaterial) {
    this.trustDomain = opts.trustDomain;
    this.store = opts.store;
    this.onStoreError = opts.onStoreError ?? (() => {});
    this.now = opts.now ?? Date.now;
    this.keyType = opts.keyType ?? 'ec';
    this.workloadTtlMs = opts.workloadTtlMs ?? DEFAULT_WORKLOAD_TTL_MS;
    this.rootTtlMs = opts.rootTtlMs ?? DEFAULT_ROOT_TTL_MS;
    this.leadership = opts.leadership ?? SOLE_LEADER;
    const { active, pending } = loadStored(material);
    this.active = active;
    this.pending = pending;
    // Other stored roots: one meshfed rotated out before a restart (until the time it noted), or an
    // operator's (Istio's combined root-cert.pem), trusted as long as it is there.
    this.retiring = [...active.extraRoots];
    this.schedulePrune();
    // A replica that becomes the leader finishes what a follower only did in memory (dropping expired roots).
    const unlead = this.leadership.onChange((leader) => leader && this.prune());
    const unwatch = opts.follow && opts.store.watch ? opts.store.watch(() => void this.refresh()) : () => {};
    this.stopFollowing = () => (unlead(), unwatch());
  }

  /**
   * Loads the store's material (plug-in `cacerts` first), or creates a self-signed root and stores it unless a
   * concurrent replica stored one first; either way every replica ends up signing with what the store holds.
   */
  static async open(opts: CaOptions): Promise<CertificateAuthority> {
    checkIdentity({ trustDomain: opts.trustDomain, namespace: 'x', serviceAccount: 'x' });
    const leadership = opts.leadership ?? SOLE_LEADER;
    let material = await opts.store.load();
    for (let waited = false; !material; waited = true) {
      if (opts.create === false) throw new Error(`no CA material in ${opts.store.describe}`);
      if (leadership.isLeader()) {
        const now = (opts.now ?? Date.now)();
        const fresh = selfSignedRoot(opts.trustDomain, {
          keyType: opts.keyType ?? 'ec',
          ttlMs: opts.rootTtlMs ?? DEFAULT_ROOT_TTL_MS,
          now,
        });
        material = await opts.store.createIfAbsent(fresh);
        break;
      }
      // A follower waits for the leader's root (or to become the leader itself).
      if (!waited) opts.onWaiting?.();
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, 1000);
        const off = leadership.onChange(done);
        function done(): void {
          clearTimeout(t);
          off();
          resolve();
        }
      });
      material = await opts.store.load();
    }
    return new CertificateAuthority(opts, material);
  }

  /** Root PEMs this trust domain currently trusts: the signing root, a rotation's next root, and retiring roots. */
  get roots(): readonly string[] {
    const out = [this.active.rootPem];
    if (this.pending) out.push(this.pending.rootPem, ...this.pending.extraRoots.map((r) => r.pem));
    for (const r of this.retiring) out.push(r.pem);
    return [...new Set(out)];
  }

  /** The root new certificates chain to. */
  get signingRoot(): string {
    return this.active.rootPem;
  }

  /** Changes whenever the signer does (rotation activated). */
  get generation(): number {
    return this.gen;
  }

  get material(): CaMaterial {
    return this.active.material;
  }

  /** A workload certificate: SPIFFE URI SAN, client and server auth, 24 h by default, a fresh P-256 key. */
  issue(id: Identity, opts: IssueOptions = {}): IssuedCert {
    this.checkDomain(id);
    const { spki, keyPem } = generateKey(opts.keyType ?? this.keyType);
    return this.sign(spki, keyPem, [spiffeId(id)], opts);
  }

  /** Like issue, with key generation on the libuv thread pool (worth it for RSA, which takes ~50 ms a key). */
  async issueAsync(id: Identity, opts: IssueOptions = {}): Promise<IssuedCert> {
    this.checkDomain(id);
    const { spki, keyPem } = await generateKeyAsync(opts.keyType ?? this.keyType);
    return this.sign(spki, keyPem, [spiffeId(id)], opts);
  }

  /**
   * A workload certificate for a key the workload keeps (from a CSR): only its public key comes here.
   * The result has no private key.
   */
  certify(id: Identity, spki: Buffer, opts: IssueOptions = {}): Omit<IssuedCert, 'privateKeyPem'> {
    this.checkDomain(id);
    const { privateKeyPem: _none, ...cert } = this.sign(spki, '', [spiffeId(id)], opts);
    return cert;
  }

  /** meshfed's own serving certificate: DNS SANs, plus its SPIFFE id when given. */
  issueServer(dnsNames: readonly string[], opts: IssueOptions & { identity?: Identity } = {}): IssuedCert {
    if (!dnsNames.length) throw new Error('a server certificate needs at least one DNS name');
    if (opts.identity) this.checkDomain(opts.identity);
    const { spki, keyPem } = generateKey(opts.keyType ?? this.keyType);
    return this.sign(spki, keyPem, opts.identity ? [spiffeId(opts.identity)] : [], {
      ...opts,
      dnsNames: [...dnsNames, ...(opts.dnsNames ?? [])],
    });
  }

  /** The next root of a rotation in progress (trusted, not signing yet). */
  get nextRoot(): string | undefined {
    return this.pending?.rootPem;
  }

  /**
   * Step 1 of a root rotation: the next root (given, or a new self-signed one) is stored beside the signing one,
   * so every replica trusts it; it joins roots() and listeners run, so bundles carrying it can be pushed. It
   * signs nothing until activateRotation().
   */
  async rotateRoot(next?: CaMaterial): Promise<void> {
    if (this.pending) throw new Error('a root rotation is already in progress; activate it first');
    if (this.activating) throw new Error('the root rotation is already being activated');
    const material = next ?? selfSignedRoot(this.trustDomain, { keyType: this.keyType, ttlMs: this.rootTtlMs, now: this.now() });
    const signer = loadSigner(material);
    this.activating = true;
    try {
      await this.store.save({ ...this.active.material, next: material });
    } catch (err) {
      throw new Error(`storing the next root in ${this.store.describe}: ${(err as Error).message}`);
    } finally {
      this.activating = false;
    }
    this.pending = signer;
    this.emit();
    this.refreshDeferred();
  }

  /**
   * Step 2, once the bundle with the next root has been pushed: the next root is stored and signs from now on.
   * The old root stays in roots() until every certificate it may have signed has expired.
   */
  async activateRotation(): Promise<void> {
    const next = this.pending;
    if (!next) throw new Error('no root rotation in progress: call rotateRoot first');
    if (this.activating) throw new Error('the root rotation is already being activated');
    this.activating = true;
    // Other replicas may have signed with the old root up to now, with the default lifetime.
    const until = Math.max(this.activeLastNotAfter, this.now() + this.workloadTtlMs);
    const retiring = [{ pem: this.active.rootPem, until }, ...this.retiring, ...next.extraRoots].filter(
      (r, i, all) => r.pem !== next.rootPem && all.findIndex((x) => x.pem === r.pem) === i,
    );
    // Stored beside the new root, so that a restart keeps trusting the old one.
    const stored: CaMaterial = { ...next.material, rootCertPem: rootsPem(next.rootPem, retiring) };
    try {
      await this.store.save(stored);
    } catch (err) {
      this.activating = false;
      this.schedulePrune();
      this.refreshDeferred();
      throw new Error(`storing the next root in ${this.store.describe}: ${(err as Error).message}`);
    }
    this.activating = false;
    this.retiring = retiring;
    this.active = { ...next, material: stored, extraRoots: retiring };
    this.pending = undefined;
    this.activeLastNotAfter = 0;
    this.gen++;
    this.schedulePrune();
    this.emit();
    this.refreshDeferred();
  }

  /**
   * Takes up what the store holds now (another replica's or `meshfed ca`'s rotation, an operator's new
   * `cacerts`): a new signer re-issues every certificate, new roots are trusted at once. Invalid material is
   * refused (the current CA keeps signing). True when anything changed.
   */
  reload(material: CaMaterial): boolean {
    const { active, pending } = loadStored(material);
    const now = this.now();
    const retiring = active.extraRoots.filter((r) => r.until > now);
    // Dropping or adding a trusted root changes root-cert.pem, not the signer: no certificate is re-issued then.
    const [a, b] = [active.material, this.active.material];
    const sameSigner =
      a.caCertPem === b.caCertPem &&
      a.caKeyPem === b.caKeyPem &&
      a.certChainPem === b.certChainPem &&
      active.rootPem === this.active.rootPem;
    const unchanged =
      sameSigner &&
      a.rootCertPem === b.rootCertPem &&
      (pending && this.pending ? sameCa(pending.material, this.pending.material) : pending === this.pending);
    if (unchanged) return false;
    this.active = active;
    this.pending = pending;
    this.retiring = retiring;
    if (!sameSigner) {
      this.activeLastNotAfter = 0;
      this.gen++;
    }
    this.schedulePrune();
    this.emit();
    if (retiring.length !== active.extraRoots.length) this.prune(); // the leader stores the expired root's removal
    return true;
  }

  /** Reads the store and reloads; coalesces calls, and waits while a write of ours is in flight. */
  refresh(): Promise<void> {
    if (this.activating || this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing ?? Promise.resolve();
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        try {
          const m = await this.store.load();
          if (m) this.reload(m);
          else this.onStoreError(new Error(`${this.store.describe} holds no CA material any more; the current CA keeps signing`));
        } catch (err) {
          this.onStoreError(new Error(`${this.store.describe}: ${(err as Error).message}; the current CA keeps signing`));
        }
      } while (this.refreshAgain && !this.activating);
      this.refreshing = undefined;
    })();
    return this.refreshing;
  }

  private refreshDeferred(): void {
    if (this.refreshAgain) void this.refresh();
  }

  /**
   * Drops retiring roots whose certificates have all expired; true when roots() changed. The leader also
   * drops them from the store (a follower's store copy changes when the leader's write arrives).
   */
  prune(): boolean {
    // An activation stores the root list itself, and schedules the next prune when done.
    if (this.activating) return false;
    const now = this.now();
    const kept = this.retiring.filter((r) => r.until > now);
    const changed = kept.length !== this.retiring.length;
    this.retiring = kept;
    if (this.leadership.isLeader() && this.active.extraRoots.some((r) => r.until <= now)) {
      const stored: CaMaterial = { ...this.active.material, rootCertPem: rootsPem(this.active.rootPem, kept) };
      this.active = { ...this.active, material: stored, extraRoots: kept };
      const withNext = this.pending ? { ...stored, next: this.pending.material } : stored;
      this.store
        .save(withNext)
        .catch((err: Error) => this.onStoreError(new Error(`storing the trusted roots in ${this.store.describe}: ${err.message}`)));
    }
    if (changed) this.emit();
    return changed;
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    clearTimeout(this.pruneTimer);
    this.stopFollowing();
    this.listeners.clear();
  }

  private checkDomain(id: Identity): void {
    if (id.trustDomain !== this.trustDomain) throw new Error(`this CA signs for trust domain ${this.trustDomain}, not ${id.trustDomain}`);
  }

  private sign(spki: Buffer, keyPem: string, uris: string[], opts: IssueOptions): IssuedCert {
    const ttl = opts.ttlMs ?? this.workloadTtlMs;
    if (!(ttl > 0 && ttl <= MAX_WORKLOAD_TTL_MS)) throw new Error(`certificate lifetime ${ttl} ms is outside (0, 90 days]`);
    const signer = this.active;
    const now = this.now();
    const notAfter = Math.min(now + ttl, signer.notAfter); // never outlive the CA
    const keyUsage = [KeyUsage.digitalSignature, KeyUsage.keyEncipherment];
    const cert = buildCertificate({
      subject: Buffer.from([0x30, 0x00]), // empty: the SAN is the identity, as Istio does
      issuer: signer.issuer,
      publicKey: spki,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      ca: false,
      keyUsage,
      extKeyUsage: [OID.serverAuth, OID.clientAuth],
      uris,
      dnsNames: opts.dnsNames,
    });
    this.activeLastNotAfter = Math.max(this.activeLastNotAfter, notAfter);
    return {
      certChainPem: toPem(cert.der) + signer.chainPem,
      privateKeyPem: keyPem,
      rootPem: signer.rootPem,
      notBefore: new Date(Math.floor((now - BACKDATE_MS) / 1000) * 1000),
      notAfter: new Date(Math.floor(notAfter / 1000) * 1000),
      serial: cert.serialHex,
    };
  }

  private schedulePrune(): void {
    clearTimeout(this.pruneTimer);
    const next = Math.min(...this.retiring.map((r) => r.until));
    if (!Number.isFinite(next)) return;
    this.pruneTimer = setTimeout(
      () => {
        if (this.activating) return; // the activation stores the list and schedules again
        this.prune();
        this.schedulePrune();
      },
      Math.min(Math.max(next - this.now() + 1000, 0), MAX_TIMER_MS),
    );
    this.pruneTimer.unref();
  }

  private emit(): void {
    for (const fn of [...this.listeners]) fn();
  }
}

/** The stored material as signers: the current CA, and a rotation's next one. */
function loadStored(material: CaMaterial): { active: Signer; pending: Signer | undefined } {
  const { next, ...current } = material;
  return { active: loadSigner(current), pending: next && loadSigner(next) };
}

function sameCa(a: CaMaterial, b: CaMaterial): boolean {
  return a.caCertPem === b.caCertPem && a.caKeyPem === b.caKeyPem && a.certChainPem === b.certChainPem && a.rootCertPem === b.rootCertPem;
}
