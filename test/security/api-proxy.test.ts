// The api-proxy read as an attacker who holds a peer's valid `api` token (or a bad one): every write, every
// resource but the five discovery reads, every subresource, path trick and stray parameter is refused (403, or 401
// for the token) and counted, and nothing of it reaches the apiserver (the fake apiserver records what it receives).
// What is allowed reaches it with meshfed's credentials, never the peer's. Real TLS, real HTTP, real fixture.
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { OWN_UUID, deckhouseClaims, deckhousePeer, handMadeToken } from '../alliance/deckhouse-peer.js';
import { startApiProxy, type ApiProxyUnderTest } from '../alliance/api-proxy-harness.js';

const PEER = deckhousePeer('5e3b1c2a-9d8f-4e7a-b6c5-0a1b2c3d4e5f');
const STRANGER = deckhousePeer('9f9f9f9f-0000-4000-8000-000000000000');

interface Reply {
  status: number;
  body: string;
}

function send(
  p: ApiProxyUnderTest,
  method: string,
  path: string,
  o: { token?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.token !== undefined) headers['authorization'] = `Bearer ${o.token}`;
    if (o.body !== undefined) headers['content-length'] = String(Buffer.byteLength(o.body));
    const u = new URL(p.url);
    // The path exactly as written: a URL object would resolve `..` and `%2e%2e` before sending.
    const req = https.request(
      {
        hostname: u.hostname,
        port: u.port,
        path,
        method,
        headers: { 'content-type': 'application/json', ...headers },
        ca: p.caPem,
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

describe('api-proxy refuses', () => {
  let p: ApiProxyUnderTest;
  let token: string;
  beforeAll(async () => {
    p = await startApiProxy({ peers: [PEER] });
    token = p.token(PEER);
    p.api.upsert({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'foo', namespace: 'abc' }, spec: { ports: [{ port: 80 }] } });
    p.api.upsert({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cacerts', namespace: 'abc' }, data: { 'ca-key.pem': 'c2VjcmV0' } });
    p.api.upsert({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p1', namespace: 'abc' },
      spec: { containers: [{ name: 'c', image: 'i' }] },
    });
  });
  afterAll(() => p.stop());

  const svc = '/api/v1/namespaces/abc/services';
  const pod = '/api/v1/namespaces/abc/pods/p1';
  const forbidden: Array<{ what: string; method?: string; path: string; body?: string; headers?: Record<string, string>; reason: string }> =
    [
      { what: 'create (POST)', method: 'POST', path: svc, body: '{"metadata":{"name":"evil"}}', reason: 'method' },
      { what: 'replace (PUT)', method: 'PUT', path: `${svc}/foo`, body: '{"metadata":{"name":"foo"}}', reason: 'method' },
      {
        what: 'patch (PATCH)',
        method: 'PATCH',
        path: `${svc}/foo`,
        body: '{"metadata":{"labels":{"x":"y"}}}',
        headers: { 'content-type': 'application/merge-patch+json' },
        reason: 'method',
      },
      { what: 'delete (DELETE)', method: 'DELETE', path: `${svc}/foo`, reason: 'method' },
      { what: 'delete a collection', method: 'DELETE', path: '/api/v1/namespaces/abc/pods', reason: 'method' },
      { what: 'a token review (POST)', method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews', body: '{}', reason: 'method' },
      { what: 'HEAD', method: 'HEAD', path: svc, reason: 'method' },
      { what: 'a GET with a body', path: svc, body: '{}', reason: 'body' },
      { what: 'reading a Secret', path: '/api/v1/namespaces/abc/secrets/cacerts', reason: 'resource' },
      { what: 'listing all Secrets', path: '/api/v1/secrets', reason: 'resource' },
      { what: 'watching Secrets in a namespace', path: '/api/v1/namespaces/abc/secrets?watch=true', reason: 'resource' },
      { what: 'ConfigMaps', path: '/api/v1/namespaces/abc/configmaps', reason: 'resource' },
      { what: 'service accounts', path: '/api/v1/namespaces/abc/serviceaccounts', reason: 'resource' },
      { what: 'the legacy watch path', path: '/api/v1/watch/secrets', reason: 'resource' },
      { what: 'another group (apps)', path: '/apis/apps/v1/deployments', reason: 'resource' },
      { what: 'another group (rbac)', path: '/apis/rbac.authorization.k8s.io/v1/clusterroles', reason: 'resource' },
      { what: 'an unknown group', path: '/apis/evil.example.com/v1/things', reason: 'resource' },
      { what: 'another version of discovery.k8s.io', path: '/apis/discovery.k8s.io/v1beta1/endpointslices', reason: 'resource' },
      { what: 'the OpenAPI document', path: '/openapi/v2', reason: 'resource' },
      { what: 'exec', path: `${pod}/exec?command=sh&stdin=true&stdout=true`, reason: 'subresource' },
      { what: 'attach', path: `${pod}/attach?stdin=true`, reason: 'subresource' },
      { what: 'port-forward', path: `${pod}/portforward?ports=8080`, reason: 'subresource' },
      { what: 'pod logs', path: `${pod}/log`, reason: 'subresource' },
      { what: 'the pod proxy', path: `${pod}/proxy/admin`, reason: 'subresource' },
      { what: 'the service proxy', path: `${svc}/foo/proxy/`, reason: 'path' },
      { what: 'the node proxy', path: '/api/v1/nodes/n1/proxy/metrics', reason: 'subresource' },
      { what: 'status', path: `${svc}/foo/status`, reason: 'subresource' },
      {
        what: 'exec over a protocol upgrade',
        path: `${pod}/exec?command=sh`,
        headers: { connection: 'Upgrade', upgrade: 'SPDY/3.1' },
        reason: 'upgrade',
      },
      {
        what: 'a WebSocket upgrade on an allowed path',
        path: svc,
        headers: { connection: 'Upgrade', upgrade: 'websocket' },
        reason: 'upgrade',
      },
      { what: '.. in the path', path: `${svc}/../../secrets/cacerts`, reason: 'path' },
      { what: 'an encoded slash', path: `${svc}/foo%2F..%2F..%2Fsecrets%2Fcacerts`, reason: 'path' },
      { what: 'an encoded dot segment', path: `${svc}/%2e%2e/x`, reason: 'path' },
      { what: 'a double slash', path: '//api/v1/namespaces/abc/secrets', reason: 'path' },
      { what: 'a matrix parameter', path: `${svc};x=y`, reason: 'path' },
      { what: 'dryRun', path: `${svc}?dryRun=All`, reason: 'query' },
      { what: 'a parameter given twice', path: `${svc}?watch=false&watch=true`, reason: 'query' },
      { what: 'an unknown parameter', path: `${svc}?pretty=true`, reason: 'query' },
      { what: 'a bad value', path: `${svc}?limit=-1`, reason: 'query' },
      { what: 'a prototype-named parameter', path: `${svc}?constructor=1`, reason: 'query' },
    ];

  for (const c of forbidden) {
    it(`${c.what}: 403 (${c.reason}), counted, the apiserver never asked`, async () => {
      const before = (await p.counter('meshfed_api_proxy_denied_total'))[c.reason] ?? 0;
      const seen = p.api.requests.length;
      const r = await send(p, c.method ?? 'GET', c.path, { token, body: c.body, headers: c.headers });
      expect(r.status).toBe(403);
      expect((await p.counter('meshfed_api_proxy_denied_total'))[c.reason]).toBe(before + 1);
      expect(p.api.requests.slice(seen)).toEqual([]);
    });
  }

  const now = (): number => Math.floor(Date.now() / 1000);
  const unauthenticated: Array<{ what: string; token?: string; reason: string; message: string }> = [
    { what: 'no token', reason: 'missing_bearer', message: 'Bearer authorization required' },
    {
      what: 'a token with scope private-multicluster',
      token: handMadeToken(PEER, deckhouseClaims(PEER.uuid, OWN_UUID, 'private-multicluster')),
      reason: 'wrong_scope',
      message: 'JWT is signed for wrong scope',
    },
    {
      what: 'a token with scope private-federation',
      token: handMadeToken(PEER, deckhouseClaims(PEER.uuid, OWN_UUID, 'private-federation')),
      reason: 'wrong_scope',
      message: 'JWT is signed for wrong scope',
    },
    {
      what: 'an unknown peer',
      token: handMadeToken(STRANGER, { ...deckhouseClaims(STRANGER.uuid, OWN_UUID, 'api'), exp: now() + 3600 }),
      reason: 'unknown_peer',
      message: 'JWT is signed for unknown source cluster',
    },
    {
      what: 'an expired token',
      token: handMadeToken(PEER, { ...deckhouseClaims(PEER.uuid, OWN_UUID, 'api'), nbf: now() - 7200, exp: now() - 60 }),
      reason: 'expired',
      message: 'JWT token expired',
    },
    {
      what: 'a token for another cluster',
      token: handMadeToken(PEER, { ...deckhouseClaims(PEER.uuid, 'another-cluster', 'api'), exp: now() + 3600 }),
      reason: 'wrong_audience',
      message: 'JWT is signed for wrong destination cluster',
    },
    { what: "the apiserver's own admin token", token: 'ADMIN', reason: 'malformed', message: 'the token is not a compact JWS' },
  ];
  for (const c of unauthenticated) {
    it(`${c.what}: 401 "${c.reason}", counted, even on an allowed path, the apiserver never asked`, async () => {
      const before = (await p.counter('meshfed_api_proxy_auth_failures_total'))[c.reason] ?? 0;
      const seen = p.api.requests.length;
      const r = await send(p, 'GET', svc, { token: c.token === 'ADMIN' ? p.api.adminToken : c.token });
      expect(r).toEqual({ status: 401, body: `Authentication error: ${c.message}\n` });
      expect((await p.counter('meshfed_api_proxy_auth_failures_total'))[c.reason]).toBe(before + 1);
      expect(p.api.requests.slice(seen)).toEqual([]);
    });
  }

  it('a write without a token is 401, not 403: nothing about the policy is told to a stranger', async () => {
    const seen = p.api.requests.length;
    expect((await send(p, 'DELETE', `${svc}/foo`)).status).toBe(401);
    expect(p.api.requests.slice(seen)).toEqual([]);
  });

  it("an allowed read reaches the apiserver with meshfed's credentials: never the peer's token, impersonation or cookies", async () => {
    const seen = p.api.requests.length;
    const r = await send(p, 'GET', `${svc}/foo`, {
      token,
      headers: {
        'impersonate-user': 'system:admin',
        'impersonate-group': 'system:masters',
        cookie: 'a=b',
        'x-remote-user': 'admin',
        'user-agent': 'peer-istiod/1.0',
      },
    });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ kind: 'Service', metadata: { name: 'foo', namespace: 'abc' } });
    const got = p.api.requests.slice(seen);
    expect(got.map((q) => `${q.method} ${q.path}`)).toEqual(['GET /api/v1/namespaces/abc/services/foo']);
    const h = got[0]!.headers;
    expect(h['authorization']).toBe(`Bearer ${p.api.adminToken}`);
    expect(Object.keys(h).filter((k) => /^(impersonate-|x-remote-|cookie)/.test(k))).toEqual([]);
    expect(h['user-agent']).toBe('peer-istiod/1.0');
  });

  it('a watch asks the apiserver to end within 10 minutes, whatever the peer asked', async () => {
    const seen = p.api.requests.length;
    await new Promise<void>((resolve, reject) => {
      const req = https.request(
        `${p.url}/apis/discovery.k8s.io/v1/endpointslices?watch=true&timeoutSeconds=999999`,
        { headers: { authorization: `Bearer ${token}` }, ca: p.caPem, agent: false },
        (res) => {
          expect(res.statusCode).toBe(200);
          req.destroy();
          resolve();
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(p.api.requests.slice(seen).map((q) => q.path)).toEqual([
      '/apis/discovery.k8s.io/v1/endpointslices?watch=true&timeoutSeconds=600',
    ]);
  });
});

describe('api-proxy protects the apiserver', () => {
  it('a peer gets 429 beyond its in-flight limit (counted), and is served again once a request ends', async () => {
    const p = await startApiProxy({ peers: [PEER], maxInFlightPerPeer: 1 });
    try {
      const token = p.token(PEER);
      const watch = await new Promise<import('node:http').ClientRequest>((resolve, reject) => {
        const req = https.request(
          `${p.url}/api/v1/services?watch=true`,
          { headers: { authorization: `Bearer ${token}` }, ca: p.caPem, agent: false },
          () => resolve(req),
        );
        req.on('error', () => undefined);
        req.on('timeout', reject);
        req.end();
      });
      const seen = p.api.requests.length;
      const r = await send(p, 'GET', '/api/v1/services', { token });
      expect(r.status).toBe(429);
      expect(JSON.parse(r.body)).toMatchObject({ kind: 'Status', reason: 'TooManyRequests', code: 429 });
      expect((await p.counter('meshfed_api_proxy_denied_total'))['concurrency']).toBe(1);
      expect(p.api.requests.slice(seen)).toEqual([]);
      watch.destroy();
      // The slot is freed when the proxy sees the peer leave; poll until it does.
      const status = await vi.waitFor(
        async () => {
          const r = await send(p, 'GET', '/api/v1/services', { token });
          expect(r.status, 'the slot of the peer that left').not.toBe(429);
          return r.status;
        },
        { timeout: 5000, interval: 20 },
      );
      expect(status).toBe(200);
    } finally {
      await p.stop();
    }
  });

  it('an apiserver that is down is one line of 502, counted; the proxy keeps serving', async () => {
    const p = await startApiProxy({ peers: [PEER] });
    try {
      const token = p.token(PEER);
      await p.api.stop();
      const r = await send(p, 'GET', '/api/v1/services', { token });
      expect(r).toEqual({ status: 502, body: 'api-proxy: the local apiserver did not answer\n' });
      expect((await p.counter('meshfed_api_proxy_upstream_errors_total'))['']).toBe(1);
      await p.api.restart();
      expect((await send(p, 'GET', '/api/v1/services', { token })).status).toBe(200);
    } finally {
      await p.stop();
    }
  });
});
