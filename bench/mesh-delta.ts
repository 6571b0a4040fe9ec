// How a published mesh crosses from the discovery process to a serving worker: only what the
// registry says changed (MeshChanges), with the new values; the worker rebuilds the snapshot by
// copying only the maps that changed, as the registry does. Plain data and Maps/Sets, for IPC
// with `serialization: 'advanced'` (the structured clone, no JSON round trip).
// Prototype for the N-worker design (docs/ARCHITECTURE.md, "Serving from N processes").
import { type Endpoint, type MeshChanges, type MeshCluster, type MeshSnapshot, type RawResource, type Service } from '../src/model/mesh.js';

export interface MeshDelta {
  /** The whole cluster map, when changes.clusters. */
  readonly clusters?: ReadonlyMap<string, MeshCluster>;
  /** New values by hostname; undefined: gone. */
  readonly services: ReadonlyArray<readonly [string, Service | undefined]>;
  readonly endpoints: ReadonlyArray<readonly [string, readonly Endpoint[] | undefined]>;
  /** By type URL, then name. */
  readonly raw: ReadonlyArray<readonly [string, ReadonlyArray<readonly [string, RawResource | undefined]>]>;
  readonly changes: MeshChanges;
  readonly changedAt: number;
}

/** What a worker needs to go from the previous snapshot to `mesh`. */
export function meshDelta(mesh: MeshSnapshot, changes: MeshChanges, changedAt: number): MeshDelta {
  return {
    clusters: changes.clusters ? mesh.clusters : undefined,
    services: [...changes.services].map((h) => [h, mesh.services.get(h)] as const),
    endpoints: [...changes.endpoints].map((h) => [h, mesh.endpoints.get(h)] as const),
    raw: [...changes.raw].map(([t, names]) => [t, [...names].map((n) => [n, mesh.raw.get(t)?.get(n)] as const)] as const),
    changes,
    changedAt,
  };
}

/** The whole mesh as one delta from EMPTY_SNAPSHOT: what a worker gets first (or after a restart). */
export function fullDelta(mesh: MeshSnapshot, changedAt: number): MeshDelta {
  const hostnames = new Set([...mesh.services.keys(), ...mesh.endpoints.keys()]);
  return meshDelta(
    mesh,
    {
      clusters: true,
      services: new Set(mesh.services.keys()),
      endpoints: new Set(mesh.endpoints.keys()),
      identities: hostnames,
      raw: new Map([...mesh.raw].map(([t, byName]) => [t, new Set(byName.keys())])),
    },
    changedAt,
  );
}

/** The next snapshot: maps without changes keep their identity (generators memoize on the cluster map). */
export function applyMeshDelta(prev: MeshSnapshot, d: MeshDelta): MeshSnapshot {
  let raw = prev.raw;
  if (d.raw.length) {
    const next = new Map(prev.raw);
    for (const [t, entries] of d.raw) {
      const byName = edited(prev.raw.get(t) ?? new Map<string, RawResource>(), entries);
      if (byName.size) next.set(t, byName);
      else next.delete(t);
    }
    raw = next;
  }
  return Object.freeze({
    clusters: d.clusters ?? prev.clusters,
    services: edited(prev.services, d.services),
    endpoints: edited(prev.endpoints, d.endpoints),
    raw,
  });
}

function edited<V>(prev: ReadonlyMap<string, V>, entries: ReadonlyArray<readonly [string, V | undefined]>): ReadonlyMap<string, V> {
  if (!entries.length) return prev;
  const next = new Map(prev);
  for (const [k, v] of entries) {
    if (v === undefined) next.delete(k);
    else next.set(k, v);
  }
  return next;
}
