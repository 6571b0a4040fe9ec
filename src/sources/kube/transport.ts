// HTTP to one kube-apiserver: kubeconfig loading, paged lists and watch streams. Objects are checked
// one by one (kind, shape, size) before anything sees them; a bad one is dropped and reported.
//
// client-node's ListWatch (the informer behind makeInformer) keeps the cache, resourceVersions and the
// relist on 410 Gone; its own Watch transport is replaced because it drops unparsable lines silently,
// has no size limit, never asks for bookmarks and has no deadline (a stalled watch hangs forever).
import http from 'node:http';
import https from 'node:https';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { type Kind, rejectReason } from './objects.js';

export interface TransportLimits {
  /** Objects larger than this (as JSON) are rejected; etcd's own limit is 1.5 MiB. */
  readonly maxObjectBytes: number;
  /** Deadline for a list page, and for a watch to answer with its headers. */
  readonly requestTimeoutMs: number;
  /** Watches ask the server to end after this long; the client gives up a little later. */
  readonly watchTimeoutSec: number;
}

export const DEFAULT_LIMITS: TransportLimits = { maxObjectBytes: 1_572_864, requestTimeoutMs: 30_000, watchTimeoutSec: 300 };

export type RejectFn = (kind: Kind, reason: string, name?: string) => void;

export class HttpStatusError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

/**
 * The reason and the position only: a YAML error quotes the lines around the fault, which may hold a
 * token or a key, and the message reaches the log and /debug/clusters.
 */
function parseError(err: unknown): string {
  const e = err as Error & { reason?: string; mark?: { line: number; column: number } };
  return e.reason && e.mark ? `${e.reason} (line ${e.mark.line + 1}, column ${e.mark.column + 1})` : (e.message.split('\n')[0] ?? '');
}

/** Loads the local cluster's configuration: a kubeconfig file, else the in-cluster service account. */
export function localKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) {
    try {
      kc.loadFromFile(path);
    } catch (err) {
      throw new Error(`kubeconfig ${path}: ${parseError(err)}`);
    }
  } else if (process.env['KUBERNETES_SERVICE_HOST']) kc.loadFromCluster();
  else throw new Error('no Kubernetes configuration: give --kubeconfig, or run in a pod (KUBERNETES_SERVICE_HOST)');
  if (!kc.getCurrentCluster()) throw new Error(`kubeconfig ${path ?? '(in-cluster)'} names no current cluster`);
  return kc;
}

/**
 * A remote cluster's kubeconfig from a remote Secret. Only inline credentials are taken: a bearer token
 * or a client certificate. Exec plugins, auth providers and file references are refused, because a
 * Secret anyone in meshfed's namespace can write must not run programs or read meshfed's own files.
 */
export function remoteKubeConfig(text: string, clusterId: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromString(text);
  } catch (err) {
    throw new Error(`cluster ${clusterId}: the kubeconfig does not parse: ${parseError(err)}`);
  }
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster) throw new Error(`cluster ${clusterId}: the kubeconfig names no current cluster`);
  if (!user) throw new Error(`cluster ${clusterId}: the kubeconfig names no current user`);
  if (user.exec)
    throw new Error(
      `cluster ${clusterId}: exec credential plugins are refused in remote secrets; use a bearer token or a client certificate`,
    );
  if (user.authProvider)
    throw new Error(
      `cluster ${clusterId}: auth providers (${String(user.authProvider.name ?? 'unnamed')}) are refused in remote secrets; use a bearer token or a client certificate`,
    );
  if (user.certFile || user.keyFile || cluster.caFile)
    throw new Error(
      `cluster ${clusterId}: file references are refused in remote secrets; inline the certificates (client-certificate-data, certificate-authority-data)`,
    );
  if (!user.token && !(user.certData && user.keyData))
    throw new Error(`cluster ${clusterId}: the kubeconfig has neither a bearer token nor a client certificate`);
  return kc;
}

/** Issues requests to one apiserver with one kubeconfig's credentials. */
export class KubeClient {
  private readonly open = new Set<http.ClientRequest>();
  private closed = false;

