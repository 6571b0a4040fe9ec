// The SPIFFE bundle endpoint of the local trust domain (SPIFFE Trust Domain and Bundle, section 5): a JWKS
// document at a fixed URL, which peers poll at spiffe_refresh_hint and order by spiffe_sequence.
import type http from 'node:http';
import type { TrustBundles } from './bundles.js';

export const SPIFFE_BUNDLE_PATH = '/.well-known/spiffe-bundle';

/** Answers GET/HEAD with the local trust domain's bundle; 405 for other methods. */
export function serveSpiffeBundle(bundles: TrustBundles, req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: `${req.method ?? ''} not allowed; GET the bundle` }) + '\n');
    return;
  }
  const bundle = bundles.spiffeBundleJwks(bundles.localTrustDomain);
  const body = JSON.stringify(bundle, null, 2) + '\n';
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': `max-age=${Math.min(bundle?.spiffe_refresh_hint ?? 0, 60)}`,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
