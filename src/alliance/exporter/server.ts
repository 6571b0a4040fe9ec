// The metadata exporter: the HTTP(S) server peers fetch this cluster's metadata from (Deckhouse's metadata-exporter,
// deckhouse.md §2). Public pages carry only what any peer may know (UUID, authn public key, root certificates);
// private pages need a peer's token (tokens.ts) and are 404 while their feature is off.
//
// Attack surface, read once as an attacker: GET/HEAD only on five exact paths (no path normalisation, query ignored);
// headers bounded to 16 KiB, a request must arrive within 5 s, a response is abandoned after 10 s, idle keep-alive
// connections close after 15 s (Deckhouse's timeouts), at most 1024 connections. A token is never logged; a refused
// one only counts in meshfed_metadata_auth_failures_total{reason}. The private key is not reachable from here: the
// exporter is only given the public PEM.
import http from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';
import client from 'prom-client';
import type { MeshSnapshot } from '../../model/mesh.js';
import { serveSpiffeBundle, type TrustBundles } from '../../pki/index.js';
import { AUTH_FAILURES, AuthError, verifyPeerToken } from '../tokens/tokens.js';
import type { IngressGateway, PeerDirectory, TokenScope } from '../types.js';
import { federationMetadata, multiclusterMetadata, publicMetadata, type LocalCluster } from './documents.js';
import { closeNow, listenOn } from '../../net.js';

export const METADATA_PATHS = {
  healthz: '/healthz',
  public: '/metadata/public/public.json',
  spiffeBundle: '/metadata/public/spiffe-bundle-endpoint',
  federation: '/metadata/private/federation.json',
  multicluster: '/metadata/private/multicluster.json',
} as const;

/** The port the Kubernetes manifests give the exporter (clear of istiod's 15010/15012/15014/15017). */
export const DEFAULT_METADATA_PORT = 18003;

const LIMITS = { maxHeaderSize: 16 * 1024, readMs: 5_000, writeMs: 10_000, idleMs: 15_000, maxConnections: 1024 } as const;

export interface MetadataExporterOptions {
  readonly local: LocalCluster;
  /** This cluster's authn public key (Deckhouse-labelled PEM). */
  readonly authnKeyPub: string;
  /** The mesh CA's roots now (a rotation adds one). */
  readonly rootCA: () => string;
  readonly bundles: TrustBundles;
  readonly snapshot: () => MeshSnapshot;
  /** The peers allowed to read private pages. */
  readonly peers: PeerDirectory;
  /** Serve federation.json. */
  readonly federation: boolean;
  /** Serve multicluster.json, with this apiHost. */
  readonly multiclusterApiHost?: string;
  /** Gateways to publish instead of the discovered ones. */
  readonly advertise?: readonly IngressGateway[];
  /** PEM certificate chain and key: serve HTTPS instead of HTTP. */
  readonly tls?: { readonly cert: string; readonly key: string };
  readonly metrics: client.Registry;
  readonly log: Logger;
  readonly now?: () => number;
}

export class MetadataExporter {
  private readonly server: http.Server;
  private readonly failures: client.Counter<'reason'>;

