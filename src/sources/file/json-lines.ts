// Lines of paths in a JSON text, found by one forward scan that builds no values: a big JSON
// description with a problem gets its line numbers without a second, YAML, parse (which takes
// ~100× the file's size in memory). The text must be valid JSON (JSON.parse accepted it).
import type { PathSegment } from './errors.js';

interface Node {
  readonly children: Map<string, Node>;
  /** 1-based line where this path's key (or list item) starts, once seen. */
  line?: number;
}

/**
 * For each path, the line of its deepest part present in the text (a field's key line, a list
 * item's first line), like the YAML path reports; undefined when not even the first part is there.
 */
export function jsonLines(text: string, paths: readonly (readonly PathSegment[])[]): (number | undefined)[] {
  const root: Node = { children: new Map() };
  for (const p of paths) {
    let node = root;
    for (const seg of p) {
      const key = String(seg);
      let next = node.children.get(key);
      if (!next) node.children.set(key, (next = { children: new Map() }));
      node = next;
    }
  }
  new Scanner(text).value(root);
  return paths.map((p) => {
    let node: Node | undefined = root;
    let line: number | undefined;
    for (const seg of p) {
      node = node?.children.get(String(seg));
      if (node?.line === undefined) break;
      line = node.line;
    }
    return line;
  });
}

class Scanner {
  #pos = 0;
  #line = 1;
  #counted = 0;

  constructor(private readonly text: string) {}

  /** The value at the cursor: walked into when some wanted path goes through it, else skipped. */
  value(node: Node): void {
    this.#space();
    const c = this.text.charCodeAt(this.#pos);
    if (node.children.size === 0 || (c !== 0x7b && c !== 0x5b)) return this.#skip();
    this.#pos++;
    if (c === 0x7b) this.#object(node);
    else this.#array(node);
  }

  // The loops also stop at the end of the text: JSON.parse accepted it, but a scan must never spin.
  #object(node: Node): void {
    while (this.#pos < this.text.length) {
      this.#space();
      if (this.text.charCodeAt(this.#pos) === 0x7d) return void this.#pos++;
      if (this.text.charCodeAt(this.#pos) === 0x2c) {
        this.#pos++;
        continue;
      }
      const keyAt = this.#pos;
      const key = this.#string();
      this.#space();
      this.#pos++; // ':'
      const child = node.children.get(key) ?? sameSpelling(node, key);
      if (child) {
        child.line ??= this.#lineAt(keyAt);
        this.value(child);
      } else {
        this.#space();
        this.#skip();
      }
    }
  }

  #array(node: Node): void {
    for (let i = 0; this.#pos < this.text.length; i++) {
      this.#space();
      if (this.text.charCodeAt(this.#pos) === 0x5d) return void this.#pos++;
      if (i > 0) {
        this.#pos++; // ','
        this.#space();
      }
      const child = node.children.get(String(i));
      if (child) {
        child.line ??= this.#lineAt(this.#pos);
        this.value(child);
      } else {
        this.#skip();
      }
    }
  }

  /** Past one value (string, number, literal, or a whole object or array), without looking inside. */
  #skip(): void {
    const t = this.text;
    let depth = 0;
    do {
      const c = t.charCodeAt(this.#pos);
      if (c === 0x22) {
        this.#string();
        continue;
      }
      if (c === 0x7b || c === 0x5b) depth++;
      else if (c === 0x7d || c === 0x5d) depth--;
      else if (depth === 0) {
        // a number or literal: up to the next delimiter
        while (this.#pos < t.length && !/[\s,}\]]/.test(t[this.#pos]!)) this.#pos++;
        return;
      }
      this.#pos++;
    } while (depth > 0 && this.#pos < t.length);
  }

  /** The string at the cursor (a key), decoded; the cursor ends past its closing quote. */
  #string(): string {
    const t = this.text;
    const start = this.#pos;
    let escaped = false;
    let i = start + 1;
    for (; i < t.length; i++) {
      const c = t.charCodeAt(i);
      if (c === 0x5c) {
        escaped = true;
        i++;
      } else if (c === 0x22) break;
    }
    this.#pos = i + 1;
    return escaped ? (JSON.parse(t.slice(start, i + 1)) as string) : t.slice(start + 1, i);
  }

  #space(): void {
    const t = this.text;
    while (this.#pos < t.length) {
      const c = t.charCodeAt(this.#pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      this.#pos++;
    }
  }

  /** Positions are asked for in increasing order, so newlines are counted once. */
  #lineAt(pos: number): number {
    const t = this.text;
    for (let i = this.#counted; i < pos; i++) if (t.charCodeAt(i) === 0x0a) this.#line++;
    this.#counted = pos;
    return this.#line;
  }
}

/** Semantic checks name fields in camelCase; the file may spell them in snake_case. */
function sameSpelling(node: Node, written: string): Node | undefined {
  const norm = (s: string): string => s.replaceAll('_', '').toLowerCase();
  const w = norm(written);
  for (const [k, child] of node.children) if (norm(k) === w) return child;
  return undefined;
}
