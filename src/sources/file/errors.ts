// Errors of a mesh description: each problem names where in the file it is and what is wrong.

/** A step into a JSON value: a field name or map key, or a list index. */
export type PathSegment = string | number;

/** A problem found without positions (schema and semantic checks work on values, not text). */
export interface PathProblem {
  readonly segments: readonly PathSegment[];
  readonly message: string;
}

export interface MeshProblem {
  /** Like `services[1].endpoints[0].port`; empty for the whole file. */
  readonly path: string;
  /** 1-based line in the file, when the YAML parser knows it. */
  readonly line?: number;
  readonly message: string;
}

/** A mesh description that cannot be used. Lists every problem found, one per line of `message`. */
export class MeshFileError extends Error {
  override readonly name = 'MeshFileError';
  readonly file: string;
  readonly problems: readonly MeshProblem[];
  /** Problems found but not listed (a file can have millions; the message stays readable). */
  readonly omitted: number;

  constructor(file: string, problems: readonly MeshProblem[], options?: { cause?: unknown; omitted?: number }) {
    super(formatProblems(file, problems, options?.omitted ?? 0), options);
    this.file = file;
    this.problems = problems.length > 0 ? problems : [{ path: '', message: 'invalid mesh description' }];
    this.omitted = options?.omitted ?? 0;
  }

  /** Path of the first problem. */
  get path(): string {
    return this.problems[0]?.path ?? '';
  }

  /** Line of the first problem, if known. */
  get line(): number | undefined {
    return this.problems[0]?.line;
  }
}

export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_][\w-]*$/.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

/** `mesh.yaml:12: services[1].port: must be ...`, the form editors and terminals link to. */
export function formatProblem(file: string, p: MeshProblem): string {
  const where = p.line === undefined ? file : `${file}:${p.line}`;
  return p.path === '' ? `${where}: ${p.message}` : `${where}: ${p.path}: ${p.message}`;
}

function formatProblems(file: string, problems: readonly MeshProblem[], omitted: number): string {
  if (problems.length === 0) return `${file}: invalid mesh description`;
  const [first] = problems;
  if (problems.length === 1 && first && omitted === 0) return formatProblem(file, first);
  const more = omitted > 0 ? [`${file}: …and ${omitted} more`] : [];
  return [`${file}: ${problems.length + omitted} problems`, ...problems.map((p) => formatProblem(file, p)), ...more].join('\n');
}
