// X.509 v3 certificates built with the DER encoder and signed by node:crypto (why not a library: der.ts's header).
import { createHash, randomBytes, sign, type KeyObject, X509Certificate } from 'node:crypto';
import * as der from './der.js';

const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  subjectKeyId: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyId: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** KeyUsage bits (RFC 5280 4.2.1.3), numbered from the most significant bit of the first byte. */
export const KeyUsage = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

export interface CertSpec {
  /** DER of the subject Name. */
  readonly subject: Buffer;
  /** The signer: its subject Name DER (the issuer here) and its subject key id, if it has one. */
  readonly issuer: { readonly name: Buffer; readonly keyId?: Buffer; readonly key: KeyObject };
  /** SubjectPublicKeyInfo DER of the certified key. */
  readonly publicKey: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly ca: boolean;
  readonly keyUsage: readonly number[];
  readonly extKeyUsage?: readonly string[];
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
  /** Defaults to 16 random bytes. */
  readonly serial?: Buffer;
}

export interface BuiltCert {
  readonly der: Buffer;
  readonly serialHex: string;
}

export function name(attrs: { o?: string; cn?: string }): Buffer {
  const rdns: Buffer[] = [];
  if (attrs.o) rdns.push(der.set(der.seq(der.oid(OID.organization), der.utf8String(attrs.o))));
  if (attrs.cn) rdns.push(der.set(der.seq(der.oid(OID.commonName), der.utf8String(attrs.cn))));
  return der.seq(...rdns);
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdOf(spki: Buffer): Buffer {
  const top = der.read(spki, 0);
  const [, bits] = der.children(spki, top);
  if (!bits || bits.tag !== 0x03) throw new Error('not a SubjectPublicKeyInfo');
  return createHash('sha1')
    .update(spki.subarray(bits.contentStart + 1, bits.end))
    .digest();
}

export function signatureAlgorithm(key: KeyObject): { alg: Buffer; hash: string } {
  if (key.asymmetricKeyType === 'ec') return { alg: der.seq(der.oid(OID.ecdsaWithSha256)), hash: 'sha256' };
  if (key.asymmetricKeyType === 'rsa') return { alg: der.seq(der.oid(OID.sha256WithRsa), der.NULL), hash: 'sha256' };
  throw new Error(`unsupported CA key type ${key.asymmetricKeyType ?? 'unknown'}`);
}

function ext(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? der.seq(der.oid(id), der.bool(true), der.octetString(value)) : der.seq(der.oid(id), der.octetString(value));
}

function keyUsageBits(bits: readonly number[]): Buffer {
  const bytes = Buffer.alloc(bits.some((b) => b >= 8) ? 2 : 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  // DER: trailing zero bits are dropped and counted as unused.
  let unused = 0;
  const last = bytes[bytes.length - 1]!;
  while (unused < 8 && !(last & (1 << unused))) unused++;
  return der.bitString(bytes, unused === 8 ? 0 : unused);
}

export function buildCertificate(spec: CertSpec): BuiltCert {
  const serial = spec.serial ?? randomBytes(16);
  serial[0]! &= 0x7f; // positive, and never wider than 20 bytes once DER-encoded
  if (serial[0] === 0) serial[0] = 0x01; // keep the full width so serials stay unique-looking
  const { alg, hash } = signatureAlgorithm(spec.issuer.key);

  const exts: Buffer[] = [];
  exts.push(ext(OID.basicConstraints, true, spec.ca ? der.seq(der.bool(true)) : der.seq()));
  exts.push(ext(OID.keyUsage, true, keyUsageBits(spec.keyUsage)));
  if (spec.extKeyUsage?.length) exts.push(ext(OID.extKeyUsage, false, der.seq(...spec.extKeyUsage.map((e) => der.oid(e)))));
  if (spec.ca) exts.push(ext(OID.subjectKeyId, false, der.octetString(keyIdOf(spec.publicKey))));
  if (spec.issuer.keyId) exts.push(ext(OID.authorityKeyId, false, der.seq(der.implicitPrimitive(0, spec.issuer.keyId))));
  const sans = [
    ...(spec.uris ?? []).map((u) => der.implicitPrimitive(6, Buffer.from(u, 'ascii'))),
    ...(spec.dnsNames ?? []).map((d) => der.implicitPrimitive(2, Buffer.from(d, 'ascii'))),
  ];
  // An empty subject makes the SAN the identity, and then it must be critical (RFC 5280 4.2.1.6).
  const emptySubject = spec.subject.length === 2;
  if (sans.length) exts.push(ext(OID.subjectAltName, emptySubject, der.seq(...sans)));
  else if (emptySubject) throw new Error('a certificate with an empty subject needs a subject alternative name');

  const tbs = der.seq(
    der.explicit(0, der.uint(2)), // v3
    der.uintBytes(serial),
    alg,
    spec.issuer.name,
    der.seq(der.time(spec.notBefore), der.time(spec.notAfter)),
    spec.subject,
    spec.publicKey,
    der.explicit(3, der.seq(...exts)),
  );
  const signature = sign(hash, tbs, spec.issuer.key);
  return { der: der.seq(tbs, alg, der.bitString(signature)), serialHex: serial.toString('hex') };
}

export function pem(label: string, body: Buffer): string {
  const b64 = body.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export const toPem = (certDer: Buffer): string => pem('CERTIFICATE', certDer);

/** Every certificate in a PEM text, normalized (one trailing newline each). */
export function splitPems(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => m[0].replace(/\r/g, '') + '\n');
}

/** A certificate's name for error messages: its subject, or its SANs when the subject is empty. */
export function describeCert(c: X509Certificate): string {
  return (c.subject as string | undefined)?.replace(/\n/g, ', ') || c.subjectAltName || `serial ${c.serialNumber}`;
}

/** Why a PEM certificate cannot be a trusted root (not parsable, or not a CA), or undefined when it can. */
export function rootProblem(pem: string): string | undefined {
  try {
    const cert = new X509Certificate(pem);
    return cert.ca ? undefined : `${describeCert(cert)} is not a CA certificate`;
  } catch (err) {
    return `not a parsable certificate (${(err as Error).message})`;
  }
}

export function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** What issuing under a CA certificate needs from it: its subject Name DER and subject key id. */
export function issuerInfo(certDer: Buffer): { name: Buffer; keyId?: Buffer } {
  const cert = der.read(certDer, 0);
  const tbs = der.children(certDer, cert)[0];
  if (!tbs) throw new Error('not a certificate');
  const fields = der.children(certDer, tbs);
  const off = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] version is optional
  const subject = fields[off + 4];
  if (!subject || subject.tag !== 0x30) throw new Error('certificate without a subject');
  const extsWrapper = fields.find((f) => f.tag === 0xa3);
  let keyId: Buffer | undefined;
  if (extsWrapper) {
    const [list] = der.children(certDer, extsWrapper);
    for (const e of list ? der.children(certDer, list) : []) {
      const parts = der.children(certDer, e);
      const id = parts[0];
      if (!id || !certDer.subarray(id.start, id.end).equals(der.oid(OID.subjectKeyId))) continue;
      const value = parts[parts.length - 1]!; // OCTET STRING wrapping an OCTET STRING
      const inner = der.read(certDer, value.contentStart);
      keyId = Buffer.from(certDer.subarray(inner.contentStart, inner.end));
    }
  }
  return { name: Buffer.from(certDer.subarray(subject.start, subject.end)), keyId };
}

export { OID };
