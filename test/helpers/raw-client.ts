// A raw xDS client for tests: speaks SotW or delta on any discovery service, decodes
// responses with Envoy's protos, and lets a test await the next response or its absence.
import * as grpc from '@grpc/grpc-js';
import {
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  DiscoveryRequest,
  DiscoveryResponse,
  TO_OBJECT,
  messageType,
  TYPE_PREFIX,
} from '../../src/envoy/protos.js';

export interface DecodedResource {
  name: string;
  version?: string;
  typeUrl: string;
  body: Record<string, unknown>;
}

export interface SotwResponse {
  version_info: string;
  type_url: string;
  nonce: string;
  resources: DecodedResource[];
}

export interface DeltaResponse {
  system_version_info: string;
  type_url: string;
  nonce: string;
  resources: DecodedResource[];
  removed_resources: string[];
}

type Kind = 'sotw' | 'delta';

export const SERVICE_METHODS = {
  ads: ['envoy.service.discovery.v3.AggregatedDiscoveryService', 'StreamAggregatedResources', 'DeltaAggregatedResources'],
  cds: ['envoy.service.cluster.v3.ClusterDiscoveryService', 'StreamClusters', 'DeltaClusters'],
  eds: ['envoy.service.endpoint.v3.EndpointDiscoveryService', 'StreamEndpoints', 'DeltaEndpoints'],
  lds: ['envoy.service.listener.v3.ListenerDiscoveryService', 'StreamListeners', 'DeltaListeners'],
  rds: ['envoy.service.route.v3.RouteDiscoveryService', 'StreamRoutes', 'DeltaRoutes'],
  sds: ['envoy.service.secret.v3.SecretDiscoveryService', 'StreamSecrets', 'DeltaSecrets'],
} as const;

export type ServiceName = keyof typeof SERVICE_METHODS;

function decodeAny(any: { type_url?: string; value?: Uint8Array }): { typeUrl: string; body: Record<string, unknown> } {
  const typeUrl = any.type_url ?? '';
  const t = messageType(typeUrl.startsWith(TYPE_PREFIX) ? typeUrl : TYPE_PREFIX + typeUrl);
  return { typeUrl, body: t.toObject(t.decode(any.value ?? new Uint8Array()), TO_OBJECT) };
}

export class RawXdsStream<Res extends SotwResponse | DeltaResponse> {
  readonly responses: Res[] = [];
  private waiters: Array<() => void> = [];
  private readonly call: grpc.ClientDuplexStream<object, Res>;
  status: grpc.StatusObject | undefined;
  private statusWaiters: Array<(s: grpc.StatusObject) => void> = [];
  private read = 0;

  constructor(client: grpc.Client, path: string, kind: Kind, metadata = new grpc.Metadata()) {
    const reqType = kind === 'sotw' ? DiscoveryRequest : DeltaDiscoveryRequest;
    const resType = kind === 'sotw' ? DiscoveryResponse : DeltaDiscoveryResponse;
    this.call = client.makeBidiStreamRequest(
      path,
      (m: object) => ('__raw' in m ? (m as { __raw: Buffer }).__raw : Buffer.from(reqType.encode(reqType.fromObject(m)).finish())),
      (b: Buffer) => decodeResponse(resType, kind, b) as Res,
      metadata,
    );
    this.call.on('data', (r: Res) => {
      this.responses.push(r);
      for (const w of this.waiters.splice(0)) w();
    });
    this.call.on('status', (s) => {
      this.status = s;
      for (const w of this.statusWaiters.splice(0)) w(s);
      for (const w of this.waiters.splice(0)) w();
    });
    this.call.on('error', () => {});
  }

  send(req: object): void {
    this.call.write(req);
  }

  /** The next response not yet returned by next(); fails after timeoutMs. */
  async next(timeoutMs = 3000): Promise<Res> {
    const deadline = Date.now() + timeoutMs;
    while (this.read >= this.responses.length) {
      if (this.status) throw new Error(`stream ended: ${this.status.code} ${this.status.details}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no response within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.responses[this.read++]!;
  }

  /** Asserts that no response arrives within windowMs. */
  async none(windowMs = 300): Promise<void> {
    await new Promise((r) => setTimeout(r, windowMs));
    if (this.read < this.responses.length) {
      const r = this.responses[this.read]!;
      throw new Error(
        `expected no response within ${windowMs} ms, got ${r.type_url} nonce ${r.nonce} with ${r.resources.length} resources`,
      );
    }
    // Silence from a stream the server ended is not the quiet that was asked for.
    if (this.status)
      throw new Error(`expected no response within ${windowMs} ms, but the stream ended: ${this.status.code} ${this.status.details}`);
  }

  /** Resolves with the stream's final status. */
  ended(timeoutMs = 3000): Promise<grpc.StatusObject> {
    if (this.status) return Promise.resolve(this.status);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`stream did not end within ${timeoutMs} ms`)), timeoutMs);
      this.statusWaiters.push((s) => {
        clearTimeout(t);
        resolve(s);
      });
    });
  }

  /** Stops reading, like a proxy too busy to take responses (HTTP/2 flow control then pushes back). */
  pause(): void {
    this.call.pause();
  }

  resume(): void {
    this.call.resume();
  }

  close(): void {
    this.call.end();
    this.call.cancel();
  }

  /** Writes raw bytes as a request message (for malformed-input tests). */
  sendRaw(bytes: Buffer): void {
    (this.call as unknown as { write(b: unknown): void }).write({ __raw: bytes });
  }
}

function decodeResponse(type: typeof DiscoveryResponse, kind: Kind, b: Buffer): SotwResponse | DeltaResponse {
  const m = type.toObject(type.decode(b), { ...TO_OBJECT, json: false, defaults: true, arrays: true }) as Record<string, unknown>;
  if (kind === 'sotw') {
    const resources = (m['resources'] as Array<{ type_url: string; value: Uint8Array }>).map((a) => {
      const { typeUrl, body } = decodeAny(a);
      const name = (typeUrl.endsWith('ClusterLoadAssignment') ? body['cluster_name'] : body['name']) as string;
      return { name, typeUrl, body };
    });
    return { version_info: m['version_info'] as string, type_url: m['type_url'] as string, nonce: m['nonce'] as string, resources };
  }
  const resources = (m['resources'] as Array<{ name: string; version: string; resource: { type_url: string; value: Uint8Array } }>).map(
    (r) => {
      const { typeUrl, body } = decodeAny(r.resource);
      return { name: r.name, version: r.version, typeUrl, body };
    },
  );
  return {
    system_version_info: m['system_version_info'] as string,
    type_url: m['type_url'] as string,
    nonce: m['nonce'] as string,
    resources,
    removed_resources: m['removed_resources'] as string[],
  };
}

export class RawXdsClient {
  readonly client: grpc.Client;
  /** options: grpc-js channel options, e.g. a receive limit above the default 4 MiB for large SotW responses. */
  constructor(address: string, options?: grpc.ChannelOptions) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), options);
  }

  sotw(service: ServiceName = 'ads', metadata?: grpc.Metadata): RawXdsStream<SotwResponse> {
    const [svc, method] = SERVICE_METHODS[service];
    return new RawXdsStream<SotwResponse>(this.client, `/${svc}/${method}`, 'sotw', metadata);
  }

  delta(service: ServiceName = 'ads', metadata?: grpc.Metadata): RawXdsStream<DeltaResponse> {
    const [svc, , method] = SERVICE_METHODS[service];
    return new RawXdsStream<DeltaResponse>(this.client, `/${svc}/${method}`, 'delta', metadata);
  }

  close(): void {
    this.client.close();
  }
}
