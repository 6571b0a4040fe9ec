// CA material (Istio `cacerts` layout), its checks, and meshfed's self-signed root.
import { createECDH, createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import * as der from './der.js';
import { buildCertificate, describeCert, issuerInfo, KeyUsage, name, pem, pemToDer, splitPems, toPem } from './x509.js';

export type KeyType = 'ec' | 'rsa';

/** Istio `cacerts` material (plug-in CA) or meshfed's own self-signed root. */
export interface CaMaterial {
  /** The signing CA certificate (`ca-cert.pem`). */
  readonly caCertPem: string;
  /** Its private key (`ca-key.pem`). */
  readonly caKeyPem: string;
  /**
   * The root (`root-cert.pem`); equals caCertPem for a self-signed root. It may hold more roots, trusted
   * but not signing: a root being rotated out (Istio's combined root-cert.pem).
   */
  readonly rootCertPem: string;
  /** From the CA certificate up to the root (`cert-chain.pem`); may be empty or just the root. */
  readonly certChainPem: string;
  /**
   * A root rotation's next CA (stored as `next-*.pem` beside the others): trusted by every replica from the
   * moment it is stored, signing once activated.
   */
  readonly next?: CaMaterial;
}

export interface ExtraRoot {
  readonly pem: string;
  /** When a root meshfed rotated out stops being trusted (after its last certificate); Infinity for an operator's. */
  readonly until: number;
}

/** The note meshfed writes before a retiring root in root-cert.pem; PEM readers skip text between blocks. */
const RETIRING_NOTE = '# meshfed: retiring, trusted until ';

/** root-cert.pem holding the signing root first, then the other trusted roots (a retiring one with its note). */
export function rootsPem(signingRoot: string, others: readonly ExtraRoot[]): string {
  const note = (r: ExtraRoot): string => (Number.isFinite(r.until) ? `${RETIRING_NOTE}${new Date(r.until).toISOString()}\n` : '');
  return signingRoot + others.map((r) => note(r) + r.pem).join('');
}

/** Each root of root-cert.pem, with the time from meshfed's note before it, if any. */
function parseRoots(text: string): ExtraRoot[] {
  const out: ExtraRoot[] = [];
  const re = new RegExp(`(?:${RETIRING_NOTE}(\\S+)\\r?\\n)?(-----BEGIN CERTIFICATE-----[\\s\\S]*?-----END CERTIFICATE-----)`, 'g');
  for (const [, until, block] of text.matchAll(re)) {
    const pem = block!.replace(/\r/g, '') + '\n';
    const t = until === undefined ? NaN : Date.parse(until);
    if (!out.some((r) => r.pem === pem)) out.push({ pem, until: Number.isNaN(t) ? Infinity : t });
  }
  return out;
}

/** Loaded, checked material, ready to sign. */
export interface Signer {
  readonly material: CaMaterial;
  readonly key: KeyObject;
  readonly issuer: { readonly name: Buffer; readonly keyId?: Buffer; readonly key: KeyObject };
  /** The CA certificate, intermediates, then the root: appended to every leaf. */
  readonly chainPem: string;
  readonly rootPem: string;
  /** The other roots of root-cert.pem: trusted, never signing. */
  readonly extraRoots: readonly ExtraRoot[];
  readonly notAfter: number;
}

export function generateKey(type: KeyType): { spki: Buffer; keyPem: string } {
  if (type === 'ec') {
    // ECDH hands out the raw scalar and point directly; a P-256 ECDH key pair is a valid ECDSA key pair.
    const ecdh = createECDH('prime256v1');
    const point = ecdh.generateKeys();
    return encodeP256(ecdh.getPrivateKey(), point);
  }
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { spki: publicKey, keyPem: privateKey };
}

const P256_ALGORITHM = der.seq(der.oid('1.2.840.10045.2.1'), der.oid('1.2.840.10045.3.1.7'));

/**
 * SPKI DER and PKCS#8 PEM of a P-256 key, encoded here from its raw scalar and uncompressed point: node's own
 * key generation and SPKI/PKCS#8 export go through OpenSSL 3's encoder lookups and cost several times more.
 */
export function encodeP256(scalar: Buffer, point: Buffer): { spki: Buffer; keyPem: string } {
  const d = Buffer.concat([Buffer.alloc(Math.max(32 - scalar.length, 0)), scalar]); // fixed width (RFC 5915)
  const ecPrivateKey = der.seq(der.uint(1), der.octetString(d), der.explicit(1, der.bitString(point)));
  const pkcs8 = der.seq(der.uint(0), P256_ALGORITHM, der.octetString(ecPrivateKey));
  return { spki: der.seq(P256_ALGORITHM, der.bitString(point)), keyPem: pem('PRIVATE KEY', pkcs8) };
}

export function selfSignedRoot(trustDomain: string, opts: { keyType: KeyType; ttlMs: number; now: number }): CaMaterial {
  const { spki, keyPem } = generateKey(opts.keyType);
  const subject = name({ o: trustDomain, cn: `meshfed root CA ${new Date(opts.now).toISOString()}` });
  const key = createPrivateKey(keyPem);
  const cert = buildCertificate({
    subject,
    issuer: { name: subject, key },
    publicKey: spki,
    notBefore: new Date(opts.now - 60_000),
    notAfter: new Date(opts.now + opts.ttlMs),
    ca: true,
    keyUsage: [KeyUsage.digitalSignature, KeyUsage.keyCertSign, KeyUsage.cRLSign],
  });
  const pem = toPem(cert.der);
  return { caCertPem: pem, caKeyPem: keyPem, rootCertPem: pem, certChainPem: pem };
}

/** Of root-cert.pem's roots, the one the chain ends at: the CA certificate itself, or the issuer of the chain's top. */
function signingRoot(roots: readonly string[], caPem: string, chainPem: string): string {
  if (roots.includes(caPem)) return caPem;
  if (roots.length === 1) return roots[0]!;
  try {
    const top = new X509Certificate(
      splitPems(chainPem)
        .filter((p) => !roots.includes(p))
        .at(-1) ?? caPem,
    );
    return (
      roots.find((r) => {
        const root = new X509Certificate(r);
        return top.checkIssued(root) && top.verify(root.publicKey);
      }) ?? roots[0]!
    );
  } catch {
    return roots[0]!; // unreadable: the chain check reports it
  }
}

/**
 * Checks material and prepares it for signing: the key matches the CA certificate, every certificate is a CA,
 * and the chain CA cert → intermediates → root verifies link by link.
 */
export function loadSigner(m: CaMaterial): Signer {
  const fail = (why: string): never => {
    throw new Error(`invalid CA material: ${why}`);
  };
  const [caPem] = splitPems(m.caCertPem);
  const parsed = parseRoots(m.rootCertPem);
  const roots = parsed.map((r) => r.pem);
  if (!caPem) return fail('ca-cert.pem holds no certificate');
  if (!roots.length) return fail('root-cert.pem holds no certificate');
  const rootPem = signingRoot(roots, caPem, m.certChainPem);
  const extraRoots = parsed.filter((r) => r.pem !== rootPem);
  let key: KeyObject;
  try {
    key = createPrivateKey(m.caKeyPem);
  } catch (err) {
    return fail(`ca-key.pem: ${(err as Error).message}`);
  }
  // The chain: CA cert first, then what cert-chain.pem adds, the root last, each once.
  const chain: string[] = [];
  for (const p of [caPem, ...splitPems(m.certChainPem), rootPem]) if (!chain.includes(p)) chain.push(p);
  if (chain.indexOf(rootPem) !== chain.length - 1) chain.push(chain.splice(chain.indexOf(rootPem), 1)[0]!);
  const certs = chain.map((p, i) => {
    try {
      return new X509Certificate(p);
    } catch (err) {
      return fail(`certificate ${i} of the chain: ${(err as Error).message}`);
    }
  });
  const ca = certs[0]!;
  if (!ca.checkPrivateKey(key)) fail('ca-key.pem does not match ca-cert.pem');
  certs.forEach((c, i) => {
    if (!c.ca) fail(`${describeCert(c)} is not a CA certificate`);
    const parent = certs[i + 1] ?? c; // the root signs itself
    if (!c.checkIssued(parent) || !c.verify(parent.publicKey))
      fail(`${describeCert(c)} is not signed by the next certificate in the chain`);
  });
  for (const [i, { pem: p }] of extraRoots.entries()) {
    let c: X509Certificate;
    try {
      c = new X509Certificate(p);
    } catch (err) {
      return fail(`root-cert.pem, extra root ${i + 1}: ${(err as Error).message}`);
    }
    if (!c.ca) fail(`root-cert.pem, extra root ${describeCert(c)} is not a CA certificate`);
  }
  return {
    material: m,
    key,
    issuer: { ...issuerInfo(pemToDer(caPem)), key },
    chainPem: chain.join(''),
    rootPem,
    extraRoots,
    notAfter: Date.parse(ca.validTo),
  };
}