  constructor(private readonly o: MetadataExporterOptions) {
    this.failures = new client.Counter({
      name: 'meshfed_metadata_auth_failures_total',
      help: 'Requests for private metadata refused (401), by reason',
      labelNames: ['reason'],
      registers: [o.metrics],
    });
    for (const reason of AUTH_FAILURES) this.failures.inc({ reason }, 0);
    const opts: http.ServerOptions = {
      maxHeaderSize: LIMITS.maxHeaderSize,
      requestTimeout: LIMITS.readMs,
      headersTimeout: LIMITS.readMs,
      keepAliveTimeout: LIMITS.idleMs,
    };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      res.setTimeout(LIMITS.writeMs, () => res.destroy());
      this.route(req, res).catch((err: Error) => {
        o.log.error({ err: err.message, path: pathOf(req) }, 'metadata request failed');
        if (!res.headersSent) text(res, 500, 'Internal error.\n');
        else res.destroy();
      });
    };
    try {
      this.server = o.tls ? https.createServer({ ...opts, cert: o.tls.cert, key: o.tls.key }, handler) : http.createServer(opts, handler);
    } catch (err) {
      throw new Error(`the metadata exporter's TLS certificate or key is unusable: ${(err as Error).message}`);
    }
    this.server.maxConnections = LIMITS.maxConnections;
  }

  /** A renewed certificate and key (cert-manager rotates them): new handshakes use them; a bad pair is refused. */
  reloadTls(tls: { cert: string; key: string }): void {
    if (!(this.server instanceof https.Server)) return;
    try {
      this.server.setSecureContext({ cert: tls.cert, key: tls.key });
    } catch (err) {
      throw new Error(
        `the metadata exporter's new TLS certificate or key is unusable (the old pair keeps serving): ${(err as Error).message}`,
      );
    }
  }

  get scheme(): 'http' | 'https' {
    return this.o.tls ? 'https' : 'http';
  }

  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
  }

  close(): Promise<void> {
    return closeNow(this.server);
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = pathOf(req);
    const o = this.o;
    const known = Object.values(METADATA_PATHS) as string[];
    if (!known.includes(path)) return text(res, 404, '404 page not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return text(res, 405, 'Method Not Allowed\n');
    }
    switch (path) {
      case METADATA_PATHS.healthz:
        return text(res, 200, 'Ok.');
      case METADATA_PATHS.public:
        return json(res, publicMetadata({ clusterUuid: o.local.clusterUuid, authnKeyPub: o.authnKeyPub, rootCA: o.rootCA() }), 'public');
      case METADATA_PATHS.spiffeBundle:
        return serveSpiffeBundle(o.bundles, req, res);
      case METADATA_PATHS.federation:
        if (!o.federation) return text(res, 404, '404 page not found\n');
        if (!(await this.authorized(req, res, 'private-federation'))) return;
        return json(res, federationMetadata(o.snapshot(), o.local, o.advertise), 'private');
      case METADATA_PATHS.multicluster: {
        const apiHost = o.multiclusterApiHost;
        if (!apiHost) return text(res, 404, '404 page not found\n');
        if (!(await this.authorized(req, res, 'private-multicluster'))) return;
        return json(res, multiclusterMetadata(o.snapshot(), o.local, apiHost, o.advertise), 'private');
      }
    }
  }

  /** Answers 401 and counts when the request carries no valid token for `scope`. */
  private async authorized(req: http.IncomingMessage, res: http.ServerResponse, scope: TokenScope): Promise<boolean> {
    try {
      const { peer } = await verifyPeerToken(req.headers.authorization, {
        clusterUuid: this.o.local.clusterUuid,
        scope,
        peers: this.o.peers,
        now: this.o.now,
      });
      this.o.log.debug({ peer, path: pathOf(req) }, 'private metadata served');
      return true;
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      this.failures.inc({ reason: err.reason });
      this.o.log.debug({ reason: err.reason, remote: req.socket.remoteAddress, path: pathOf(req) }, 'private metadata refused');
      res.setHeader('www-authenticate', 'Bearer');
      text(res, 401, `Authentication error: ${err.message}\n`);
      return false;
    }
  }
}

const pathOf = (req: http.IncomingMessage): string => (req.url ?? '/').split('?')[0]!;

function text(res: http.ServerResponse, code: number, body: string): void {
  res.writeHead(code, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-content-type-options': 'nosniff',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** Pretty-printed with 2 spaces and no trailing newline, as Go's json.MarshalIndent writes (these documents hold no <, >, & that Go would escape). */
function json(res: http.ServerResponse, doc: unknown, kind: 'public' | 'private'): void {
  const body = JSON.stringify(doc, null, 2);
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    // Private documents are per peer and must not sit in a shared cache.
    'cache-control': kind === 'private' ? 'no-store' : 'max-age=60',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
