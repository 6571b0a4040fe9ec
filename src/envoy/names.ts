// Names on the wire that both ends know: the server's generators write them, `meshfed agent`
// writes them into bootstraps or asks for them. Neutral ground, so the agent never imports a generator.

/** SDS secret with the certificate chain and key of the stream's authenticated identity. */
export const DEFAULT_SECRET = 'default';
/** SDS validation context with one trust bundle per trust domain (Envoy's SPIFFE validator). */
export const ROOTCA_SECRET = 'ROOTCA';
/** SDS validation context with every trusted root as one PEM blob (Istio's ROOTCA shape). */
export const ROOTCA_PEM_SECRET = 'ROOTCA_PEM';

/** How a proxyless gRPC server names the Listener it asks for (gRFC A36). */
export const SERVER_LISTENER_PREFIX = 'grpc/server?xds.resource.listening_address=';
/** What `meshfed agent` writes as server_listener_resource_name_template. */
export const SERVER_LISTENER_TEMPLATE = `${SERVER_LISTENER_PREFIX}%s`;

/** Roots as one PEM blob: each once, sorted, so equal sets give equal bytes. */
export function pemBlob(roots: readonly string[]): string {
  return [...new Set(roots.map((r) => r.trim() + '\n'))].sort().join('');
}