  constructor(
    readonly kc: KubeConfig,
    readonly limits: TransportLimits,
    readonly reject: RejectFn,
  ) {}

  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? '';
  }

  /** Lists every object of a kind (paged); bad items are dropped and reported. */
  async list(kind: Kind, path: string, labelSelector?: string): Promise<{ items: unknown[]; resourceVersion: string }> {
    const items: unknown[] = [];
    let cont = '';
    let resourceVersion = '';
    do {
      const query: Record<string, string> = { limit: '1000' };
      if (labelSelector) query['labelSelector'] = labelSelector;
      if (cont) query['continue'] = cont;
      const res = await this.request(path, query, this.limits.requestTimeoutMs);
      const body = await readAll(res, this.limits.requestTimeoutMs);
      let page: { metadata?: { resourceVersion?: string; continue?: string }; items?: unknown };
      try {
        page = JSON.parse(body) as typeof page;
      } catch {
        throw new Error(`list ${path}: the answer is not JSON (${body.length} bytes)`);
      }
      if (!page || !Array.isArray(page.items)) throw new Error(`list ${path}: the answer has no items`);
      for (const item of page.items) {
        const reason = this.check(kind, item, JSON.stringify(item).length);
        if (reason) this.reject(kind, reason, nameOf(item));
        else items.push(item);
      }
      resourceVersion = page.metadata?.resourceVersion ?? '';
      cont = page.metadata?.continue ?? '';
    } while (cont);
    return { items, resourceVersion };
  }

  /** Why an object cannot be used, or undefined. */
  check(kind: Kind, obj: unknown, size: number): string | undefined {
    if (size > this.limits.maxObjectBytes) return `oversized (${size} bytes > ${this.limits.maxObjectBytes})`;
    return rejectReason(kind, obj);
  }

  /** Starts a GET; resolves with the response once its status is 200. */
  async request(path: string, query: Record<string, string>, headerTimeoutMs: number, signal?: AbortSignal): Promise<http.IncomingMessage> {
    if (this.closed) throw new Error('client closed');
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const opts: https.RequestOptions = { method: 'GET', headers: { accept: 'application/json' } };
    await this.kc.applyToHTTPSOptions(opts);
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...opts, signal }, (res) => {
        clearTimeout(timer);
        if (res.statusCode === 200) return resolve(res);
        void readAll(res, headerTimeoutMs).then(
          (body) => reject(new HttpStatusError(`GET ${path}: HTTP ${res.statusCode}: ${statusMessage(body)}`, res.statusCode ?? 0)),
          reject,
        );
      });
      const timer = setTimeout(() => req.destroy(new Error(`GET ${path}: no answer within ${headerTimeoutMs} ms`)), headerTimeoutMs);
      this.open.add(req);
      req.on('close', () => {
        clearTimeout(timer);
        this.open.delete(req);
      });
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end();
    });
  }

  /** GET of one JSON document (discovery), bounded by maxObjectBytes. */
  async getJson(path: string): Promise<unknown> {
    const res = await this.request(path, {}, this.limits.requestTimeoutMs);
    const declared = Number(res.headers['content-length'] ?? 0);
    if (declared > this.limits.maxObjectBytes) {
      res.destroy();
      throw new Error(`GET ${path}: ${declared} bytes, more than ${this.limits.maxObjectBytes}`);
    }
    return JSON.parse(await readAll(res, this.limits.requestTimeoutMs)) as unknown;
  }

  /** The versions the apiserver serves of an API group (empty when it does not serve the group). */
  async groupVersions(group: string): Promise<string[]> {
    try {
      const doc = (await this.getJson(`/apis/${group}`)) as { versions?: Array<{ version?: unknown }> };
      return (doc.versions ?? []).map((v) => String(v.version ?? ''));
    } catch (err) {
      if (err instanceof HttpStatusError && err.statusCode === 404) return [];
      throw err;
    }
  }

  /** Aborts every request in flight and refuses new ones. */
  close(): void {
    this.closed = true;
    for (const req of this.open) req.destroy();
    this.open.clear();
  }
}

/**
 * The watch transport ListWatch drives: asks for bookmarks and a server-side timeout, ends a watch that
 * overruns it, and splits the stream into events itself so a bad line is reported, not swallowed.
 */
