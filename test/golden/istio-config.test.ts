// Golden Istio config for seed 003's federation example (Deckhouse's "Istio Federation: common
// principles"): cluster-a.local imports bar.xyz.svc.cluster-b.local, reached through cluster B's
// ingress gateway. The reviewed test/golden/istio-federation-import.json holds what istiod reads:
// each resource decoded from the bytes meshfed sends (UPDATE_GOLDEN=1 rewrites it).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { istioGenerators } from '../../src/generate/istio.js';
import type { MeshSnapshot } from '../../src/model/mesh.js';
import { proxyOf } from '../../src/model/proxy.js';
import { Registry } from '../../src/registry/registry.js';
import { parseMeshText } from '../../src/sources/file/parse.js';
import { meshToSource } from '../../src/sources/file/to-model.js';
import { encodeEntry } from '../../src/xds/resource.js';

const here = path.dirname(fileURLToPath(import.meta.url));

const seed003 = {
  clusters: [
    { id: 'cluster-a', network: 'network-a', domain: 'cluster-a.local', gateways: [{ address: '203.0.113.10', port: 15443 }] },
    { id: 'cluster-b', network: 'network-b', domain: 'cluster-b.local', gateways: [{ address: '203.0.113.20', port: 15443 }] },
  ],
  services: [
    {
      name: 'foo',
      namespace: 'abc',
      cluster: 'cluster-a',
      ports: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
      endpoints: [{ address: '10.1.0.1', serviceAccount: 'foo' }],
    },
    {
      name: 'bar',
      namespace: 'xyz',
      cluster: 'cluster-b',
      ports: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
      endpoints: [{ address: '10.2.0.1', serviceAccount: 'bar' }],
    },
  ],
};

function snapshotOf(mesh: Record<string, unknown>): MeshSnapshot {
  let snapshot: MeshSnapshot | undefined;
  const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s) => (snapshot = s), pino({ level: 'silent' }));
  registry.setSource('golden', meshToSource(parseMeshText(JSON.stringify(mesh), 'seed-003.json'), 'file:seed-003.json'));
  registry.flush();
  return snapshot!;
}

it("renders seed 003's import as the reviewed ServiceEntry and DestinationRule", () => {
  const mesh = snapshotOf(seed003);
  const view = proxyOf({ id: 'sidecar~10.0.0.2~istiod-1.istio-system~istio-system.svc.cluster.local' }).view;
  const resources = istioGenerators({ namespace: 'd8-istio', trustDomain: 'cluster-a.local' })
    .filter((g) => g.typeUrl.includes('/v1/'))
    .flatMap((g) =>
      [...mesh.services.keys()]
        .sort()
        .flatMap((h) => g.generate(mesh, view, h).map((r) => ({ typeUrl: g.typeUrl, ...encodeEntry(g.typeUrl, r.name, r.body).toJSON() }))),
    );
  const actual = {
    about:
      "Seed 003: cluster-a.local (local) imports bar.xyz.svc.cluster-b.local through cluster B's ingress gateway 203.0.113.20:15443. foo (local) gets nothing: istiod reads it from Kubernetes.",
    resources,
  };
  const file = path.join(here, 'istio-federation-import.json');
  if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(file, JSON.stringify(actual, null, 2) + '\n');
  expect(actual).toEqual(JSON.parse(readFileSync(file, 'utf8')));
});
