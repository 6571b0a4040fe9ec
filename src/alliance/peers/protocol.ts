// The protocol of a peer's public-service port, derived from its name the way Deckhouse's
// `updatePortProtocols` does it, so both sides of a federation agree on what a port carries.

/** Deckhouse's keyword map; tried longest keyword first, as a substring of the name's first `-` part. */
const KEYWORDS: ReadonlyArray<readonly [string, string]> = (
  [
    ['https', 'TLS'],
    ['tls', 'TLS'],
    ['http', 'HTTP'],
    ['http2', 'HTTP2'],
    ['grpc', 'HTTP2'],
    ['grpc-web', 'HTTP2'],
  ] as const
)
  .slice()
  .sort((a, b) => b[0].length - a[0].length);

/** `TLS`, `HTTP`, `HTTP2` or `TCP` (the default), as Deckhouse writes it into `metadataCache.private`. */
export function portProtocol(name: string): string {
  const prefix = name.split('-')[0] ?? '';
  for (const [keyword, protocol] of KEYWORDS) if (prefix.includes(keyword)) return protocol;
  return 'TCP';
}
