// The mesh CA with real crypto: certificates checked by node, by the openssl CLI, and by real TLS handshakes.
import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  CertificateAuthority,
  fileCaStore,
  memoryCaStore,
  parseSpiffeId,
  spiffeId,
  type CaMaterial,
  type CaStore,
  type IssuedCert,
} from '../../src/pki/index.js';

const TD = 'cluster-a.local';
const FOO = { trustDomain: TD, namespace: 'abc', serviceAccount: 'foo' };
const BAR = { trustDomain: TD, namespace: 'xyz', serviceAccount: 'bar' };
const tmp = mkdtempSync(path.join(os.tmpdir(), 'meshfed-pki-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function certs(chainPem: string): X509Certificate[] {
  return [...chainPem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g)].map((m) => new X509Certificate(m[0]));
}

function file(name: string, text: string): string {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
}

/** openssl verify of the leaf against the root, with the chain's middle as untrusted intermediates. */
function opensslVerify(issued: IssuedCert, purpose: 'sslclient' | 'sslserver', root = issued.rootPem): string {
  const parts = certs(issued.certChainPem).map((c) => c.toString());
  const tag = Math.random().toString(36).slice(2);
  const args = ['verify', '-purpose', purpose, '-CAfile', file(`root-${tag}.pem`, root)];
  if (parts.length > 2) args.push('-untrusted', file(`mid-${tag}.pem`, parts.slice(1, -1).join('')));
  args.push(file(`leaf-${tag}.pem`, parts[0]!));
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A real mutual-TLS handshake; resolves with what each side saw of the other. */
function handshake(
  server: IssuedCert,
  client: IssuedCert,
  trust: { server: string; client: string },
): Promise<{ serverSaw: string; clientSaw: string }> {
  return new Promise((resolve, reject) => {
    let serverSaw = '';
    const srv = tls.createServer(
      { cert: server.certChainPem, key: server.privateKeyPem, ca: trust.server, requestCert: true, rejectUnauthorized: true },
      (sock) => {
        serverSaw = sock.getPeerCertificate().subjectaltname ?? '';
        sock.end('hi');
      },
    );
    srv.on('tlsClientError', () => undefined);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      let clientSaw = '';
      let done = false;
      const c = tls.connect(
        {
          port,
          host: '127.0.0.1',
          cert: client.certChainPem,
          key: client.privateKeyPem,
          ca: trust.client,
          checkServerIdentity: () => undefined,
        },
        () => {
          clientSaw = c.getPeerCertificate().subjectaltname ?? '';
        },
      );
      // TLS 1.3: the server judges the client certificate after the client's handshake ends, so only data proves both accepted.
      c.on('data', () => {
        done = true;
        c.end();
        srv.close();
        resolve({ serverSaw, clientSaw });
      });
      c.on('error', (err) => {
        srv.close();
        reject(err);
      });
      c.on('close', () => {
        srv.close();
        if (!done) reject(new Error('connection closed before the server answered'));
      });
    });
  });
}

