// Workload certificates per identity, issued off the push path: an identity is issued for when a stream first
// wants it, re-issued at half-life (Istio's SECRET_GRACE_PERIOD_RATIO 0.5) and when the CA's signer changes (so a
// rotated root reaches every workload without waiting for expiry), always asynchronously (key generation on the
// libuv pool); listeners hear when a certificate is ready, and readers only ever see what is already issued.
// An identity nobody wants any more at renewal time is dropped, not renewed forever.
import type { CertificateAuthority, IssuedCert } from './ca.js';
import { spiffeId, type Identity } from './identity.js';

interface Entry {
  readonly id: Identity;
  /** Undefined until the first issuance succeeds. */
  cert: IssuedCert | undefined;
  /** The CA generation the certificate was asked of. */
  generation: number;
  renewAt: number;
  /** The renewal timer, or the retry timer after a failure. */
  timer: NodeJS.Timeout | undefined;
  issuing: boolean;
  /** Consecutive failed issuances, for the backoff. */
  failures: number;
  /** Whether anyone still wants this identity; asked before each renewal. */
  wanted: () => boolean;
}

export interface WorkloadCertCacheOptions {
  /** Lifetime of certificates issued here; the CA's default when absent. */
  readonly ttlMs?: number;
  /** Fraction of the lifetime after which a certificate is re-issued; 0.5. */
  readonly renewRatio?: number;
  /** Clock (ms since epoch); Date.now. */
  readonly now?: () => number;
  /** Failed issuances are logged here (one line each) and retried. */
  readonly log?: { warn(obj: object, msg: string): void };
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** Retry after a failed issuance: 1 s, doubling, at most 2 min. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 120_000;

export class WorkloadCertCache {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(id: Identity) => void>();
  private readonly now: () => number;
  private readonly renewRatio: number;
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly opts: WorkloadCertCacheOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.renewRatio = opts.renewRatio ?? 0.5;
    // A new signer: every certificate is re-issued from it (one in flight checks the generation when done).
    this.unsubscribe = ca.onChange(() => {
      for (const e of [...this.entries.values()]) if (!e.issuing && e.generation !== ca.generation) this.renew(e);
    });
  }

  /** The identity's current certificate, if one was issued; never issues. */
  get(id: Identity): IssuedCert | undefined {
    return this.entries.get(spiffeId(id))?.cert;
  }

  /**
   * Someone wants id's certificate: issues one in the background if none is cached or under way (listeners hear
   * when it is ready). `wanted` is asked at each renewal; when it says no, the identity is dropped.
   */
  want(id: Identity, wanted: () => boolean = () => true): void {
    if (this.closed) return;
    const key = spiffeId(id);
    const e = this.entries.get(key);
    if (e) {
      e.wanted = wanted;
      return;
    }
    const entry: Entry = {
      id,
      cert: undefined,
      generation: this.ca.generation,
      renewAt: 0,
      timer: undefined,
      issuing: false,
      failures: 0,
      wanted,
    };
    this.entries.set(key, entry);
    void this.issue(entry);
  }

  /** When the identity's certificate is due for re-issue; undefined when none is cached. */
  renewAt(id: Identity): Date | undefined {
    const e = this.entries.get(spiffeId(id));
    return e?.cert && new Date(e.renewAt);
  }

  /** fn(id) runs when id's certificate changed: issued, re-issued, or dropped. */
  onChange(fn: (id: Identity) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    for (const e of this.entries.values()) clearTimeout(e.timer);
    this.entries.clear();
    this.listeners.clear();
  }

  /** Renewal, signer change or retry: re-issue if still wanted, else drop. */
  private renew(e: Entry): void {
    if (!this.current(e) || e.issuing) return;
    if (e.wanted()) {
      void this.issue(e);
      return;
    }
    clearTimeout(e.timer);
    this.entries.delete(spiffeId(e.id));
    this.tell(e.id);
  }

  private async issue(e: Entry): Promise<void> {
    clearTimeout(e.timer);
    e.timer = undefined;
    e.issuing = true;
    const generation = this.ca.generation;
    let cert: IssuedCert;
    try {
      cert = await this.ca.issueAsync(e.id, { ttlMs: this.opts.ttlMs });
    } catch (err) {
      e.issuing = false;
      if (!this.current(e)) return;
      const delay = Math.min(RETRY_FIRST_MS * 2 ** e.failures, RETRY_MAX_MS);
      e.failures++;
      this.opts.log?.warn(
        { identity: spiffeId(e.id), failures: e.failures },
        `workload certificate for ${spiffeId(e.id)} not issued: ${(err as Error).message}; retrying in ${delay / 1000} s`,
      );
      this.schedule(e, delay);
      return;
    }
    e.issuing = false;
    if (!this.current(e)) return;
    const now = this.now();
    e.cert = cert;
    e.generation = generation;
    e.failures = 0;
    e.renewAt = now + (cert.notAfter.getTime() - now) * this.renewRatio;
    // At least a second: near the CA's own expiry lifetimes shrink towards zero, and a 0 ms timer would spin.
    this.schedule(e, Math.max(e.renewAt - now, 1000));
    this.tell(e.id);
    // The signer changed while this one was issued: it may be the old signer's.
    if (generation !== this.ca.generation) this.renew(e);
  }

  private schedule(e: Entry, delayMs: number): void {
    e.timer = setTimeout(() => this.renew(e), Math.min(delayMs, MAX_TIMER_MS));
    e.timer.unref();
  }

  /** False once the entry was dropped (or the cache closed). */
  private current(e: Entry): boolean {
    return !this.closed && this.entries.get(spiffeId(e.id)) === e;
  }

  /** A listener that throws (a bug) is logged: it must not become an unhandled rejection that ends the process. */
  private tell(id: Identity): void {
    for (const fn of [...this.listeners]) {
      try {
        fn(id);
      } catch (err) {
        this.opts.log?.warn(
          { identity: spiffeId(id) },
          `pushing the workload certificate of ${spiffeId(id)} failed: ${(err as Error).message}`,
        );
      }
    }
  }
}
