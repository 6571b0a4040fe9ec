// The federation source on its own: a peer's metadata → cluster (root, gateways with hostnames resolved)
// and imports; hostnames outside the peer's trust domain refused.
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { MeshSnapshot } from '../../src/model/mesh.js';
import { Registry } from '../../src/registry/registry.js';
import { FederationSource } from '../../src/sources/federation/federation-source.js';

const GUARD = { staleAfterMs: 60_000, withdrawAfterMs: 120_000, maxDropShare: 0.5, confirmAfterMs: 60_000, dropWindowMs: 10_000 };

describe('FederationSource', () => {
  it("resolves gateway hostnames, imports only the peer's own names, and removes everything with the peer", async () => {
    let snap: MeshSnapshot | undefined;
    const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s) => (snap = s), pino({ level: 'silent' }));
    const lookups: string[] = [];
    const src = new FederationSource(
      registry,
      GUARD,
      pino({ level: 'silent' }),
      async (h) => (lookups.push(h), h === 'gw.cluster-b.example.com' ? ['198.51.100.2', '198.51.100.1'] : []),
    );
    src.update({
      name: 'b',
      trustDomain: 'cluster-b.local',
      public: { clusterUUID: 'u', authnKeyPub: 'k', rootCA: 'root-b' },
      private: {
        ingressGateways: [
          { address: 'gw.cluster-b.example.com', port: 15443 },
          { address: '203.0.113.9', port: 15443 },
        ],
        publicServices: [
          { hostname: 'bar.xyz.svc.cluster-b.local', ports: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
          { hostname: 'foo.abc.svc.cluster-a.local', ports: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
          { hostname: 'x.y.z.svc.cluster-b.local', ports: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
        ],
      },
    });
    await vi.waitFor(
      () => {
        registry.flush();
        expect(snap?.clusters.get('federation:b')?.gateways, 'the resolved gateway').toHaveLength(3);
      },
      { timeout: 5000, interval: 50 },
    );
    expect(lookups).toEqual(['gw.cluster-b.example.com']);
    expect(snap!.clusters.get('federation:b')).toEqual({
      id: 'federation:b',
      network: 'federation:b',
      domain: 'cluster-b.local',
      rootCaPem: 'root-b',
      gateways: [
        { address: '198.51.100.1', port: 15443 },
        { address: '198.51.100.2', port: 15443 },
        { address: '203.0.113.9', port: 15443 },
      ],
    });
    expect([...snap!.services.keys()]).toEqual(['bar.xyz.svc.cluster-b.local']);
    expect(snap!.endpoints.get('bar.xyz.svc.cluster-b.local')?.map((e) => `${e.address} ${JSON.stringify(e.ports)} ${e.network}`)).toEqual([
      '198.51.100.1 {"http":15443} federation:b',
      '198.51.100.2 {"http":15443} federation:b',
      '203.0.113.9 {"http":15443} federation:b',
    ]);
    expect(src.status('b')).toMatchObject({
      phase: 'fresh',
      servicesImported: 1,
      refusedServices: ['foo.abc.svc.cluster-a.local', 'x.y.z.svc.cluster-b.local'],
    });
    src.remove('b');
    registry.flush();
    expect(snap!.clusters.size).toBe(0);
    expect(snap!.services.size).toBe(0);
    src.stop();
  });
});
