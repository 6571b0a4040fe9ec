// The mesh CA of one trust domain: workload and server certificates, and root rotation in two steps.
import { generateKeyPair } from 'node:crypto';
import { checkIdentity, spiffeId, type Identity } from './identity.js';
import { generateKey, loadSigner, rootsPem, selfSignedRoot, type CaMaterial, type ExtraRoot, type KeyType, type Signer } from './material.js';
import type { CaStore } from './store.js';
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
  /** Told when storing the trusted roots after a retiring root expired fails (the store keeps trusting it). */
  readonly onStoreError?: (err: Error) => void;
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
  private activating = false;
  private retiring: ExtraRoot[] = [];
  private readonly listeners = new Set<() => void>();
  private pruneTimer: NodeJS.Timeout | undefined;
  /** Bumps whenever the signer changes: certificates from an older generation should be re-issued. */
  private gen = 0;

  private constructor(opts: CaOptions, signer: Signer) {
    this.trustDomain = opts.trustDomain;
    this.store = opts.store;
    this.onStoreError = opts.onStoreError ?? (() => {});
    this.now = opts.now ?? Date.now;
    this.keyType = opts.keyType ?? 'ec';
    this.workloadTtlMs = opts.workloadTtlMs ?? DEFAULT_WORKLOAD_TTL_MS;
    this.rootTtlMs = opts.rootTtlMs ?? DEFAULT_ROOT_TTL_MS;
    this.active = signer;
    // Other stored roots: one meshfed rotated out before a restart (until the time it noted), or an
    // operator's (Istio's combined root-cert.pem), trusted as long as it is there.
    this.retiring = [...signer.extraRoots];
    this.schedulePrune();
  }

  /**
   * Loads the store's material (plug-in `cacerts` first), or creates a self-signed root and stores it unless a
   * concurrent replica stored one first; either way every replica ends up signing with what the store holds.
   */
  static async open(opts: CaOptions): Promise<CertificateAuthority> {
    checkIdentity({ trustDomain: opts.trustDomain, namespace: 'x', serviceAccount: 'x' });
    let material = await opts.store.load();
    if (!material) {
      const now = (opts.now ?? Date.now)();
      const fresh = selfSignedRoot(opts.trustDomain, { keyType: opts.keyType ?? 'ec', ttlMs: opts.rootTtlMs ?? DEFAULT_ROOT_TTL_MS, now });
      material = await opts.store.createIfAbsent(fresh);
    }
    return new CertificateAuthority(opts, loadSigner(material));
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
    return this.sign(spki, keyPem, opts.identity ? [spiffeId(opts.identity)] : [], { ...opts, dnsNames: [...dnsNames, ...(opts.dnsNames ?? [])] });
  }

  /**
   * Step 1 of a root rotation: the next root (given, or a new self-signed one) joins roots() and listeners run,
   * so bundles carrying it can be pushed; it signs nothing until activateRotation().
   */
  rotateRoot(next?: CaMaterial): void {
    if (this.pending) throw new Error('a root rotation is already in progress; activate it first');
    const material = next ?? selfSignedRoot(this.trustDomain, { keyType: this.keyType, ttlMs: this.rootTtlMs, now: this.now() });
    this.pending = loadSigner(material);
    this.emit();
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
      throw new Error(`storing the next root in ${this.store.describe}: ${(err as Error).message}`);
    }
    this.activating = false;
    this.retiring = retiring;
    this.active = { ...next, material: stored };
    this.pending = undefined;
    this.activeLastNotAfter = 0;
    this.gen++;
    this.schedulePrune();
    this.emit();
  }

  /** Drops retiring roots whose certificates have all expired; true when roots() changed. */
  prune(): boolean {
    // An activation stores the root list itself, and schedules the next prune when done.
    if (this.activating) return false;
    const now = this.now();
    const kept = this.retiring.filter((r) => r.until > now);
    if (kept.length === this.retiring.length) return false;
    this.retiring = kept;
    const stored: CaMaterial = { ...this.active.material, rootCertPem: rootsPem(this.active.rootPem, kept) };
    this.active = { ...this.active, material: stored };
    this.store.save(stored).catch((err: Error) => this.onStoreError(new Error(`storing the trusted roots in ${this.store.describe}: ${err.message}`)));
    this.emit();
    return true;
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    clearTimeout(this.pruneTimer);
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
