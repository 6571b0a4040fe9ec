// One version of one resource: encoded once, shared by every stream that is sent it.
import { createHash } from 'node:crypto';
import { messageType, TypeUrl } from '../envoy/protos.js';
import { debugJson } from '../envoy/redact.js';
import { isIstioConfigType } from '../istio/config-types.js';
import type { IstioConfigBody } from '../istio/messages.js';
import { encodeMcpEntry } from './mcp.js';
import { encodeAny, encodeDeltaResource } from './wire.js';

export interface Entry {
  readonly typeUrl: string;
  readonly name: string;
  /** Content hash of the encoded resource: the same bytes always get the same version. */
  readonly version: string;
  /** The resource packed as a google.protobuf.Any, ready to splice into a response. */
  readonly any: Buffer;
  /** Two 32-bit lanes of H(name, version): summed per stream into its SotW version_info. */
  readonly mixHi: number;
  readonly mixLo: number;
  /** For a Cluster: the EDS resource Envoy needs again after this cluster changes. */
  readonly edsName: string | undefined;
  /** The resource wrapped in an envoy.service.discovery.v3.Resource, for delta responses. */
  deltaBytes(): Buffer;
  /** The resource as proto3 JSON for debug pages: Any expanded, bytes base64, secrets "[redacted]". */
  toJSON(): Record<string, unknown>;
}

/** How a resource's bytes show on debug pages. */
export type DebugRenderer = (typeUrl: string, value: Uint8Array) => Record<string, unknown>;

const envoyJson: DebugRenderer = (typeUrl, value) => ({ '@type': typeUrl, ...debugJson(messageType(typeUrl), value) });

/** An encoded resource of any kind: Envoy's messages here, Istio config in mcp.ts. */
export class EncodedEntry implements Entry {
  readonly any: Buffer;
  readonly mixHi: number;
  readonly mixLo: number;
  private delta: Buffer | undefined;
  constructor(
    readonly typeUrl: string,
    readonly name: string,
    readonly version: string,
    /** The type packed in the Any (Istio config is sent as its MCP envelope, whatever type_url was asked). */
    anyType: string,
    private readonly value: Uint8Array,
    readonly edsName: string | undefined,
    private readonly render: DebugRenderer = envoyJson,
  ) {
    this.any = encodeAny(anyType, value);
    const mix = createHash('sha256').update(name).update('\0').update(version).digest();
    this.mixHi = mix.readUInt32BE(0);
    this.mixLo = mix.readUInt32BE(4);
  }

  deltaBytes(): Buffer {
    return (this.delta ??= encodeDeltaResource(this.name, this.version, this.any));
  }

  toJSON(): Record<string, unknown> {
    return this.render(this.typeUrl, this.value);
  }
}

/**
 * Encodes a resource given as a plain object with snake_case field names (Istio config: see mcp.ts). When `previous` has the same
 * bytes it is returned as it is: same version, and no second hash or Any wrapping.
 */
export function encodeEntry(typeUrl: string, name: string, body: Readonly<Record<string, unknown>>, previous?: Entry): Entry {
  if (isIstioConfigType(typeUrl)) return encodeMcpEntry(typeUrl, name, body as unknown as IstioConfigBody, previous);
  const type = messageType(typeUrl);
  const value = type.encode(type.fromObject(body)).finish();
  const version = createHash('sha256').update(value).digest('hex').slice(0, 16);
  if (previous?.version === version && previous.name === name) return previous;
  return new EncodedEntry(typeUrl, name, version, typeUrl, value, typeUrl === TypeUrl.Cluster ? edsNameOf(name, body) : undefined);
}

function edsNameOf(name: string, body: Readonly<Record<string, unknown>>): string | undefined {
  if (body['type'] !== 'EDS') return undefined;
  const eds = body['eds_cluster_config'] as { service_name?: string } | undefined;
  return eds?.service_name || name;
}

/**
 * A SotW version_info: the sum of the entries' mixes, so it depends only on which
 * (name, version) pairs a client holds. It changes whenever any member changes, is the
 * same across restarts and replicas, and never repeats for different content (64 bits).
 */
export class VersionSum {
  hi = 0;
  lo = 0;
  add(e: Entry): void {
    this.hi = (this.hi + e.mixHi) >>> 0;
    this.lo = (this.lo + e.mixLo) >>> 0;
  }
  remove(e: Entry): void {
    this.hi = (this.hi - e.mixHi) >>> 0;
    this.lo = (this.lo - e.mixLo) >>> 0;
  }
  toString(): string {
    return this.hi.toString(16).padStart(8, '0') + this.lo.toString(16).padStart(8, '0');
  }
}
