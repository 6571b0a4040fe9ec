// The api-proxy (Deckhouse's api-proxy, deckhouse.md §4): a peer cluster's istiod reads this cluster's services and
// endpoints through it with an `api`-scope token, and the proxy asks the local apiserver with meshfed's own
// credentials. Unlike Deckhouse's, it is read-only by construction (policy.ts), not only by its service account's RBAC.
//
// Attack surface, read once as an attacker: TLS only; a request must carry a token from a known peer (401 before
// anything else is looked at), then pass the policy (403); at most `maxInFlightPerPeer` requests per peer (429).
// Only GET without a body, headers bounded to 16 KiB and received within 10 s; an Upgrade (exec/attach over
// SPDY/WebSocket) is refused. Upstream gets a rebuilt URL and three request headers (accept, accept-encoding,
// user-agent): never the peer's Authorization, impersonation or forwarding headers. Watches are asked to end within
// MAX_WATCH_SECONDS and cut soon after; everything else within a minute. Tokens and headers are never logged;
// refusals are counted by closed reasons.
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import client from 'prom-client';
import { AUTH_FAILURES, AuthError, verifyPeerToken } from '../tokens/tokens.js';
import type { PeerDirectory } from '../types.js';
import { classify, DENY_REASONS, type DenyReason, MAX_WATCH_SECONDS } from './policy.js';
import { closeNow, listenOn } from '../../net.js';

/** The port the Kubernetes manifests give the api-proxy. */
export const DEFAULT_API_PROXY_PORT = 18443;

const API_PROXY_LIMITS = {
  maxHeaderSize: 16 * 1024,
  headersMs: 10_000,
  idleMs: 15_000,
  maxConnections: 1024,
  maxInFlightPerPeer: 32,
  // Deckhouse's upstream transport timeouts.
  dialMs: 30_000,
  tlsMs: 10_000,
  responseHeaderMs: 10_000,
  /** A request that is not a watch is cut after this long. */
  requestMaxMs: 60_000,
  /** A watch is cut this long after the timeoutSeconds the apiserver was asked to honour. */
  watchGraceMs: 30_000,
} as const;

/** Request headers passed upstream; all others (Authorization, Impersonate-*, X-Remote-*, Cookie…) are dropped. */
const FORWARDED_REQUEST_HEADERS = ['accept', 'accept-encoding', 'user-agent'] as const;
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export interface ApiProxyOptions {
  /** This cluster's UUID: the only accepted token audience. */
  readonly clusterUuid: string;
  /** The peers whose tokens are accepted (the same directory as the metadata exporter's). */
  readonly peers: PeerDirectory;
  /** The local apiserver and meshfed's own credentials for it. */
  readonly kubeConfig: KubeConfig;
  readonly tls: { readonly cert: string; readonly key: string };
  readonly maxInFlightPerPeer?: number;
  readonly metrics: client.Registry;
  readonly log: Logger;
  readonly now?: () => number;
}

