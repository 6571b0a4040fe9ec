// A validator for any loaded Envoy message: walks a decoded protobufjs message and checks the
// protoc-gen-validate rules annotated in Envoy's protos (required fields and oneofs, string and
// bytes lengths, numeric ranges, defined enums, repeated and map sizes, durations), recursing
// into Any by type URL when the type is known.
import type protobuf from 'protobufjs';
import { type FieldRules, messageSkipped, oneofRequired, rulesOf, WRAPPER_SCALAR } from './rules.js';

export interface ValidationError {
  readonly path: string;
  readonly reason: string;
}

type Msg = Record<string, unknown>;

export class Validator {
  constructor(private readonly root: protobuf.Root) {}

  /** Errors in a decoded message of this type; empty when it passes. */
  validate(type: protobuf.Type, message: Msg, path = ''): ValidationError[] {
    const errors: ValidationError[] = [];
    this.walk(type, message, path, errors);
    return errors;
  }

  /** Errors in an encoded message of a type URL (`type.googleapis.com/<full name>`). */
  validateBytes(typeUrl: string, bytes: Uint8Array, path = ''): ValidationError[] {
    const type = this.typeOf(typeUrl);
    if (!type) return [{ path: path || '(root)', reason: `unknown type ${typeUrl}` }];
    return this.validate(type, type.decode(bytes) as unknown as Msg, path);
  }

  typeOf(typeUrl: string): protobuf.Type | undefined {
    try {
      return this.root.lookupType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
    } catch {
      return undefined;
    }
  }

  private walk(type: protobuf.Type, msg: Msg, path: string, errors: ValidationError[]): void {
    if (type.fullName === '.google.protobuf.Any') return this.any(msg, path, errors);
    const skipRules = messageSkipped(type);
    for (const field of type.fieldsArray) {
      // Only the member a oneof holds is checked (and proto3 `optional` fields only when present).
      if (field.partOf && !isSet(msg, field.name)) continue;
      const p = join(path, field.name);
      const value = msg[field.name];
      const rules = skipRules ? {} : rulesOf(field);
      if (field.map) this.map(field, value as Record<string, unknown> | undefined, rules, p, errors);
      else if (field.repeated) this.repeated(field, (value as unknown[] | undefined) ?? [], rules, p, errors);
      else this.single(field, value, isSet(msg, field.name), rules, p, errors);
    }
    if (skipRules) return;
    for (const oneof of type.oneofsArray) {
      if (oneofRequired(oneof) && !oneof.fieldsArray.some((f) => isSet(msg, f.name))) {
        errors.push({
          path: join(path, oneof.name),
          reason: `exactly one of ${oneof.fieldsArray.map((f) => f.name).join(', ')} is required`,
        });
      }
    }
  }

  private single(field: protobuf.Field, value: unknown, set: boolean, rules: FieldRules, path: string, errors: ValidationError[]): void {
    const t = field.resolvedType;
    if (t && 'fieldsArray' in t) {
      const type = t as protobuf.Type;
      if (!set) {
        if (
          rules['message']?.['required'] ||
          rules['duration']?.['required'] ||
          rules['timestamp']?.['required'] ||
          rules['any']?.['required']
        ) {
          errors.push({ path, reason: 'is required' });
        }
        return;
      }
      const msg = value as Msg;
      const scalar = WRAPPER_SCALAR[type.fullName];
      if (scalar && rules[scalar]) checkScalar(scalar, msg['value'], rules[scalar]!, path, errors);
      if (type.fullName === '.google.protobuf.Duration' && rules['duration'])
        checkNanos(durationNanos(msg), rules['duration'], durationNanos, path, errors);
      if (type.fullName === '.google.protobuf.Timestamp' && rules['timestamp'])
        checkNanos(durationNanos(msg), rules['timestamp'], durationNanos, path, errors);
      if (type.fullName === '.google.protobuf.Any' && rules['any']) checkAny(msg, rules['any'], path, errors);
      if (!rules['message']?.['skip']) this.walk(type, msg, path, errors);
      return;
    }
    if (t) {
      // An enum.
      const e = t as protobuf.Enum;
      const r = rules['enum'];
      const n = typeof value === 'number' ? value : 0;
      if (r?.['defined_only'] && e.valuesById[n] === undefined) errors.push({ path, reason: `${n} is not a defined value of ${e.name}` });
      if (r) checkIn(n, r, path, errors);
      if (r && 'const' in r && n !== r['const']) errors.push({ path, reason: `must equal ${String(r['const'])}` });
      return;
    }
    const r = rules[field.type];
    if (r) checkScalar(field.type, value, r, path, errors);
  }

