// meshfed's two HTTP listeners. The admin one (--admin-address) has what must be reachable from
// outside the pod: probes, Prometheus and the public SPIFFE bundle. The debug one
// (--debug-address, loopback by default) shows mesh internals and is reached with
// `kubectl port-forward`; even there, key material is "[redacted]".
import http from 'node:http';
import type { Logger } from 'pino';
import type { XdsStream } from '../xds/stream.js';
import { REDACTED } from '../envoy/redact.js';
import { configDump, syncz } from './debug.js';
import type { Metrics } from './metrics.js';
import { closeNow, listenOn } from '../net.js';

export interface ReadinessCheck {
  readonly name: string;
  /** Ready, with an optional detail (e.g. a rejected edit while the last good state serves). */
  check(): { ready: boolean; detail?: string };
}

/** Answers a request itself, or returns a JSON body (status 200). */
export type Route = (url: URL, req: http.IncomingMessage, res: http.ServerResponse) => unknown;

/** A path a route would serve if meshfed were started with a flag: the sentence says which. */
export class NeedsFlag {
  constructor(readonly message: string) {}
}

export class HttpPages {
  private readonly server: http.Server;

  constructor(
    private readonly routes: Readonly<Record<string, Route | NeedsFlag>>,
    private readonly log: Logger,
    /** The sentence for a path that is not here (e.g. where the debug pages are). */
    private readonly notFound: (path: string) => string = (p) => `no page ${p}`,
  ) {
    this.server = http.createServer((req, res) => {
      this.route(req, res).catch((err: Error) => {
        log.error({ err }, 'admin request failed');
        send(res, 500, { error: err.message });
      });
    });
  }

  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
  }

  close(): Promise<void> {
    return closeNow(this.server);
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const route = Object.hasOwn(this.routes, url.pathname) ? this.routes[url.pathname] : undefined;
    if (!route) return send(res, 404, { error: this.notFound(url.pathname) });
    if (route instanceof NeedsFlag) return send(res, 404, { error: route.message });
    const body: unknown = await route(url, req, res);
    if (!res.headersSent && !res.writableEnded) send(res, 200, body);
  }
}

export interface AdminDeps {
  readonly metrics: Metrics;
  readonly readiness: readonly ReadinessCheck[];
  /** The public SPIFFE bundle, or why it is not served. */
  readonly bundle: readonly [path: string, Route | NeedsFlag];
}

/** Probes, metrics and the SPIFFE bundle. */
export function adminRoutes(d: AdminDeps): Record<string, Route | NeedsFlag> {
  return {
    '/healthz': (_u, _q, res) => send(res, 200, 'ok\n'),
    '/readyz': (_u, _q, res) => {
      const checks = d.readiness.map((c) => ({ name: c.name, ...c.check() }));
      const ready = checks.every((c) => c.ready);
      send(res, ready ? 200 : 503, { ready, checks });
    },
    '/metrics': async (_u, _q, res) => {
      const text = await d.metrics.registry.metrics();
      res.setHeader('content-type', d.metrics.registry.contentType);
      send(res, 200, text);
    },
    [d.bundle[0]]: d.bundle[1],
  };
}

/** A debug page asked for on the admin address: say where it is. */
export function adminNotFound(debugAddress: string): (path: string) => string {
  return (p) =>
    p.startsWith('/debug/')
      ? `${p} is served on the debug address (--debug-address, here ${debugAddress}), not the admin address; from outside the pod use kubectl port-forward`
      : `no page ${p}`;
}

export interface DebugDeps {
  readonly streams: () => Iterable<XdsStream>;
  /** More JSON pages, or why they are not served. */
  readonly pages: Readonly<Record<string, Route | NeedsFlag>>;
  /** Why no proxy is given secrets (the mesh CA is off), shown with config_dump's SDS. */
  readonly noSecrets?: string;
}

export function debugRoutes(d: DebugDeps): Record<string, Route | NeedsFlag> {
  return {
    '/debug/syncz': () => syncz(d.streams()),
    '/debug/config_dump': (url, _q, res) => {
      const proxy = url.searchParams.get('proxy');
      if (!proxy) return send(res, 400, { error: 'give the proxy: /debug/config_dump?proxy=<node id or stream id>' });
      const dump = configDump(d.streams(), proxy, d.noSecrets);
      return dump.length ? dump : send(res, 404, { error: `no connected proxy ${proxy}` });
    },
    ...d.pages,
  };
}

function send(res: http.ServerResponse, code: number, body: unknown): void {
  res.statusCode = code;
  if (typeof body === 'string') {
    if (!res.hasHeader('content-type')) res.setHeader('content-type', 'text/plain; charset=utf-8');
    res.end(body);
  } else {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body, debugValue, 2) + '\n');
  }
}

const PEM_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/**
 * A second line of defence for every JSON page: bytes as base64 (as in Envoy's config_dump, not
 * Node's {"type":"Buffer"}), and a PEM private key that reached a page some other way is redacted.
 */
function debugValue(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  if (raw instanceof Uint8Array) {
    const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    return PEM_KEY.test(b.toString('latin1')) ? REDACTED : b.toString('base64');
  }
  return typeof value === 'string' && PEM_KEY.test(value) ? REDACTED : value;
}
