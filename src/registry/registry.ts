// The registry merges every source into one mesh and publishes it, debounced, with the
// list of what changed, so generators redo only what a change can affect.
import type { Logger } from 'pino';
import { type Endpoint, endpointIdentities, type MeshChanges, type MeshCluster, type MeshSnapshot, type RawResource, type Service } from '../model/mesh.js';
import type { ServiceContribution, SourceMesh } from '../model/source.js';
import { type DebounceOptions, KeyDebouncer } from './debounce.js';
import { mergeService } from './merge.js';

export type PublishFn = (snapshot: MeshSnapshot, changes: MeshChanges, changedAt: number) => void;

const CLUSTERS = 'clusters';
const svcKey = (h: string): string => `svc ${h}`;
const epKey = (h: string): string => `ep ${h}`;
const rawKeyOf = (k: string): string => `raw ${k}`;

interface State {
  clusters: Map<string, MeshCluster>;
  services: Map<string, Service>;
  endpoints: Map<string, readonly Endpoint[]>;
  raw: Map<string, Map<string, RawResource>>;
}

const emptyState = (): State => ({ clusters: new Map(), services: new Map(), endpoints: new Map(), raw: new Map() });

export class Registry {
  private readonly sources = new Map<string, SourceMesh>();
  /** Merged state, updated at once; `published` follows it key by key as keys settle. */
  private readonly live: State = emptyState();
  private readonly published: State = emptyState();
  private readonly fingerprints = new Map<string, string>();
  /** endpointIdentities of each published hostname. */
  private readonly identities = new Map<string, string>();
  private readonly debouncer: KeyDebouncer;
  private readonly conflicts = new Map<string, readonly string[]>();

  constructor(
    debounce: DebounceOptions,
    private readonly publish: PublishFn,
    private readonly log: Logger,
  ) {
    this.debouncer = new KeyDebouncer(debounce, (keys, oldest) => this.release(keys, oldest));
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
        const s = this.set(svcKey(h), merged?.service, now, (v) => setOrDelete(this.live.services, h, v));
        const e = this.set(epKey(h), merged?.endpoints.length ? merged.endpoints : undefined, now, (v) =>
          setOrDelete(this.live.endpoints, h, v),
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
      this.set(rawKeyOf(k), r, now, () => {
        const [typeUrl, name] = splitRawKey(k);
        let byName = this.live.raw.get(typeUrl);
        if (!byName) this.live.raw.set(typeUrl, (byName = new Map()));
        setOrDelete(byName, name, r);
      });
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
  private set<T>(key: string, value: T | undefined, now: number, apply: (v: T | undefined) => void): boolean {
    const fp = value === undefined ? undefined : JSON.stringify(value);
    if (fp === this.fingerprints.get(key)) return false;
    if (fp === undefined) this.fingerprints.delete(key);
    else this.fingerprints.set(key, fp);
    apply(value);
    this.debouncer.touch(key, now);
    return true;
  }

  private release(keys: readonly string[], oldest: number): void {
    const services = new Set<string>();
    const endpoints = new Set<string>();
    const identities = new Set<string>();
    const raw = new Set<string>();
    let clusters = false;
    for (const key of keys) {
      const space = key.indexOf(' ');
      const kind = space < 0 ? key : key.slice(0, space);
      const id = key.slice(space + 1);
      if (kind === CLUSTERS) {
        clusters = true;
        this.published.clusters = this.live.clusters;
      } else if (kind === 'svc') {
        services.add(id);
        setOrDelete(this.published.services, id, this.live.services.get(id));
      } else if (kind === 'ep') {
        endpoints.add(id);
        const eps = this.live.endpoints.get(id);
        setOrDelete(this.published.endpoints, id, eps);
        const who = endpointIdentities(eps);
        if (who !== (this.identities.get(id) ?? '')) identities.add(id);
        if (who) this.identities.set(id, who);
        else this.identities.delete(id);
      } else if (kind === 'raw') {
        raw.add(id);
        const [typeUrl, name] = splitRawKey(id);
        let byName = this.published.raw.get(typeUrl);
        if (!byName) this.published.raw.set(typeUrl, (byName = new Map()));
        setOrDelete(byName, name, this.live.raw.get(typeUrl)?.get(name));
      }
    }
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

function patched<V>(base: ReadonlyMap<string, V> | undefined, patch: ReadonlyMap<string, V | undefined> | undefined): ReadonlyMap<string, V> {
  if (!patch?.size && base) return base; // nothing to change: no copy (a kube patch never carries raw resources)
  const out = new Map(base);
  for (const [k, v] of patch ?? []) setOrDelete(out, k, v);
  return out;
}

function setOrDelete<K, V>(map: Map<K, V>, key: K, value: V | undefined): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}

function splitRawKey(k: string): [string, string] {
  const i = k.indexOf(' ');
  return [k.slice(0, i), k.slice(i + 1)];
}
