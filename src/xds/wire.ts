// Hand-built envelopes around pre-encoded resources. A DiscoveryResponse is a few scalar
// fields plus the resources' bytes, so splicing cached Any bytes avoids re-encoding a
// resource for every stream. Field numbers are from envoy/service/discovery/v3/discovery.proto.

const WIRE_LEN = 2;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  buf[pos++] = n;
  return pos;
}

/** Builds one message from length-delimited fields; sizes first, then a single allocation. */
export class MessageWriter {
  private readonly parts: Array<{ tag: number; data: Uint8Array }> = [];
  private size = 0;

  bytes(field: number, data: Uint8Array): this {
    const tag = (field << 3) | WIRE_LEN;
    this.parts.push({ tag, data });
    this.size += varintSize(tag) + varintSize(data.length) + data.length;
    return this;
  }

  string(field: number, s: string | undefined): this {
    return s ? this.bytes(field, Buffer.from(s, 'utf8')) : this;
  }

  /** Pre-encoded complete fields (tag + length + data), e.g. a cached run of resources. */
  raw(data: Uint8Array): this {
    this.parts.push({ tag: -1, data });
    this.size += data.length;
    return this;
  }

  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.size);
    let pos = 0;
    for (const { tag, data } of this.parts) {
      if (tag >= 0) {
        pos = writeVarint(out, pos, tag);
        pos = writeVarint(out, pos, data.length);
      }
      out.set(data, pos);
      pos += data.length;
    }
    return out;
  }
}

/** google.protobuf.Any { type_url = 1; value = 2 } */
export function encodeAny(typeUrl: string, value: Uint8Array): Buffer {
  return new MessageWriter().string(1, typeUrl).bytes(2, value).finish();
}

/** envoy.service.discovery.v3.Resource { version = 1; resource = 2; name = 3 } */
export function encodeDeltaResource(name: string, version: string, any: Uint8Array): Buffer {
  return new MessageWriter().string(1, version).bytes(2, any).string(3, name).finish();
}

/** `repeated <message> = field` for pre-encoded messages, as one run of bytes to splice. */
export function encodeRepeated(field: number, items: readonly Uint8Array[]): Buffer {
  const w = new MessageWriter();
  for (const item of items) w.bytes(field, item);
  return w.finish();
}

export const DiscoveryResponseField = { versionInfo: 1, resources: 2, typeUrl: 4, nonce: 5, controlPlane: 6 } as const;
export const DeltaResponseField = {
  systemVersionInfo: 1,
  resources: 2,
  typeUrl: 4,
  nonce: 5,
  removedResources: 6,
  controlPlane: 7,
} as const;

/**
 * Calls `fn` with each top-level field's number and bytes [start, end), payload from dataStart;
 * throws on bytes that are not protobuf. Allocates nothing per field: a SotW ACK names every
 * resource again, thousands of fields per request.
 */
export function forEachField(buf: Uint8Array, fn: (field: number, start: number, dataStart: number, end: number) => void): void {
  let pos = 0;
  const varint = (): number => {
    let n = 0;
    let mul = 1;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const b = buf[pos++]!;
      n += (b & 0x7f) * mul;
      if (!(b & 0x80)) return n;
      mul *= 0x80;
      if (mul > 2 ** 63) throw new Error('varint too long');
    }
  };
  while (pos < buf.length) {
    const start = pos;
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) throw new Error('field number 0');
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === WIRE_LEN) {
      const len = varint();
      const dataStart = pos;
      pos += len;
      if (pos > buf.length) throw new Error('truncated field');
      fn(field, start, dataStart, pos);
      continue;
    } else throw new Error(`wire type ${wire} not supported`);
    if (pos > buf.length) throw new Error('truncated field');
    fn(field, start, pos, pos);
  }
}
