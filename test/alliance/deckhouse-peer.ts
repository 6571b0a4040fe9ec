// A peer that behaves as Deckhouse does, written from deckhouse.md alone (no meshfed code): an Ed25519 key pair in
// Deckhouse's PEM labels, tokens built by hand (compact JWS, header {"alg":"EdDSA"}, node:crypto sign), and a
// verifier for meshfed's tokens with Deckhouse's rules (§2), plus a meshfed with the exporter on loopback.
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Meshfed, startMeshfed } from '../../src/app.js';
import { memoryAuthnKeyStore } from '../../src/alliance/identity/key-store.js';
import { StaticPeerDirectory } from '../../src/alliance/static-peers.js';
import { createLogger } from '../../src/log.js';
import { memoryCaStore, type KeyType } from '../../src/pki/index.js';

export const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');
const pemBody = (pem: string): Buffer => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');

export interface DeckhousePeer {
  readonly uuid: string;
  /** `ED25519 PUBLIC KEY` PEM, as its public.json carries it. */
  readonly pubPem: string;
  /** `ED25519 PRIVATE KEY` PEM, as its Secret d8-remote-authn-keypair holds it. */
  readonly privPem: string;
}

export function deckhousePeer(uuid: string): DeckhousePeer {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    uuid,
    pubPem: (publicKey.export({ type: 'spki', format: 'pem' }) as string).replace(/PUBLIC KEY-----/g, 'ED25519 PUBLIC KEY-----'),
    privPem: (privateKey.export({ type: 'pkcs8', format: 'pem' }) as string).replace(/PRIVATE KEY-----/g, 'ED25519 PRIVATE KEY-----'),
  };
}

/** A compact JWS over `claims` with `header`, signed as go-jose does for EdDSA (the PEM read as PKCS#8 DER). */
export function handMadeToken(
  peer: DeckhousePeer,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = { alg: 'EdDSA' },
): string {
  const key = createPrivateKey({ key: pemBody(peer.privPem), format: 'der', type: 'pkcs8' });
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(sign(null, Buffer.from(input), key))}`;
}

/** `alg: none`: no signature at all. */
export function unsignedToken(claims: Record<string, unknown>): string {
  return `${b64url(JSON.stringify({ alg: 'none' }))}.${b64url(JSON.stringify(claims))}.`;
}

/** HS256 keyed with a public key's PEM text: the classic algorithm-confusion forgery. */
export function hs256Token(secret: string, claims: Record<string, unknown>): string {
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(createHmac('sha256', secret).update(input).digest())}`;
}

/** Deckhouse's claims for a metadata fetch: 60 s, nbf now, aud the remote UUID as one string. */
export function deckhouseClaims(from: string, to: string, scope: string, now = Math.floor(Date.now() / 1000)): Record<string, unknown> {
  return { iss: 'd8-istio', aud: to, sub: from, scope, nbf: now, exp: now + 60 };
}

/**
 * Deckhouse's CheckAuthn (deckhouse.md §2) over a token meshfed minted: Bearer form, payload read unverified, aud,
 * scope, exp, sub known, then the signature with the PKIX key under the `ED25519 PUBLIC KEY` label. Returns the
 * header and claims so a test can check there is nothing else in them.
 */
export function deckhouseVerify(
  token: string,
  o: { ownUuid: string; scope: string; known: Record<string, string> },
): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h, p, s] = token.split('.');
  if (!h || !p || s === undefined || token.split('.').length !== 3) throw new Error('not a compact JWS');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  if (claims['aud'] !== o.ownUuid) throw new Error('JWT is signed for wrong destination cluster');
  if (claims['scope'] !== o.scope) throw new Error('JWT is signed for wrong scope');
  if (typeof claims['exp'] !== 'number' || claims['exp'] < Math.floor(Date.now() / 1000)) throw new Error('JWT token expired');
  const pem = o.known[String(claims['sub'])];
  if (!pem) throw new Error('JWT is signed for unknown source cluster');
  if (!pem.startsWith('-----BEGIN ED25519 PUBLIC KEY-----')) throw new Error("authnKeyPub is not under Deckhouse's label");
  const key = createPublicKey({ key: pemBody(pem), format: 'der', type: 'spki' });
  if (header['alg'] !== 'EdDSA' || !verify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))) {
    throw new Error('cannot verify JWT token with known public key');
  }
  return { header, claims };
}

/** The mesh the golden documents come from: local cluster cluster-b; its exported services and gateways. */
export const MESH_YAML = `
clusters:
  - id: cluster-a
    network: network-a
    domain: cluster-a.local
    gateways: [{ address: 198.51.100.1, port: 15443 }]
  - id: cluster-b
    network: network-b
    domain: cluster-b.local
    gateways:
      - { address: 192.0.2.20, port: 15443 }
      - { address: 192.0.2.10, port: 30443 }
      - { address: 192.0.2.10, port: 15443 }
services:
  - { name: bar, namespace: xyz, cluster: cluster-b, exported: true,
      ports: [{ name: http-web, port: 8080 }, { name: grpc, port: 9090 }],
      endpoints: [{ address: 10.2.0.1, serviceAccount: bar }] }
  - { name: alpha, namespace: abc, cluster: cluster-b, exported: true, ports: [{ name: tcp-db, port: 5432 }] }
  - { name: internal, namespace: xyz, cluster: cluster-b, ports: [{ name: http, port: 80 }] }
  - { name: foo, namespace: abc, cluster: cluster-a, exported: true, ports: [{ name: grpc, port: 8080 }] }
`;

export const OWN_UUID = 'c2d1b8f4-5f0e-4c1a-9b7e-1a2b3c4d5e6f';

export interface ExporterUnderTest {
  readonly meshfed: Meshfed;
  readonly url: (p: string) => string;
  readonly stop: () => Promise<void>;
}

/** The local cluster an exporter publishes: a mesh file's text (YAML or JSON), the cluster's id, domain and UUID. */
export interface ExporterMesh {
  readonly text: string;
  readonly clusterId: string;
  readonly trustDomain: string;
  readonly uuid: string;
}

const GOLDEN_MESH: ExporterMesh = { text: MESH_YAML, clusterId: 'cluster-b', trustDomain: 'cluster-b.local', uuid: OWN_UUID };

/** meshfed with the exporter on loopback: cluster-b of MESH_YAML unless `mesh` says otherwise, trusting the given peers. */
export async function startExporter(o: {
  peers: readonly DeckhousePeer[];
  keyType?: KeyType;
  federation?: boolean;
  multiclusterApiHost?: string;
  mesh?: ExporterMesh;
}): Promise<ExporterUnderTest> {
  const m = o.mesh ?? GOLDEN_MESH;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-exporter-'));
  const config = path.join(dir, 'mesh.yaml');
  writeFileSync(config, m.text);
  const meshfed = await startMeshfed({
    config,
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    log: createLogger('silent'),
    pki: { trustDomain: m.trustDomain, caStore: memoryCaStore(), keyType: o.keyType },
    alliance: {
      clusterUuid: m.uuid,
      keyStore: memoryAuthnKeyStore(),
      localClusterId: m.clusterId,
      peers: new StaticPeerDirectory(o.peers.map((p) => ({ clusterUUID: p.uuid, authnKeyPub: p.pubPem, rootCA: 'unused' }))),
      exporter: { host: '127.0.0.1', port: 0, federation: o.federation ?? true, multiclusterApiHost: o.multiclusterApiHost },
    },
  });
  const port = meshfed.alliance!.metadataPort!;
  return { meshfed, url: (p) => `http://127.0.0.1:${port}${p}`, stop: () => meshfed.stop(100) };
}
