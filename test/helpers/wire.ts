// Reading encoded protobuf in tests: a message's top-level fields, from src's forEachField.
import { forEachField } from '../../src/xds/wire.js';

/** One top-level field of an encoded message: its bytes [start, end), payload from dataStart. */
export interface FieldSpan {
  readonly field: number;
  readonly start: number;
  readonly dataStart: number;
  readonly end: number;
}

/** Splits a message into its top-level fields; throws on bytes that are not protobuf. */
export function scanFields(buf: Uint8Array): FieldSpan[] {
  const out: FieldSpan[] = [];
  forEachField(buf, (field, start, dataStart, end) => void out.push({ field, start, dataStart, end }));
  return out;
}
