// Text of a mesh description (YAML 1.2 or JSON) → a checked Mesh message, or a MeshFileError
// listing every problem with file, line and path.
//
// Field names: the proto3 JSON mapping, so both `rootCaPem` and `root_ca_pem` work.
// Enums: the full name ("HEALTH_HEALTHY"), the short name in any case ("HEALTHY", "healthy"), or the number.
import { fromJson } from '@bufbuild/protobuf';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { MeshSchema, type Mesh } from '../../gen/meshfed/v1/mesh_pb.js';
import { formatPath, MeshFileError, type MeshProblem, type PathProblem, type PathSegment } from './errors.js';
import { jsonLines } from './json-lines.js';
import { checkAgainstSchema } from './schema.js';
import { validateMesh } from './validate.js';

/**
 * A JSON text that JSON.parse rejects is YAML-parsed for the error's line only up to this size:
 * the YAML parser takes ~100× the text in memory. (It may still be YAML in flow style.)
 */
const YAML_FALLBACK_MAX_CHARS = 1024 * 1024;

/** Problems listed (and located: finding a line costs a walk) per error; the rest are counted. */
const MAX_LISTED_PROBLEMS = 100;

/** The bytes of a mesh file: UTF-8, or an error naming the line of the first invalid byte. */
export function parseMeshBytes(bytes: Uint8Array, file: string): Mesh {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    let line = 1;
    for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) line++;
    throw new MeshFileError(file, [
      { path: '', line, message: `not valid UTF-8 (byte 0x${(bytes[at] ?? 0).toString(16).padStart(2, '0')} at offset ${at})` },
    ]);
  }
  return parseMeshText(text, file);
}

/**
 * `file` names the description in messages; it is not read. Whatever the text, the outcome is
 * a Mesh or a MeshFileError: a parser's own exception (an alias bomb, nesting deeper than the
 * stack) is a problem of the file, not of meshfed.
 */
export function parseMeshText(text: string, file: string): Mesh {
  try {
    return parse(text, file);
  } catch (e) {
    if (e instanceof MeshFileError) throw e;
    throw new MeshFileError(file, [{ path: '', message: `cannot parse: ${(e as Error).message}` }], { cause: e });
  }
}

function parse(text: string, file: string): Mesh {
  if (/^\s*\{/.test(text)) {
    const json = parseJson(text, file);
    if (json) return json;
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, version: '1.2' });
  if (doc.errors.length > 0) {
    throw new MeshFileError(
      file,
      doc.errors.slice(0, MAX_LISTED_PROBLEMS).map((e) => ({ path: '', line: lineCounter.linePos(e.pos[0]).line, message: e.message })),
      { omitted: Math.max(0, doc.errors.length - MAX_LISTED_PROBLEMS) },
    );
  }
  const value: unknown = doc.toJS(); // throws on an alias bomb (maxAliasCount): parseMeshText reports it
  if (value === null || value === undefined) {
    // Also what a reader sees mid-write when an editor truncates first; never serve it as "no mesh".
    throw new MeshFileError(file, [{ path: '', message: 'file is empty (write {} for an empty mesh)' }]);
  }
  return check(value, file, (problems) =>
    problems.map((p) => ({ path: formatPath(p.segments), line: lineOf(doc, lineCounter, p.segments), message: p.message })),
  );
}

/** Schema and semantic checks of a parsed value; `located` adds the lines of the problems found. */
function check(value: unknown, file: string, located: (problems: readonly PathProblem[]) => MeshProblem[]): Mesh {
  const schema = checkAgainstSchema(value, MeshSchema);
  let mesh: Mesh;
  try {
    mesh = fromJson(MeshSchema, schema.json);
  } catch (e) {
    // The schema walk should have caught everything fromJson rejects; keep its word if not.
    if (schema.problems.length > 0)
      throw new MeshFileError(file, located(schema.problems.slice(0, MAX_LISTED_PROBLEMS)), {
        omitted: Math.max(0, schema.problems.length - MAX_LISTED_PROBLEMS),
      });
    throw new MeshFileError(file, [{ path: '', message: (e as Error).message }], { cause: e });
  }
  // Semantic checks run on what passed the schema too, so one round of edits can fix everything;
  // their findings at or under a value the schema already rejected are echoes, not news.
  const semantic = validateMesh(mesh).filter((p) => !schema.problems.some((s) => related(s.segments, p.segments)));
  const problems = [...schema.problems, ...semantic];
  const listed = problems.slice(0, MAX_LISTED_PROBLEMS);
  if (problems.length > 0) throw new MeshFileError(file, inFileOrder(located(listed)), { omitted: problems.length - listed.length });
  return mesh;
}

/**
 * Big generated descriptions are JSON, and JSON.parse is ~100× faster than the YAML parser.
 * A JSON text's problems get their lines from a scan of the text (json-lines.ts), not from a
 * second parse. Undefined: not JSON after all (small enough to be read as YAML, which knows lines).
 */
function parseJson(text: string, file: string): Mesh | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    if (text.length <= YAML_FALLBACK_MAX_CHARS) return undefined;
    const at = /at position (\d+)/.exec((e as Error).message)?.[1];
    const line = at === undefined ? undefined : lineAtOffset(text, Number(at));
    const reason = (e as Error).message.replace(/, (\.\.\.)?".*" is not valid JSON$/s, ''); // V8 quotes a piece of the text
    throw new MeshFileError(file, [{ path: '', line, message: `not valid JSON: ${reason}` }]);
  }
  return check(value, file, (problems) => {
    const lines = jsonLines(
      text,
      problems.map((p) => p.segments),
    );
    return problems.map((p, i) => ({ path: formatPath(p.segments), line: lines[i], message: p.message }));
  });
}

function lineAtOffset(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/** By line; problems without a line last. The sort is stable, so one line keeps the checks' order. */
function inFileOrder(problems: MeshProblem[]): MeshProblem[] {
  return problems.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
}

/** One path is a prefix of the other. */
function related(a: readonly PathSegment[], b: readonly PathSegment[]): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Line of the deepest node on the path that exists in the document (a map entry's key line). */
function lineOf(doc: Document, lc: LineCounter, segments: readonly PathSegment[]): number | undefined {
  let node: unknown = doc.contents;
  let offset: number | undefined;
  for (const seg of segments) {
    if (isMap(node)) {
      const pairs = node.items.map((p) => ({ key: isScalar(p.key) ? String(p.key.value) : undefined, pair: p }));
      const pair = (pairs.find((p) => p.key === String(seg)) ?? pairs.find((p) => sameSpelling(p.key, String(seg))))?.pair;
      if (!pair) break;
      if (isScalar(pair.key) && pair.key.range) offset = pair.key.range[0];
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item: unknown = node.items[seg];
      if (!item) break;
      if ((isMap(item) || isSeq(item) || isScalar(item)) && item.range) offset = item.range[0];
      node = item;
    } else {
      break;
    }
  }
  return offset === undefined ? undefined : lc.linePos(offset).line;
}

/** Semantic checks name fields in camelCase; the file may spell them in snake_case. */
function sameSpelling(written: string | undefined, wanted: string): boolean {
  return written !== undefined && written.replaceAll('_', '').toLowerCase() === wanted.replaceAll('_', '').toLowerCase();
}

/** Offset of the first byte that is not part of a well-formed UTF-8 sequence (the decoder's rules). */
function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i]!;
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c < 0x80) n = 0;
    else if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90; // overlong
      if (c === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
    }
    i += n + 1;
  }
  return b.length;
}
