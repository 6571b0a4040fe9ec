// The registry merges every source into one mesh and publishes it, debounced, with the
// list of what changed, so generators redo only what a change can affect.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import {
  EMPTY_SNAPSHOT,
  type Endpoint,
  endpointIdentities,
  type MeshChanges,
  type MeshCluster,
  type MeshSnapshot,
  type RawResource,
  type Service,
} from '../model/mesh.js';
import type { ServiceContribution, SourceMesh } from '../model/source.js';
import { type DebounceOptions, KeyDebouncer } from './debounce.js';
import { mergeService } from './merge.js';

export type PublishFn = (snapshot: MeshSnapshot, changes: MeshChanges, changedAt: number) => void;

/**
 * What the debouncer holds back, typed: one object per (kind, id), interned so that the
 * debouncer's map sees the same key for every change to it.
 */
type Key =
  | { readonly kind: 'clusters' }
  | { readonly kind: 'service'; readonly hostname: string }
  | { readonly kind: 'endpoints'; readonly hostname: string }
  | { readonly kind: 'raw'; readonly typeUrl: string; readonly name: string; readonly sourceKey: string };

const CLUSTERS: Key = { kind: 'clusters' };

/** Live (not yet published) state: raw resources keyed as sources key them (see rawKey). */
interface Live {
  clusters: ReadonlyMap<string, MeshCluster>;
  services: Map<string, Service>;
  endpoints: Map<string, readonly Endpoint[]>;
  raw: Map<string, RawResource>;
}

export class Registry {
  private readonly sources = new Map<string, SourceMesh>();
  /** Merged state, updated at once; the published snapshot follows it key by key as keys settle. */
  private readonly live: Live = { clusters: new Map(), services: new Map(), endpoints: new Map(), raw: new Map() };
  /** Never mutated once published: each release builds a new one, copying only the maps that changed. */
  private published: MeshSnapshot = EMPTY_SNAPSHOT;
  /** Content hash of each key's live value. */
  private readonly fingerprints = new Map<Key, string>();
  private readonly serviceKeys = new Map<string, Key>();
  private readonly endpointKeys = new Map<string, Key>();
  private readonly rawKeys = new Map<string, Key>();
  /** endpointIdentities of each published hostname. */
  private readonly identities = new Map<string, string>();
  private readonly debouncer: KeyDebouncer<Key>;
  private readonly conflicts = new Map<string, readonly string[]>();

  constructor(
    debounce: DebounceOptions,
    private readonly publish: PublishFn,
    private readonly log: Logger,
  ) {
    this.debouncer = new KeyDebouncer<Key>(debounce, (keys, oldest) => this.release(keys, oldest));
  }

  get snapshot(): MeshSnapshot {
    return this.published;
  }

  /** Port conflicts found while merging, for debug pages. */
  get portConflicts(): readonly string[] {
    return [...this.conflicts.values()].flat();
  }

  private noteConflicts(hostname: string, found: readonly string[]): void {
    const known = new Set(this.conflicts.get(hostname) ?? []);
    for (const c of found) if (!known.has(c)) this.log.warn({ conflict: c }, 'service ports disagree across clusters');
    if (found.length) this.conflicts.set(hostname, found);
    else this.conflicts.delete(hostname);
  }

  /** Replaces everything one source says; only keys whose merged value changed are published. */
  setSource(id: string, mesh: SourceMesh): number {
    const before = this.sources.get(id);
    this.sources.set(id, mesh);
    return this.recompute(before, mesh, keysOf(before?.services, mesh.services), keysOf(before?.raw, mesh.raw));
  }

  /** Changes part of what a source says: the given keys are set, or deleted where undefined. */
  patchSource(id: string, patch: SourcePatch): number {
    const before = this.sources.get(id);
    const after: SourceMesh = {
      clusters: patch.clusters ?? before?.clusters ?? new Map(),
      services: patched(before?.services, patch.services),
      raw: patched(before?.raw, patch.raw),
    };
    this.sources.set(id, after);
    return this.recompute(before, after, new Set(patch.services?.keys()), new Set(patch.raw?.keys()));
  }

