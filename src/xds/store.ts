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
/**
 * Tables of types no generator makes (raw resources, Istio config kinds istiod asks for): past this many, the
 * unwatched ones go at once rather than after IDLE_TABLE_MS, so a client naming ever new type URLs cannot pile
 * them up. They hold only raw resources, rebuilt from the mesh when asked for again.
 */
const MAX_RAW_TABLES = 256;

export class XdsStore {
  private mesh: MeshSnapshot = EMPTY_SNAPSHOT;
  private readonly tables = new Map<string, Slot>();
  private readonly generators: Map<string, Generator>;
  private readonly openListeners = new Set<(typeUrl: string, viewKey: string) => void>();

  constructor(
    generators: readonly Generator[],
    private readonly observer: XdsObserver = NO_OBSERVER,
  ) {
    this.generators = new Map(generators.map((g) => [g.typeUrl, g]));
  }

  /** The table a proxy with this view reads for a type; built on first use. */
  table(typeUrl: string, view: ProxyView): TypeTable {
    const gen = this.generators.get(typeUrl);
    const viewKey = gen ? gen.viewKey(view) : '';
    const key = `${typeUrl} ${viewKey}`;
    for (const fn of this.openListeners) fn(typeUrl, viewKey);
    let slot = this.tables.get(key);
    if (!slot) {
      if (!gen) this.dropUnwatchedRawTables();
      slot = { table: new TypeTable(typeUrl, viewKey), view, owned: new Map(), owners: new Map() };
      this.tables.set(key, slot);
      const hostnames = gen ? [VIEW_RESOURCES, ...this.mesh.services.keys()] : [];
      this.regenerate(slot, gen, hostnames);
      this.writeRaw(slot.table, this.mesh.raw.get(typeUrl)?.keys() ?? []);
      this.reportSizes();
    }
    return slot.table;
  }

  private dropUnwatchedRawTables(): void {
    const raw = [...this.tables].filter(([, slot]) => !this.generators.has(slot.table.typeUrl));
    if (raw.length < MAX_RAW_TABLES) return;
    for (const [key, slot] of raw) if (slot.table.watchers.size === 0) this.tables.delete(key);
  }

  /**
   * fn(typeUrl, viewKey) runs whenever a stream opens a table: how inputs from outside the mesh (the PKI)
   * learn what is wanted. It must not write to the store synchronously.
   */
  onOpen(fn: (typeUrl: string, viewKey: string) => void): () => void {
    this.openListeners.add(fn);
    return () => this.openListeners.delete(fn);
  }

  /** Whether a stream watches this table, or did so recently enough to keep it for a reconnect. */
  watched(typeUrl: string, viewKey: string): boolean {
    const slot = this.tables.get(`${typeUrl} ${viewKey}`);
    return !!slot && !idle(slot.table, Date.now());
  }

  /** Applies a new mesh snapshot; tables regenerate only what the changes can affect. */
  update(mesh: MeshSnapshot, changes: MeshChanges, changedAt: number = Date.now()): void {
    this.mesh = mesh;
    const now = Date.now();
    for (const [key, slot] of this.tables) {
      if (idle(slot.table, now)) {
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
      changed.push(...this.writeRaw(slot.table, changes.raw.get(slot.table.typeUrl) ?? []));
      slot.table.publish([...new Set(changed)], changedAt);
    }
    this.reportSizes();
  }

  /**
   * Regenerates a type's view-wide resources outside a mesh change (SDS: a certificate was renewed,
   * the trust bundle changed); `viewKeys` limits it to those views. Inputs from outside the mesh
   * feed only view-wide resources, so no service is regenerated.
   */
  refresh(typeUrl: string, viewKeys: ReadonlySet<string> | 'all', changedAt: number = Date.now()): void {
    const gen = this.generators.get(typeUrl);
    if (!gen) return;
    for (const slot of this.tables.values()) {
      if (slot.table.typeUrl !== typeUrl || (viewKeys !== 'all' && !viewKeys.has(slot.table.viewKey))) continue;
      const changed = this.regenerate(slot, gen, [VIEW_RESOURCES]);
      slot.table.publish(changed, changedAt);
    }
    this.reportSizes();
  }

  private regenerate(slot: Slot, gen: Generator | undefined, hostnames: Iterable<string>): string[] {
    if (!gen) return [];
    const updates = new Map<string, Entry | undefined>();
    const released: string[] = [];
    let viewWide = false;
    for (const hostname of hostnames) {
      if (hostname === VIEW_RESOURCES) viewWide = true;
      const before = slot.owned.get(hostname) ?? [];
      const resources = gen.generate(this.mesh, slot.view, hostname);
      const now = new Set(resources.map((r) => r.name));
      for (const name of before) if (!now.has(name) && releaseOwner(slot.owners, name, hostname)) released.push(name);
      for (const { name, body } of resources) {
        // The first owner by hostname writes a shared name (a gRPC server listener on 0.0.0.0:port).
        if (addOwner(slot.owners, name, hostname) === hostname) updates.set(name, this.encode(slot.table, 'generated', name, body));
      }
      if (resources.length) slot.owned.set(hostname, [...now]);
      else slot.owned.delete(hostname);
    }
    for (const name of released) {
      if (updates.has(name)) continue;
      const first = firstOwner(slot.owners, name);
      const body = first === undefined ? undefined : gen.generate(this.mesh, slot.view, first).find((r) => r.name === name)?.body;
      updates.set(name, body && this.encode(slot.table, 'generated', name, body));
    }
    if (viewWide && gen.ready) slot.table.setReady(gen.ready(slot.view));
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
    const old = table.peek(layer, name);
    const entry = encodeEntry(table.typeUrl, name, body, old);
    this.observer.encoded(table.typeUrl, entry !== old);
    return entry;
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

function idle(table: TypeTable, now: number): boolean {
  return table.watchers.size === 0 && now - table.idleSince > IDLE_TABLE_MS;
}

interface Slot {
  readonly table: TypeTable;
  readonly view: ProxyView;
  /** Names each hostname generated. */
  readonly owned: Map<string, string[]>;
  /** Hostnames that generate a name: one (a string) almost always, a sorted list when shared. */
  readonly owners: Map<string, string | string[]>;
}

/** Adds an owner; returns the first owner, whose resource is served. */
function addOwner(owners: Map<string, string | string[]>, name: string, hostname: string): string {
  const cur = owners.get(name);
  if (cur === undefined || cur === hostname) {
    owners.set(name, hostname);
    return hostname;
  }
  const list = typeof cur === 'string' ? [cur] : cur;
  if (!list.includes(hostname)) {
    list.push(hostname);
    list.sort();
  }
  owners.set(name, list);
  return list[0]!;
}

/** Drops an owner; true if the served resource must change (it was the first owner). */
function releaseOwner(owners: Map<string, string | string[]>, name: string, hostname: string): boolean {
  const cur = owners.get(name);
  if (cur === hostname) {
    owners.delete(name);
    return true;
  }
  if (typeof cur !== 'object') return false;
  const i = cur.indexOf(hostname);
  if (i < 0) return false;
  cur.splice(i, 1);
  if (cur.length === 1) owners.set(name, cur[0]!);
  return i === 0;
}

function firstOwner(owners: Map<string, string | string[]>, name: string): string | undefined {
  const cur = owners.get(name);
  return typeof cur === 'object' ? cur[0] : cur;
}
