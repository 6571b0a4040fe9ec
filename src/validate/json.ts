// proto3 JSON (as users write Envoy config: camelCase or snake_case names, "10s" durations,
// plain-JSON Structs, Anys with "@type") → the object form protobufjs encodes. Unknown fields and
// types are reported with their path rather than silently dropped.
import type protobuf from 'protobufjs';
import type { ValidationError } from './validator.js';

type Json = unknown;

export class JsonReader {
  constructor(private readonly root: protobuf.Root) {}

  /** The message as protobufjs' fromObject takes it; errors collects what could not be read. */
  message(type: protobuf.Type, json: Json, path: string, errors: ValidationError[]): Record<string, unknown> | undefined {
    switch (type.fullName) {
      case '.google.protobuf.Duration':
      case '.google.protobuf.Timestamp':
        return typeof json === 'string' ? this.time(type.fullName, json, path, errors) : (json as Record<string, unknown>);
      case '.google.protobuf.Struct':
        return struct(json);
      case '.google.protobuf.Value':
        return value(json);
      case '.google.protobuf.ListValue':
        return { values: Array.isArray(json) ? json.map(value) : [] };
      case '.google.protobuf.Any':
        return this.any(json, path, errors);
    }
    if (type.fullName.startsWith('.google.protobuf.') && type.fullName.endsWith('Value') && (json === null || typeof json !== 'object')) return { value: json };
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      errors.push({ path: path || '(root)', reason: `expected an object for ${type.fullName.slice(1)}` });
      return undefined;
    }
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(json as Record<string, unknown>)) {
      const field = type.fields[key] ?? type.fieldsArray.find((f) => camel(f.name) === key);
      const p = path ? `${path}.${key}` : key;
      if (!field) {
        errors.push({ path: p, reason: `unknown field of ${type.fullName.slice(1)}` });
        continue;
      }
      out[field.name] = this.field(field, v, p, errors);
    }
    return out;
  }

  private field(field: protobuf.Field, v: Json, path: string, errors: ValidationError[]): unknown {
    const t = field.resolvedType;
    const one = (x: Json, p: string): unknown => (t && 'fieldsArray' in t ? this.message(t as protobuf.Type, x, p, errors) : x);
    if (field.map) return Object.fromEntries(Object.entries((v ?? {}) as Record<string, Json>).map(([k, x]) => [k, one(x, `${path}[${JSON.stringify(k)}]`)]));
    if (field.repeated) return Array.isArray(v) ? v.map((x, i) => one(x, `${path}[${i}]`)) : (errors.push({ path, reason: 'expected a list' }), []);
    return one(v, path);
  }

  private any(json: Json, path: string, errors: ValidationError[]): Record<string, unknown> | undefined {
    const obj = (json ?? {}) as Record<string, unknown>;
    const typeUrl = obj['@type'];
    if (typeof typeUrl !== 'string') {
      errors.push({ path, reason: 'an Any needs "@type"' });
      return undefined;
    }
    let type: protobuf.Type;
    try {
      type = this.root.lookupType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
    } catch {
      errors.push({ path, reason: `unknown type ${typeUrl}` });
      return undefined;
    }
    const { '@type': _t, ...rest } = obj;
    // Well-known types put their JSON value under "value" inside an Any.
    const body = type.fullName.startsWith('.google.protobuf.') && 'value' in rest ? rest['value'] : rest;
    const inner = this.message(type, body, `${path}(${type.fullName.slice(1)})`, errors);
    return { type_url: typeUrl, value: type.encode(type.fromObject(inner ?? {})).finish() };
  }

  private time(kind: string, s: string, path: string, errors: ValidationError[]): Record<string, unknown> | undefined {
    if (kind === '.google.protobuf.Duration') {
      const m = /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(s);
      if (!m) {
        errors.push({ path, reason: `"${s}" is not a duration like "1.5s"` });
        return undefined;
      }
      const sign = m[1] ? -1 : 1;
      return { seconds: sign * Number(m[2]), nanos: sign * Number((m[3] ?? '').padEnd(9, '0')) };
    }
    const ms = Date.parse(s);
    if (Number.isNaN(ms)) {
      errors.push({ path, reason: `"${s}" is not an RFC 3339 timestamp` });
      return undefined;
    }
    return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
  }
}

function camel(snake: string): string {
  return snake.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function struct(json: Json): Record<string, unknown> {
  return { fields: Object.fromEntries(Object.entries((json ?? {}) as Record<string, Json>).map(([k, v]) => [k, value(v)])) };
}

function value(v: Json): Record<string, unknown> {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(value) } };
  return { structValue: struct(v) };
}
