// The N-worker prototype's snapshot transport (bench/mesh-delta.ts): a worker that applies each published
// change, after the structured clone IPC does, holds the registry's snapshot, whatever the change; and a
// worker that joins late gets there from one full delta. bench/workers.ts's verdict rests on this.
import { deserialize, serialize } from 'node:v8';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { applyMeshDelta, fullDelta, type MeshDelta, meshDelta } from '../../bench/mesh-delta.js';
import { EMPTY_SNAPSHOT, type MeshCluster, type MeshSnapshot, type RawResource } from '../../src/model/mesh.js';
import { contributionKey, rawKey, type ServiceContribution, type SourceMesh } from '../../src/model/source.js';
import { Registry } from '../../src/registry/registry.js';
import { contribution, endpoint } from '../helpers/model.js';

const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const cluster = (id: string, network: string): MeshCluster => ({
  id,
  network,
  domain: 'cluster.local',
  rootCaPem: '',
  gateways: [{ address: '192.0.2.1', port: 15443 }],
});
const listener = (name: string, port: number): RawResource => ({
  typeUrl: LISTENER,
  name,
  body: { '@type': LISTENER, name, address: { socket_address: { port_value: port } } },
});

function source(services: ServiceContribution[], raw: RawResource[] = [], clusters: MeshCluster[] = []): SourceMesh {
  return {
    clusters: new Map(clusters.map((c) => [c.id, c])),
    services: new Map(services.map((s) => [contributionKey(s), s])),
    raw: new Map(raw.map((r) => [rawKey(r), r])),
  };
}

/** A registry, and a worker that receives every publish as a MeshDelta through v8's structured clone. */
function pipeline(): { registry: Registry; worker: () => MeshSnapshot } {
  let worker = EMPTY_SNAPSHOT;
  const registry = new Registry(
    { quietMs: 0, maxMs: 0 },
    (snapshot, changes, at) => (worker = applyMeshDelta(worker, deserialize(serialize(meshDelta(snapshot, changes, at))) as MeshDelta)),
    pino({ level: 'silent' }),
  );
  return { registry, worker: () => worker };
}

describe('MeshDelta', () => {
  it('keeps a worker equal to the registry through adds, endpoint changes, removals, raw resources and cluster changes', () => {
    const { registry, worker } = pipeline();
    const steps: Array<() => void> = [
      () =>
        registry.setSource(
          'file',
          source([contribution('a', 'c1', 2), contribution('b', 'c1', 1)], [listener('l1', 80)], [cluster('c1', 'n1')]),
        ),
      () =>
        registry.setSource(
          'kube',
          source(
            [contribution('a', 'c2', [endpoint('10.2.0.1', { clusterId: 'c2', network: 'n2' })]), contribution('c', 'c2', 3)],
            [],
            [cluster('c2', 'n2')],
          ),
        ),
      () =>
        registry.patchSource('file', { services: new Map([[contributionKey(contribution('b', 'c1', 0)), contribution('b', 'c1', 4)]]) }),
      () =>
        registry.patchSource('file', {
          raw: new Map([
            [rawKey(listener('l1', 0)), undefined],
            [rawKey(listener('l2', 0)), listener('l2', 81)],
          ]),
        }),
      () => registry.patchSource('file', { clusters: new Map([['c1', { ...cluster('c1', 'n1'), gateways: [] }]]) }),
      () => registry.removeSource('kube'),
    ];
    for (const step of steps) {
      step();
      registry.flush();
      expect(worker()).toEqual(registry.snapshot);
    }
    expect(worker().services.size).toBe(2); // what the last step left: a and b of c1
    expect(worker().raw.get(LISTENER)?.has('l2')).toBe(true);
    registry.stop();
  });

  it('leaves a map nothing changed as it was (split horizon memoizes on the cluster map)', () => {
    const { registry, worker } = pipeline();
    registry.setSource('file', source([contribution('a', 'c1', 1)], [], [cluster('c1', 'n1')]));
    registry.flush();
    const clusters = worker().clusters;
    registry.patchSource('file', { services: new Map([[contributionKey(contribution('a', 'c1', 0)), contribution('a', 'c1', 2)]]) });
    registry.flush();
    expect(worker().endpoints.get('a.ns.svc.cluster.local')).toHaveLength(2);
    expect(worker().clusters).toBe(clusters);
    registry.stop();
  });

  it('brings a worker that joins late to the current snapshot from one full delta', () => {
    const { registry } = pipeline();
    registry.setSource(
      'file',
      source([contribution('a', 'c1', 2), contribution('b', 'c1', 1)], [listener('l1', 80)], [cluster('c1', 'n1')]),
    );
    registry.flush();
    const late = applyMeshDelta(EMPTY_SNAPSHOT, deserialize(serialize(fullDelta(registry.snapshot, Date.now()))) as MeshDelta);
    expect(late).toEqual(registry.snapshot);
    registry.stop();
  });
});