  private repeated(field: protobuf.Field, items: unknown[], rules: FieldRules, path: string, errors: ValidationError[]): void {
    const r = rules['repeated'];
    if (r && !(r['ignore_empty'] && items.length === 0)) {
      if (typeof r['min_items'] !== 'undefined' && items.length < Number(r['min_items']))
        errors.push({ path, reason: `must have at least ${String(r['min_items'])} item(s), has ${items.length}` });
      if (typeof r['max_items'] !== 'undefined' && items.length > Number(r['max_items']))
        errors.push({ path, reason: `must have at most ${String(r['max_items'])} item(s), has ${items.length}` });
      if (r['unique'] && new Set(items.map((i) => JSON.stringify(i))).size !== items.length)
        errors.push({ path, reason: 'items must be unique' });
    }
    const itemRules = (r?.['items'] ?? {}) as FieldRules;
    items.forEach((item, i) => this.single(field, item, item !== null && item !== undefined, itemRules, `${path}[${i}]`, errors));
  }

  private map(
    field: protobuf.Field,
    entries: Record<string, unknown> | undefined,
    rules: FieldRules,
    path: string,
    errors: ValidationError[],
  ): void {
    const keys = Object.keys(entries ?? {});
    const r = rules['map'];
    if (r && !(r['ignore_empty'] && keys.length === 0)) {
      if (typeof r['min_pairs'] !== 'undefined' && keys.length < Number(r['min_pairs']))
        errors.push({ path, reason: `must have at least ${String(r['min_pairs'])} entr(ies), has ${keys.length}` });
      if (typeof r['max_pairs'] !== 'undefined' && keys.length > Number(r['max_pairs']))
        errors.push({ path, reason: `must have at most ${String(r['max_pairs'])} entr(ies), has ${keys.length}` });
    }
    const keyRules = (r?.['keys'] ?? {}) as FieldRules;
    const valueRules = (r?.['values'] ?? {}) as FieldRules;
    const keyType = (field as unknown as protobuf.MapField).keyType;
    for (const k of keys.sort()) {
      const p = `${path}[${JSON.stringify(k)}]`;
      if (keyRules[keyType]) checkScalar(keyType, k, keyRules[keyType]!, p, errors);
      const v = entries![k];
      this.single(field, v, v !== null && v !== undefined, valueRules, p, errors);
    }
  }

  private any(msg: Msg, path: string, errors: ValidationError[]): void {
    const typeUrl = String(msg['type_url'] ?? '');
    const type = typeUrl ? this.typeOf(typeUrl) : undefined;
    if (!type) return; // unknown types are not ours to judge
    const value = msg['value'] as Uint8Array | undefined;
    let decoded: Msg;
    try {
      decoded = type.decode(value ?? new Uint8Array()) as unknown as Msg;
    } catch (err) {
      errors.push({ path, reason: `does not decode as ${typeUrl}: ${(err as Error).message}` });
      return;
    }
    this.walk(type, decoded, `${path}(${type.fullName.slice(1)})`, errors);
  }
}

/** Whether a decoded message carries the field (proto3 defaults live on the prototype). */
function isSet(msg: Msg, name: string): boolean {
  return Object.prototype.hasOwnProperty.call(msg, name) && msg[name] !== null && msg[name] !== undefined;
}

function join(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v && typeof v === 'object' && 'toString' in v) return Number(String(v));
  return Number(v ?? 0);
}

function durationNanos(d: unknown): number {
  const m = (d ?? {}) as Msg;
  return num(m['seconds']) * 1e9 + num(m['nanos']);
}

function checkIn(v: unknown, r: Record<string, unknown>, path: string, errors: ValidationError[]): void {
  const eq = (x: unknown): boolean => (typeof v === 'number' ? num(x) === v : x === v);
  if (Array.isArray(r['in']) && r['in'].length && !r['in'].some(eq))
    errors.push({ path, reason: `must be one of ${JSON.stringify(r['in'])}` });
  if (Array.isArray(r['not_in']) && r['not_in'].some(eq))
    errors.push({ path, reason: `must not be one of ${JSON.stringify(r['not_in'])}` });
}

/** gt/gte/lt/lte with PGV's meaning: lt below gt describes the range outside [lt, gt]. */
function checkRange(
  v: number,
  r: Record<string, unknown>,
  toNum: (x: unknown) => number,
  show: (x: unknown) => string,
  path: string,
  errors: ValidationError[],
): void {
  if ('const' in r && v !== toNum(r['const'])) errors.push({ path, reason: `must equal ${show(r['const'])}` });
  const lower =
    'gt' in r
      ? { v: toNum(r['gt']), incl: false, s: show(r['gt']) }
      : 'gte' in r
        ? { v: toNum(r['gte']), incl: true, s: show(r['gte']) }
        : undefined;
  const upper =
    'lt' in r
      ? { v: toNum(r['lt']), incl: false, s: show(r['lt']) }
      : 'lte' in r
        ? { v: toNum(r['lte']), incl: true, s: show(r['lte']) }
        : undefined;
  const aboveLower = lower ? (lower.incl ? v >= lower.v : v > lower.v) : true;
  const belowUpper = upper ? (upper.incl ? v <= upper.v : v < upper.v) : true;
  const lowerText = lower ? `${lower.incl ? '>=' : '>'} ${lower.s}` : '';
  const upperText = upper ? `${upper.incl ? '<=' : '<'} ${upper.s}` : '';
  if (lower && upper && upper.v < lower.v) {
    if (!aboveLower && !belowUpper) errors.push({ path, reason: `must be ${lowerText} or ${upperText}` });
  } else if (!aboveLower || !belowUpper) {
    errors.push({ path, reason: `must be ${[lowerText, upperText].filter(Boolean).join(' and ')}, is ${show(v)}` });
  }
}