export class GuardedWatch extends Watch {
  constructor(
    private readonly client: KubeClient,
    private readonly kind: Kind,
    /** Called when the server answered a watch: the cluster is reachable. */
    private readonly onOpen: () => void,
  ) {
    super(client.kc);
  }

  override async watch(
    path: string,
    queryParams: Record<string, unknown>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const controller = new AbortController();
    let finished = false;
    const finish = (err: unknown): void => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      controller.abort();
      done(err);
    };
    const { watchTimeoutSec, requestTimeoutMs, maxObjectBytes } = this.client.limits;
    const deadline = setTimeout(
      () => finish(new Error(`watch ${path} overran its ${watchTimeoutSec} s timeout`)),
      watchTimeoutSec * 1000 + requestTimeoutMs,
    );
    const query: Record<string, string> = { allowWatchBookmarks: 'true', timeoutSeconds: String(watchTimeoutSec) };
    for (const [k, v] of Object.entries(queryParams)) if (v !== undefined && v !== '') query[k] = String(v);
    query['watch'] = 'true';
    let res: http.IncomingMessage;
    try {
      res = await this.client.request(path, query, requestTimeoutMs, controller.signal);
    } catch (err) {
      if (!controller.signal.aborted) finish(err);
      return controller;
    }
    this.onOpen();
    let buf = '';
    let skipping = false;
    const line = (text: string): void => {
      if (!text.trim()) return;
      let ev: { type?: unknown; object?: unknown };
      try {
        ev = JSON.parse(text) as typeof ev;
      } catch {
        return this.reject('not JSON');
      }
      const type = ev?.type;
      if (type === 'ERROR') {
        const code = (ev.object as { code?: number } | undefined)?.code;
        callback('ERROR', ev.object, ev);
        return finish(code === 410 ? null : new HttpStatusError(`watch ${path}: ${statusMessage(JSON.stringify(ev.object))}`, code ?? 0));
      }
      if (type === 'BOOKMARK') return callback('BOOKMARK', ev.object, ev);
      if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') return this.reject(`unknown event type ${String(type)}`);
      const reason = this.client.check(this.kind, ev.object, text.length);
      if (reason) return this.reject(reason, nameOf(ev.object));
      callback(type, ev.object, ev);
    };
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      let start = 0;
      for (let nl = chunk.indexOf('\n'); nl >= 0; nl = chunk.indexOf('\n', start)) {
        const piece = chunk.slice(start, nl);
        start = nl + 1;
        if (skipping) skipping = false;
        else line(buf + piece);
        buf = '';
      }
      if (skipping) return;
      buf += chunk.slice(start);
      if (buf.length > maxObjectBytes) {
        this.reject(`oversized (a watch event over ${maxObjectBytes} bytes)`);
        buf = '';
        skipping = true;
      }
    });
    res.on('end', () => {
      if (buf && !skipping) line(buf);
      finish(null);
    });
    res.on('aborted', () => finish(new Error(`watch ${path}: the connection broke`)));
    res.on('error', (err) => finish(err));
    res.on('close', () => finish(res.complete ? null : new Error(`watch ${path}: the connection closed mid-stream`)));
    return controller;
  }

  private reject(reason: string, name?: string): void {
    this.client.reject(this.kind, reason, name);
  }
}

function nameOf(obj: unknown): string | undefined {
  const meta = (obj as { metadata?: { name?: unknown; namespace?: unknown } } | undefined)?.metadata;
  if (typeof meta?.name !== 'string') return undefined;
  return typeof meta.namespace === 'string' ? `${meta.namespace}/${meta.name}` : meta.name;
}

function statusMessage(body: string): string {
  try {
    const s = JSON.parse(body) as { message?: string };
    if (s.message) return s.message;
  } catch {
    // not a Status: show the start of the body
  }
  return body.slice(0, 200);
}

function readAll(res: http.IncomingMessage, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => res.destroy(new Error(`the body did not arrive within ${timeoutMs} ms`)), timeoutMs);
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    res.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    res.on('aborted', () => {
      clearTimeout(timer);
      reject(new Error('the connection broke'));
    });
  });
}