export class ApiProxy {
  private readonly server: https.Server;
  private readonly authFailures: client.Counter<'reason'>;
  private readonly denied: client.Counter<'reason'>;
  private readonly forwarded: client.Counter<'kind'>;
  private readonly upstreamErrors: client.Counter;
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly o: ApiProxyOptions) {
    const registers = [o.metrics];
    this.authFailures = new client.Counter({
      name: 'meshfed_api_proxy_auth_failures_total',
      help: 'api-proxy requests refused for their token (401), by reason',
      labelNames: ['reason'],
      registers,
    });
    this.denied = new client.Counter({
      name: 'meshfed_api_proxy_denied_total',
      help: 'api-proxy requests refused by its policy (403; 429 for concurrency), by reason',
      labelNames: ['reason'],
      registers,
    });
    this.forwarded = new client.Counter({
      name: 'meshfed_api_proxy_forwarded_total',
      help: 'api-proxy requests passed to the local apiserver',
      labelNames: ['kind'],
      registers,
    });
    this.upstreamErrors = new client.Counter({
      name: 'meshfed_api_proxy_upstream_errors_total',
      help: 'api-proxy requests the local apiserver did not answer (502)',
      registers,
    });
    for (const reason of AUTH_FAILURES) this.authFailures.inc({ reason }, 0);
    for (const reason of DENY_REASONS) this.denied.inc({ reason }, 0);
    try {
      this.server = https.createServer(
        {
          cert: o.tls.cert,
          key: o.tls.key,
          minVersion: 'TLSv1.2',
          maxHeaderSize: API_PROXY_LIMITS.maxHeaderSize,
          headersTimeout: API_PROXY_LIMITS.headersMs,
          requestTimeout: API_PROXY_LIMITS.headersMs,
          keepAliveTimeout: API_PROXY_LIMITS.idleMs,
        },
        (req, res) => {
          this.handle(req, res).catch((err: Error) => {
            o.log.error({ err: err.message }, 'api-proxy request failed');
            if (!res.headersSent) text(res, 500, 'api-proxy: internal error\n');
            else res.destroy();
          });
        },
      );
    } catch (err) {
      throw new Error(`the api-proxy's TLS certificate or key is unusable: ${(err as Error).message}`);
    }
    this.server.maxConnections = API_PROXY_LIMITS.maxConnections;
    // exec/attach/port-forward speak SPDY or WebSocket: never switched to, whatever the path.
    this.server.on('upgrade', (_req: http.IncomingMessage, socket: Socket) => {
      this.denied.inc({ reason: 'upgrade' });
      const body = 'api-proxy: protocol upgrades are not allowed\n';
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
  }

  /** A renewed certificate and key: new handshakes use them; a bad pair is refused and the old one kept. */
  reloadTls(tls: { cert: string; key: string }): void {
    try {
      this.server.setSecureContext({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' });
    } catch (err) {
      throw new Error(`the api-proxy's new TLS certificate or key is unusable (the old pair keeps serving): ${(err as Error).message}`);
    }
  }

  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
  }

  close(): Promise<void> {
    return closeNow(this.server);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let peer: string;
    try {
      ({ peer } = await verifyPeerToken(req.headers.authorization, {
        clusterUuid: this.o.clusterUuid,
        scope: 'api',
        peers: this.o.peers,
        now: this.o.now,
      }));
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      this.authFailures.inc({ reason: err.reason });
      this.o.log.debug({ reason: err.reason, remote: req.socket.remoteAddress }, 'api-proxy: token refused');
      res.setHeader('www-authenticate', 'Bearer');
      return text(res, 401, `Authentication error: ${err.message}\n`);
    }
    const hasBody =
      (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
      req.headers['transfer-encoding'] !== undefined;
    const verdict = classify(req.method, req.url, hasBody);
    if (!verdict.ok) return this.refuse(res, peer, verdict.reason, 403, verdict.message);
    const limit = this.o.maxInFlightPerPeer ?? API_PROXY_LIMITS.maxInFlightPerPeer;
    const n = this.inFlight.get(peer) ?? 0;
    if (n >= limit) return this.refuse(res, peer, 'concurrency', 429, `too many requests in flight from this peer (at most ${limit})`);
    this.inFlight.set(peer, n + 1);
    res.once('close', () => {
      const left = (this.inFlight.get(peer) ?? 1) - 1;
      if (left > 0) this.inFlight.set(peer, left);
      else this.inFlight.delete(peer);
    });
    this.forwarded.inc({ kind: verdict.watch ? 'watch' : 'request' });
    this.o.log.debug({ peer, path: verdict.upstream }, 'api-proxy: forwarding');
    const maxMs = verdict.watch
      ? (verdict.timeoutSeconds ?? MAX_WATCH_SECONDS) * 1000 + API_PROXY_LIMITS.watchGraceMs
      : API_PROXY_LIMITS.requestMaxMs;
    await this.forward(req, res, verdict.upstream, maxMs);
  }

  private refuse(res: http.ServerResponse, peer: string, reason: DenyReason, code: 403 | 429, message: string): void {
    this.denied.inc({ reason });
    this.o.log.debug({ peer, reason }, 'api-proxy: request refused');
    // A Kubernetes Status, so the peer's client-go reports the reason instead of an unparsable body.
    const body = JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `api-proxy: ${message}`,
      reason: code === 403 ? 'Forbidden' : 'TooManyRequests',
      code,
    });
    res.writeHead(code, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-content-type-options': 'nosniff',
    });
    res.end(body);
  }

  private async forward(req: http.IncomingMessage, res: http.ServerResponse, upstream: string, maxMs: number): Promise<void> {
    const kc = this.o.kubeConfig;
    const url = new URL(kc.getCurrentCluster()!.server.replace(/\/+$/, '') + upstream);
    const headers: http.OutgoingHttpHeaders = {};
    for (const h of FORWARDED_REQUEST_HEADERS) if (req.headers[h] !== undefined) headers[h] = req.headers[h];
    const opts: https.RequestOptions = { method: 'GET', headers };
    // meshfed's own credentials (client certificate or bearer token) and the apiserver's CA, per request: an
    // in-cluster token file is re-read when the kubelet rotates it.
    await kc.applyToHTTPSOptions(opts);
    const up = (url.protocol === 'http:' ? http : https).request(url, opts);
    let phase: NodeJS.Timeout | undefined;
    const within = (ms: number, what: string): void => {
      clearTimeout(phase);
      phase = setTimeout(() => up.destroy(new Error(`${what} within ${ms / 1000} s`)), ms);
    };
    const hard = setTimeout(() => {
      up.destroy();
      res.destroy();
    }, maxMs);
    within(API_PROXY_LIMITS.dialMs, 'no connection to the apiserver');
    up.on('socket', (s: Socket) => {
      const awaitHeaders = (): void => within(API_PROXY_LIMITS.responseHeaderMs, 'no response headers from the apiserver');
      if (!s.connecting) return awaitHeaders(); // a reused connection
      s.once('connect', () => {
        if (url.protocol === 'http:') return awaitHeaders();
        within(API_PROXY_LIMITS.tlsMs, 'no TLS handshake with the apiserver');
        s.once('secureConnect', awaitHeaders);
      });
    });
    up.on('response', (ur) => {
      clearTimeout(phase);
      const out: http.OutgoingHttpHeaders = {};
      const connectionNamed = new Set(
        String(ur.headers.connection ?? '')
          .toLowerCase()
          .split(',')
          .map((s) => s.trim()),
      );
      for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP_BY_HOP.has(k) && !connectionNamed.has(k)) out[k] = v;
      res.writeHead(ur.statusCode ?? 502, out);
      res.flushHeaders();
      // Each chunk is written as it arrives (a watch event is one chunk): nothing waits for a buffer to fill.
      ur.pipe(res);
      // The apiserver cut the stream (it restarted, a connection broke): so does the proxy, or the peer's watch
      // would hang, silent, until its own deadline, and the peer would never notice the cluster is unreachable.
      ur.once('close', () => {
        if (!ur.complete) res.destroy();
      });
    });
    up.on('error', (err) => {
      clearTimeout(phase);
      if (res.destroyed) return; // the peer left first
      if (res.headersSent) return void res.destroy();
      this.upstreamErrors.inc();
      this.o.log.warn({ err: err.message, path: url.pathname }, 'api-proxy: the apiserver did not answer');
      text(res, 502, 'api-proxy: the local apiserver did not answer\n');
    });
    // The peer went away (or the deadline passed): stop the upstream request too.
    res.once('close', () => {
      clearTimeout(phase);
      clearTimeout(hard);
      up.destroy();
    });
    up.end();
  }
}

function text(res: http.ServerResponse, code: number, body: string): void {
  res.writeHead(code, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}
