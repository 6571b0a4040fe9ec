// The federated trust bundle: root PEMs per trust domain, never merged across domains (SPIFFE federation).
// The local domain holds this CA's roots plus the roots of same-domain (multicluster) peers; every other
// cluster domain of the mesh model holds that cluster's rootCaPem.
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { compare, type MeshCluster } from '../model/mesh.js';
import type { CertificateAuthority } from './ca.js';
import { pemToDer, rootProblem, splitPems } from './x509.js';

export interface SpiffeBundle {
  readonly keys: readonly Record<string, unknown>[];
  readonly spiffe_sequence: number;
  readonly spiffe_refresh_hint: number;
}

export interface TrustBundlesOptions {
  /** spiffe_refresh_hint, in seconds; 300 (SPIRE's default poll interval). */
  readonly refreshHintSec?: number;
  /** Where rejected remote roots are reported. */
  readonly log?: Logger;
  /** Clock (ms since epoch), for spiffe_sequence; Date.now. */
  readonly now?: () => number;
}

export class TrustBundles {
  private clusters: ReadonlyMap<string, MeshCluster> = new Map();
  private current = new Map<string, readonly string[]>();
  private readonly sequence = new Map<string, number>();
  private readonly listeners = new Set<() => void>();
  private readonly unsubscribe: () => void;
  private readonly now: () => number;

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly opts: TrustBundlesOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.unsubscribe = ca.onChange(() => this.recompute());
    this.recompute();
  }

  get localTrustDomain(): string {
    return this.ca.trustDomain;
  }

  /** Remote roots from the mesh model: each cluster's rootCaPem under its domain (the trust domain). */
  setClusters(clusters: ReadonlyMap<string, MeshCluster>): void {
    this.clusters = clusters;
    this.recompute();
  }

  /** Trust domain → its root PEMs, deduplicated and sorted; domains sorted. */
  byDomain(): ReadonlyMap<string, readonly string[]> {
    return this.current;
  }

  /** Every trusted root, concatenated: for clients without a per-domain (SPIFFE) validator. */
  allPems(): string {
    return [...new Set([...this.current.values()].flat())].sort().join('');
  }

  /** The SPIFFE bundle (RFC 7517 JWKS with `x509-svid` keys) of one trust domain, or undefined if unknown. */
  spiffeBundleJwks(td: string): SpiffeBundle | undefined {
    const pems = this.current.get(td);
    if (!pems) return undefined;
    // Field order as Deckhouse's metadata-exporter writes it (readers do not depend on it; people diffing do).
    return {
      spiffe_sequence: this.sequence.get(td) ?? 0,
      spiffe_refresh_hint: this.opts.refreshHintSec ?? 300,
      keys: pems.map(jwkOf),
    };
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    this.unsubscribe();
    this.listeners.clear();
  }

  private recompute(): void {
    const local = this.ca.trustDomain;
    const sets = new Map<string, Set<string>>([[local, new Set(this.ca.roots.flatMap(splitPems))]]);
    for (const c of [...this.clusters.values()].sort((a, b) => compare(a.id, b.id))) {
      if (!c.rootCaPem.trim()) continue;
      const set = sets.get(c.domain) ?? new Set<string>();
      sets.set(c.domain, set);
      for (const pem of splitPems(c.rootCaPem)) {
        const problem = rootProblem(pem);
        if (problem) this.opts.log?.warn({ cluster: c.id, trustDomain: c.domain }, `ignoring a root of cluster ${c.id}: ${problem}`);
        else set.add(pem);
      }
      if (!splitPems(c.rootCaPem).length) this.opts.log?.warn({ cluster: c.id }, `cluster ${c.id}: rootCaPem holds no PEM certificate`);
    }
    const next = new Map<string, readonly string[]>();
    for (const td of [...sets.keys()].sort()) if (sets.get(td)!.size) next.set(td, [...sets.get(td)!].sort());

    let changed = next.size !== this.current.size;
    for (const [td, pems] of next) {
      const before = this.current.get(td);
      if (before && before.length === pems.length && before.every((p, i) => p === pems[i])) continue;
      changed = true;
      // Increasing across changes, and across restarts too while the clock does not go back.
      this.sequence.set(td, Math.max((this.sequence.get(td) ?? 0) + 1, Math.floor(this.now() / 1000)));
    }
    this.current = next;
    if (changed) for (const fn of [...this.listeners]) fn();
  }
}

/** RFC 7517 JWK of a root, as SPIFFE bundles carry it: key parameters, `use: x509-svid`, and the certificate. */
function jwkOf(pem: string): Record<string, unknown> {
  const jwk = new X509Certificate(pem).publicKey.export({ format: 'jwk' });
  return { ...jwk, use: 'x509-svid', x5c: [pemToDer(pem).toString('base64')] };
}

/** Envoy's SPIFFECertValidatorConfig (proto3 JSON field names): one trust bundle per trust domain. */
export function spiffeValidatorConfig(byDomain: ReadonlyMap<string, readonly string[]>): {
  trust_domains: { name: string; trust_bundle: { inline_string: string } }[];
} {
  return {
    trust_domains: [...byDomain].map(([name, pems]) => ({ name, trust_bundle: { inline_string: pems.join('') } })),
  };
}
