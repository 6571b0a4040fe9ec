// Real gRPC backends for end-to-end tests: a one-method echo service, with identity
// serializers so no .proto is needed, whose reply names the backend that served the call.
import * as grpc from '@grpc/grpc-js';

export const ECHO_PATH = '/meshfed.test.Echo/Whoami';

const identity = (b: Buffer): Buffer => b;

export const ECHO_SERVICE: grpc.ServiceDefinition = {
  Whoami: {
    path: ECHO_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

export interface EchoBackend {
  /** `address:port`, the reply to every call. */
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** Calls this backend has served. */
  readonly served: () => number;
  stop(): Promise<void>;
}

/** Starts one echo server on `address:port` (port 0 picks a free one). */
export async function startEchoBackend(address: string, port = 0): Promise<EchoBackend> {
  const server = new grpc.Server();
  let served = 0;
  let name = '';
  server.addService(ECHO_SERVICE, {
    Whoami: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      served++;
      cb(null, Buffer.from(name));
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${address}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  name = `${address}:${bound}`;
  return {
    name,
    address,
    port: bound,
    served: () => served,
    stop: () =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

/**
 * Starts one backend per address, all on one port, like the pods of a service: the first binds
 * port 0, the others that port. Retries with a fresh port if another process holds it on one of
 * the other addresses.
 */
export async function startEchoBackends(addresses: readonly string[], attempts = 5): Promise<EchoBackend[]> {
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    const started: EchoBackend[] = [];
    try {
      const first = await startEchoBackend(addresses[0]!, 0);
      started.push(first);
      for (const a of addresses.slice(1)) started.push(await startEchoBackend(a, first.port));
      return started;
    } catch (err) {
      lastErr = err;
      await Promise.all(started.map((b) => b.stop()));
    }
  }
  throw lastErr;
}
