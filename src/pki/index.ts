// meshfed's PKI: a CA per trust domain, workload certificates with SPIFFE ids, and the federated trust bundle.
// API stub (first commit so issue5-sds can build on it); the implementation follows.
import type { KubeConfig } from '@kubernetes/client-node';
import type { MeshCluster } from '../model/mesh.js';

export interface Identity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>` */
export function spiffeId(id: Identity): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

export function parseSpiffeId(uri: string): Identity | undefined {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  return m ? { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[3]! } : undefined;
}

export type KeyType = 'ec' | 'rsa';

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

/** Istio `cacerts` material (plug-in CA) or meshfed's own self-signed root. */
export interface CaMaterial {
  /** The signing CA certificate (`ca-cert.pem`). */
  readonly caCertPem: string;
  /** Its private key (`ca-key.pem`). */
  readonly caKeyPem: string;
  /** The root (`root-cert.pem`); equals caCertPem for a self-signed root. */
  readonly rootCertPem: string;
  /** From caCert up to the root (`cert-chain.pem`); may be empty for a self-signed root. */
  readonly certChainPem: string;
}

export interface CaStore {
  /** Human-readable location, for logs. */
  readonly describe: string;
  load(): Promise<CaMaterial | undefined>;
  /** Stores m unless material already exists; returns what is stored after the race. */
  createIfAbsent(m: CaMaterial): Promise<CaMaterial>;
}

export interface CaOptions {
  readonly trustDomain: string;
  readonly store: CaStore;
  /** Key type of a self-signed root created here, and the default for workload keys. */
  readonly keyType?: KeyType;
  /** Default workload certificate lifetime; 24 h. */
  readonly workloadTtlMs?: number;
  /** Lifetime of a self-signed root created here; 10 years. */
  readonly rootTtlMs?: number;
  /** Injectable clock (ms since epoch). */
  readonly now?: () => number;
}

export interface IssueOptions {
  readonly ttlMs?: number;
  readonly keyType?: KeyType;
  readonly dnsNames?: readonly string[];
}

export declare class CertificateAuthority {
  static open(opts: CaOptions): Promise<CertificateAuthority>;
  readonly trustDomain: string;
  issue(id: Identity, opts?: IssueOptions): IssuedCert;
  /** meshfed's own xDS serving certificate: DNS SANs plus its own SPIFFE id when given. */
  issueServer(dnsNames: readonly string[], opts?: IssueOptions & { identity?: Identity }): IssuedCert;
  /** Root PEMs this trust domain currently trusts (old and new during a rotation). */
  get roots(): readonly string[];
  /** Phase 1 of a rotation: the new root joins roots() (listeners fire) but signs nothing yet. */
  rotateRoot(next?: CaMaterial): Promise<void>;
  /** Phase 2: after the bundle with the new root was pushed, the new root signs. */
  activateRotation(): void;
  /** Drops old roots whose last issued certificate has expired; returns true when roots changed. */
  prune(): boolean;
  onChange(fn: () => void): () => void;
}

export declare class WorkloadCertCache {
  constructor(ca: CertificateAuthority, opts?: { now?: () => number; ttlMs?: number });
  /** The identity's current certificate, re-issued once half its lifetime has passed. */
  get(id: Identity): IssuedCert;
  /** Fires for an identity whose certificate is due for re-issue (at half-life) or whose root changed. */
  onRenew(fn: (id: Identity) => void): () => void;
  close(): void;
}

export declare class TrustBundles {
  constructor(ca: CertificateAuthority, opts?: { refreshHintSec?: number });
  /** Remote roots from the mesh model: each cluster's rootCaPem under its domain. */
  setClusters(clusters: ReadonlyMap<string, MeshCluster>): void;
  byDomain(): ReadonlyMap<string, readonly string[]>;
  /** Every trusted root, concatenated (for clients without a SPIFFE validator). */
  allPems(): string;
  spiffeBundleJwks(td: string): SpiffeBundle | undefined;
  onChange(fn: () => void): () => void;
}

export interface SpiffeBundle {
  readonly keys: readonly Record<string, unknown>[];
  readonly spiffe_sequence: number;
  readonly spiffe_refresh_hint: number;
}

export declare function kubeCaStore(kc: KubeConfig, namespace: string, secretName?: string): CaStore;
export declare function memoryCaStore(initial?: CaMaterial): CaStore;
export declare function fileCaStore(dir: string): CaStore;
