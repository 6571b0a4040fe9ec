// PKCS#10 certificate signing requests (RFC 2986), read only as far as signing one needs: the
// subject public key, and the request's self-signature over it (proof that the sender holds the
// private key). Subject, SANs and extensions are not read: the CA certifies the caller's
// authenticated identity, whatever the request asks for (as istiod does).
import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import * as der from './der.js';
import { pem, signatureAlgorithm } from './x509.js';

/** Signature algorithms istio-agent and openssl use: PKCS#1 v1.5 RSA and ECDSA, SHA-2. */
const SIGNATURE: ReadonlyArray<{ oid: Buffer; hash: string; keyType: 'rsa' | 'ec' }> = [
  ['1.2.840.113549.1.1.11', 'sha256', 'rsa'],
  ['1.2.840.113549.1.1.12', 'sha384', 'rsa'],
  ['1.2.840.113549.1.1.13', 'sha512', 'rsa'],
  ['1.2.840.10045.4.3.2', 'sha256', 'ec'],
  ['1.2.840.10045.4.3.3', 'sha384', 'ec'],
  ['1.2.840.10045.4.3.4', 'sha512', 'ec'],
].map(([oid, hash, keyType]) => ({ oid: der.oid(oid!), hash: hash!, keyType: keyType as 'rsa' | 'ec' }));

/** Larger inputs are refused before parsing: an RSA-8192 request is about 2.5 KiB of PEM. */
export const MAX_CSR_PEM_BYTES = 16 * 1024;

export class CsrError extends Error {}

export interface ParsedCsr {
  /** SubjectPublicKeyInfo DER, as it goes into the certificate. */
  readonly spki: Buffer;
  readonly key: KeyObject;
}

/**
 * Reads a PEM CSR, checks its key (RSA 2048-8192 bits, or EC P-256/P-384) and its signature; throws
 * CsrError saying what is wrong.
 */
export function parseCsr(pemText: string): ParsedCsr {
  if (Buffer.byteLength(pemText) > MAX_CSR_PEM_BYTES) throw new CsrError(`CSR is over ${MAX_CSR_PEM_BYTES} bytes`);
  const m = /-----BEGIN (NEW )?CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]+)-----END (NEW )?CERTIFICATE REQUEST-----/.exec(pemText);
  if (!m) throw new CsrError('CSR is not a PEM "CERTIFICATE REQUEST"');
  const bytes = Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64');
  let info: Buffer, spki: Buffer, algOid: Buffer, signature: Buffer;
  try {
    const top = der.read(bytes, 0);
    if (top.tag !== 0x30 || top.end !== bytes.length) throw new Error('not one SEQUENCE');
    const [cri, alg, sig] = der.children(bytes, top);
    if (!cri || cri.tag !== 0x30 || !alg || alg.tag !== 0x30 || !sig || sig.tag !== 0x03) throw new Error('not a CertificationRequest');
    const [version, subject, pk] = der.children(bytes, cri);
    if (!version || version.tag !== 0x02 || !subject || subject.tag !== 0x30 || !pk || pk.tag !== 0x30)
      throw new Error('not a CertificationRequestInfo');
    const [algId] = der.children(bytes, alg);
    if (!algId || algId.tag !== 0x06) throw new Error('no signature algorithm');
    if (bytes[sig.contentStart] !== 0) throw new Error('signature has unused bits');
    info = bytes.subarray(cri.start, cri.end);
    spki = Buffer.from(bytes.subarray(pk.start, pk.end));
    algOid = bytes.subarray(algId.start, algId.end);
    signature = bytes.subarray(sig.contentStart + 1, sig.end);
  } catch (err) {
    throw new CsrError(`CSR is not valid DER: ${(err as Error).message}`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new CsrError(`CSR public key cannot be read: ${(err as Error).message}`);
  }
  checkKey(key);
  const alg = SIGNATURE.find((a) => a.oid.equals(algOid));
  if (!alg) throw new CsrError('CSR signature algorithm is not RSA or ECDSA with SHA-256/384/512');
  if (alg.keyType !== key.asymmetricKeyType) throw new CsrError('CSR signature algorithm does not match its key');
  if (!verify(alg.hash, info, key, signature)) throw new CsrError('CSR signature does not verify with its own key');
  return { spki, key };
}

function checkKey(key: KeyObject): void {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d.modulusLength ?? 0;
    if (bits < 2048 || bits > 8192) throw new CsrError(`CSR RSA key has ${bits} bits; 2048 to 8192 are accepted`);
    return;
  }
  if (key.asymmetricKeyType === 'ec' && (d.namedCurve === 'prime256v1' || d.namedCurve === 'secp384r1')) return;
  throw new CsrError(
    `CSR key type ${key.asymmetricKeyType ?? 'unknown'}${d.namedCurve ? ` (${d.namedCurve})` : ''} is not accepted: RSA or EC P-256/P-384`,
  );
}

/**
 * A CSR for a key pair the caller keeps (`meshfed agent --csr`): empty subject, no extensions,
 * since the CA certifies the caller's authenticated identity and reads only the key.
 */
export function buildCsr(privateKey: KeyObject, spki: Buffer): string {
  const info = der.seq(der.uint(0), der.seq(), spki, der.explicit(0, Buffer.alloc(0)));
  const { alg, hash } = signatureAlgorithm(privateKey);
  return pem('CERTIFICATE REQUEST', der.seq(info, alg, der.bitString(sign(hash, info, privateKey))));
}
