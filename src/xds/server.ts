// The gRPC xDS server: ADS and the per-type discovery services, SotW and delta, all on one store.
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type protobuf from 'protobufjs';
import { DeltaStream, type DeltaRequest } from './delta.js';
import { type AuthOutcome, PlaintextAuthenticator, type StreamAuthenticator, type StreamPolicy } from './auth.js';
import { type Connection, Connections, LIMIT_FLAG, type OverLimit, overLimit, XDS_LIMITS, type XdsLimits } from './limits.js';
import { clip } from '../log.js';
import type { XdsObserver } from './observer.js';
import { DeltaDiscoveryRequest, DiscoveryRequest, root, TypeUrl, type XdsTypeUrl } from '../envoy/protos.js';
import { SendBudget } from './send-budget.js';
import { SotwStream, type SotwRequest } from './sotw.js';
import type { XdsStore } from './store.js';
import type { Malformed, XdsStream } from './stream.js';
import { forEachField } from './wire.js';

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
  /** Who a stream is served as and what it may read (the app's: src/auth/policy.ts). */
  readonly policy: StreamPolicy;
  /** Bytes written to streams but not yet flushed, across all streams; each connection may hold an eighth. */
  readonly sendBudgetBytes?: number;
  readonly limits?: Partial<XdsLimits>;
}

export class XdsServer {
  readonly streams = new Set<XdsStream>();
  private readonly limits: XdsLimits;
  private readonly budget: SendBudget;
  private readonly connections: Connections;
  private readonly unreadSweep: NodeJS.Timeout;
  private readonly parkMs: number;

  constructor(private readonly opts: XdsServerOptions) {
    const total = opts.sendBudgetBytes ?? 64 * 1024 * 1024;
    this.budget = new SendBudget(total);
    this.limits = { ...XDS_LIMITS, ...opts.limits };
    this.connections = new Connections(this.limits, Math.ceil(total / 8));
    // A response unread this long weighs only on its connection's share, no longer on the global budget.
    const timeout = this.limits.idleWriteTimeoutMs;
    this.parkMs = timeout > 0 ? Math.min(5000, timeout / 10) : 5000;
    this.unreadSweep = setInterval(() => this.sweepUnread(), Math.max(10, this.parkMs / 2)).unref();
  }

  /**
   * Adds every discovery service to a grpc-js server; `auth` says who a stream on that server's
   * port is (default: everyone is anonymous, so no secrets).
   */
  register(server: grpc.Server, auth: StreamAuthenticator = new PlaintextAuthenticator(undefined)): void {
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
          requestDeserialize: (b: Buffer) => decodeRequest(requestType, b, this.limits),
          // Responses are built as bytes from pre-encoded resources.
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        };
        implementation[method.name] = (call: grpc.ServerDuplexStream<unknown, Buffer>) => this.admit(call, auth, delta, fixedType);
      }
      server.addService(definition, implementation);
    }
  }

  /**
   * Counts the stream on its connection (until its call is over, which for a peer that does not
   * read may be long after meshfed closed it), before anything costs more than a map lookup.
   */
  private admit(
    call: grpc.ServerDuplexStream<unknown, Buffer>,
    auth: StreamAuthenticator,
    delta: boolean,
    fixedType: XdsTypeUrl | undefined,
  ): void {
    const peer = call.getPeer();
    const conn = this.connections.admit(peer);
    if (typeof conn === 'string') {
      this.opts.observer.limited(conn);
      const max = conn === 'streams-per-connection' ? this.limits.maxStreamsPerConnection : this.limits.maxConnectionsPerAddress;
      const what = conn === 'streams-per-connection' ? 'xDS streams on one connection' : 'connections with xDS streams from one address';
      call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: `too many ${what}: the limit is ${max} (${LIMIT_FLAG[conn]})` });
      return;
    }
    call.once('cancelled', () => this.connections.release(peer, conn));
    this.authenticate(call, auth, delta, fixedType, conn);
  }

  /** Requests wait in the call's buffer until the credentials are checked. */
  private authenticate(
    call: grpc.ServerDuplexStream<unknown, Buffer>,
    auth: StreamAuthenticator,
    delta: boolean,
    fixedType: XdsTypeUrl | undefined,
    conn: Connection,
  ): void {
    let cancelled = false;
    call.once('cancelled', () => (cancelled = true));
    auth.authenticate(call).then(
      (outcome) => {
        if (cancelled) return;
        if (outcome.kind !== 'rejected') return this.open(call, delta, fixedType, outcome, conn);
        this.opts.observer.denied('UNAUTHENTICATED', 'bad-credentials');
        this.opts.log.warn({ peer: call.getPeer(), reason: clip(outcome.reason) }, 'refusing an xDS stream: bad credentials');
        call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: clip(outcome.reason) });
      },
      (err: Error) => {
        this.opts.log.error({ err }, 'authenticating an xDS stream failed');
        if (!cancelled)
          call.emit('error', { code: grpc.status.INTERNAL, details: `meshfed could not check the credentials: ${clip(err.message)}` });
      },
    );
  }

  private open(
    call: grpc.ServerDuplexStream<unknown, Buffer>,
    delta: boolean,
    fixedType: XdsTypeUrl | undefined,
    auth: AuthOutcome,
    conn: Connection,
  ): void {
    const deps = {
      store: this.opts.store,
      budget: this.budget,
      connectionBudget: conn.budget,
      limits: this.limits,
      observer: this.opts.observer,
      log: this.opts.log,
      policy: this.opts.policy,
      onClose: (s: XdsStream) => this.streams.delete(s),
    };
    const stream = delta ? new DeltaStream('delta', call, deps, fixedType, auth) : new SotwStream('sotw', call, deps, fixedType, auth);
    this.streams.add(stream);
    stream.start();
  }

  /**
   * Streams whose peer stopped reading (a stopped process, a window held at zero): after a few
   * seconds their response leaves the global budget, so any number of stuck connections cannot
   * starve the others (each still holds its connection's share); after the idle-write timeout
   * they are closed with UNAVAILABLE, which makes a proxy that wakes up reconnect.
   */
  private sweepUnread(): void {
    const timeout = this.limits.idleWriteTimeoutMs;
    const now = Date.now();
    for (const s of this.streams) {
      const since = s.unreadSince();
      if (since === undefined) continue;
      if (timeout > 0 && now - since >= timeout) {
        this.opts.observer.limited('idle-write-timeout');
        s.fail(grpc.status.UNAVAILABLE, `peer did not read for ${timeout / 1000} s (${LIMIT_FLAG['idle-write-timeout']})`);
      } else if (now - since >= this.parkMs) s.park();
    }
  }

  /** Stops the sweep of unread streams (on shutdown). */
  close(): void {
    clearInterval(this.unreadSweep);
  }

  /** Asks every proxy to reconnect elsewhere (UNAVAILABLE is what Envoy and gRPC retry on). */
  closeAll(reason: string): void {
    if (this.streams.size) this.opts.log.info({ streams: this.streams.size, reason }, 'asking every proxy to reconnect');
    for (const s of [...this.streams]) s.fail(grpc.status.UNAVAILABLE, reason, true);
  }
}

