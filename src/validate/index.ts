// `meshfed validate` and the tests: Envoy resources (or a Bootstrap) checked against the
// protoc-gen-validate rules of Envoy's protos.
import type protobuf from 'protobufjs';
import { loadEnvoyProtos, root as envoyRoot, TYPE_PREFIX } from '../envoy/protos.js';
import { JsonReader } from './json.js';
import { type ValidationError, Validator } from './validator.js';

export type { ValidationError } from './validator.js';

/** Beyond what meshfed serves (already in the shared Root): the Bootstrap, for example bootstraps. */
const VALIDATION_PROTO_FILES = ['envoy/config/bootstrap/v3/bootstrap.proto'];

export const BOOTSTRAP_TYPE = `${TYPE_PREFIX}envoy.config.bootstrap.v3.Bootstrap`;

let shared: { root: protobuf.Root; validator: Validator; reader: JsonReader } | undefined;

function loaded(): NonNullable<typeof shared> {
  if (!shared) {
    // Added to the shared Root on first use: new types only, so what the server encodes is unchanged.
    const root = loadEnvoyProtos(VALIDATION_PROTO_FILES, envoyRoot);
    shared = { root, validator: new Validator(root), reader: new JsonReader(root) };
  }
  return shared;
}

/** A resource as meshfed's generators build it (protobufjs object form, Anys with "@type"). */
export function validateResource(typeUrl: string, body: Readonly<Record<string, unknown>>): ValidationError[] {
  const { validator } = loaded();
  const type = validator.typeOf(typeUrl);
  if (!type) return [{ path: '(root)', reason: `unknown type ${typeUrl}` }];
  return validator.validateBytes(typeUrl, type.encode(type.fromObject(body)).finish());
}

/** A resource in proto3 JSON with its "@type", as a user writes it. */
export function validateJson(json: Readonly<Record<string, unknown>>, typeUrl = String(json['@type'] ?? '')): ValidationError[] {
  const { validator, reader } = loaded();
  const type = validator.typeOf(typeUrl);
  if (!typeUrl || !type) return [{ path: '(root)', reason: typeUrl ? `unknown type ${typeUrl}` : 'no "@type"' }];
  const { '@type': _t, ...body } = json;
  const errors: ValidationError[] = [];
  const obj = reader.message(type, body, '', errors);
  if (!obj) return errors;
  // What could be read is checked too, so one unknown field hides nothing else. A value the
  // reader already rejected is left out; the rules' view of its absence would only echo it.
  let checked: ValidationError[];
  try {
    checked = validator.validateBytes(typeUrl, type.encode(type.fromObject(obj)).finish());
  } catch (err) {
    checked = [{ path: '(root)', reason: `cannot be encoded as ${type.fullName.slice(1)}: ${(err as Error).message}` }];
  }
  const read = errors.map((e) => normalize(e.path));
  return [...errors, ...checked.filter((e) => !read.some((r) => under(normalize(e.path), r)))];
}

/** Paths as the reader writes them (the file's spelling) and as the validator does (proto names) compare equal. */
function normalize(path: string): string {
  return path.replace(
    /(^|\.)([a-z][A-Za-z0-9]*)/g,
    (_m, dot: string, key: string) => dot + key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
  );
}

function under(path: string, prefix: string): boolean {
  return (
    prefix === '(root)' ||
    path === prefix ||
    path.startsWith(`${prefix}.`) ||
    path.startsWith(`${prefix}[`) ||
    path.startsWith(`${prefix}(`)
  );
}

export interface DocumentReport {
  /** `[i] <type> <name>` of each resource in the document. */
  readonly resource: string;
  readonly errors: ValidationError[];
}

/** A document holding one resource, a list of them, or a Bootstrap (with or without "@type"). */
export function validateDocument(doc: unknown): DocumentReport[] {
  const items = Array.isArray(doc)
    ? doc
    : doc && typeof doc === 'object' && Array.isArray((doc as { resources?: unknown }).resources) && !('@type' in doc)
      ? (doc as { resources: unknown[] }).resources
      : [doc];
  return items.map((item, i) => {
    if (!item || typeof item !== 'object') return { resource: `[${i}]`, errors: [{ path: '(root)', reason: 'expected an object' }] };
    const obj = item as Record<string, unknown>;
    const typeUrl = typeof obj['@type'] === 'string' ? obj['@type'] : looksLikeBootstrap(obj) ? BOOTSTRAP_TYPE : '';
    const name =
      typeof obj['name'] === 'string'
        ? obj['name']
        : typeof obj['cluster_name'] === 'string'
          ? obj['cluster_name']
          : typeof obj['clusterName'] === 'string'
            ? obj['clusterName']
            : '';
    return {
      resource: `[${i}] ${typeUrl.slice(typeUrl.lastIndexOf('/') + 1) || '?'}${name ? ` ${name}` : ''}`,
      errors: validateJson(obj, typeUrl),
    };
  });
}

function looksLikeBootstrap(o: Record<string, unknown>): boolean {
  return ['static_resources', 'staticResources', 'dynamic_resources', 'dynamicResources', 'node', 'admin'].some((k) => k in o);
}