  removeSource(id: string): void {
    const before = this.sources.get(id);
    if (!before) return;
    this.sources.delete(id);
    this.recompute(before, undefined, new Set(before.services.keys()), new Set(before.raw.keys()));
  }

  /** What one source holds now. */
  source(id: string): SourceMesh | undefined {
    return this.sources.get(id);
  }

  /** Publishes every pending change now. */
  flush(): void {
    this.debouncer.flush();
  }

  stop(): void {
    this.debouncer.stop();
  }

  /** Returns the number of services whose merged description or endpoints changed. */
  private recompute(
    before: SourceMesh | undefined,
    after: SourceMesh | undefined,
    serviceKeys: ReadonlySet<string>,
    rawKeys: ReadonlySet<string>,
  ): number {
    const now = Date.now();
    const hostnames = new Set<string>();
    for (const m of [before, after]) {
      for (const k of serviceKeys) {
        const c = m?.services.get(k);
        if (c) hostnames.add(c.hostname);
      }
    }
    let changedServices = 0;
    if (hostnames.size > 0) {
      const contributions = this.contributionsByHostname(hostnames);
      for (const h of hostnames) {
        const merged = mergeService(contributions.get(h) ?? []);
        this.noteConflicts(h, merged?.conflicts ?? []);
        const s = this.set(
          intern(this.serviceKeys, h, (): Key => ({ kind: 'service', hostname: h })),
          merged?.service,
          now,
          (v) => setOrDelete(this.live.services, h, v),
        );
        const eps = merged?.endpoints.length ? merged.endpoints : undefined;
        const e = this.set(
          intern(this.endpointKeys, h, (): Key => ({ kind: 'endpoints', hostname: h })),
          eps,
          now,
          (v) => setOrDelete(this.live.endpoints, h, v),
        );
        if (s || e) changedServices++;
      }
    }
    if (before?.clusters.size || after?.clusters.size) {
      const clusters = new Map<string, MeshCluster>();
      for (const src of this.sources.values()) for (const [id, c] of src.clusters) if (!clusters.has(id)) clusters.set(id, c);
      this.set(CLUSTERS, [...clusters.values()], now, () => {
        this.live.clusters = clusters;
      });
    }
    for (const k of rawKeys) {
      let r: RawResource | undefined;
      for (const src of this.sources.values()) r ??= src.raw.get(k);
      // A deleted resource is named by what was live (or by the source that dropped it).
      const named = r ?? this.live.raw.get(k) ?? before?.raw.get(k);
      if (!named) continue;
      const key = intern(this.rawKeys, k, (): Key => ({ kind: 'raw', typeUrl: named.typeUrl, name: named.name, sourceKey: k }));
      this.set(key, r, now, (v) => setOrDelete(this.live.raw, k, v));
    }
    return changedServices;
  }

  private contributionsByHostname(hostnames: ReadonlySet<string>): Map<string, ServiceContribution[]> {
    const out = new Map<string, ServiceContribution[]>();
    for (const src of this.sources.values()) {
      for (const c of src.services.values()) {
        if (!hostnames.has(c.hostname)) continue;
        let list = out.get(c.hostname);
        if (!list) out.set(c.hostname, (list = []));
        list.push(c);
      }
    }
    return out;
  }

  /** Applies a value to the live state if its fingerprint changed, and queues it for publishing. */
  private set<T>(key: Key, value: T | undefined, now: number, apply: (v: T | undefined) => void): boolean {
    const fp = value === undefined ? undefined : contentHash(value);
    if (fp === this.fingerprints.get(key)) return false;
    if (fp === undefined) this.fingerprints.delete(key);
    else this.fingerprints.set(key, fp);
    apply(value);
    this.debouncer.touch(key, now);
    return true;
  }

