// Wire compatibility with Deckhouse's metadata-exporter (deckhouse.md §2–3): the documents byte for byte (field names,
// order, 2-space indent), the SPIFFE bundle's JWK shape, and tokens both ways — a token made the way Deckhouse makes
// it is accepted, and meshfed's token passes Deckhouse's check — over real HTTP on loopback.
import { X509Certificate } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adler32 } from '../../src/alliance/exporter/documents.js';
import {
  deckhouseClaims,
  deckhousePeer,
  deckhouseVerify,
  handMadeToken,
  OWN_UUID,
  startExporter,
  type ExporterUnderTest,
} from './deckhouse-peer.js';

const PEER = deckhousePeer('0d4f3a9e-7b21-4c55-8e0f-2f6a1b9c3d7e');

/** Adler-32 as zlib computes it: the last 4 bytes of a zlib stream (RFC 1950), big-endian. */
const zlibAdler32 = (s: string): number => deflateSync(Buffer.from(s)).readUInt32BE(deflateSync(Buffer.from(s)).length - 4);

describe('metadata documents, as a Deckhouse peer reads them', () => {
  let x: ExporterUnderTest;
  beforeAll(async () => {
    x = await startExporter({ peers: [PEER], keyType: 'rsa', multiclusterApiHost: 'istio-api-proxy.example.com' });
  });
  afterAll(() => x.stop());

  const federationToken = (): string => handMadeToken(PEER, deckhouseClaims(PEER.uuid, OWN_UUID, 'private-federation'));

  it('/healthz answers Ok.', async () => {
    const r = await fetch(x.url('/healthz'));
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('Ok.');
  });

  it('public.json: clusterUUID, authnKeyPub (ED25519 PUBLIC KEY), rootCA, in that order, 2-space indent', async () => {
    const text = await (await fetch(x.url('/metadata/public/public.json'))).text();
    const doc = JSON.parse(text) as { clusterUUID: string; authnKeyPub: string; rootCA: string };
    expect(doc.authnKeyPub).toMatch(/^-----BEGIN ED25519 PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END ED25519 PUBLIC KEY-----\n$/);
    expect(doc.rootCA).toBe(x.meshfed.pki!.ca.roots.join(''));
    expect(text).toBe(`{
  "clusterUUID": "${OWN_UUID}",
  "authnKeyPub": ${JSON.stringify(doc.authnKeyPub)},
  "rootCA": ${JSON.stringify(doc.rootCA)}
}`);
  });

  it('spiffe-bundle-endpoint: {spiffe_sequence, spiffe_refresh_hint, keys: [{kty RSA, use x509-svid, e AQAB, n, x5c}]}', async () => {
    const text = await (await fetch(x.url('/metadata/public/spiffe-bundle-endpoint'))).text();
    const doc = JSON.parse(text) as { spiffe_sequence: number; spiffe_refresh_hint: number; keys: Record<string, unknown>[] };
    expect(Object.keys(doc)).toEqual(['spiffe_sequence', 'spiffe_refresh_hint', 'keys']);
    expect(Number.isInteger(doc.spiffe_sequence) && doc.spiffe_sequence > 0).toBe(true);
    expect(Number.isInteger(doc.spiffe_refresh_hint) && doc.spiffe_refresh_hint > 0).toBe(true);
    const root = new X509Certificate(x.meshfed.pki!.ca.roots[0]!);
    expect(doc.keys).toHaveLength(1);
    const key = doc.keys[0]!;
    expect(Object.keys(key).sort()).toEqual(['e', 'kty', 'n', 'use', 'x5c']);
    expect(key).toMatchObject({ kty: 'RSA', use: 'x509-svid', e: 'AQAB' });
    // n: the modulus, base64url without padding; x5c: the DER of the root, standard base64.
    expect(key['n']).toBe(root.publicKey.export({ format: 'jwk' }).n);
    expect(key['n']).not.toMatch(/[=+/]/);
    expect(key['x5c']).toEqual([root.raw.toString('base64')]);
  });

  it("federation.json: gateways sorted by address then port, the local cluster's exported services with {name, port}", async () => {
    const r = await fetch(x.url('/metadata/private/federation.json'), { headers: { authorization: `Bearer ${federationToken()}` } });
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(await r.text()).toBe(`{
  "ingressGateways": [
    {
      "address": "192.0.2.10",
      "port": 15443
    },
    {
      "address": "192.0.2.10",
      "port": 30443
    },
    {
      "address": "192.0.2.20",
      "port": 15443
    }
  ],
  "publicServices": [
    {
      "hostname": "alpha.abc.svc.cluster-b.local",
      "ports": [
        {
          "name": "tcp-db",
          "port": 5432
        }
      ]
    },
    {
      "hostname": "bar.xyz.svc.cluster-b.local",
      "ports": [
        {
          "name": "http-web",
          "port": 8080
        },
        {
          "name": "grpc",
          "port": 9090
        }
      ]
    }
  ]
}`);
  });

  it("multicluster.json: ingressGateways, apiHost, networkName and clusterID by Deckhouse's adler32 formulas", async () => {
    const token = handMadeToken(PEER, deckhouseClaims(PEER.uuid, OWN_UUID, 'private-multicluster'));
    const r = await fetch(x.url('/metadata/private/multicluster.json'), { headers: { authorization: `Bearer ${token}` } });
    expect(r.status).toBe(200);
    const sum = zlibAdler32(OWN_UUID);
    expect(await r.text()).toBe(`{
  "ingressGateways": [
    {
      "address": "192.0.2.10",
      "port": 15443
    },
    {
      "address": "192.0.2.10",
      "port": 30443
    },
    {
      "address": "192.0.2.20",
      "port": 15443
    }
  ],
  "apiHost": "istio-api-proxy.example.com",
  "networkName": "network-cluster-b-local-${sum}",
  "clusterID": "cluster-b-local-${sum}"
}`);
  });

  it("adler32 is RFC 1950's (sprig's adler32sum)", () => {
    expect(adler32('Wikipedia')).toBe(300286872);
    for (const s of ['', 'a', OWN_UUID, 'x'.repeat(10_000)]) expect(adler32(s)).toBe(zlibAdler32(s));
  });

  it("meshfed's token passes Deckhouse's check: only alg in the header; exactly iss, sub, aud, scope, nbf, exp; 60 s", async () => {
    const pub = ((await (await fetch(x.url('/metadata/public/public.json'))).json()) as { authnKeyPub: string }).authnKeyPub;
    const token = await x.meshfed.alliance!.mintToken(PEER.uuid, 'private-federation', 60);
    const { header, claims } = deckhouseVerify(token, { ownUuid: PEER.uuid, scope: 'private-federation', known: { [OWN_UUID]: pub } });
    expect(header).toEqual({ alg: 'EdDSA' });
    expect(Object.keys(claims).sort()).toEqual(['aud', 'exp', 'iss', 'nbf', 'scope', 'sub']);
    expect(claims).toMatchObject({ iss: 'd8-istio', sub: OWN_UUID, aud: PEER.uuid, scope: 'private-federation' });
    expect((claims['exp'] as number) - (claims['nbf'] as number)).toBe(60);
    expect(Math.abs((claims['nbf'] as number) - Date.now() / 1000)).toBeLessThan(5);
    // The `api` token Deckhouse puts in kubeconfigs lives 366 days.
    const api = deckhouseVerify(await x.meshfed.alliance!.mintToken(PEER.uuid, 'api', 366 * 86400), {
      ownUuid: PEER.uuid,
      scope: 'api',
      known: { [OWN_UUID]: pub },
    });
    expect((api.claims['exp'] as number) - (api.claims['nbf'] as number)).toBe(366 * 86400);
  });
});

describe('spiffe-bundle-endpoint with an EC root', () => {
  it('serves the JWK of the key type (kty EC, crv, x, y): a Deckhouse peer reads only RSA roots from here', async () => {
    const x = await startExporter({ peers: [], keyType: 'ec' });
    try {
      const doc = (await (await fetch(x.url('/metadata/public/spiffe-bundle-endpoint'))).json()) as { keys: Record<string, unknown>[] };
      const root = new X509Certificate(x.meshfed.pki!.ca.roots[0]!);
      const jwk = root.publicKey.export({ format: 'jwk' });
      expect(doc.keys).toEqual([{ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, use: 'x509-svid', x5c: [root.raw.toString('base64')] }]);
    } finally {
      await x.stop();
    }
  });
});
