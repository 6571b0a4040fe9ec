// The `api` token a multicluster peer's remote cluster is watched with (Deckhouse's kubeconfig token, deckhouse.md §3):
// minted for 366 days and kept, because a new token means new watches; re-minted once fewer than 30 days are left,
// or when the peer's UUID (the token's audience) changes. With --write-remote-secrets the token in the peer's remote
// Secret is taken up again at start (Deckhouse's merge hook does the same), so a restart or a new leader does not
// mint a new one and rewrite every Secret (istiod then restarts its watches of that cluster).
import { compactVerify, decodeJwt } from 'jose';
import { parseEd25519PublicKey } from '../identity/keys.js';
import { API_TOKEN_TTL_S } from '../tokens/tokens.js';
import type { TokenMinter } from '../types.js';

/** Deckhouse's rule: a token with less than this left is replaced. */
export const API_TOKEN_RENEW_BEFORE_S = 30 * 24 * 3600;

export interface ApiTokenPolicy {
  readonly ttlSeconds: number;
  readonly renewBeforeSeconds: number;
}

export const DECKHOUSE_API_TOKEN: ApiTokenPolicy = { ttlSeconds: API_TOKEN_TTL_S, renewBeforeSeconds: API_TOKEN_RENEW_BEFORE_S };

export interface HeldToken {
  readonly token: string;
  readonly audience: string;
  /** Expiry, seconds since the epoch (the token's own `exp`). */
  readonly exp: number;
}

/** Whether `held` can still be used for `audience` at `nowS` (seconds), or a new one must be minted. */
export function keepApiToken(held: HeldToken | undefined, audience: string, nowS: number, policy: ApiTokenPolicy): boolean {
  return held !== undefined && held.audience === audience && held.exp - nowS >= policy.renewBeforeSeconds;
}

/** The token to use now: `held` when it may be kept, else a new one. */
export async function apiToken(
  held: HeldToken | undefined,
  audience: string,
  mint: TokenMinter,
  policy: ApiTokenPolicy,
  now = Date.now(),
): Promise<HeldToken> {
  const nowS = Math.floor(now / 1000);
  if (keepApiToken(held, audience, nowS, policy)) return held!;
  const token = await mint(audience, 'api', policy.ttlSeconds);
  const exp = decodeJwt(token).exp;
  return { token, audience, exp: typeof exp === 'number' ? exp : nowS + policy.ttlSeconds };
}

/**
 * A token found in a remote Secret, if it may be kept: an `api` token for `audience`, signed with this cluster's own
 * key (`publicKeyPem`, Deckhouse's label or the standard one), with enough time left by the policy.
 */
export async function storedApiToken(
  token: string,
  audience: string,
  publicKeyPem: string,
  policy: ApiTokenPolicy,
  now = Date.now(),
): Promise<HeldToken | undefined> {
  try {
    await compactVerify(token, parseEd25519PublicKey(publicKeyPem), { algorithms: ['EdDSA'] });
    const claims = decodeJwt(token);
    if (claims.aud !== audience || claims['scope'] !== 'api' || typeof claims.exp !== 'number') return undefined;
    const held: HeldToken = { token, audience, exp: claims.exp };
    return keepApiToken(held, audience, Math.floor(now / 1000), policy) ? held : undefined;
  } catch {
    return undefined;
  }
}
