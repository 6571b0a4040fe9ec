// Listening and closing for meshfed's HTTP(S) servers (admin, debug, metadata exporter, api-proxy).
import type http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Listens and resolves with the bound port (port 0 picks a free one); a failed bind rejects. */
export function listenOn(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Closes at once: open keep-alive and streaming connections (watches) are cut rather than awaited. */
export function closeNow(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
