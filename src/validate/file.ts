// `meshfed validate <file>`: what the file is (Envoy resources, a Bootstrap, or a mesh description)
// and every problem in it, one line each with where it is. Never throws on bad input.
import { parseAllDocuments } from 'yaml';
import type { Mesh } from '../gen/meshfed/v1/mesh_pb.js';
import { checkRawResource } from '../sources/file/raw-resource.js';
import { isObject } from '../sources/file/schema.js';
import { formatProblem, MeshFileError, parseMeshText } from '../sources/file/index.js';
import { validateDocument, validateResource } from './index.js';

export interface FileReport {
  readonly ok: boolean;
  /** One finding per line; on success a single `<file>: ok …` line. */
  readonly lines: readonly string[];
}

/** Top-level keys of meshfed.v1.Mesh in either spelling; the proto3 JSON names are the same here. */
const MESH_KEYS = new Set(['clusters', 'services', 'resources']);

/** `file` names the text in messages; it is not read. */
export function validateText(text: string, file: string): FileReport {
  const docs = parseAllDocuments(text);
  const syntax = docs.flatMap((d) => d.errors.map((e) => `${file}:${e.linePos?.[0].line ?? '?'}: ${firstLine(e.message)}`));
  if (syntax.length) return { ok: false, lines: syntax };
  const values = docs.map((d) => d.toJS() as unknown).filter((v) => v !== null && v !== undefined);
  if (values.length === 0)
    return { ok: false, lines: [`${file}: nothing to validate (${text.trim() ? 'no document, only comments' : 'the file is empty'})`] };
  if (values.length === 1 && isEmptyMapping(values[0])) return { ok: false, lines: [`${file}: nothing to validate (an empty mapping)`] };
  if (values.length === 1 && isMeshDescription(values[0])) return validateMeshText(text, file);

  const lines: string[] = [];
  let resources = 0;
  for (const report of values.flatMap((v) => validateDocument(v))) {
    resources++;
    for (const e of report.errors) lines.push(`${file}: ${report.resource}: ${e.path}: ${e.reason}`);
  }
  if (resources === 0) return { ok: false, lines: [`${file}: nothing to validate (an empty list)`] };
  return lines.length ? { ok: false, lines } : { ok: true, lines: [`${file}: ok`] };
}

/** The YAML parser's message without its code frame and the position the line prefix already gives. */
function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}

function isEmptyMapping(v: unknown): boolean {
  return isObject(v) && Object.keys(v).length === 0;
}

/** A mesh description: a mapping whose keys are all Mesh fields (no "@type", not a Bootstrap). */
function isMeshDescription(v: unknown): boolean {
  if (!isObject(v)) return false;
  const keys = Object.keys(v);
  return keys.length > 0 && keys.every((k) => MESH_KEYS.has(k));
}

/**
 * What `meshfed serve --config` would say about the file (its own parser and checks: `file:line:
 * path: reason`), then the protoc-gen-validate rules on its raw resources, which serve passes on
 * as they are (a NACK is for the proxy to send; validate says it beforehand).
 */
function validateMeshText(text: string, file: string): FileReport {
  let mesh: Mesh;
  try {
    mesh = parseMeshText(text, file);
  } catch (err) {
    if (!(err instanceof MeshFileError)) throw err;
    return { ok: false, lines: err.problems.map((p) => formatProblem(file, p)) };
  }
  const lines: string[] = [];
  mesh.resources.forEach((r, i) => {
    const { resource } = checkRawResource(r, ['resources', i]);
    if (!resource) return; // parseMeshText reported it
    for (const e of validateResource(resource.typeUrl, resource.body)) {
      lines.push(`${file}: resources[${i}] ${resource.name}: ${e.path}: ${e.reason}`);
    }
  });
  const summary = `${file}: ok (mesh description: ${mesh.clusters.length} cluster(s), ${mesh.services.length} service(s), ${mesh.resources.length} raw resource(s))`;
  return lines.length ? { ok: false, lines } : { ok: true, lines: [summary] };
}
