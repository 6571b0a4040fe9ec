// proto3 JSON (as users write Envoy config: camelCase or snake_case names, "10s" durations,
// plain-JSON Structs, Anys with "@type") → the object form protobufjs encodes. Whatever cannot be
// read (unknown fields and types, enum names that do not exist, a number where a string or a
// duration belongs) is reported with its path and left out, rather than silently dropped or
// coerced, and reading goes on so that one problem never hides the others.
import type protobuf from 'protobufjs';
import { describe, isObject } from '../sources/file/schema.js';
import type { ValidationError } from './validator.js';

type Json = unknown;

/** Integer kinds and their ranges; 64-bit values may be strings in proto3 JSON. */
const INT_RANGE: Readonly<Record<string, readonly [bigint, bigint]>> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

export class JsonReader {
  constructor(private readonly root: protobuf.Root) {}

  /** The message as protobufjs' fromObject takes it; errors collects what could not be read. */
  message(type: protobuf.Type, json: Json, path: string, errors: ValidationError[]): Record<string, unknown> | undefined {
    const fail = (reason: string): undefined => void errors.push({ path: path || '(root)', reason });
    switch (type.fullName) {
      case '.google.protobuf.Duration':
      case '.google.protobuf.Timestamp':
        if (typeof json === 'string') return this.time(type.fullName, json, path, errors);
        if (!isObject(json))
          return fail(
            `expected a ${type.name === 'Duration' ? 'duration like "5s"' : 'timestamp like "2024-01-01T00:00:00Z"'}, got ${describe(json)}`,
          );
        break; // {seconds, nanos}: read as the message it is
      case '.google.protobuf.Struct':
        return isObject(json) ? struct(json) : fail(`expected a mapping, got ${describe(json)}`);
      case '.google.protobuf.Value':
        return value(json);
      case '.google.protobuf.ListValue':
        return Array.isArray(json) ? { values: json.map(value) } : fail(`expected a list, got ${describe(json)}`);
      case '.google.protobuf.Any':
        return this.any(json, path, errors);
    }
    // Wrappers (UInt32Value, BoolValue, …) are written as their bare value.
    const wrapped = type.fullName.startsWith('.google.protobuf.') && type.fullName.endsWith('Value') ? type.fields['value'] : undefined;
    if (wrapped && !isObject(json)) {
      const v = this.field(wrapped, json, path, errors);
      return v === undefined ? undefined : { value: v };
    }
    if (!isObject(json)) return fail(`expected a mapping for ${type.fullName.slice(1)}, got ${describe(json)}`);
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(json)) {
      const field = type.fields[key] ?? type.fieldsArray.find((f) => camel(f.name) === key);
      const p = path ? `${path}.${key}` : key;
      if (!field) {
        errors.push({ path: p, reason: `unknown field of ${type.fullName.slice(1)}` });
        continue;
      }
      if (v === null) continue; // proto3 JSON: null is the default value
      const read = this.field(field, v, p, errors);
      if (read !== undefined) out[field.name] = read;
    }
    return out;
  }

  private field(field: protobuf.Field, v: Json, path: string, errors: ValidationError[]): unknown {
    field.resolve();
    if (field.map) {
      if (!isObject(v)) return void errors.push({ path, reason: `expected a mapping, got ${describe(v)}` });
      return Object.fromEntries(
        Object.entries(v).flatMap(([k, x]) => {
          const read = this.single(field, x, `${path}[${JSON.stringify(k)}]`, errors);
          return read === undefined ? [] : [[k, read]];
        }),
      );
    }
    if (field.repeated) {
      if (!Array.isArray(v)) return void errors.push({ path, reason: `expected a list, got ${describe(v)}` });
      // An unreadable item is kept as a placeholder, so the validator's indexes match the file's.
      return v.map((x, i) => this.single(field, x, `${path}[${i}]`, errors) ?? placeholder(field));
    }
    return this.single(field, v, path, errors);
  }

  private single(field: protobuf.Field, v: Json, path: string, errors: ValidationError[]): unknown {
    const fail = (reason: string): undefined => void errors.push({ path, reason });
    const t = field.resolvedType;
    if (t && 'fieldsArray' in t) return this.message(t as protobuf.Type, v, path, errors);
    if (t) {
      const e = t as protobuf.Enum;
      if (typeof v === 'string' && Object.prototype.hasOwnProperty.call(e.values, v)) return v;
      if (typeof v === 'number' && Number.isInteger(v)) return v; // numbers: defined_only rules judge them
      return fail(`${describe(v)} is not a value of ${e.fullName.slice(1)} (one of ${Object.keys(e.values).join(', ')})`);
    }
    switch (field.type) {
      case 'string':
        return typeof v === 'string' ? v : fail(`expected a string, got ${describe(v)}`);
      case 'bool':
        return typeof v === 'boolean' ? v : fail(`expected true or false, got ${describe(v)}`);
      case 'bytes':
        return typeof v === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(v.replace(/\s/g, ''))
          ? v
          : fail(`expected base64 text, got ${describe(v)}`);
      case 'double':
      case 'float':
        return typeof v === 'number' || (typeof v === 'string' && ['NaN', 'Infinity', '-Infinity'].includes(v))
          ? v
          : fail(`expected a number, got ${describe(v)}`);
    }
    const range = INT_RANGE[field.type];
    if (!range) return v;
    const n = typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : typeof v === 'string' && /^-?\d+$/.test(v) ? BigInt(v) : undefined;
    if (n === undefined) return fail(`expected an integer, got ${describe(v)}`);
    if (n < range[0] || n > range[1])
      return fail(`${String(n)} is out of range for ${field.type} (${String(range[0])} to ${String(range[1])})`);
    return v;
  }

  private any(json: Json, path: string, errors: ValidationError[]): Record<string, unknown> | undefined {
    if (!isObject(json)) {
      errors.push({ path, reason: `expected a mapping with "@type", got ${describe(json)}` });
      return undefined;
    }
    const obj = json;
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

/** What an unreadable list item becomes: an empty message (or the zero value), checked no further. */
function placeholder(field: protobuf.Field): unknown {
  return field.resolvedType && 'fieldsArray' in field.resolvedType ? {} : undefined;
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
