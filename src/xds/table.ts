// The current resources of one type for one proxy view, and who watches them.
import type { Entry } from './resource.js';

/** A stream's per-type state, told which names changed so it can push only those. */
export interface TableWatcher {
  tableChanged(names: readonly string[], changedAt: number): void;
}

export class TypeTable {
  /** Bumped on every change; cached response bodies are valid for one generation. */
  generation = 0;
  readonly watchers = new Set<TableWatcher>();
  idleSince = Date.now();
  /**
   * False while the view's resources are still being made outside the mesh (the generator says so,
   * e.g. SDS while an identity's first certificate is issued): a name the table lacks is then
   * pending, not gone, and a delta stream holds its removal until the table is ready.
   */
  private isReady = true;
  private readyChanged = false;
  /** Generated resources, and raw resources from the mesh description, which win on a name clash. */
  private readonly generated = new Map<string, Entry>();
  private readonly raw = new Map<string, Entry>();
  private readonly bodies = new Map<string, Buffer>();
  private readonly sharedNames = new Map<string, { readonly names: Set<string>; holders: number }>();

  constructor(
    readonly typeUrl: string,
    readonly viewKey: string,
  ) {}

  get ready(): boolean {
    return this.isReady;
  }

  /** A change of readiness is published (to the watchers) with the next changes, even if there are none. */
  setReady(ready: boolean): void {
    if (ready === this.isReady) return;
    this.isReady = ready;
    this.readyChanged = true;
  }

  get(name: string): Entry | undefined {
    return this.raw.get(name) ?? this.generated.get(name);
  }

  /** The entry of one layer, whichever wins. */
  peek(layer: 'generated' | 'raw', name: string): Entry | undefined {
    return (layer === 'raw' ? this.raw : this.generated).get(name);
  }

  get size(): number {
    let n = this.generated.size;
    for (const name of this.raw.keys()) if (!this.generated.has(name)) n++;
    return n;
  }

  *entries(): IterableIterator<Entry> {
    yield* this.raw.values();
    for (const [name, e] of this.generated) if (!this.raw.has(name)) yield e;
  }

  /** Sets or deletes entries; returns the names whose effective entry changed. */
  write(layer: 'generated' | 'raw', updates: ReadonlyMap<string, Entry | undefined>): string[] {
    const map = layer === 'raw' ? this.raw : this.generated;
    const changed: string[] = [];
    for (const [name, entry] of updates) {
      const before = this.get(name);
      if (entry) map.set(name, entry);
      else map.delete(name);
      if (this.get(name) !== before) changed.push(name);
    }
    return changed;
  }

  /** Tells the watchers; called once per store update with everything that changed. */
  publish(changed: readonly string[], changedAt: number): void {
    if (changed.length === 0 && !this.readyChanged) return;
    this.readyChanged = false;
    this.generation++;
    this.bodies.clear();
    for (const w of this.watchers) w.tableChanged(changed, changedAt);
  }

  /** A response body shared by every stream that needs the same resources at this generation. */
  cachedBody(key: string, build: () => Buffer): Buffer {
    let body = this.bodies.get(key);
    if (!body) {
      if (this.bodies.size >= 16) this.bodies.clear();
      body = build();
      this.bodies.set(key, body);
    }
    return body;
  }

  /**
   * The one set of names for every stream whose request names are `key` (SotW clients of one kind repeat the same
   * thousands of EDS names): built once, shared read-only, dropped with its last holder (`releaseNames`).
   */
  shareNames(key: string, build: () => Set<string>): Set<string> {
    let held = this.sharedNames.get(key);
    if (!held) this.sharedNames.set(key, (held = { names: build(), holders: 0 }));
    held.holders++;
    return held.names;
  }

  releaseNames(key: string): void {
    const held = this.sharedNames.get(key);
    if (held && --held.holders === 0) this.sharedNames.delete(key);
  }

  attach(w: TableWatcher): void {
    this.watchers.add(w);
  }

  detach(w: TableWatcher): void {
    this.watchers.delete(w);
    if (this.watchers.size === 0) this.idleSince = Date.now();
  }
}
