// The gRPC xDS server: ADS and the per-type discovery services, SotW and delta, all on one store.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type protobuf from 'protobufjs';
import { DeltaStream } from './delta.js';
import type { XdsObserver } from './observer.js';
import { DeltaDiscoveryRequest, DiscoveryRequest, root, TypeUrl, type XdsTypeUrl } from './protos.js';
import { SendBudget } from './send-budget.js';
import { SotwStream } from './sotw.js';
import type { XdsStore } from './store.js';
import type { Malformed, XdsStream } from './stream.js';

/** Discovery services and the type each per-type service serves (undefined: aggregated). */
const SERVICES: ReadonlyArray<[string, XdsTypeUrl | undefined]> = [
  ['envoy.service.discovery.v3.AggregatedDiscoveryService', undefined],
  ['envoy.service.cluster.v3.ClusterDiscoveryService', TypeUrl.Cluster],
  ['envoy.service.endpoint.v3.EndpointDiscoveryService', TypeUrl.Endpoint],
  ['envoy.service.listener.v3.ListenerDiscoveryService', TypeUrl.Listener],
  ['envoy.service.route.v3.RouteDiscoveryService', TypeUrl.Route],
  ['envoy.service.secret.v3.SecretDiscoveryService', TypeUrl.Secret],
];

const DECODE: protobuf.IConversionOptions = { longs: String, enums: String, defaults: true, arrays: true, objects: true };

export interface XdsServerOptions {
  readonly store: XdsStore;
  readonly observer: XdsObserver;
  readonly log: Logger;
  /** Bytes written to streams but not yet flushed, across all streams. */
  readonly sendBudgetBytes?: number;
}

export class XdsServer {
  readonly streams = new Set<XdsStream>();
  private readonly budget: SendBudget;

  constructor(private readonly opts: XdsServerOptions) {
    this.budget = new SendBudget(opts.sendBudgetBytes ?? 64 * 1024 * 1024);
  }

  /** Adds every discovery service to a grpc-js server. */
  register(server: grpc.Server): void {
    for (const [serviceName, fixedType] of SERVICES) {
      const service = root.lookupService(serviceName);
      const definition: Record<string, grpc.MethodDefinition<object, Buffer>> = {};
      const implementation: grpc.UntypedServiceImplementation = {};
      for (const method of service.methodsArray) {
        if (!method.requestStream || !method.responseStream) continue; // REST-style Fetch*: not served
        const delta = method.resolvedRequestType === DeltaDiscoveryRequest;
        const requestType = delta ? DeltaDiscoveryRequest : DiscoveryRequest;
        definition[method.name] = {
          path: `/${serviceName}/${method.name}`,
          requestStream: true,
          responseStream: true,
          requestSerialize: (m: object) => Buffer.from(requestType.encode(requestType.fromObject(m)).finish()),
          requestDeserialize: (b: Buffer) => decodeRequest(requestType, b),
          // Responses are built as bytes from pre-encoded resources.
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        };
        implementation[method.name] = (call: grpc.ServerDuplexStream<unknown, Buffer>) => this.open(call, delta, fixedType);
      }
      server.addService(definition, implementation);
    }
  }

  private open(call: grpc.ServerDuplexStream<unknown, Buffer>, delta: boolean, fixedType: XdsTypeUrl | undefined): void {
    const deps = {
      store: this.opts.store,
      budget: this.budget,
      observer: this.opts.observer,
      log: this.opts.log,
      onClose: (s: XdsStream) => this.streams.delete(s),
    };
    const stream = delta ? new DeltaStream('delta', call, deps, fixedType) : new SotwStream('sotw', call, deps, fixedType);
    this.streams.add(stream);
    stream.start();
  }

  /** Asks every proxy to reconnect elsewhere (UNAVAILABLE is what Envoy and gRPC retry on). */
  closeAll(reason: string): void {
    for (const s of [...this.streams]) s.fail(grpc.status.UNAVAILABLE, reason);
  }
}

/** Never throws: grpc-js would answer a throwing deserializer with INTERNAL and no detail. */
function decodeRequest(type: protobuf.Type, b: Buffer): object | Malformed {
  try {
    return type.toObject(type.decode(b), DECODE);
  } catch (err) {
    return { malformed: `cannot decode ${type.name}: ${(err as Error).message}` };
  }
}
