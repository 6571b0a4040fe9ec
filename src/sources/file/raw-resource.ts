// Check of a raw Envoy resource ("@type" + body) from a mesh description.
// The body is later turned into a message with protobufjs fromObject (keepCase roots), which
// silently drops unknown fields and mistyped values; this walk reports them with their path first.
import type protobuf from 'protobufjs';
import type { RawResource } from '../../model/mesh.js';
import { isXdsType, messageType, resourceName, TypeUrl } from '../../envoy/protos.js';
import type { PathProblem, PathSegment } from './errors.js';
import { describe, editDistance, isObject } from './schema.js';

export interface RawCheck {
  /** Set when there are no problems. */
  readonly resource?: RawResource;
  readonly problems: readonly PathProblem[];
}

const ANY = '.google.protobuf.Any';
/** Free-form JSON: no fields to check. */
const FREE_FORM = new Set(['.google.protobuf.Struct', '.google.protobuf.Value', '.google.protobuf.ListValue']);
const MAX_DEPTH = 64;

/** `value` is one entry of Mesh.resources, at `path` in the file. */
export function checkRawResource(value: Readonly<Record<string, unknown>>, path: readonly PathSegment[]): RawCheck {
  const problems: PathProblem[] = [];
  const fail = (segments: readonly PathSegment[], message: string): RawCheck => {
    problems.push({ segments, message });
    return { problems };
  };
  const typeUrl = value['@type'];
  if (typeUrl === undefined) return fail(path, `missing "@type" (one of ${Object.values(TypeUrl).join(', ')})`);
  if (typeof typeUrl !== 'string' || !isXdsType(typeUrl)) {
    if (typeof typeUrl !== 'string') return fail([...path, '@type'], `expected a type URL, got ${describe(typeUrl)}`);
    const close = Object.values(TypeUrl).find((t) => editDistance(t, typeUrl) <= 3);
    const hint = close ? `did you mean "${close}"?` : `one of ${Object.values(TypeUrl).join(', ')}`;
    return fail([...path, '@type'], `unknown xDS type "${typeUrl}" (${hint})`);
  }
  const { ['@type']: _, ...body } = value;
  const type = messageType(typeUrl);
  walkMessage(body, type, [...path], problems, 0);
  const name = resourceName(typeUrl, body);
  if (name === '') fail([...path, typeUrl === TypeUrl.Endpoint ? 'cluster_name' : 'name'], 'must not be empty');
  if (problems.length > 0) return { problems };
  // The walk covers field names and value kinds; fromObject/verify catch the rest (e.g. two members of a oneof).
  try {
    const err = type.verify(type.fromObject(body));
    if (err) return fail(path, `not a valid ${type.name}: ${err}`);
  } catch (e) {
    return fail(path, `not a valid ${type.name}: ${(e as Error).message}`);
  }
  return { resource: { typeUrl, name, body }, problems };
}

function walkMessage(value: unknown, type: protobuf.Type, path: PathSegment[], out: PathProblem[], depth: number): void {
  if (depth > MAX_DEPTH) return void out.push({ segments: path, message: 'nested too deeply' });
  if (FREE_FORM.has(type.fullName)) return;
  if (!isObject(value)) return void out.push({ segments: path, message: `expected a mapping, got ${describe(value)}${formHint(type)}` });
  if (type.fullName === ANY && typeof value['@type'] === 'string') return walkAny(value, type, path, out, depth);
  for (const [key, v] of Object.entries(value)) {
    const field = type.fields[key];
    if (!field) {
      out.push({ segments: [...path, key], message: unknownField(key, type) });
      continue;
    }
    if (v === null || v === undefined) continue;
    walkField(v, field, [...path, key], out, depth);
  }
}

function walkAny(value: Record<string, unknown>, any: protobuf.Type, path: PathSegment[], out: PathProblem[], depth: number): void {
  const url = value['@type'] as string;
  const inner = lookupType(any, url.slice(url.lastIndexOf('/') + 1));
  if (!inner) return void out.push({ segments: [...path, '@type'], message: `unknown type "${url}"` });
  const { ['@type']: _, ...rest } = value;
  walkMessage(rest, inner, path, out, depth + 1);
}

function walkField(value: unknown, field: protobuf.Field, path: PathSegment[], out: PathProblem[], depth: number): void {
  field.resolve();
  const one = (v: unknown, p: PathSegment[]): void => walkSingle(v, field, p, out, depth);
  if (field.map) {
    if (!isObject(value)) return void out.push({ segments: path, message: `expected a mapping, got ${describe(value)}` });
    for (const [k, v] of Object.entries(value)) one(v, [...path, k]);
  } else if (field.repeated) {
    if (!Array.isArray(value)) return void out.push({ segments: path, message: `expected a list, got ${describe(value)}` });
    value.forEach((v: unknown, i) => one(v, [...path, i]));
  } else {
    one(value, path);
  }
}

function walkSingle(value: unknown, field: protobuf.Field, path: PathSegment[], out: PathProblem[], depth: number): void {
  const fail = (message: string): void => void out.push({ segments: path, message });
  const rt = field.resolvedType;
  if (rt && 'fields' in rt) return walkMessage(value, rt, path, out, depth + 1);
  if (rt && 'values' in rt) {
    const names = Object.keys(rt.values);
    const ok = typeof value === 'string' ? names.includes(value) : typeof value === 'number' && rt.valuesById[value] !== undefined;
    return ok ? undefined : fail(`expected one of ${names.join(', ')}, got ${describe(value)}`);
  }
  switch (field.type) {
    case 'string':
      return typeof value === 'string' ? undefined : fail(`expected a string, got ${describe(value)}`);
    case 'bool':
      return typeof value === 'boolean' ? undefined : fail(`expected true or false, got ${describe(value)}`);
    case 'bytes':
      return typeof value === 'string' ? undefined : fail(`expected base64 text, got ${describe(value)}`);
    case 'double':
    case 'float':
      return typeof value === 'number' ? undefined : fail(`expected a number, got ${describe(value)}`);
    default: // integer types
      return (typeof value === 'number' && Number.isInteger(value)) || (typeof value === 'string' && /^-?\d+$/.test(value))
        ? undefined
        : fail(`expected an integer, got ${describe(value)}`);
  }
}

function lookupType(from: protobuf.Type, name: string): protobuf.Type | undefined {
  try {
    const t = from.root.lookup(name);
    return t && 'fields' in t ? (t as protobuf.Type) : undefined;
  } catch {
    return undefined;
  }
}

function unknownField(key: string, type: protobuf.Type): string {
  const snake = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  if (snake !== key && type.fields[snake]) {
    return `unknown field "${key}": raw resources use the proto field names, write "${snake}"`;
  }
  return `unknown field "${key}" in ${type.fullName.slice(1)}`;
}

/** Well-known types that proto3 JSON writes as strings or numbers but protobufjs wants as objects. */
function formHint(type: protobuf.Type): string {
  switch (type.fullName) {
    case '.google.protobuf.Duration':
    case '.google.protobuf.Timestamp':
      return ' (raw resources use the object form, e.g. {seconds: 5, nanos: 0}, not "5s")';
    default:
      return type.fullName.startsWith('.google.protobuf.') && type.fields['value'] ? ' (write {value: …})' : '';
  }
}
