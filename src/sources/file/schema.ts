// Structural check of a parsed YAML/JSON value against a protobuf-es message descriptor.
// fromJson stops at the first error and does not say where it was; this walk reports every
// problem with its path, and normalises the short enum forms fromJson does not know.
import { fromJson, ScalarType, type DescEnum, type DescField, type DescMessage, type JsonValue } from '@bufbuild/protobuf';
import { StructSchema } from '@bufbuild/protobuf/wkt';
import type { PathProblem, PathSegment } from './errors.js';

export interface SchemaResult {
  /**
   * The value with enums in their full names and nulls dropped, ready for fromJson. Values with
   * problems are left out (list items become `{}`), so the rest can still be checked.
   */
  readonly json: JsonValue;
  readonly problems: readonly PathProblem[];
}

export function checkAgainstSchema(value: unknown, desc: DescMessage): SchemaResult {
  const problems: PathProblem[] = [];
  const json = checkMessage(value, desc, [], problems);
  return { json: json ?? {}, problems };
}

type Out = PathProblem[];

function checkMessage(value: unknown, desc: DescMessage, path: PathSegment[], out: Out): JsonValue | undefined {
  if (!isObject(value)) return fail(out, path, `expected a mapping, got ${describe(value)}`);
  if (desc.typeName === StructSchema.typeName) return checkStruct(value, path, out);
  const byName = fieldsByJsonAndProtoName(desc);
  const seen = new Map<string, string>();
  const result: Record<string, JsonValue> = {};
  for (const [key, v] of Object.entries(value)) {
    const field = byName.get(key);
    if (!field) {
      fail(out, [...path, key], unknownFieldMessage(key, desc));
      continue;
    }
    const other = seen.get(field.name);
    if (other !== undefined) {
      fail(out, [...path, key], `field given twice (also as "${other}")`);
      continue;
    }
    seen.set(field.name, key);
    if (v === null || v === undefined) continue; // proto3 JSON: null means "not set"
    const checked = checkField(v, field, [...path, key], out);
    if (checked !== undefined) result[field.jsonName] = checked;
  }
  return result;
}

function checkField(value: unknown, field: DescField, path: PathSegment[], out: Out): JsonValue | undefined {
  switch (field.fieldKind) {
    case 'scalar':
      return checkScalar(value, field.scalar, path, out);
    case 'enum':
      return checkEnum(value, field.enum, path, out);
    case 'message':
      return checkMessage(value, field.message, path, out);
    case 'list': {
      if (!Array.isArray(value)) return fail(out, path, `expected a list, got ${describe(value)}`);
      const items: JsonValue[] = [];
      value.forEach((item: unknown, i) => {
        const p = [...path, i];
        let c: JsonValue | undefined;
        if (item === null || item === undefined) c = fail(out, p, 'list items must not be empty');
        else if (field.listKind === 'scalar') c = checkScalar(item, field.scalar, p, out);
        else if (field.listKind === 'enum') c = checkEnum(item, field.enum, p, out);
        else c = checkMessage(item, field.message, p, out);
        // A placeholder keeps later indices right for the semantic checks that run on the result.
        if (c !== undefined) items.push(c);
        else if (field.listKind === 'message') items.push({});
      });
      return items;
    }
    case 'map': {
      if (!isObject(value)) return fail(out, path, `expected a mapping, got ${describe(value)}`);
      const entries: Record<string, JsonValue> = {};
      for (const [k, item] of Object.entries(value)) {
        const p = [...path, k];
        if (field.mapKey !== ScalarType.STRING && field.mapKey !== ScalarType.BOOL && !/^-?\d+$/.test(k)) {
          fail(out, p, 'map key must be an integer');
          continue;
        }
        let c: JsonValue | undefined;
        if (item === null || item === undefined) c = fail(out, p, 'map values must not be empty');
        else if (field.mapKind === 'scalar') c = checkScalar(item, field.scalar, p, out);
        else if (field.mapKind === 'enum') c = checkEnum(item, field.enum, p, out);
        else c = checkMessage(item, field.message, p, out);
        if (c !== undefined) entries[k] = c;
      }
      return entries;
    }
  }
}