/** An offline root and a per-cluster intermediate made with the openssl CLI: Istio's plug-in `cacerts`. */
function opensslCacerts(keyAlg: 'rsa' | 'ec'): CaMaterial {
  const dir = mkdtempSync(path.join(tmp, 'cacerts-'));
  const p = (f: string): string => path.join(dir, f);
  const newkey = keyAlg === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  const run = (...args: string[]): string =>
    execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  writeFileSync(
    p('ca.ext'),
    'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n',
  );
  run(
    'req',
    '-x509',
    ...newkey,
    '-nodes',
    '-keyout',
    'root-key.pem',
    '-out',
    'root-cert.pem',
    '-days',
    '3650',
    '-subj',
    '/O=Istio/CN=Root CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  run('req', ...newkey, '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.csr', '-subj', `/O=Istio/CN=Intermediate CA/L=${TD}`);
  run(
    'x509',
    '-req',
    '-in',
    'ca.csr',
    '-CA',
    'root-cert.pem',
    '-CAkey',
    'root-key.pem',
    '-CAcreateserial',
    '-days',
    '730',
    '-extfile',
    'ca.ext',
    '-out',
    'ca-cert.pem',
  );
  const read = (f: string): string => execFileSync('cat', [p(f)], { encoding: 'utf8' });
  return {
    caCertPem: read('ca-cert.pem'),
    caKeyPem: read('ca-key.pem'),
    rootCertPem: read('root-cert.pem'),
    certChainPem: read('ca-cert.pem') + read('root-cert.pem'),
  };
}

describe('SPIFFE ids', () => {
  it('formats and parses spiffe://<td>/ns/<ns>/sa/<sa>, refusing anything else', () => {
    expect(spiffeId(FOO)).toBe('spiffe://cluster-a.local/ns/abc/sa/foo');
    expect(parseSpiffeId('spiffe://cluster-a.local/ns/abc/sa/foo')).toEqual(FOO);
    expect(parseSpiffeId('spiffe://cluster-a.local/ns/abc/sa/foo/extra')).toBeUndefined();
    expect(parseSpiffeId('spiffe://Cluster-A/ns/abc/sa/foo')).toBeUndefined();
    expect(parseSpiffeId('https://cluster-a.local/ns/abc/sa/foo')).toBeUndefined();
    expect(() => spiffeId({ ...FOO, namespace: 'a/b' })).toThrow(/not a valid namespace/);
  });
});

describe('self-signed CA', () => {
  it('issues a workload certificate: SPIFFE URI SAN, 24 h, P-256, client+server auth, not a CA, root last', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const before = Date.now();
    const issued = ca.issue(FOO);
    const [leaf, root, ...rest] = certs(issued.certChainPem);
    expect(rest).toEqual([]);
    expect(root!.toString()).toBe(issued.rootPem);
    expect(ca.roots).toEqual([issued.rootPem]);

    expect(leaf!.subjectAltName).toBe('URI:spiffe://cluster-a.local/ns/abc/sa/foo');
    expect(leaf!.ca).toBe(false);
    expect(leaf!.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
    expect(leaf!.publicKey.asymmetricKeyDetails).toEqual({ namedCurve: 'prime256v1' });
    expect(leaf!.checkPrivateKey(createPrivateKey(issued.privateKeyPem))).toBe(true);
    expect(leaf!.verify(root!.publicKey)).toBe(true);
    expect(leaf!.checkIssued(root!)).toBe(true);
    expect(leaf!.serialNumber.toLowerCase()).toBe(issued.serial);
    const notAfter = Date.parse(leaf!.validTo);
    expect(notAfter).toBe(issued.notAfter.getTime());
    expect(notAfter - before).toBeGreaterThan(24 * 3600_000 - 2000);
    expect(notAfter - before).toBeLessThanOrEqual(24 * 3600_000 + 2000);
    expect(Date.parse(leaf!.validFrom)).toBeLessThanOrEqual(before);

    const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', file('text-leaf.pem', leaf!.toString())], { encoding: 'utf8' });
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toMatch(/Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster-a.local\/ns\/abc\/sa\/foo/);

    expect(root!.ca).toBe(true);
    expect(Date.parse(root!.validTo) - before).toBeGreaterThan(3650 * 24 * 3600_000 - 60_000);
    expect(opensslVerify(issued, 'sslclient')).toMatch(/: OK/);
    expect(opensslVerify(issued, 'sslserver')).toMatch(/: OK/);
  });

  it('certificates complete a real mutual-TLS handshake carrying the SPIFFE ids, and a foreign root is refused', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const seen = await handshake(ca.issue(BAR), ca.issue(FOO), { server: ca.roots.join(''), client: ca.roots.join('') });
    expect(seen).toEqual({
      serverSaw: 'URI:spiffe://cluster-a.local/ns/abc/sa/foo',
      clientSaw: 'URI:spiffe://cluster-a.local/ns/xyz/sa/bar',
    });

    const other = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    await expect(handshake(ca.issue(BAR), other.issue(FOO), { server: ca.roots.join(''), client: ca.roots.join('') })).rejects.toThrow();
  });

  it('issues RSA-2048 on request, sync or on the thread pool, and server certificates with DNS names', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    for (const issued of [ca.issue(FOO, { keyType: 'rsa' }), await ca.issueAsync(FOO, { keyType: 'rsa' })]) {
      const [leaf] = certs(issued.certChainPem);
      expect(leaf!.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
      expect(opensslVerify(issued, 'sslserver')).toMatch(/: OK/);
    }
    const server = ca.issueServer(['meshfed.istio-system.svc', 'meshfed'], {
      identity: { trustDomain: TD, namespace: 'istio-system', serviceAccount: 'meshfed' },
    });
    const [leaf] = certs(server.certChainPem);
    expect(leaf!.subjectAltName).toBe('URI:spiffe://cluster-a.local/ns/istio-system/sa/meshfed, DNS:meshfed.istio-system.svc, DNS:meshfed');
    expect(leaf!.checkHost('meshfed.istio-system.svc')).toBe('meshfed.istio-system.svc');
  });

  it('refuses identities of another trust domain and lifetimes beyond 90 days', async () => {
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    expect(() => ca.issue({ ...FOO, trustDomain: 'cluster-b.local' })).toThrow(
      /signs for trust domain cluster-a.local, not cluster-b.local/,
    );
    expect(() => ca.issue(FOO, { ttlMs: 91 * 24 * 3600_000 })).toThrow(/outside \(0, 90 days\]/);
    expect(() => ca.issueServer([])).toThrow(/at least one DNS name/);
  });
});

