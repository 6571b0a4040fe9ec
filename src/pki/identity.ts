// SPIFFE identities of Kubernetes workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.

export interface Identity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

// Trust domain: SPIFFE allows [a-z0-9._-]; path segments: Kubernetes names, which are a subset of SPIFFE's set.
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[a-zA-Z0-9._-]+$/;

export function checkIdentity(id: Identity): void {
  if (!TRUST_DOMAIN.test(id.trustDomain)) throw new Error(`"${id.trustDomain}" is not a SPIFFE trust domain`);
  for (const s of [id.namespace, id.serviceAccount]) {
    if (!SEGMENT.test(s) || s === '.' || s === '..') throw new Error(`"${s}" is not a valid namespace or service account name`);
  }
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>` */
export function spiffeId(id: Identity): string {
  checkIdentity(id);
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** The id, or undefined when a part is not a valid SPIFFE name (node metadata claims anything). */
export function validSpiffeId(id: Identity): string | undefined {
  try {
    return spiffeId(id);
  } catch {
    return undefined;
  }
}

export function parseSpiffeId(uri: string): Identity | undefined {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  if (!m) return undefined;
  const id = { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[3]! };
  try {
    checkIdentity(id);
    return id;
  } catch {
    return undefined;
  }
}
