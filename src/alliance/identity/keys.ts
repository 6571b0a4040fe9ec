// The cluster's Ed25519 authn key pair, in the PEM form Deckhouse writes: PKIX and PKCS#8 bodies under the
// non-standard labels `ED25519 PUBLIC KEY` / `ED25519 PRIVATE KEY` (deckhouse.md §3). Standard tools (and node,
// and jose) only read `PUBLIC KEY` / `PRIVATE KEY`, so both labels are read and Deckhouse's are written.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

export const DECKHOUSE_PUBLIC_LABEL = 'ED25519 PUBLIC KEY';
export const DECKHOUSE_PRIVATE_LABEL = 'ED25519 PRIVATE KEY';

/** The stored form: what a Secret or a directory holds. */
export interface AuthnKeyPem {
  /** `pub.pem` */
  readonly pub: string;
  /** `priv.pem` */
  readonly priv: string;
}

/** The loaded pair. `pubPem` is the Deckhouse-labelled PEM published in public.json. */
export interface AuthnKeyPair {
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
  readonly pubPem: string;
}

const relabel = (pem: string, from: string, to: string): string =>
  pem.replace(`-----BEGIN ${from}-----`, `-----BEGIN ${to}-----`).replace(`-----END ${from}-----`, `-----END ${to}-----`);

/** A Deckhouse-labelled PEM with the standard label, for node/jose; a standard one unchanged. */
export function standardPem(pem: string): string {
  return relabel(relabel(pem, DECKHOUSE_PUBLIC_LABEL, 'PUBLIC KEY'), DECKHOUSE_PRIVATE_LABEL, 'PRIVATE KEY');
}

/** A fresh pair, as Deckhouse's hook stores it. */
export function generateAuthnKeyPem(): AuthnKeyPem {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    pub: deckhousePublicPem(publicKey),
    priv: relabel(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 'PRIVATE KEY', DECKHOUSE_PRIVATE_LABEL),
  };
}

/** The Deckhouse-labelled public PEM of a private key (a pub.pem that went missing is derived, not regenerated). */
export function publicPemOf(privPem: string): string {
  let key: KeyObject;
  try {
    key = createPublicKey(standardPem(privPem));
  } catch {
    throw new Error('not a PEM private key (PKCS#8)');
  }
  return deckhousePublicPem(key);
}

function deckhousePublicPem(key: KeyObject): string {
  return relabel(key.export({ type: 'spki', format: 'pem' }) as string, 'PUBLIC KEY', DECKHOUSE_PUBLIC_LABEL);
}

/** An Ed25519 public key from a PEM with either label; throws a one-line reason. */
export function parseEd25519PublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(standardPem(pem));
  } catch {
    throw new Error('not a PEM public key (PKIX)');
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`);
  return key;
}

/**
 * Loads a stored pair; `where` names the files or Secret in the error. The private key must be Ed25519 and the
 * public key must be its own (a pub.pem from another pair would make every token this cluster mints fail).
 */
export function loadAuthnKeyPair(pem: AuthnKeyPem, where: { pub: string; priv: string }): AuthnKeyPair {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(standardPem(pem.priv));
  } catch {
    throw new Error(`${where.priv}: not a PEM private key (PKCS#8)`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw new Error(`${where.priv}: a ${privateKey.asymmetricKeyType ?? 'unknown'} key, not Ed25519`);
  let publicKey: KeyObject;
  try {
    publicKey = parseEd25519PublicKey(pem.pub);
  } catch (err) {
    throw new Error(`${where.pub}: ${(err as Error).message}`);
  }
  const derived = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  if (!derived.equals(publicKey.export({ type: 'spki', format: 'der' })))
    throw new Error(`${where.pub}: not the public key of ${where.priv}`);
  // Published under Deckhouse's label whatever label the file used, so a Deckhouse peer reads it the same way.
  return { publicKey, privateKey, pubPem: deckhousePublicPem(publicKey) };
}
