// One bounded GET of a peer's metadata document: TLS as the peer's spec says, a deadline for the whole
// exchange (a stalled peer cannot hold a poll), and a cap on the body (a huge answer is refused unread).
import http from 'node:http';
import https from 'node:https';

export interface PeerTls {
  /** Extra CA (PEM) for the metadata endpoint; when set, insecureSkipVerify is ignored. */
  readonly ca?: string;
  readonly insecureSkipVerify?: boolean;
}

export interface FetchOptions {
  readonly tls: PeerTls;
  readonly bearer?: string;
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

/** Deckhouse's failure reasons of a fetch. */
export type FetchFailure = {
  readonly ok: false;
  readonly reason: 'FetchFailed' | 'NonOKResponse' | 'InvalidJSON';
  readonly message: string;
};
export type FetchResult = { readonly ok: true; readonly body: unknown } | FetchFailure;

export function fetchJson(url: string, o: FetchOptions): Promise<FetchResult> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return Promise.resolve({ ok: false, reason: 'FetchFailed', message: `${url} is not a URL` });
  }
  const isHttps = target.protocol === 'https:';
  if (!isHttps && target.protocol !== 'http:')
    return Promise.resolve({ ok: false, reason: 'FetchFailed', message: `${url}: only http and https are fetched` });
  const headers: Record<string, string> = { accept: 'application/json' };
  if (o.bearer) headers['authorization'] = `Bearer ${o.bearer}`;
  // A CA given means exactly that CA (and the system roots are not consulted); else insecure, else system roots.
  const tlsOpts: https.RequestOptions = isHttps ? (o.tls.ca ? { ca: o.tls.ca } : { rejectUnauthorized: !o.tls.insecureSkipVerify }) : {};
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: FetchResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const fail = (message: string): void => finish({ ok: false, reason: 'FetchFailed', message: `GET ${url}: ${message}` });
    const req = (isHttps ? https : http).request(target, { method: 'GET', headers, agent: false, ...tlsOpts }, (res) => {
      const status = res.statusCode ?? 0;
      const declared = Number(res.headers['content-length'] ?? NaN);
      if (declared > o.maxBytes) return fail(`the body is ${declared} bytes, more than the ${o.maxBytes} accepted`);
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > o.maxBytes) fail(`the body is more than the ${o.maxBytes} bytes accepted`);
        else chunks.push(c);
      });
      res.on('error', (err) => fail(err.message));
      res.on('aborted', () => fail('the connection broke'));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (status !== 200)
          return finish({ ok: false, reason: 'NonOKResponse', message: `GET ${url}: HTTP ${status}: ${text.slice(0, 200).trim()}` });
        try {
          finish({ ok: true, body: JSON.parse(text) as unknown });
        } catch (err) {
          finish({ ok: false, reason: 'InvalidJSON', message: `GET ${url}: ${(err as Error).message}` });
        }
      });
    });
    const timer = setTimeout(() => fail(`no complete answer within ${o.timeoutMs} ms`), o.timeoutMs);
    req.on('error', (err) => fail(err.message));
    req.end();
  });
}
