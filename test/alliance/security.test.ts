// The exporter read as an attacker: every forged, misdirected, stale or malformed token gets 401 with its reason, is
// counted in meshfed_metadata_auth_failures_total{reason}, and nothing private is served; no page carries a private
// key; disabled features are 404; only GET/HEAD on the exact paths. Real HTTP on loopback against the real server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticPeerDirectory } from '../../src/alliance/static-peers.js';
import {
  deckhouseClaims,
  deckhousePeer,
  handMadeToken,
  hs256Token,
  OWN_UUID,
  startExporter,
  unsignedToken,
  type ExporterUnderTest,
} from './deckhouse-peer.js';

const PEER = deckhousePeer('5e3b1c2a-9d8f-4e7a-b6c5-0a1b2c3d4e5f');
/** Signs with its own key but claims to be PEER. */
const IMPOSTOR = { ...deckhousePeer(PEER.uuid) };
/** Not in the exporter's peer directory. */
const STRANGER = deckhousePeer('9f9f9f9f-0000-4000-8000-000000000000');

const FED = '/metadata/private/federation.json';
const now = (): number => Math.floor(Date.now() / 1000);
const claims = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  ...deckhouseClaims(PEER.uuid, OWN_UUID, 'private-federation'),
  ...over,
});

describe('private metadata refuses', () => {
  let x: ExporterUnderTest;
  beforeAll(async () => {
    x = await startExporter({ peers: [PEER] });
  });
  afterAll(() => x.stop());

  async function failures(): Promise<Record<string, number>> {
    const text = await (await fetch(`http://127.0.0.1:${x.meshfed.adminPort}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^meshfed_metadata_auth_failures_total\{reason="([a-z_]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
    return out;
  }

  const cases: { what: string; authorization?: string; reason: string; message: string }[] = [
    { what: 'no Authorization header', reason: 'missing_bearer', message: 'Bearer authorization required' },
    { what: 'Basic credentials', authorization: 'Basic dXNlcjpwYXNz', reason: 'missing_bearer', message: 'Bearer authorization required' },
    { what: 'an empty Bearer', authorization: 'Bearer ', reason: 'missing_bearer', message: 'Bearer authorization required' },
    {
      what: 'a Bearer that is not a JWS',
      authorization: 'Bearer not-a-token',
      reason: 'malformed',
      message: 'the token is not a compact JWS',
    },
    {
      what: 'three parts that are not JSON',
      authorization: 'Bearer aaaa.bbbb.cccc',
      reason: 'malformed',
      message: 'the token is not a compact JWS with a JSON header and claims',
    },
    {
      what: 'a token for another cluster (aud)',
      authorization: `Bearer ${handMadeToken(PEER, claims({ aud: 'some-other-cluster' }))}`,
      reason: 'wrong_audience',
      message: 'JWT is signed for wrong destination cluster',
    },
    {
      what: 'aud as a list',
      authorization: `Bearer ${handMadeToken(PEER, claims({ aud: [OWN_UUID] }))}`,
      reason: 'wrong_audience',
      message: 'JWT is signed for wrong destination cluster',
    },
    {
      what: 'the multicluster scope',
      authorization: `Bearer ${handMadeToken(PEER, claims({ scope: 'private-multicluster' }))}`,
      reason: 'wrong_scope',
      message: 'JWT is signed for wrong scope',
    },
    {
      what: 'the api scope',
      authorization: `Bearer ${handMadeToken(PEER, claims({ scope: 'api' }))}`,
      reason: 'wrong_scope',
      message: 'JWT is signed for wrong scope',
    },
    {
      what: 'an expired token',
      authorization: `Bearer ${handMadeToken(PEER, claims({ nbf: now() - 120, exp: now() - 60 }))}`,
      reason: 'expired',
      message: 'JWT token expired',
    },
    {
      what: 'a token without exp',
      authorization: `Bearer ${handMadeToken(PEER, claims({ exp: undefined }))}`,
      reason: 'expired',
      message: 'JWT token expired',
    },
    {
      what: 'a token from the future (nbf)',
      authorization: `Bearer ${handMadeToken(PEER, claims({ nbf: now() + 3600, exp: now() + 3660 }))}`,
      reason: 'not_yet_valid',
      message: 'JWT is not valid yet (nbf)',
    },
    {
      what: 'an unknown source cluster (sub)',
      authorization: `Bearer ${handMadeToken(STRANGER, deckhouseClaims(STRANGER.uuid, OWN_UUID, 'private-federation'))}`,
      reason: 'unknown_peer',
      message: 'JWT is signed for unknown source cluster',
    },
    {
      what: 'a known sub signed with another key',
      authorization: `Bearer ${handMadeToken(IMPOSTOR, claims())}`,
      reason: 'bad_signature',
      message: 'cannot verify JWT token with known public key',
    },
    {
      what: 'a signature of other claims (claims swapped)',
      authorization: `Bearer ${((t) => `${t[0]}.${Buffer.from(JSON.stringify(claims({ exp: now() + 86400 }))).toString('base64url')}.${t[2]}`)(handMadeToken(PEER, claims()).split('.'))}`,
      reason: 'bad_signature',
      message: 'cannot verify JWT token with known public key',
    },
    {
      what: 'alg none',
      authorization: `Bearer ${unsignedToken(claims())}`,
      reason: 'wrong_algorithm',
      message: 'JWT algorithm "none" is not accepted (only EdDSA)',
    },
    {
      what: "HS256 keyed with the peer's public key",
      authorization: `Bearer ${hs256Token(PEER.pubPem, claims())}`,
      reason: 'wrong_algorithm',
      message: 'JWT algorithm "HS256" is not accepted (only EdDSA)',
    },
  ];

  for (const c of cases) {
    it(`${c.what}: 401 "${c.reason}", counted, nothing served`, async () => {
      const before = await failures();
      const r = await fetch(x.url(FED), { headers: c.authorization === undefined ? {} : { authorization: c.authorization } });
      const body = await r.text();
      expect(r.status).toBe(401);
      expect(body).toBe(`Authentication error: ${c.message}\n`);
      const after = await failures();
      expect(after[c.reason]).toBe((before[c.reason] ?? 0) + 1);
      // Only that reason moved.
      for (const [k, v] of Object.entries(after)) if (k !== c.reason) expect(v).toBe(before[k]);
    });
  }

  it("and serves the same request with a good token (so the refusals above are the token's doing)", async () => {
    const r = await fetch(x.url(FED), { headers: { authorization: `Bearer ${handMadeToken(PEER, claims())}` } });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { publicServices: unknown[] }).publicServices).toHaveLength(2);
  });

  it('every reason is exported from the start, at 0 until it happens', async () => {
    expect(Object.keys(await failures()).sort()).toEqual([
      'bad_peer_key',
      'bad_signature',
      'expired',
      'malformed',
      'missing_bearer',
      'not_yet_valid',
      'unknown_peer',
      'wrong_algorithm',
      'wrong_audience',
      'wrong_scope',
    ]);
  });

  it('never serves a private key, on any path, to anyone', async () => {
    const good = { authorization: `Bearer ${handMadeToken(PEER, claims())}` };
    const paths = [
      '/healthz',
      '/metadata/public/public.json',
      '/metadata/public/spiffe-bundle-endpoint',
      FED,
      '/metadata/private/multicluster.json',
      '/metadata/private/priv.pem',
      '/metadata/public/../private/federation.json',
    ];
    for (const p of paths) {
      for (const headers of [{}, good]) {
        const body = await (await fetch(x.url(p), { headers })).text();
        expect(body, p).not.toMatch(/PRIVATE KEY|"d"\s*:/);
      }
    }
  });

  it('answers only GET and HEAD on the exact paths; a header block over 16 KiB is refused', async () => {
    expect((await fetch(x.url('/metadata/public/public.json'), { method: 'POST', body: '{}' })).status).toBe(405);
    expect((await fetch(x.url('/metadata/public/public.json'), { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(x.url('/metadata/public/public.json/'))).status).toBe(404);
    expect((await fetch(x.url('/metadata/private/'))).status).toBe(404);
    expect((await fetch(x.url(FED), { headers: { authorization: `Bearer ${'a'.repeat(20_000)}` } })).status).toBe(431);
  });
});

describe('private metadata of a feature that is off', () => {
  it('is 404 (not 401), before any token is looked at', async () => {
    const x = await startExporter({ peers: [PEER], federation: false });
    try {
      const token = handMadeToken(PEER, claims());
      expect((await fetch(x.url(FED), { headers: { authorization: `Bearer ${token}` } })).status).toBe(404);
      expect((await fetch(x.url('/metadata/private/multicluster.json'), { headers: { authorization: `Bearer ${token}` } })).status).toBe(
        404,
      );
      expect((await fetch(x.url('/metadata/public/public.json'))).status).toBe(200);
    } finally {
      await x.stop();
    }
  });
});

describe('the peers allowed in', () => {
  it('are the PeerDirectory the peer controller hands over: unknown until then, served after', async () => {
    const x = await startExporter({ peers: [] });
    try {
      const headers = { authorization: `Bearer ${handMadeToken(PEER, claims())}` };
      const before = await fetch(x.url(FED), { headers });
      expect([before.status, await before.text()]).toEqual([401, 'Authentication error: JWT is signed for unknown source cluster\n']);
      x.meshfed.alliance!.usePeers(new StaticPeerDirectory([{ clusterUUID: PEER.uuid, authnKeyPub: PEER.pubPem, rootCA: 'unused' }]));
      expect((await fetch(x.url(FED), { headers })).status).toBe(200);
      // A peer whose published key is unusable is refused as such, not served.
      x.meshfed.alliance!.usePeers(new StaticPeerDirectory([{ clusterUUID: PEER.uuid, authnKeyPub: 'garbage', rootCA: 'unused' }]));
      const bad = await fetch(x.url(FED), { headers });
      expect([bad.status, await bad.text()]).toEqual([
        401,
        'Authentication error: the authnKeyPub known for the source cluster is unusable: not a PEM public key (PKIX)\n',
      ]);
    } finally {
      await x.stop();
    }
  });
});
