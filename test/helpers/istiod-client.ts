// A config-source client that behaves as istiod's (pkg/adsc, per ../shared/reference/istio-interfaces.md
// §A3-A7): one SotW ADS stream; node `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local` with metadata
// GENERATOR=api, ISTIO_REVISION, ISTIO_VERSION; one request per type, back to back, with empty names
// and version but a made-up (timestamp) nonce; every response ACKed with the node, never NACKed.
// Like handleMCP it keeps a store per type: each response replaces the type's whole set, and a
// config is updated only when its metadata version changes.
import { fromBinary, toJson, type DescMessage } from '@bufbuild/protobuf';
import { anyUnpack, timestampMs } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { vi } from 'vitest';
import { DiscoveryRequest, DiscoveryResponse } from '../../src/envoy/protos.js';
import { MCP_RESOURCE_TYPE_URL } from '../../src/istio/config-types.js';
import { DestinationRuleSchema, ISTIO_REGISTRY, ResourceSchema, ServiceEntrySchema } from '../../src/istio/messages.js';

/** One config as istiod stores it. */
export interface StoredConfig {
  readonly namespace: string;
  readonly name: string;
  readonly version: string;
  readonly createTimeMs: number;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly bodyType: string;
  /** The body as proto3 JSON (Istio's YAML field names). */
  readonly spec: Record<string, unknown>;
}

export interface Received {
  readonly typeUrl: string;
  readonly versionInfo: string;
  readonly nonce: string;
  readonly names: string[];
}

const SCHEMAS: Record<string, DescMessage> = {
  'istio.networking.v1alpha3.ServiceEntry': ServiceEntrySchema,
  'istio.networking.v1alpha3.DestinationRule': DestinationRuleSchema,
};

export class IstiodClient {
  readonly node = {
    id: 'sidecar~10.0.0.2~istiod-5d9c8b7f6-abcde.istio-system~istio-system.svc.cluster.local',
    metadata: {
      fields: {
        GENERATOR: { stringValue: 'api' },
        ISTIO_REVISION: { stringValue: 'default' },
        ISTIO_VERSION: { stringValue: '65536.65536.65536' },
      },
    },
  };
  /** Per type: the configs istiod would hold, by `namespace/name`. */
  readonly stores = new Map<string, Map<string, StoredConfig>>();
  /** Every response, in order. */
  readonly received: Received[] = [];
  /** Every request sent, encoded, as they left (for byte-level assertions). */
  readonly sentBytes: Buffer[] = [];
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<object, Buffer>;
  status: grpc.StatusObject | undefined;

  constructor(address: string, credentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}) {
    this.client = new grpc.Client(address, credentials, options);
    this.call = this.client.makeBidiStreamRequest(
      '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
      (m: object) => {
        const b = Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromObject(m)).finish());
        this.sentBytes.push(b);
        return b;
      },
      (b: Buffer) => b,
    );
    this.call.on('data', (b: Buffer) => this.onResponse(b));
    this.call.on('status', (s) => (this.status = s));
    this.call.on('error', () => {});
  }

  /** The initial requests: node on the first only, a timestamp as nonce on each (adsc's Send). */
  subscribe(types: readonly string[]): void {
    types.forEach((type_url, i) => {
      this.call.write({ type_url, response_nonce: new Date().toISOString(), ...(i === 0 ? { node: this.node } : {}) });
    });
  }

  private onResponse(b: Buffer): void {
    const res = DiscoveryResponse.decode(b) as unknown as {
      version_info: string;
      type_url: string;
      nonce: string;
      resources: Array<{ type_url: string; value: Uint8Array }>;
    };
    const store = new Map<string, StoredConfig>();
    const old = this.stores.get(res.type_url) ?? new Map<string, StoredConfig>();
    for (const any of res.resources) {
      if (any.type_url !== MCP_RESOURCE_TYPE_URL) throw new Error(`resource of type ${any.type_url}`);
      const r = fromBinary(ResourceSchema, any.value);
      const key = r.metadata?.name ?? '';
      const [namespace, name, ...rest] = key.split('/');
      if (!namespace || !name || rest.length) continue; // adsc skips it
      const bodyType = r.body!.typeUrl.slice(r.body!.typeUrl.lastIndexOf('/') + 1);
      const schema = SCHEMAS[bodyType];
      const msg = schema && anyUnpack(r.body!, schema);
      if (!msg) throw new Error(`cannot decode body ${bodyType}`);
      const next: StoredConfig = {
        namespace,
        name,
        version: r.metadata!.version,
        createTimeMs: r.metadata!.createTime ? Number(timestampMs(r.metadata!.createTime)) : 0,
        labels: { ...r.metadata!.labels },
        annotations: { ...r.metadata!.annotations },
        bodyType,
        spec: toJson(schema, msg, { registry: ISTIO_REGISTRY }) as Record<string, unknown>,
      };
      // The version gate: same version keeps the old config, whatever the content.
      const prev = old.get(key);
      store.set(key, prev && prev.version === next.version && next.version !== '' ? prev : next);
    }
    this.stores.set(res.type_url, store);
    this.received.push({ typeUrl: res.type_url, versionInfo: res.version_info, nonce: res.nonce, names: [...store.keys()] });
    this.call.write({ type_url: res.type_url, response_nonce: res.nonce, version_info: res.version_info, node: this.node });
  }

  /** Receives until `done()` holds; fails after timeoutMs saying what was received, or at once if the stream ends. */
  async receive(what: string, done: () => boolean, timeoutMs = 5000): Promise<void> {
    const ok = await vi.waitFor(
      () => {
        if (done()) return true;
        if (this.status) return false; // the stream ended: nothing more will come
        throw new Error(
          `no ${what} within ${timeoutMs} ms; received ${JSON.stringify(this.received.map((r) => [r.typeUrl, r.names.length]))}`,
        );
      },
      { timeout: timeoutMs, interval: 10 },
    );
    if (!ok) throw new Error(`stream ended while waiting for ${what}: ${this.status!.code} ${this.status!.details}`);
  }

  /** Whether every type got at least one response: istiod's HasSynced. */
  synced(types: readonly string[]): boolean {
    return types.every((t) => this.stores.has(t));
  }

  configs(typeUrl: string): StoredConfig[] {
    return [...(this.stores.get(typeUrl)?.values() ?? [])];
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}
