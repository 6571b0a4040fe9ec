// A TLS man-in-the-middle for tests that must see what crosses meshfed's TLS xDS port: it presents
// a serving certificate from the same mesh CA (so clients trust it), connects on to meshfed over
// TLS, and records the decrypted bytes each way (HTTP/2 frames, with gRPC messages uncompressed).
import { connect, createServer, type Server } from 'node:tls';
import type { CertificateAuthority } from '../../src/pki/index.js';
import { SERVER_NAME } from './mesh-tls.js';

export interface TlsTap {
  readonly port: number;
  /** Everything clients sent to meshfed, and meshfed sent back, across connections. */
  toMeshfed(): Buffer;
  fromMeshfed(): Buffer;
  close(): Promise<void>;
}

export async function startTlsTap(ca: CertificateAuthority, meshfedPort: number): Promise<TlsTap> {
  const serving = ca.issueServer([SERVER_NAME]);
  const up: Buffer[] = [];
  const down: Buffer[] = [];
  const server: Server = createServer({ cert: serving.certChainPem, key: serving.privateKeyPem, ALPNProtocols: ['h2'] }, (client) => {
    const upstream = connect({
      host: '127.0.0.1',
      port: meshfedPort,
      ca: ca.roots.join(''),
      servername: SERVER_NAME,
      ALPNProtocols: ['h2'],
    });
    client.on('data', (b: Buffer) => (up.push(b), upstream.write(b)));
    upstream.on('data', (b: Buffer) => (down.push(b), client.write(b)));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    toMeshfed: () => Buffer.concat(up),
    fromMeshfed: () => Buffer.concat(down),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
