// Resources as debug pages show them, the way Envoy's config_dump does: bytes as base64, and
// every field Envoy's protos mark `(udpa.annotations.sensitive)` (private keys, passwords, session
// ticket keys, generic secrets, ...) replaced by "[redacted]", down to every string and bytes
// inside it.
import protobuf from 'protobufjs';
import { root, TO_OBJECT } from './protos.js';

export const REDACTED = '[redacted]';

const SENSITIVE = '(udpa.annotations.sensitive)';
const DEBUG_OBJECT: protobuf.IConversionOptions = { ...TO_OBJECT, bytes: String };

/** A decoded message as proto3 JSON for a debug page (Any expanded, bytes base64, secrets redacted). */
export function debugJson(type: protobuf.Type, value: Uint8Array): Record<string, unknown> {
  const obj = type.toObject(type.decode(value), DEBUG_OBJECT);
  redact(type, obj, false);
  return obj;
}

function redact(type: protobuf.Type, obj: Record<string, unknown>, sensitive: boolean): void {
  for (const [key, value] of Object.entries(obj)) {
    const field = type.fields[key];
    if (!field || value === null || value === undefined) continue;
    const hidden = sensitive || field.options?.[SENSITIVE] === true;
    const values: unknown[] = field.map ? Object.values(value as object) : field.repeated ? (value as unknown[]) : [value];
    const sub = field.resolve().resolvedType;
    if (sub instanceof protobuf.Type) {
      for (const v of values) redactMessage(sub, v as Record<string, unknown>, hidden);
    } else if (hidden && (field.type === 'string' || field.type === 'bytes')) {
      if (field.map) for (const k of Object.keys(value as object)) (value as Record<string, unknown>)[k] = REDACTED;
      else obj[key] = field.repeated ? (value as unknown[]).map(() => REDACTED) : REDACTED;
    }
  }
}

/** An expanded Any ({"@type": ..., fields}) is redacted as the message it holds. */
function redactMessage(type: protobuf.Type, obj: Record<string, unknown>, sensitive: boolean): void {
  const url = obj['@type'];
  if (typeof url === 'string') {
    const inner = root.lookup(url.slice(url.lastIndexOf('/') + 1));
    if (inner instanceof protobuf.Type) return redact(inner, obj, sensitive);
  }
  redact(type, obj, sensitive);
}
