// A SotW ADS client subscribed by name to ClusterLoadAssignments, ACKing each response as Envoy does: what the bench
// scripts watch to see when meshfed serves an endpoint (the names are known up front; ones not served yet are simply
// absent until they are).
import { TypeUrl } from '../src/envoy/protos.js';
import { RawXdsClient, type SotwResponse } from '../test/helpers/raw-client.js';

/** Calls `onCla` per ClusterLoadAssignment received (name, JSON body); exits the process if the stream ends. */
export function edsClient(
  address: string,
  names: readonly string[],
  onCla: (name: string, body: string) => void,
  node: object = { id: 'bench-eds' },
): { close(): void } {
  // One SotW response carries every CLA: about 8 MiB at 50,000 endpoints, over grpc-js's 4 MiB default.
  const xds = new RawXdsClient(address, { 'grpc.max_receive_message_length': -1 });
  const stream = xds.sotw('ads');
  stream.send({ node, type_url: TypeUrl.Endpoint, resource_names: names });
  let open = true;
  void (async () => {
    while (open) {
      let r: SotwResponse;
      try {
        r = await stream.next(1000);
      } catch {
        if (!open) return;
        if (stream.status) {
          // An ended stream fails next() at once: retrying would spin without yielding to the event loop.
          console.error(`EDS stream ended: ${stream.status.code} ${stream.status.details}`);
          process.exit(1);
        }
        continue;
      }
      for (const res of r.resources) onCla(res.name, JSON.stringify(res.body));
      stream.send({ node, type_url: TypeUrl.Endpoint, resource_names: names, version_info: r.version_info, response_nonce: r.nonce });
    }
  })();
  return {
    close: () => {
      open = false;
      xds.close();
    },
  };
}

/** Endpoint addresses in a CLA's JSON body. */
export const countIps = (body: string): number => body.split('"address":"').length - 1;

/** Polls `probe` every 50 ms until it holds (true) or `timeoutMs` passes (false). */
export async function until(probe: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
