// protoc-gen-validate rules over protobufjs reflection: the `(validate.rules)` field option,
// `(validate.required)` on oneofs and `(validate.disabled|ignored)` on messages, as protobufjs
// parses them (Field.parsedOptions / OneOf.options / Type.options).
import type protobuf from 'protobufjs';

/** A field's FieldRules (validate.proto), as plain data; {} when it has none. */
export type FieldRules = Record<string, Record<string, unknown> | undefined>;

const cache = new WeakMap<protobuf.Field, FieldRules>();

export function rulesOf(field: protobuf.Field): FieldRules {
  let r = cache.get(field);
  if (!r) {
    r = {};
    const parsed = (field as unknown as { parsedOptions?: Array<Record<string, unknown>> }).parsedOptions ?? [];
    for (const opt of parsed) {
      const v = opt['(validate.rules)'];
      if (v && typeof v === 'object')
        for (const [k, rule] of Object.entries(v as Record<string, Record<string, unknown>>)) r[k] = { ...r[k], ...rule };
    }
    cache.set(field, r);
  }
  return r;
}

export function oneofRequired(oneof: protobuf.OneOf): boolean {
  return oneof.options?.['(validate.required)'] === true;
}

export function messageSkipped(type: protobuf.Type): boolean {
  return type.options?.['(validate.disabled)'] === true || type.options?.['(validate.ignored)'] === true;
}

/** PGV applies scalar rules to a wrapper's value: `google.protobuf.UInt32Value` takes `uint32` rules. */
export const WRAPPER_SCALAR: Readonly<Record<string, string>> = {
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
};
