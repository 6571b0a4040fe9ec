// The file source: reads a mesh description, re-reads it when it changes and hands each new
// good state to the registry. A broken edit keeps the last good state serving.
import fs from 'node:fs';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { MeshFileError } from './errors.js';
import { parseMeshBytes } from './parse.js';
import { type FileMesh, meshToSource } from './to-model.js';

/** The part of a pino logger the source uses. */
export interface FileSourceLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface FileSourceOptions {
  readonly log: FileSourceLog;
  /** Called with the error when an edit is rejected, and with null when a later edit is accepted. */
  readonly onError?: (err: MeshFileError | null) => void;
  /** Stat poll period, the fallback when fs.watch misses an event (network filesystems, some mounts). */
  readonly pollMs?: number;
  /** Editors write in several steps; wait this long after the last event before reading. */
  readonly debounceMs?: number;
  /** A bigger file is rejected unread (default DEFAULT_MAX_MESH_FILE_BYTES). */
  readonly maxBytes?: number;
}

/** Parsing takes a multiple of the file's size in memory (~100× for YAML); a bound keeps one file from taking the process down. */
export const DEFAULT_MAX_MESH_FILE_BYTES = 16 * 1024 * 1024;

type ReadResult =
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'mesh'; readonly mesh: FileMesh }
  | { readonly kind: 'error'; readonly error: MeshFileError };

export class FileSource {
  readonly path: string;
  /** Provenance of what this source reports. */
  readonly source: string;
  readonly #onMesh: (m: FileMesh) => void;
  readonly #log: FileSourceLog;
  readonly #onError: ((err: MeshFileError | null) => void) | undefined;
  readonly #pollMs: number;
  readonly #debounceMs: number;
  readonly #maxBytes: number;

  #watcher: fs.FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  /** What the last read saw (the bytes, or a read error), so unchanged files are neither parsed nor re-reported. */
  #lastSeen: Buffer | string | undefined;
  #lastStat: string | undefined;
  #lastError: MeshFileError | null = null;
  #reading = false;
  #readAgain = false;
  #stopped = false;

  constructor(filePath: string, onMesh: (m: FileMesh) => void, opts: FileSourceOptions) {
    this.path = filePath;
    this.source = `file:${filePath}`;
    this.#onMesh = onMesh;
    this.#log = opts.log;
    this.#onError = opts.onError;
    this.#pollMs = opts.pollMs ?? 1000;
    this.#debounceMs = opts.debounceMs ?? 50;
    this.#maxBytes = opts.maxBytes ?? DEFAULT_MAX_MESH_FILE_BYTES;
  }

  /** The error of the last rejected edit, or null while the file on disk is the state being served. */
  get lastError(): MeshFileError | null {
    return this.#lastError;
  }

  /** Reads the file once and starts watching it. Rejects, without watching, if that first read fails. */
  async start(): Promise<void> {
    if (this.#watcher || this.#poll) throw new Error(`file source ${this.path} already started`);
    this.#stopped = false;
    this.#lastSeen = undefined; // a retry after a failed start must read and judge the file afresh
    this.#lastStat = await this.#statSignature();
    const result = await this.#read();
    if (result.kind === 'error') {
      this.#lastError = result.error;
      throw result.error;
    }
    if (result.kind === 'mesh') this.#publish(result.mesh);
    this.#watch();
    this.#poll = setInterval(() => void this.#checkStat(), this.#pollMs);
    this.#poll.unref();
  }

  stop(): void {
    this.#stopped = true;
    this.#watcher?.close();
    this.#watcher = undefined;
    clearInterval(this.#poll);
    this.#poll = undefined;
    clearTimeout(this.#debounce);
  }

  /**
   * Watch the directory, not the file: editors and Kubernetes ConfigMap volumes replace the file
   * by rename, after which a watch on the old inode hears nothing. Any event in the directory
   * triggers a read; the content comparison makes the unrelated ones cheap.
   */
  #watch(): void {
    try {
      this.#watcher = fs.watch(path.dirname(this.path), { persistent: false }, () => this.#schedule());
      this.#watcher.on('error', (err) => {
        this.#log.warn({ file: this.path, err }, 'watching the mesh file failed; polling only');
        this.#watcher?.close();
        this.#watcher = undefined;
      });
    } catch (err) {
      this.#log.warn({ file: this.path, err }, 'cannot watch the mesh file; polling only');
    }
  }