  private release(keys: readonly Key[], oldest: number): void {
    const prev = this.published;
    let clusters = false;
    const services = new Set<string>();
    const endpoints = new Set<string>();
    const identities = new Set<string>();
    const rawByType = new Map<string, Map<string, Key & { kind: 'raw' }>>();
    for (const key of keys) {
      if (key.kind === 'clusters') clusters = true;
      else if (key.kind === 'service') services.add(key.hostname);
      else if (key.kind === 'endpoints') endpoints.add(key.hostname);
      else {
        let byName = rawByType.get(key.typeUrl);
        if (!byName) rawByType.set(key.typeUrl, (byName = new Map()));
        byName.set(key.name, key);
      }
    }
    const nextServices = edited(prev.services, services, (h) => {
      const svc = this.live.services.get(h);
      if (!svc) this.serviceKeys.delete(h);
      return svc;
    });
    const nextEndpoints = edited(prev.endpoints, endpoints, (h) => {
      const eps = this.live.endpoints.get(h);
      if (!eps) this.endpointKeys.delete(h);
      const who = endpointIdentities(eps);
      if (who !== (this.identities.get(h) ?? '')) identities.add(h);
      setOrDelete(this.identities, h, who || undefined);
      return eps;
    });
    const nextRaw = edited(prev.raw, rawByType.keys(), (typeUrl) => {
      const changed = rawByType.get(typeUrl)!;
      const byName = edited(prev.raw.get(typeUrl) ?? new Map<string, RawResource>(), changed.keys(), (name) => {
        const key = changed.get(name)!;
        const r = this.live.raw.get(key.sourceKey);
        if (!r) this.rawKeys.delete(key.sourceKey);
        return r;
      });
      return byName.size ? byName : undefined;
    });
    this.published = Object.freeze({
      clusters: clusters ? this.live.clusters : prev.clusters,
      services: nextServices,
      endpoints: nextEndpoints,
      raw: nextRaw,
    });
    const raw = new Map([...rawByType].map(([typeUrl, byName]) => [typeUrl, new Set(byName.keys())]));
    this.log.debug({ services: services.size, endpoints: endpoints.size, raw: raw.size, clusters }, 'publishing mesh changes');
    this.publish(this.published, { clusters, services, endpoints, identities, raw }, oldest);
  }
}

export interface SourcePatch {
  readonly clusters?: ReadonlyMap<string, MeshCluster>;
  readonly services?: ReadonlyMap<string, ServiceContribution | undefined>;
  readonly raw?: ReadonlyMap<string, RawResource | undefined>;
}

function keysOf(a: ReadonlyMap<string, unknown> | undefined, b: ReadonlyMap<string, unknown>): Set<string> {
  const out = new Set(b.keys());
  for (const k of a?.keys() ?? []) out.add(k);
  return out;
}

function patched<V>(
  base: ReadonlyMap<string, V> | undefined,
  patch: ReadonlyMap<string, V | undefined> | undefined,
): ReadonlyMap<string, V> {
  if (!patch?.size && base) return base; // nothing to change: no copy (a kube patch never carries raw resources)
  const out = new Map(base);
  for (const [k, v] of patch ?? []) setOrDelete(out, k, v);
  return out;
}

/** A copy of `prev` with `ids` set to `valueOf(id)` (deleted where undefined); `prev` itself when `ids` is empty. */
function edited<V>(prev: ReadonlyMap<string, V>, ids: Iterable<string>, valueOf: (id: string) => V | undefined): ReadonlyMap<string, V> {
  let next: Map<string, V> | undefined;
  for (const id of ids) setOrDelete((next ??= new Map(prev)), id, valueOf(id));
  return next ?? prev;
}

function setOrDelete<K, V>(map: Map<K, V>, key: K, value: V | undefined): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}

function intern<K>(keys: Map<string, K>, id: string, make: () => K): K {
  let k = keys.get(id);
  if (!k) keys.set(id, (k = make()));
  return k;
}

/** A digest of a value's JSON, so that only 27 characters per key are kept, not a copy of each endpoint list. */
function contentHash(value: unknown): string {
  return createHash('sha1').update(JSON.stringify(value)).digest('base64url');
}
