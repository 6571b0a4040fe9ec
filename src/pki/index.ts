// meshfed's PKI: a CA per trust domain, workload certificates with SPIFFE ids, and the federated trust bundle.
export { spiffeId, parseSpiffeId, type Identity } from './identity.js';
export type { CaMaterial, KeyType } from './material.js';
export {
  CertificateAuthority,
  DEFAULT_WORKLOAD_TTL_MS,
  MAX_WORKLOAD_TTL_MS,
  type CaOptions,
  type IssueOptions,
  type IssuedCert,
} from './ca.js';
export { buildCsr, parseCsr, CsrError, MAX_CSR_PEM_BYTES } from './csr.js';
export { WorkloadCertCache, type WorkloadCertCacheOptions } from './cache.js';
export { TrustBundles, spiffeValidatorConfig, type SpiffeBundle, type TrustBundlesOptions } from './bundles.js';
export { SPIFFE_BUNDLE_PATH, serveSpiffeBundle } from './bundle-endpoint.js';
export { memoryCaStore, fileCaStore, CACERTS_KEYS, type CaStore } from './store.js';
export { kubeCaStore, DEFAULT_CA_SECRET, PLUGIN_CA_SECRET } from './kube-store.js';
