// A federation peer's metadata server for tests: Deckhouse's paths and JSON shapes over HTTPS (or HTTP),
// checking the Bearer token on the private path the way Deckhouse's exporter does (deckhouse.md §2),
// written here independently of meshfed's code; faults on demand. Also a token minter as Deckhouse's.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { jwtVerify, SignJWT } from 'jose';
import { testPki } from '../fixtures/kube-apiserver/pki.js';

export type PeerFault = 'none' | 'down' | 'status500' | 'garbage' | 'huge' | 'stall' | 'invalid-public' | 'invalid-private';

export interface LocalIdentity {
  readonly uuid: string;
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
  /** Deckhouse's label for the public key. */
  readonly publicPem: string;
  /** Mints as Deckhouse's go_lib/jwt does: EdDSA, iss d8-istio, sub = own UUID, aud = peer UUID, scope, nbf, exp. */
  mint(aud: string, scope: string, ttlSeconds: number): Promise<string>;
}

export function localIdentity(uuid: string): LocalIdentity {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const publicPem = (publicKey.export({ type: 'spki', format: 'pem' }) as string).replace(/PUBLIC KEY/g, 'ED25519 PUBLIC KEY');
  return {
    uuid,
    publicKey,
    privateKey,
    publicPem,
    mint: (aud, scope, ttl) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ scope })
        .setProtectedHeader({ alg: 'EdDSA' })
        .setIssuer('d8-istio')
        .setSubject(uuid)
        .setAudience(aud)
        .setNotBefore(now)
        .setExpirationTime(now + ttl)
        .sign(privateKey);
    },
  };
}

export interface PeerDoc {
  uuid: string;
  rootCA: string;
  ingressGateways: Array<{ address: string; port: number }>;
  publicServices: Array<{ hostname: string; ports: Array<{ name: string; port: number }> }>;
  /** multicluster.json's own fields; the path answers 404 without them (Deckhouse's MULTICLUSTER_ENABLED=false). */
  multicluster?: { apiHost: string; networkName: string; clusterID?: string };
}

export interface PeerServer {
  /** Base metadata endpoint, e.g. https://127.0.0.1:1234/metadata/ */
  readonly endpoint: string;
  /** CA of the HTTPS certificate (for IstioFederation spec.metadata.ca). */
  readonly caPem: string;
  doc: PeerDoc;
  fault: PeerFault;
  /** Private requests and what was wrong with their token ('' when accepted). */
  readonly privateRequests: string[];
  close(): Promise<void>;
}

/** `trusts`: the peers this server accepts tokens from (its own allow-list), by UUID. */
export async function startPeerServer(
  doc: PeerDoc,
  trusts: () => readonly LocalIdentity[],
  opts: { tls?: boolean } = {},
): Promise<PeerServer> {
  const pki = testPki();
  const tls = opts.tls ?? true;
  const stalled = new Set<http.ServerResponse>();
  const state = { doc, fault: 'none' as PeerFault };
  const privateRequests: string[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    void (async () => {
      const f = state.fault;
      if (f === 'down') return req.socket.destroy();
      if (f === 'stall') return void stalled.add(res);
      if (f === 'status500') return void res.writeHead(500).end('internal error');
      if (f === 'garbage') return void res.writeHead(200).end('{"clusterUUID": <html>');
      if (f === 'huge') {
        // 20 MB, chunked (no content-length), so the cap must hold while streaming.
        res.writeHead(200);
        const chunk = Buffer.alloc(1 << 20, 0x20);
        for (let i = 0; i < 20 && !res.destroyed; i++) await new Promise<void>((r) => (res.write(chunk) ? r() : res.once('drain', r)));
        return void res.end();
      }
      const d = state.doc;
      if (req.url === '/metadata/public/public.json') {
        const body =
          f === 'invalid-public'
            ? { clusterUUID: d.uuid, rootCA: d.rootCA }
            : { clusterUUID: d.uuid, authnKeyPub: 'peer key', rootCA: d.rootCA };
        return void res.writeHead(200).end(JSON.stringify(body, null, 2));
      }
      if (req.url === '/metadata/private/federation.json') {
        const why = await checkToken(req.headers.authorization, d.uuid, 'private-federation', trusts());
        privateRequests.push(why);
        if (why) return void res.writeHead(401).end(`Authentication error: ${why}`);
        const body =
          f === 'invalid-private'
            ? { ingressGateways: d.ingressGateways }
            : { ingressGateways: d.ingressGateways, publicServices: d.publicServices };
        return void res.writeHead(200).end(JSON.stringify(body, null, 2));
      }
      if (req.url === '/metadata/private/multicluster.json' && d.multicluster) {
        const why = await checkToken(req.headers.authorization, d.uuid, 'private-multicluster', trusts());
        privateRequests.push(why);
        if (why) return void res.writeHead(401).end(`Authentication error: ${why}`);
        const body =
          f === 'invalid-private'
            ? { ingressGateways: d.ingressGateways, networkName: d.multicluster.networkName }
            : { ingressGateways: d.ingressGateways, ...d.multicluster };
        return void res.writeHead(200).end(JSON.stringify(body, null, 2));
      }
      res.writeHead(404).end('not found');
    })();
  };
  const server = tls ? https.createServer({ cert: pki.serverCertPem, key: pki.serverKeyPem }, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${port}/metadata/`,
    caPem: pki.caPem,
    get doc() {
      return state.doc;
    },
    set doc(d) {
      state.doc = d;
    },
    get fault() {
      return state.fault;
    },
    set fault(f) {
      state.fault = f;
      if (f !== 'stall') for (const r of stalled) r.destroy();
    },
    privateRequests,
    close: () => {
      for (const r of stalled) r.destroy();
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** deckhouse.md §2: Bearer, aud = own UUID, exact scope, not expired, sub known, signature with sub's key. */
async function checkToken(header: string | undefined, ownUuid: string, scope: string, peers: readonly LocalIdentity[]): Promise<string> {
  if (!header?.startsWith('Bearer ')) return 'no Bearer token';
  const token = header.slice('Bearer '.length);
  const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
  if (payload['aud'] !== ownUuid) return `wrong aud ${String(payload['aud'])}`;
  if (payload['scope'] !== scope) return `wrong scope ${String(payload['scope'])}`;
  if (typeof payload['exp'] !== 'number' || payload['exp'] < Date.now() / 1000) return 'expired';
  if (typeof payload['nbf'] !== 'number' || payload['exp'] - payload['nbf'] > 60) return 'lifetime over 60 s';
  const peer = peers.find((p) => p.uuid === payload['sub']);
  if (!peer) return 'unknown source cluster';
  try {
    await jwtVerify(token, peer.publicKey, { algorithms: ['EdDSA'] });
  } catch (err) {
    return `bad signature: ${(err as Error).message}`;
  }
  return '';
}
