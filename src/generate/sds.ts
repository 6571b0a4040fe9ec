// SDS: the workload certificate of the stream's authenticated identity, and the trust bundle.
//
// Secret names:
//   default                        certificate chain + key of the authenticated identity
//   spiffe://<td>/ns/<ns>/sa/<sa>  the same, named by the identity; any other identity's id is refused
//   ROOTCA                         validation context with Envoy's SPIFFE validator: one trust bundle
//                                  per trust domain, so a remote root vouches only for its own domain
//   ROOTCA_PEM                     every trusted root as one PEM blob (trusted_ca), for clients without
//                                  that validator (Istio's ROOTCA shape)
// The two bundles are public: streams without an identity get them too, and nothing else.
// Certificates are not a function of the mesh: the generator reads what the PKI has already issued
// (it never issues), and the PKI tells the store (XdsStore.refresh) when a certificate is issued or
// renewed, or the bundle changes. While an identity's first certificate is being issued its view has
// no secrets at all, and is not ready (a delta stream is not told they do not exist): the certificate
// and the bundle then arrive together, in one response.
import { compare, type MeshChanges } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { DEFAULT_SECRET, pemBlob, ROOTCA_PEM_SECRET, ROOTCA_SECRET } from '../envoy/names.js';
import { TypeUrl } from '../envoy/protos.js';
import { type GeneratedResource, type Generator, VIEW_RESOURCES } from './generator.js';

const SPIFFE_VALIDATOR = 'envoy.tls.cert_validator.spiffe';
const SPIFFE_VALIDATOR_CONFIG = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig';

/** The PKI is issuing the identity's first certificate. */
export const PENDING = 'pending';

/** What SDS needs from the PKI. */
export interface WorkloadSecrets {
  /**
   * The identity's current certificate chain (leaf first, root last) and PKCS#8 key, as already issued;
   * PENDING while its first one is issued; undefined when the PKI issues none for it.
   */
  certificate(spiffeId: string): { readonly certChainPem: string; readonly privateKeyPem: string } | typeof PENDING | undefined;
  /** Trust domain → the roots that vouch for it. */
  bundles(): ReadonlyMap<string, readonly string[]>;
}

/** The trust bundle: public, served to any stream, authenticated or not. */
export function isPublicSecret(name: string): boolean {
  return name === ROOTCA_SECRET || name === ROOTCA_PEM_SECRET;
}

/** True when a requested secret name is another identity's: the stream must be refused. */
export function isForeignSecret(name: string, identity: string): boolean {
  return name.startsWith('spiffe://') && name !== identity;
}

export function sdsGenerator(secrets: WorkloadSecrets | undefined): Generator {
  return {
    typeUrl: TypeUrl.Secret,
    // Key material is keyed by the authenticated identity only, never by node metadata.
    viewKey: (view: ProxyView) => view.identity ?? '',
    affected: (_changes: MeshChanges) => new Set<string>(),
    generate(_mesh, view, unit): GeneratedResource[] {
      const id = view.identity;
      if (!secrets || unit !== VIEW_RESOURCES) return [];
      const out: GeneratedResource[] = [];
      // Without an identity (anonymous streams' view) only the public trust bundle.
      const cert = id ? secrets.certificate(id) : undefined;
      if (cert === PENDING) return [];
      if (id && cert) {
        const tls_certificate = {
          certificate_chain: { inline_bytes: Buffer.from(cert.certChainPem) },
          private_key: { inline_bytes: Buffer.from(cert.privateKeyPem) },
        };
        out.push({ name: DEFAULT_SECRET, body: { name: DEFAULT_SECRET, tls_certificate } });
        out.push({ name: id, body: { name: id, tls_certificate } });
      }
      const bundles = [...secrets.bundles()].filter(([, roots]) => roots.length > 0).sort(([a], [b]) => compare(a, b));
      if (bundles.length === 0) return out;
      out.push({
        name: ROOTCA_SECRET,
        body: {
          name: ROOTCA_SECRET,
          validation_context: {
            custom_validator_config: {
              name: SPIFFE_VALIDATOR,
              typed_config: {
                '@type': SPIFFE_VALIDATOR_CONFIG,
                trust_domains: bundles.map(([td, roots]) => ({ name: td, trust_bundle: { inline_bytes: Buffer.from(pemBlob(roots)) } })),
              },
            },
          },
        },
      });
      const all = pemBlob(bundles.flatMap(([, roots]) => roots));
      out.push({
        name: ROOTCA_PEM_SECRET,
        body: { name: ROOTCA_PEM_SECRET, validation_context: { trusted_ca: { inline_bytes: Buffer.from(all) } } },
      });
      return out;
    },
    ready: (view) => !secrets || !view.identity || secrets.certificate(view.identity) !== PENDING,
  };
}
