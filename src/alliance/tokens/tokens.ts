// Tokens between clusters, as Deckhouse mints and checks them (deckhouse.md §2–3): a compact JWS, alg EdDSA, no
// kid/typ, claims iss "d8-istio", sub = the minting cluster's UUID, aud = the peer's UUID (one string), scope, nbf,
// exp. The receiver checks aud, scope and exp, looks `sub` up among the peers *it* federates with, and verifies the
// signature with that peer's published authnKeyPub. Nothing else (no kid lookup, no other algorithm) is accepted.
import type { KeyObject } from 'node:crypto';
import { compactVerify, decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import type { PeerDirectory, TokenMinter, TokenScope } from '../types.js';
import { parseEd25519PublicKey } from '../identity/keys.js';

export const TOKEN_ISSUER = 'd8-istio';
/** Deckhouse's TTL for private metadata fetches. */
export const METADATA_TOKEN_TTL_S = 60;
/** Deckhouse's TTL for the multicluster kubeconfig token (scope `api`). */
export const API_TOKEN_TTL_S = 366 * 24 * 3600;
/**
 * How far a peer's clock may run ahead before its `nbf` is refused. Deckhouse does not check nbf at all; meshfed
 * refuses tokens from the future beyond clock skew, which a Deckhouse peer (nbf = now) never sends.
 */
export const NBF_LEEWAY_S = 60;

export function tokenMinter(o: { clusterUuid: string; privateKey: KeyObject; now?: () => number }): TokenMinter {
  const now = o.now ?? Date.now;
  return (audience: string, scope: TokenScope, ttlSeconds: number) => {
    const t = Math.floor(now() / 1000);
    // Claim order as Deckhouse's struct; aud a single string, not an array.
    return new SignJWT({ iss: TOKEN_ISSUER, sub: o.clusterUuid, aud: audience, scope, nbf: t, exp: t + ttlSeconds })
      .setProtectedHeader({ alg: 'EdDSA' })
      .sign(o.privateKey);
  };
}

/** Why a token was refused: a closed set, for the metric's label. */
export const AUTH_FAILURES = [
  'missing_bearer',
  'malformed',
  'wrong_algorithm',
  'wrong_audience',
  'wrong_scope',
  'expired',
  'not_yet_valid',
  'unknown_peer',
  'bad_peer_key',
  'bad_signature',
] as const;
export type AuthFailure = (typeof AUTH_FAILURES)[number];

export class AuthError extends Error {
  constructor(
    readonly reason: AuthFailure,
    message: string,
  ) {
    super(message);
  }
}

export interface VerifyOptions {
  /** This cluster's UUID: the only accepted `aud`. */
  readonly clusterUuid: string;
  readonly scope: TokenScope;
  readonly peers: PeerDirectory;
  readonly now?: () => number;
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Checks an `Authorization` header; resolves to the peer's UUID, or rejects with an AuthError. */
export async function verifyPeerToken(authorization: string | undefined, o: VerifyOptions): Promise<{ peer: string }> {
  const m = /^Bearer +(\S+)\s*$/i.exec(authorization ?? '');
  if (!m) throw new AuthError('missing_bearer', 'Bearer authorization required');
  const token = m[1]!;
  if (!COMPACT_JWS.test(token)) throw new AuthError('malformed', 'the token is not a compact JWS');
  let alg: unknown;
  let claims: Record<string, unknown>;
  try {
    alg = decodeProtectedHeader(token).alg;
    claims = decodeJwt(token);
  } catch {
    throw new AuthError('malformed', 'the token is not a compact JWS with a JSON header and claims');
  }
  // Before anything else: `none`, HS256 keyed with the public key and the like are never looked at further.
  if (alg !== 'EdDSA') throw new AuthError('wrong_algorithm', `JWT algorithm ${JSON.stringify(alg)} is not accepted (only EdDSA)`);
  // The claims are read unverified first, as Deckhouse does: each check says what was wrong. Nothing is served
  // unless the signature below verifies too.
  if (claims['aud'] !== o.clusterUuid) throw new AuthError('wrong_audience', 'JWT is signed for wrong destination cluster');
  if (claims['scope'] !== o.scope) throw new AuthError('wrong_scope', 'JWT is signed for wrong scope');
  const now = Math.floor((o.now ?? Date.now)() / 1000);
  const exp = claims['exp'];
  if (typeof exp !== 'number' || exp < now) throw new AuthError('expired', 'JWT token expired');
  const nbf = claims['nbf'];
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now + NBF_LEEWAY_S))
    throw new AuthError('not_yet_valid', 'JWT is not valid yet (nbf)');
  const sub = claims['sub'];
  const peer = typeof sub === 'string' ? o.peers.publicMetadata(sub, o.scope) : undefined;
  if (!peer) throw new AuthError('unknown_peer', 'JWT is signed for unknown source cluster');
  let key: KeyObject;
  try {
    key = parseEd25519PublicKey(peer.authnKeyPub);
  } catch (err) {
    throw new AuthError('bad_peer_key', `the authnKeyPub known for the source cluster is unusable: ${(err as Error).message}`);
  }
  try {
    await compactVerify(token, key, { algorithms: ['EdDSA'] });
  } catch {
    throw new AuthError('bad_signature', 'cannot verify JWT token with known public key');
  }
  return { peer: sub as string };
}
