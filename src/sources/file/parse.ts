// Text of a mesh description (YAML 1.2 or JSON) → a checked Mesh message, or a MeshFileError
// listing every problem with file, line and path.
//
// Field names: the proto3 JSON mapping, so both `rootCaPem` and `root_ca_pem` work.
// Enums: the full name ("HEALTH_HEALTHY"), the short name in any case ("HEALTHY", "healthy"), or the number.
import { fromJson } from '@bufbuild/protobuf';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { MeshSchema, type Mesh } from '../../gen/meshfed/v1/mesh_pb.js';
import { formatPath, MeshFileError, type MeshProblem, type PathProblem, type PathSegment } from './errors.js';
import { checkAgainstSchema } from './schema.js';
import { validateMesh } from './validate.js';

/** `file` names the description in messages; it is not read. */
export function parseMeshText(text: string, file: string): Mesh {
  const quick = quickParse(text);
  if (quick) return quick;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, version: '1.2' });
  if (doc.errors.length > 0) {
    throw new MeshFileError(
      file,
      doc.errors.map((e) => ({ path: '', line: lineCounter.linePos(e.pos[0]).line, message: e.message })),
    );
  }
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) {
    // Also what a reader sees mid-write when an editor truncates first; never serve it as "no mesh".
    throw new MeshFileError(file, [{ path: '', message: 'file is empty (write {} for an empty mesh)' }]);
  }
  const located = (problems: readonly PathProblem[]): MeshProblem[] =>
    problems.map((p) => ({ path: formatPath(p.segments), line: lineOf(doc, lineCounter, p.segments), message: p.message }));

  const schema = checkAgainstSchema(value, MeshSchema);
  let mesh: Mesh;
  try {
    mesh = fromJson(MeshSchema, schema.json);
  } catch (e) {
    // The schema walk should have caught everything fromJson rejects; keep its word if not.
    if (schema.problems.length > 0) throw new MeshFileError(file, located(schema.problems));
    throw new MeshFileError(file, [{ path: '', message: (e as Error).message }], { cause: e });
  }
  // Semantic checks run on what passed the schema too, so one round of edits can fix everything;
  // their findings at or under a value the schema already rejected are echoes, not news.
  const semantic = validateMesh(mesh).filter((p) => !schema.problems.some((s) => related(s.segments, p.segments)));
  const problems = [...schema.problems, ...semantic];
  if (problems.length > 0) throw new MeshFileError(file, inFileOrder(located(problems)));
  return mesh;
}

/**
 * Big generated descriptions are JSON, and JSON.parse is ~100× faster than the YAML parser.
 * Only a description that passes every check is taken this way; anything with a problem (or
 * a duplicate key, which JSON.parse would hide) goes through the YAML path, which knows lines.
 */
function quickParse(text: string): Mesh | undefined {
  if (!/^\s*\{/.test(text)) return undefined;
  try {
    const schema = checkAgainstSchema(JSON.parse(text), MeshSchema);
    if (schema.problems.length > 0) return undefined;
    const mesh = fromJson(MeshSchema, schema.json);
    return validateMesh(mesh).length === 0 ? mesh : undefined;
  } catch {
    return undefined;
  }
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
