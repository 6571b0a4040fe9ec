// The admin HTTP server: health, readiness, metrics and debug pages.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { XdsStream } from '../xds/stream.js';
import { configDump, syncz } from './debug.js';
import type { Metrics } from './metrics.js';

export interface ReadinessCheck {
  readonly name: string;
  /** Ready, with an optional detail (e.g. a rejected edit while the last good state serves). */
  check(): { ready: boolean; detail?: string };
}

export interface AdminDeps {
  readonly metrics: Metrics;
  readonly streams: () => Iterable<XdsStream>;
  readonly readiness: readonly ReadinessCheck[];
  /** JSON pages by path. */
  readonly extra?: Readonly<Record<string, () => unknown>>;
  /** Paths that answer the request themselves (methods, headers). */
  readonly handlers?: Readonly<Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>>;
  readonly log: Logger;
}

export class AdminServer {
  private readonly server: http.Server;

  constructor(private readonly deps: AdminDeps) {
    this.server = http.createServer((req, res) => {
      this.route(req, res).catch((err: Error) => {
        deps.log.error({ err }, 'admin request failed');
        send(res, 500, { error: err.message });
      });
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve((this.server.address() as AddressInfo).port));
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    switch (url.pathname) {
      case '/healthz':
        return send(res, 200, 'ok\n');
      case '/readyz': {
        const checks = this.deps.readiness.map((c) => ({ name: c.name, ...c.check() }));
        const ready = checks.every((c) => c.ready);
        return send(res, ready ? 200 : 503, { ready, checks });
      }
      case '/metrics': {
        res.setHeader('content-type', this.deps.metrics.registry.contentType);
        return send(res, 200, await this.deps.metrics.registry.metrics());
      }
      case '/debug/syncz':
        return send(res, 200, syncz(this.deps.streams()));
      case '/debug/config_dump': {
        const proxy = url.searchParams.get('proxy');
        if (!proxy) return send(res, 400, { error: 'give the proxy: /debug/config_dump?proxy=<node id or stream id>' });
        const dump = configDump(this.deps.streams(), proxy);
        return dump.length ? send(res, 200, dump) : send(res, 404, { error: `no connected proxy ${proxy}` });
      }
      default: {
        const handler = this.deps.handlers?.[url.pathname];
        if (handler) return handler(req, res);
        const page = this.deps.extra?.[url.pathname];
        if (page) return send(res, 200, page());
        return send(res, 404, { error: `no page ${url.pathname}` });
      }
    }
  }
}

function send(res: http.ServerResponse, code: number, body: unknown): void {
  res.statusCode = code;
  if (typeof body === 'string') {
    if (!res.hasHeader('content-type')) res.setHeader('content-type', 'text/plain; charset=utf-8');
    res.end(body);
  } else {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body, null, 2) + '\n');
  }
}