describe('the root is created once', () => {
  /** A store whose load() answers "nothing" to everyone until all racers have asked: the worst interleaving. */
  function racingStore(inner: CaStore, racers: number): CaStore & { creates: number } {
    let waiting = racers;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const s = {
      describe: 'racing',
      creates: 0,
      async load() {
        if (--waiting <= 0) release();
        await gate;
        return undefined;
      },
      createIfAbsent(m: CaMaterial) {
        s.creates++;
        return inner.createIfAbsent(m);
      },
      save: (m: CaMaterial) => inner.save(m),
    };
    return s;
  }

  it('two replicas racing on one memory store end with the same root', async () => {
    const store = racingStore(memoryCaStore(), 2);
    const [a, b] = await Promise.all([
      CertificateAuthority.open({ trustDomain: TD, store }),
      CertificateAuthority.open({ trustDomain: TD, store }),
    ]);
    expect(store.creates).toBe(2); // both tried...
    expect(a.roots).toEqual(b.roots); // ...one won, and both sign under the winner
    expect(a.issue(FOO).rootPem).toBe(b.issue(BAR).rootPem);
  });

  it('two replicas racing on one directory end with the same root, written atomically', async () => {
    const dir = path.join(tmp, 'ca-dir');
    const store = racingStore(fileCaStore(dir), 2);
    const [a, b] = await Promise.all([
      CertificateAuthority.open({ trustDomain: TD, store }),
      CertificateAuthority.open({ trustDomain: TD, store }),
    ]);
    expect(a.roots).toEqual(b.roots);
    const reopened = await CertificateAuthority.open({ trustDomain: TD, store: fileCaStore(dir) });
    expect(reopened.roots).toEqual(a.roots);
  });

  it("a server following a directory takes up a rotation another process writes there; the next root's files go on activation", async () => {
    const dir = path.join(tmp, 'ca-dir-follow');
    const serving = await CertificateAuthority.open({ trustDomain: TD, store: fileCaStore(dir), follow: true });
    const oldRoot = serving.signingRoot;
    const operator = await CertificateAuthority.open({ trustDomain: TD, store: fileCaStore(dir), create: false });
    await operator.rotateRoot();
    expect(readdirSync(dir).sort()).toEqual([
      'ca-cert.pem',
      'ca-key.pem',
      'cert-chain.pem',
      'next-ca-cert.pem',
      'next-ca-key.pem',
      'next-cert-chain.pem',
      'next-root-cert.pem',
      'root-cert.pem',
    ]);
    await vi.waitFor(() => expect(serving.roots).toEqual([oldRoot, operator.nextRoot]), { timeout: 5000 });
    await operator.activateRotation();
    await vi.waitFor(() => expect(serving.signingRoot).toBe(operator.signingRoot), { timeout: 5000 });
    expect(serving.roots).toEqual([operator.signingRoot, oldRoot]);
    expect(readdirSync(dir).sort()).toEqual(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    serving.close();
    operator.close();
  });
});

describe('plug-in CA (Istio cacerts)', () => {
  it.each(['rsa', 'ec'] as const)('signs with an openssl-made %s intermediate: chain = leaf, intermediate, root last', async (alg) => {
    const m = opensslCacerts(alg);
    const dir = path.join(tmp, `plugin-${alg}`);
    await fileCaStore(dir).createIfAbsent(m); // as a mounted `cacerts` Secret would look
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: fileCaStore(dir) });
    expect(ca.roots).toEqual([m.rootCertPem]);
    const issued = ca.issue(FOO);
    const chain = certs(issued.certChainPem);
    expect(chain.map((c) => (c.subject ?? '').split('\n').find((l) => l.startsWith('CN=')))).toEqual([
      undefined,
      'CN=Intermediate CA',
      'CN=Root CA',
    ]);
    expect(chain[0]!.issuer).toBe(chain[1]!.subject);
    expect(issued.rootPem).toBe(m.rootCertPem);
    expect(opensslVerify(issued, 'sslclient')).toMatch(/: OK/);
    const seen = await handshake(ca.issue(BAR), issued, { server: m.rootCertPem, client: m.rootCertPem });
    expect(seen.serverSaw).toBe('URI:spiffe://cluster-a.local/ns/abc/sa/foo');
  });

  it("trusts every root of a combined root-cert.pem (Istio's rotation form) and signs up to the one its chain ends at", async () => {
    const m = opensslCacerts('ec');
    const other = opensslCacerts('ec');
    const ca = await CertificateAuthority.open({
      trustDomain: TD,
      store: memoryCaStore({ ...m, rootCertPem: other.rootCertPem + m.rootCertPem }),
    });
    expect(ca.signingRoot).toBe(m.rootCertPem);
    expect(ca.roots).toEqual([m.rootCertPem, other.rootCertPem]);
    const issued = ca.issue(FOO);
    expect(issued.rootPem).toBe(m.rootCertPem);
    expect(opensslVerify(issued, 'sslclient')).toMatch(/: OK/);
    const leaf = certs(issued.certChainPem)[0]!.toString();
    await expect(
      CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore({ ...m, rootCertPem: m.rootCertPem + leaf }) }),
    ).rejects.toThrow(/invalid CA material: root-cert.pem, extra root .*spiffe.* is not a CA certificate/);
  });

  it('rejects material whose key does not match, or whose chain does not link, with a clear error', async () => {
    const m = opensslCacerts('ec');
    const other = opensslCacerts('ec');
    await expect(CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore({ ...m, caKeyPem: other.caKeyPem }) })).rejects.toThrow(
      /invalid CA material: ca-key.pem does not match ca-cert.pem/,
    );
    await expect(
      CertificateAuthority.open({
        trustDomain: TD,
        store: memoryCaStore({ ...m, rootCertPem: other.rootCertPem, certChainPem: m.caCertPem }),
      }),
    ).rejects.toThrow(/invalid CA material: .*Intermediate CA.* is not signed by the next certificate/);
    await expect(CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore({ ...m, caCertPem: 'garbage' }) })).rejects.toThrow(
      /invalid CA material: ca-cert.pem holds no certificate/,
    );
  });
});
