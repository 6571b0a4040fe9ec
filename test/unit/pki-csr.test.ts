// CSR reading (src/pki/csr.ts) against openssl-made requests: the key is taken only from a request
// whose self-signature verifies, and only of the kinds the CA certifies.
import { execFile } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCsr, CsrError, parseCsr } from '../../src/pki/index.js';

const run = promisify(execFile);
let dir: string;

async function csr(name: string, newkey: string[]): Promise<string> {
  const out = path.join(dir, `${name}.csr`);
  await run('openssl', ['req', '-new', ...newkey, '-nodes', '-keyout', path.join(dir, `${name}.key`), '-subj', '/CN=x', '-out', out]);
  return readFile(out, 'utf8');
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meshfed-csr-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('parseCsr', () => {
  it.each([
    ['RSA 2048, SHA-256', ['-newkey', 'rsa:2048']],
    ['EC P-256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']],
    ['EC P-384, SHA-384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-sha384']],
  ])('takes the key of %s', async (name, args) => {
    const text = await csr(name.replace(/\W+/g, '-'), args);
    const { spki } = parseCsr(text);
    const { stdout } = await run('openssl', ['req', '-in', path.join(dir, `${name.replace(/\W+/g, '-')}.csr`), '-noout', '-pubkey']);
    expect(createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' })).toBe(stdout);
  });

  it.each([
    ['RSA 1024', ['-newkey', 'rsa:1024'], /1024 bits/],
    ['Ed25519', ['-newkey', 'ed25519'], /key type ed25519/],
    ['EC P-521', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521'], /secp521r1/],
  ])('refuses %s, saying why', async (name, args, why) => {
    const text = await csr(name.replace(/\W+/g, '-'), args);
    expect(() => parseCsr(text)).toThrow(CsrError);
    expect(() => parseCsr(text)).toThrow(why);
  });

  it("buildCsr (the agent's --csr) writes requests openssl verifies and parseCsr reads back", async () => {
    for (const kp of [generateKeyPairSync('ec', { namedCurve: 'P-256' }), generateKeyPairSync('rsa', { modulusLength: 2048 })]) {
      const spki = kp.publicKey.export({ type: 'spki', format: 'der' });
      const text = buildCsr(kp.privateKey, spki);
      const file = path.join(dir, `built-${kp.publicKey.asymmetricKeyType}.csr`);
      await writeFile(file, text);
      const { stderr } = await run('openssl', ['req', '-in', file, '-verify', '-noout']);
      expect(stderr).toMatch(/verify OK/);
      expect(parseCsr(text).spki.equals(spki)).toBe(true);
    }
  });

  it('refuses what is not a CSR, or is truncated', () => {
    expect(() => parseCsr('')).toThrow(/not a PEM/);
    expect(() => parseCsr('-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----')).toThrow(/not valid DER/);
    expect(() => parseCsr('x'.repeat(20_000))).toThrow(/over 16384 bytes/);
  });
});