  async #checkStat(): Promise<void> {
    const sig = await this.#statSignature();
    if (sig !== this.#lastStat) {
      this.#lastStat = sig;
      this.#schedule();
    }
  }

  async #statSignature(): Promise<string> {
    try {
      const s = await stat(this.path);
      return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
    } catch (e) {
      return `error:${(e as NodeJS.ErrnoException).code ?? 'unknown'}`;
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.#reload(), this.#debounceMs);
    this.#debounce.unref();
  }

  /** One read at a time; events during a read cause one more read after it. */
  async #reload(): Promise<void> {
    if (this.#reading) {
      this.#readAgain = true;
      return;
    }
    this.#reading = true;
    try {
      do {
        this.#readAgain = false;
        const result = await this.#read();
        if (this.#stopped) return;
        if (result.kind === 'mesh') this.#publish(result.mesh);
        else if (result.kind === 'error') this.#reject(result.error);
      } while (this.#readAgain);
    } finally {
      this.#reading = false;
    }
  }

  /** Never throws: whatever is on disk ends as a mesh, an error of the file, or unchanged. */
  async #read(): Promise<ReadResult> {
    let bytes: Buffer;
    try {
      bytes = await this.#readBounded();
    } catch (e) {
      if (e instanceof MeshFileError)
        return this.#seen(`error:too-large:${e.message}`) ? { kind: 'unchanged' } : { kind: 'error', error: e };
      const code = (e as NodeJS.ErrnoException).code ?? 'unknown';
      if (this.#seen(`error:${code}`)) return { kind: 'unchanged' };
      const message = code === 'ENOENT' ? 'file not found' : `cannot read: ${(e as Error).message}`;
      return { kind: 'error', error: new MeshFileError(this.path, [{ path: '', message }], { cause: e }) };
    }
    if (this.#seen(bytes)) return { kind: 'unchanged' };
    try {
      return { kind: 'mesh', mesh: meshToSource(parseMeshBytes(bytes, this.path), this.source) };
    } catch (e) {
      if (e instanceof MeshFileError) return { kind: 'error', error: e };
      return {
        kind: 'error',
        error: new MeshFileError(this.path, [{ path: '', message: `cannot use: ${(e as Error).message}` }], { cause: e }),
      };
    }
  }

  /** Whether the read saw the same as the last one; remembers it. */
  #seen(what: Buffer | string): boolean {
    const last = this.#lastSeen;
    this.#lastSeen = what;
    return typeof what === 'string' ? last === what : Buffer.isBuffer(last) && last.equals(what);
  }

  /** The file's bytes, or a MeshFileError when it is over the limit (checked before reading, and after: it may grow). */
  async #readBounded(): Promise<Buffer> {
    const tooLarge = (size: number): MeshFileError =>
      new MeshFileError(this.path, [
        { path: '', message: `file is ${size} bytes, over the limit of ${this.#maxBytes} (--max-config-bytes)` },
      ]);
    const fh = await open(this.path, 'r');
    try {
      const { size } = await fh.stat();
      if (size > this.#maxBytes) throw tooLarge(size);
      const bytes = await fh.readFile();
      if (bytes.length > this.#maxBytes) throw tooLarge(bytes.length);
      return bytes;
    } finally {
      await fh.close();
    }
  }

  #publish(mesh: FileMesh): void {
    const recovered = this.#lastError !== null;
    this.#lastError = null;
    this.#log.info(
      { file: this.path, clusters: mesh.clusters.size, services: mesh.services.size, raw: mesh.raw.size },
      recovered ? 'mesh file fixed; serving it' : 'mesh file loaded',
    );
    try {
      this.#onMesh(mesh);
    } catch (err) {
      this.#log.error({ file: this.path, err }, 'applying the mesh file failed');
    }
    if (recovered) this.#onError?.(null);
  }

  #reject(error: MeshFileError): void {
    this.#lastError = error;
    this.#log.error({ file: this.path, problems: error.problems }, `${error.message}\nkeeping the last good mesh`);
    this.#onError?.(error);
  }
}