const INT_RANGES: Partial<Record<ScalarType, readonly [number, number]>> = {
  [ScalarType.UINT32]: [0, 0xffffffff],
  [ScalarType.FIXED32]: [0, 0xffffffff],
  [ScalarType.INT32]: [-0x80000000, 0x7fffffff],
  [ScalarType.SINT32]: [-0x80000000, 0x7fffffff],
  [ScalarType.SFIXED32]: [-0x80000000, 0x7fffffff],
};
const INT64_TYPES = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);

function checkScalar(value: unknown, type: ScalarType, path: PathSegment[], out: Out): JsonValue | undefined {
  switch (type) {
    case ScalarType.STRING:
      // YAML reads `network: 1` or `id: yes`-like values as numbers/booleans; say how to fix it.
      return typeof value === 'string' ? value : fail(out, path, `expected a string, got ${describe(value)} (quote it)`);
    case ScalarType.BOOL:
      return typeof value === 'boolean' ? value : fail(out, path, `expected true or false, got ${describe(value)}`);
    case ScalarType.BYTES:
      return typeof value === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(value)
        ? value
        : fail(out, path, `expected base64 text, got ${describe(value)}`);
    case ScalarType.FLOAT:
    case ScalarType.DOUBLE:
      if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
      return typeof value === 'string' && (/^(NaN|-?Infinity)$/.test(value) || (value.trim() !== '' && !isNaN(Number(value))))
        ? value
        : fail(out, path, `expected a number, got ${describe(value)}`);
  }
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : NaN;
  const range = INT_RANGES[type];
  if (INT64_TYPES.has(type)) {
    return Number.isInteger(n) ? (value as number | string) : fail(out, path, `expected an integer, got ${describe(value)}`);
  }
  if (range && Number.isInteger(n) && n >= range[0] && n <= range[1]) return n;
  const [lo, hi] = range ?? [0, 0];
  return fail(out, path, `expected an integer between ${lo} and ${hi}, got ${describe(value)}`);
}

/**
 * Enum values by full name ("HEALTH_HEALTHY"), by the name without the enum's shared prefix
 * ("HEALTHY", any case), or by number.
 */
function checkEnum(value: unknown, desc: DescEnum, path: PathSegment[], out: Out): JsonValue | undefined {
  const prefix = (desc.sharedPrefix ?? '').toUpperCase();
  if (typeof value === 'string') {
    const upper = value.toUpperCase();
    const match = desc.values.find((v) => v.name === value || v.name === upper || v.name === prefix + upper);
    if (match) return match.name;
  } else if (typeof value === 'number' && desc.value[value]) {
    return value;
  }
  const names = desc.values.filter((v) => v.number !== 0).map((v) => v.name.slice(prefix.length));
  return fail(out, path, `expected one of ${names.join(', ')}, got ${describe(value)}`);
}

function checkStruct(value: Record<string, unknown>, path: PathSegment[], out: Out): JsonValue | undefined {
  try {
    fromJson(StructSchema, value as JsonValue);
    return value as JsonValue;
  } catch (e) {
    return fail(out, path, `not a JSON object: ${(e as Error).message}`);
  }
}

const byNameCache = new WeakMap<DescMessage, Map<string, DescField>>();

function fieldsByJsonAndProtoName(desc: DescMessage): Map<string, DescField> {
  let m = byNameCache.get(desc);
  if (!m) {
    m = new Map();
    for (const f of desc.fields) {
      m.set(f.jsonName, f);
      m.set(f.name, f);
    }
    byNameCache.set(desc, m);
  }
  return m;
}

function unknownFieldMessage(key: string, desc: DescMessage): string {
  const names = desc.fields.map((f) => f.jsonName);
  const close = names.find((n) => editDistance(n.toLowerCase(), key.toLowerCase()) <= 2);
  return close !== undefined ? `unknown field "${key}" (did you mean "${close}"?)` : `unknown field "${key}" (known: ${names.join(', ')})`;
}

export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `"${v.length > 100 ? `${v.slice(0, 100)}…` : v}"`;
  return `${typeof v} ${String(v)}`;
}

function fail(out: Out, segments: PathSegment[], message: string): undefined {
  out.push({ segments, message });
  return undefined;
}
