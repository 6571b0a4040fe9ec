// google.protobuf.Struct as protobufjs decodes it, to plain JSON. protobufjs defines the
// well-known types itself, in camelCase (stringValue), whatever keepCase says: a snake_case
// `string_value` is silently dropped by fromObject, so build Structs with stringStruct.

interface StructValue {
  nullValue?: unknown;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: { fields?: Record<string, StructValue> };
  listValue?: { values?: StructValue[] };
}

export function structToJson(s: { fields?: Record<string, StructValue> } | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = valueToJson(v);
  return out;
}

function valueToJson(v: StructValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.numberValue !== undefined) return v.numberValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.structValue !== undefined) return structToJson(v.structValue);
  if (v.listValue !== undefined) return (v.listValue.values ?? []).map(valueToJson);
  return null;
}

/** String key/values as a google.protobuf.Struct protobufjs encodes (node metadata). */
export function stringStruct(values: Readonly<Record<string, string>>): { fields: Record<string, StructValue> } {
  return { fields: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { stringValue: v }])) };
}