function checkNanos(v: number, r: Record<string, unknown>, toNum: (x: unknown) => number, path: string, errors: ValidationError[]): void {
  const show = (x: unknown): string => `${(typeof x === 'number' ? x : toNum(x)) / 1e9}s`;
  checkRange(v, r, toNum, show, path, errors);
}

function checkAny(msg: Msg, r: Record<string, unknown>, path: string, errors: ValidationError[]): void {
  checkIn(String(msg['type_url'] ?? ''), r, path, errors);
}

const HEADER_NAME = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
const HEADER_VALUE = /^[^\0\n\r]*$/;

function checkScalar(kind: string, value: unknown, r: Record<string, unknown>, path: string, errors: ValidationError[]): void {
  if (kind === 'string') return checkString(String(value ?? ''), r, path, errors);
  if (kind === 'bytes') return checkBytes((value as Uint8Array | undefined) ?? new Uint8Array(), r, path, errors);
  if (kind === 'bool') {
    if ('const' in r && Boolean(value) !== r['const']) errors.push({ path, reason: `must be ${String(r['const'])}` });
    return;
  }
  const v = num(value);
  checkRange(v, r, num, (x) => String(num(x)), path, errors);
  checkIn(v, r, path, errors);
}

function checkString(s: string, r: Record<string, unknown>, path: string, errors: ValidationError[]): void {
  if (r['ignore_empty'] && s === '') return;
  const chars = [...s].length;
  const bytes = Buffer.byteLength(s);
  const n = (k: string): number | undefined => (k in r ? num(r[k]) : undefined);
  const fail = (reason: string): void => void errors.push({ path, reason });
  if (n('len') !== undefined && chars !== n('len')) fail(`must be ${n('len')} characters long`);
  if (n('min_len') !== undefined && chars < n('min_len')!) fail(`must be at least ${n('min_len')} character(s) long`);
  if (n('max_len') !== undefined && chars > n('max_len')!) fail(`must be at most ${n('max_len')} character(s) long`);
  if (n('min_bytes') !== undefined && bytes < n('min_bytes')!) fail(`must be at least ${n('min_bytes')} byte(s) long`);
  if (n('max_bytes') !== undefined && bytes > n('max_bytes')!) fail(`must be at most ${n('max_bytes')} byte(s) long`);
  if ('const' in r && s !== r['const']) fail(`must equal ${JSON.stringify(r['const'])}`);
  if (typeof r['prefix'] === 'string' && !s.startsWith(r['prefix'])) fail(`must start with ${JSON.stringify(r['prefix'])}`);
  if (typeof r['suffix'] === 'string' && !s.endsWith(r['suffix'])) fail(`must end with ${JSON.stringify(r['suffix'])}`);
  if (typeof r['contains'] === 'string' && !s.includes(r['contains'])) fail(`must contain ${JSON.stringify(r['contains'])}`);
  if (typeof r['not_contains'] === 'string' && s.includes(r['not_contains'])) fail(`must not contain ${JSON.stringify(r['not_contains'])}`);
  if (typeof r['pattern'] === 'string') {
    let re: RegExp | undefined;
    try {
      re = new RegExp(r['pattern'], 'u');
    } catch {
      re = undefined; // an RE2 construct JavaScript lacks: not checked
    }
    if (re && !re.test(s)) fail(`must match ${r['pattern']}`);
  }
  const wk = r['well_known_regex'];
  if ((wk === 'HTTP_HEADER_NAME' || wk === 1) && s !== '' && !HEADER_NAME.test(s)) fail('must be a valid HTTP header name');
  if ((wk === 'HTTP_HEADER_VALUE' || wk === 2) && !HEADER_VALUE.test(s)) fail('must be a valid HTTP header value');
  checkIn(s, r, path, errors);
}

function checkBytes(b: Uint8Array, r: Record<string, unknown>, path: string, errors: ValidationError[]): void {
  if (r['ignore_empty'] && b.length === 0) return;
  if ('len' in r && b.length !== num(r['len'])) errors.push({ path, reason: `must be ${num(r['len'])} bytes long` });
  if ('min_len' in r && b.length < num(r['min_len'])) errors.push({ path, reason: `must be at least ${num(r['min_len'])} byte(s) long` });
  if ('max_len' in r && b.length > num(r['max_len'])) errors.push({ path, reason: `must be at most ${num(r['max_len'])} byte(s) long` });
}
