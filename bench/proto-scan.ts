// Just enough protobuf reading for simulated clients: walk top-level fields without decoding
// resources, so client processes spend their CPU receiving, not parsing.

export interface Field {
  readonly num: number;
  /** For length-delimited fields: [start, end) of the payload in the buffer. */
  readonly start: number;
  readonly end: number;
}

export function* fields(buf: Uint8Array, from = 0, to = buf.length): Generator<Field> {
  let pos = from;
  while (pos < to) {
    let tag = 0;
    let shift = 0;
    let b: number;
    do {
      b = buf[pos++]!;
      tag += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    const wire = tag & 7;
    const num = Math.floor(tag / 8);
    if (wire === 2) {
      let len = 0;
      shift = 0;
      do {
        b = buf[pos++]!;
        len += (b & 0x7f) * 2 ** shift;
        shift += 7;
      } while (b & 0x80);
      yield { num, start: pos, end: pos + len };
      pos += len;
    } else if (wire === 0) {
      while (buf[pos++]! & 0x80);
      yield { num, start: pos, end: pos };
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

const decoder = new TextDecoder();

export function str(buf: Uint8Array, f: Field): string {
  return decoder.decode(buf.subarray(f.start, f.end));
}

/** The string field `num` inside the message at [start, end). */
export function innerString(buf: Uint8Array, start: number, end: number, num: number): string {
  for (const f of fields(buf, start, end)) if (f.num === num) return str(buf, f);
  return '';
}
