// The xDS store: per (type, view key) a table of encoded resources, kept current as the
// mesh changes. Each resource is encoded once per content change, whatever the number of
// streams; an unchanged encoding keeps its Entry, so no stream sees a new version.
import { type Generator, VIEW_RESOURCES } from '../generate/generator.js';
import { EMPTY_SNAPSHOT, type MeshChanges, type MeshSnapshot } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { NO_OBSERVER, type XdsObserver } from './observer.js';
import { encodeEntry, type Entry } from './resource.js';
import { TypeTable } from './table.js';

/** How long a table nobody watches is kept for a proxy that reconnects. */
const IDLE_TABLE_MS = 60_000;

export class XdsStore {
  private mesh: MeshSnapshot = EMPTY_SNAPSHOT;
  private readonly tables = new Map<string, { table: TypeTable; view: ProxyView; owned: Map<string, string[]> }>();
  private readonly generators: Map<string, Generator>;

  constructor(
    generators: readonly Generator[],
    private readonly observer: XdsObserver = NO_OBSERVER,
  ) {
    this.generators = new Map(generators.map((g) => [g.typeUrl, g]));
  }

  get snapshot(): MeshSnapshot {
    return this.mesh;
  }

  /** The table a proxy with this view reads for a type; built on first use. */
  table(typeUrl: string, view: ProxyView): TypeTable {
    const gen = this.generators.get(typeUrl);
    const viewKey = gen ? gen.viewKey(view) : '';
    const key = `${typeUrl} ${viewKey}`;
    let slot = this.tables.get(key);
    if (!slot) {
      slot = { table: new TypeTable(typeUrl, viewKey), view, owned: new Map() };
      this.tables.set(key, slot);
      const hostnames = gen ? [VIEW_RESOURCES, ...this.mesh.services.keys()] : [];
      this.regenerate(slot, gen, hostnames);
      this.writeRaw(slot.table, this.mesh.raw.get(typeUrl)?.keys() ?? []);
      this.reportSizes();
    }
    return slot.table;
  }

  /** Applies a new mesh snapshot; tables regenerate only what the changes can affect. */
  update(mesh: MeshSnapshot, changes: MeshChanges, changedAt: number = Date.now()): void {
    this.mesh = mesh;
    const now = Date.now();
    for (const [key, slot] of this.tables) {
      if (slot.table.watchers.size === 0 && now - slot.table.idleSince > IDLE_TABLE_MS) {
        this.tables.delete(key);
        continue;
      }
      const gen = this.generators.get(slot.table.typeUrl);
      const changed: string[] = [];
      if (gen) {
        const affected = gen.affected(changes);
        const hostnames = affected === 'all' ? new Set([VIEW_RESOURCES, ...slot.owned.keys(), ...mesh.services.keys()]) : affected;
        changed.push(...this.regenerate(slot, gen, hostnames));
      }
      const rawNames = [...changes.raw].filter((k) => k.startsWith(slot.table.typeUrl + ' ')).map((k) => k.slice(slot.table.typeUrl.length + 1));
      changed.push(...this.writeRaw(slot.table, rawNames));
      slot.table.publish([...new Set(changed)], changedAt);
    }
    this.reportSizes();
  }

  /**
   * Regenerates a type's tables outside a mesh change (SDS: a certificate was renewed, the trust
   * bundle changed); `viewKeys` limits it to those views.
   */
  refresh(typeUrl: string, viewKeys: ReadonlySet<string> | 'all', changedAt: number = Date.now()): void {
    const gen = this.generators.get(typeUrl);
    if (!gen) return;
    for (const slot of this.tables.values()) {
      if (slot.table.typeUrl !== typeUrl || (viewKeys !== 'all' && !viewKeys.has(slot.table.viewKey))) continue;
      const changed = this.regenerate(slot, gen, new Set([VIEW_RESOURCES, ...slot.owned.keys(), ...this.mesh.services.keys()]));
      slot.table.publish(changed, changedAt);
    }
    this.reportSizes();
  }

  private regenerate(
    slot: { table: TypeTable; view: ProxyView; owned: Map<string, string[]> },
    gen: Generator | undefined,
    hostnames: Iterable<string>,
  ): string[] {
    if (!gen) return [];
    const updates = new Map<string, Entry | undefined>();
    for (const hostname of hostnames) {
      const before = slot.owned.get(hostname) ?? [];
      const resources = gen.generate(this.mesh, slot.view, hostname);
      for (const name of before) updates.set(name, undefined);
      for (const { name, body } of resources) updates.set(name, this.encode(slot.table, 'generated', name, body));
      if (resources.length) slot.owned.set(hostname, resources.map((r) => r.name));
      else slot.owned.delete(hostname);
    }
    return slot.table.write('generated', updates);
  }

  private writeRaw(table: TypeTable, names: Iterable<string>): string[] {
    const raw = this.mesh.raw.get(table.typeUrl);
    const updates = new Map<string, Entry | undefined>();
    for (const name of names) {
      const r = raw?.get(name);
      updates.set(name, r ? this.encode(table, 'raw', name, r.body) : undefined);
    }
    return table.write('raw', updates);
  }

  /** Encodes and keeps the old Entry when the bytes did not change. */
  private encode(table: TypeTable, layer: 'generated' | 'raw', name: string, body: Readonly<Record<string, unknown>>): Entry {
    const entry = encodeEntry(table.typeUrl, name, stripType(body));
    const old = table.peek(layer, name);
    const same = old !== undefined && old.version === entry.version;
    this.observer.encoded(table.typeUrl, !same);
    return same ? old : entry;
  }

  private reportSizes(): void {
    const counts = new Map<string, number>();
    for (const { table } of this.tables.values()) counts.set(table.typeUrl, (counts.get(table.typeUrl) ?? 0) + table.size);
    for (const [t, n] of counts) this.observer.resources(t, n);
  }

  /** Every table, for debug pages. */
  *allTables(): IterableIterator<TypeTable> {
    for (const { table } of this.tables.values()) yield table;
  }
}

/** A raw resource's "@type" names its type; the message itself has no such field. */
function stripType(body: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
  if (!('@type' in body)) return body;
  const { '@type': _t, ...rest } = body;
  return rest;
}
