// ServiceEntries read from the apiserver (the Istio CRD applied with kubectl to the fake apiserver): a valid
// MESH_INTERNAL entry becomes an import; an invalid one is skipped with its reason in /debug/mesh and a
// metric while the rest keep serving; meshfed watches the newest version the apiserver serves.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { startMeshfed, type Meshfed } from '../../src/app.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';

const run = promisify(execFile);
const dir = mkdtempSync(path.join(tmpdir(), 'meshfed-se-'));
const BAR = 'bar.xyz.svc.cluster-b.local';
const WAIT = { timeout: 10_000, interval: 50 }; // for meshfed to follow a kubectl apply
const cleanup: Array<() => Promise<void>> = [];

/** Istio's ServiceEntry CRD, reduced to what the apiserver needs (Istio's own schema is far longer). */
const seCrd = (versions: string[]) => ({
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'serviceentries.networking.istio.io' },
  spec: {
    group: 'networking.istio.io',
    scope: 'Namespaced',
    names: { plural: 'serviceentries', singular: 'serviceentry', kind: 'ServiceEntry', shortNames: ['se'] },
    versions: versions.map((name, i) => ({
      name,
      served: true,
      storage: i === 0,
      subresources: { status: {} },
      schema: {
        openAPIV3Schema: {
          type: 'object',
          properties: {
            spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
            status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
          },
        },
      },
    })),
  },
});

const se = (version: string, name: string, spec: Record<string, unknown>) => ({
  apiVersion: `networking.istio.io/${version}`,
  kind: 'ServiceEntry',
  metadata: { name, namespace: 'd8-istio' },
  spec,
});
const seed003 = {
  hosts: [BAR],
  location: 'MESH_INTERNAL',
  ports: [{ name: 'http', number: 8080, protocol: 'HTTP' }],
  resolution: 'STATIC',
  endpoints: [{ address: '203.0.113.10', ports: { http: 15443 } }],
};

async function kubectl(api: FakeApiServer, args: string[], input?: object): Promise<string> {
  const kubeconfig = api.writeKubeconfig(dir);
  const file = path.join(dir, `in-${Math.random().toString(36).slice(2)}.yaml`);
  if (input) writeFileSync(file, stringify(input));
  const { stdout } = await run('kubectl', [...args, ...(input ? ['-f', file] : [])], {
    env: { ...process.env, KUBECONFIG: kubeconfig },
    timeout: 20_000,
  });
  return stdout;
}

async function setup(versions: string[]): Promise<{ api: FakeApiServer; m: Meshfed }> {
  const api = await startFakeApiServer({ clusterName: 'cluster-a' });
  cleanup.push(() => api.close());
  await kubectl(api, ['apply'], seCrd(versions));
  const m = await startMeshfed({
    kube: { kubeconfig: api.writeKubeconfig(dir), clusterId: 'cluster-a', clusterDomain: 'cluster-a.local' },
    federation: { watchCrs: false },
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 0,
    log: pino({ level: 'silent' }),
  });
  cleanup.unshift(() => m.stop(100));
  return { api, m };
}

const imported = (m: Meshfed): string[] | undefined => {
  m.registry.flush();
  return m.registry.snapshot.endpoints.get(BAR)?.map((e) => `${e.address}:${e.ports['http']}`);
};

async function debugMesh(
  m: Meshfed,
): Promise<{ serviceEntries: { version: string; rejected: Array<{ entry: string; reason: string }>; ignored: unknown[] } }> {
  return (await (await fetch(`http://127.0.0.1:${m.debugPort}/debug/mesh`)).json()) as never;
}

afterAll(async () => {
  for (const c of cleanup) await c();
});

describe('ServiceEntries from the apiserver', () => {
  it('imports a valid entry, skips an invalid one with its reason, and follows edits', async () => {
    const { api, m } = await setup(['v1', 'v1beta1', 'v1alpha3']);
    await kubectl(api, ['apply'], se('v1', 'bar', seed003));
    await kubectl(api, ['apply'], se('v1', 'broken', { ...seed003, hosts: ['baz.xyz.svc.cluster-b.local'], ports: [] }));
    await kubectl(api, ['apply'], se('v1', 'external', { ...seed003, hosts: ['api.example.com'], location: 'MESH_EXTERNAL' }));
    await vi.waitFor(() => expect(imported(m), 'the import').toEqual(['203.0.113.10:15443']), WAIT);
    // One object, every served version (the apiserver converts apiVersion on the way out).
    expect(
      await kubectl(api, [
        'get',
        'serviceentries.v1alpha3.networking.istio.io',
        'bar',
        '-n',
        'd8-istio',
        '-o',
        'jsonpath={.apiVersion} {.spec.hosts[0]}',
      ]),
    ).toBe(`networking.istio.io/v1alpha3 ${BAR}`);
    expect(m.registry.snapshot.services.get(BAR)).toMatchObject({ origin: 'federation', namespace: 'xyz' });
    expect(m.registry.snapshot.services.has('baz.xyz.svc.cluster-b.local')).toBe(false);
    expect(m.registry.snapshot.services.has('api.example.com')).toBe(false);
    const dbg = await debugMesh(m);
    expect(dbg.serviceEntries).toEqual({
      version: 'v1',
      entries: 3,
      rejected: [{ entry: 'd8-istio/broken', reason: 'ports: at least one port is required' }],
      ignored: [{ entry: 'd8-istio/external', reason: 'MESH_EXTERNAL entries are not imported' }],
    });
    expect(await m.metrics.registry.getSingleMetricAsString('meshfed_kube_rejected_objects_total')).toContain(
      'meshfed_kube_rejected_objects_total{cluster="cluster-a",kind="ServiceEntry",reason="invalid"} 1',
    );

    await kubectl(api, ['apply'], se('v1', 'broken', { ...seed003, hosts: ['baz.xyz.svc.cluster-b.local'] }));
    await vi.waitFor(() => {
      m.registry.flush();
      expect([...m.registry.snapshot.services.keys()], 'the fixed entry').toContain('baz.xyz.svc.cluster-b.local');
    }, WAIT);
    expect((await debugMesh(m)).serviceEntries.rejected).toEqual([]);
    await kubectl(api, ['delete', 'serviceentry', 'bar', '-n', 'd8-istio']);
    await vi.waitFor(() => expect(imported(m), 'the removal').toBeUndefined(), WAIT);
  });

  it('watches v1alpha3 when that is all the apiserver serves', async () => {
    const { api, m } = await setup(['v1alpha3']);
    await kubectl(api, ['apply'], se('v1alpha3', 'bar', seed003));
    await vi.waitFor(() => expect(imported(m), 'the import').toEqual(['203.0.113.10:15443']), WAIT);
    expect((await debugMesh(m)).serviceEntries.version).toBe('v1alpha3');
  });
});