/** Never throws: grpc-js would answer a throwing deserializer with INTERNAL and no detail. */
function decodeRequest(type: protobuf.Type, b: Buffer, limits: XdsLimits): object | Malformed | OverLimit {
  // grpc-js refuses larger messages before reading them, except where the admin API on the
  // same server needs more; xDS requests are held to the limit all the same.
  if (b.length > limits.maxRequestBytes) return overLimit('request-bytes', `a request of ${b.length} bytes`, limits.maxRequestBytes);
  try {
    const req = type === DiscoveryRequest ? decodeSotwRequest(b, limits) : (type.toObject(type.decode(b), DECODE) as DeltaRequest);
    if ('limit' in req) return req;
    // The node id shows in logs and debug pages for as long as the stream lives.
    const id = req.node?.id ?? '';
    if (tooLong(id, limits.maxNameBytes))
      return overLimit('name-bytes', `a node id of ${Buffer.byteLength(id)} bytes`, limits.maxNameBytes);
    if (type === DiscoveryRequest) return req;
    const delta = req as DeltaRequest;
    return (
      namesOverLimit(
        [...delta.resource_names_subscribe, ...delta.resource_names_unsubscribe, ...Object.keys(delta.initial_resource_versions)],
        limits,
      ) ?? delta
    );
  } catch (err) {
    return { malformed: `cannot decode ${type.name}: ${(err as Error).message}` };
  }
}

/** Over `max` UTF-8 bytes; measured only when it could be (a UTF-16 unit is at most 3 bytes). */
function tooLong(s: string, max: number): boolean {
  return s.length * 3 > max && Buffer.byteLength(s) > max;
}

function namesOverLimit(names: readonly string[], limits: XdsLimits): OverLimit | undefined {
  if (names.length > limits.maxNames) return overLimit('names', `a request naming ${names.length} resources`, limits.maxNames);
  const long = names.find((n) => tooLong(n, limits.maxNameBytes));
  if (long !== undefined) return overLimit('name-bytes', `a resource name of ${Buffer.byteLength(long)} bytes`, limits.maxNameBytes);
  return undefined;
}

const RESOURCE_NAMES = 3; // DiscoveryRequest.resource_names

/**
 * SotW clients repeat every name in every request (Envoy sends all EDS names with each ACK).
 * The names are left encoded and fingerprinted; the stream decodes them only when the
 * fingerprint differs from the last request's, which spares decoding and garbage per ACK.
 */
function decodeSotwRequest(b: Buffer, limits: XdsLimits): SotwRequest | OverLimit {
  const rest: Buffer[] = [];
  let count = 0;
  let first = 0;
  let last = 0;
  let contiguous = true;
  let longest = 0;
  forEachField(b, (field, start, dataStart, end) => {
    if (field !== RESOURCE_NAMES) return void rest.push(b.subarray(start, end));
    if (count === 0) first = start;
    else if (last !== start) contiguous = false;
    last = end;
    count++;
    longest = Math.max(longest, end - dataStart);
  });
  if (longest > limits.maxNameBytes) return overLimit('name-bytes', `a resource name of ${longest} bytes`, limits.maxNameBytes);
  if (count > limits.maxNames) return overLimit('names', `a request naming ${count} resources`, limits.maxNames);
  const req = DiscoveryRequest.toObject(DiscoveryRequest.decode(count ? Buffer.concat(rest) : b), DECODE) as SotwRequest;
  req.names_fingerprint = count ? fingerprint(b, first, last, contiguous) : '';
  req.decodeNames = () => {
    const names: string[] = [];
    forEachField(b, (field, _start, dataStart, end) => void (field === RESOURCE_NAMES && names.push(b.toString('utf8', dataStart, end))));
    return names;
  };
  return req;
}

/** One hash over the encoded names: they are almost always one contiguous run of bytes. */
function fingerprint(b: Buffer, first: number, last: number, contiguous: boolean): string {
  const hash = createHash('sha1');
  if (contiguous) hash.update(b.subarray(first, last));
  else forEachField(b, (field, start, _dataStart, end) => void (field === RESOURCE_NAMES && hash.update(b.subarray(start, end))));
  return hash.digest('base64');
}
