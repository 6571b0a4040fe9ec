// Who is on the other end of an xDS or Istio CA stream (the authenticators meshfed's ports use). Checked once, when the stream opens:
//   1. a client certificate that chains to the mesh CA (the TLS port verifies the chain): its
//      SPIFFE URI SAN, which must be in meshfed's own trust domain;
//   2. else a Kubernetes service-account token (`authorization: Bearer …`), checked with a
//      TokenReview against the local apiserver for the configured audience;
//   3. else anonymous: configuration (CDS/EDS/LDS/RDS) and the public trust bundle; any other secret
//      it asks for is answered as not existing (the stream stays).
// On the plaintext port only node metadata is available; it becomes the identity only when
// explicitly enabled for development (--insecure-dev-identity).
import type * as grpc from '@grpc/grpc-js';
import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { decodeJwt } from 'jose';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { parseSpiffeId, spiffeId } from '../pki/identity.js';
import type { AuthIdentity, AuthOutcome, StreamAuthenticator } from '../xds/auth.js';

const SA_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

function identityOf(trustDomain: string, namespace: string, serviceAccount: string, via: AuthIdentity['via']): AuthIdentity {
  return { spiffeId: spiffeId({ trustDomain, namespace, serviceAccount }), trustDomain, namespace, serviceAccount, via };
}

/** The SPIFFE URI SANs of a peer certificate (Node's "URI:…, DNS:…" form). */
function spiffeUris(subjectAltName: string | undefined): string[] {
  return (subjectAltName ?? '')
    .split(/,\s*/)
    .filter((s) => s.startsWith('URI:spiffe://'))
    .map((s) => s.slice(4));
}

export interface TokenCheck {
  review(token: string): Promise<AuthOutcome>;
}

/** The authenticator of the TLS port. */
export class MeshAuthenticator implements StreamAuthenticator {
  constructor(
    private readonly trustDomain: string,
    private readonly tokens: TokenCheck | undefined,
  ) {}

  async authenticate(call: grpc.ServerDuplexStream<unknown, Buffer>): Promise<AuthOutcome> {
    // grpc-js gives the peer certificate only when its chain verified against the port's CA.
    const cert = call.getAuthContext?.()?.sslPeerCertificate;
    if (cert) {
      const uris = spiffeUris(cert.subjectaltname);
      const id = uris.length === 1 ? parseSpiffeId(uris[0]!) : undefined;
      if (id) {
        if (id.trustDomain !== this.trustDomain)
          return { kind: 'rejected', reason: `client certificate is for trust domain ${id.trustDomain}, not ${this.trustDomain}` };
        return { kind: 'authenticated', identity: identityOf(id.trustDomain, id.namespace, id.serviceAccount, 'certificate') };
      }
      if (uris.length > 1) return { kind: 'rejected', reason: 'client certificate has more than one SPIFFE id' };
    }
    const header = call.metadata.get('authorization')[0];
    if (header === undefined) return { kind: 'anonymous' };
    const token = /^Bearer\s+(\S+)$/i.exec(String(header))?.[1];
    if (!token) return { kind: 'rejected', reason: 'authorization metadata is not "Bearer <token>"' };
    if (!this.tokens)
      return {
        kind: 'rejected',
        reason: 'service-account tokens are not accepted: meshfed has no TokenReview access (--token-review-kubeconfig)',
      };
    return this.tokens.review(token);
  }
}

export interface TokenReviewOptions {
  readonly kubeConfig: KubeConfig;
  readonly trustDomain: string;
  /** The audience tokens must be issued for; Istio's CA uses `istio-ca`. */
  readonly audience: string;
  readonly log: Logger;
  /** How long an answer is reused (never past the token's expiry); default 30 s. */
  readonly cacheMs?: number;
  /** A TokenReview that takes longer counts as unreachable; default 5 s. */
  readonly timeoutMs?: number;
}

/** Checks service-account tokens with TokenReview, caching answers briefly by the token's hash. */
export class TokenReviewer implements TokenCheck {
  private readonly api: AuthenticationV1Api;
  private readonly cache = new Map<string, { outcome: AuthOutcome; until: number }>();
  /** Reviews under way: a token presented on many streams at once is reviewed once. */
  private readonly asking = new Map<string, Promise<AuthOutcome>>();

  constructor(private readonly opts: TokenReviewOptions) {
    this.api = opts.kubeConfig.makeApiClient(AuthenticationV1Api);
  }

  async review(token: string): Promise<AuthOutcome> {
    // Not a JWT: no apiserver would accept it, so no stranger's garbage costs a TokenReview.
    if (!isJwt(token)) return { kind: 'rejected', reason: 'token is not a JWT' };
    const key = createHash('sha256').update(token).digest('base64');
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.outcome;
    let pending = this.asking.get(key);
    if (!pending) {
      pending = this.ask(token).finally(() => this.asking.delete(key));
      this.asking.set(key, pending);
    }
    const outcome = await pending;
    if (outcome.kind !== 'unavailable')
      this.remember(key, outcome, Math.min(Date.now() + (this.opts.cacheMs ?? 30_000), expiryOf(token) ?? Infinity));
    return outcome;
  }

  private async ask(token: string): Promise<AuthOutcome> {
    const server = this.opts.kubeConfig.getCurrentCluster()?.server ?? 'the apiserver';
    let timer: NodeJS.Timeout | undefined;
    try {
      const review = await Promise.race([
        this.api.createTokenReview({
          body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.opts.audience] } },
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${this.opts.timeoutMs ?? 5000} ms`)), this.opts.timeoutMs ?? 5000);
        }),
      ]);
      const status = review.status;
      if (!status?.authenticated)
        return { kind: 'rejected', reason: `token rejected by TokenReview${status?.error ? `: ${status.error}` : ''}` };
      const audiences = status.audiences ?? [];
      if (audiences.length && !audiences.includes(this.opts.audience))
        return { kind: 'rejected', reason: `token is not for audience ${this.opts.audience}` };
      const m = SA_USER.exec(status.user?.username ?? '');
      if (!m) return { kind: 'rejected', reason: `token belongs to ${status.user?.username ?? 'nobody'}, not a service account` };
      return { kind: 'authenticated', identity: identityOf(this.opts.trustDomain, m[1]!, m[2]!, 'token') };
    } catch (err) {
      const reason = `TokenReview at ${server} failed: ${(err as Error).message}`;
      this.opts.log.error(
        { err: (err as Error).message, apiserver: server },
        `${reason}; streams with service-account tokens get no secrets until it answers`,
      );
      return { kind: 'unavailable', reason };
    } finally {
      clearTimeout(timer);
    }
  }

  /** At most MAX_CACHED answers: past that the oldest goes (a Map iterates in insertion order). */
  private remember(key: string, outcome: AuthOutcome, until: number): void {
    this.cache.delete(key);
    this.cache.set(key, { outcome, until });
    if (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
  }
}

const MAX_CACHED = 10_000;

function isJwt(token: string): boolean {
  try {
    decodeJwt(token);
    return true;
  } catch {
    return false;
  }
}

/** The token's exp claim (ms), read without verification: only to bound the cache. */
function expiryOf(token: string): number | undefined {
  try {
    const exp = decodeJwt(token).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
