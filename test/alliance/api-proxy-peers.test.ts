// The api-proxy trusts the same PeerDirectory as the metadata exporter: the one usePeers() installs (the peer
// controller's) reaches both at once, so a peer the controller adds or removes is accepted or refused by both.
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticPeerDirectory } from '../../src/alliance/static-peers.js';
import { startApiProxy, type ApiProxyUnderTest } from './api-proxy-harness.js';
import { deckhousePeer } from './deckhouse-peer.js';

const PEER = deckhousePeer('5e3b1c2a-9d8f-4e7a-b6c5-0a1b2c3d4e5f');

function get(p: ApiProxyUnderTest, path: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${p.url}${path}`, { headers: { authorization: `Bearer ${token}` }, ca: p.caPem, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('api-proxy peers', () => {
  let p: ApiProxyUnderTest;
  beforeAll(async () => {
    p = await startApiProxy({ peers: [] });
  });
  afterAll(() => p.stop());

  it('follow usePeers(): unknown before, served after, refused again once the peer is removed', async () => {
    const token = p.token(PEER);
    expect(await get(p, '/api', token)).toEqual({ status: 401, body: 'Authentication error: JWT is signed for unknown source cluster\n' });
    p.alliance.usePeers(new StaticPeerDirectory([{ clusterUUID: PEER.uuid, authnKeyPub: PEER.pubPem, rootCA: '' }]));
    const r = await get(p, '/api', token);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ kind: 'APIVersions' }); // what the peer controller's probe expects
    p.alliance.usePeers(new StaticPeerDirectory());
    expect((await get(p, '/api', token)).status).toBe(401);
  });
});
