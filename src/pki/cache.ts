// Workload certificates per identity, re-issued at half-life (Istio's SECRET_GRACE_PERIOD_RATIO 0.5) and when
// the CA's signer changes, so a rotated root reaches every workload without waiting for expiry.
import type { CertificateAuthority, IssuedCert } from './ca.js';
import { spiffeId, type Identity } from './identity.js';

interface Entry {
  readonly id: Identity;
  readonly cert: IssuedCert;
  readonly renewAt: number;
  readonly generation: number;
  timer: NodeJS.Timeout | undefined;
  /** Its renewal timer fired: re-issue on the next get() whatever the clock says. */
  due: boolean;
}

export interface WorkloadCertCacheOptions {
  /** Lifetime of certificates issued here; the CA's default when absent. */
  readonly ttlMs?: number;
  /** Fraction of the lifetime after which a certificate is re-issued; 0.5. */
  readonly renewRatio?: number;
  /** Clock (ms since epoch); Date.now. */
  readonly now?: () => number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export class WorkloadCertCache {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(id: Identity) => void>();
  private readonly now: () => number;
  private readonly renewRatio: number;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly opts: WorkloadCertCacheOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.renewRatio = opts.renewRatio ?? 0.5;
    // A new signer: every cached certificate is due (get() re-issues it from the new root).
    this.unsubscribe = ca.onChange(() => {
      for (const e of this.entries.values()) if (e.generation !== ca.generation) this.fire(e);
    });
  }

  /** The identity's current certificate; issues one when there is none or the cached one is due. */
  get(id: Identity): IssuedCert {
    const key = spiffeId(id);
    const e = this.entries.get(key);
    const now = this.now();
    if (e && !e.due && now < e.renewAt && e.generation === this.ca.generation) return e.cert;
    if (e) clearTimeout(e.timer);
    const cert = this.ca.issue(id, { ttlMs: this.opts.ttlMs });
    const renewAt = now + (cert.notAfter.getTime() - now) * this.renewRatio;
    const entry: Entry = { id, cert, renewAt, generation: this.ca.generation, timer: undefined, due: false };
    // At least a second: near the CA's own expiry lifetimes shrink towards zero, and a 0 ms timer would spin.
    entry.timer = setTimeout(() => this.fire(entry), Math.min(Math.max(renewAt - now, 1000), MAX_TIMER_MS));
    entry.timer.unref();
    this.entries.set(key, entry);
    return cert;
  }

  /** When the identity's certificate is due for re-issue; undefined when none is cached. */
  renewAt(id: Identity): Date | undefined {
    const e = this.entries.get(spiffeId(id));
    return e && new Date(e.renewAt);
  }

  /** fn(id) runs when id's certificate is due: the SDS server pushes get(id) again. */
  onRenew(fn: (id: Identity) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    this.unsubscribe();
    for (const e of this.entries.values()) clearTimeout(e.timer);
    this.entries.clear();
    this.listeners.clear();
  }

  private fire(e: Entry): void {
    if (this.entries.get(spiffeId(e.id)) !== e) return; // superseded
    clearTimeout(e.timer);
    // A timer can fire a little before Date.now() reaches renewAt (libuv measures from the loop's
    // cached time); without this flag get() would keep the old certificate and schedule nothing.
    e.due = true;
    for (const fn of [...this.listeners]) fn(e.id);
  }
}
