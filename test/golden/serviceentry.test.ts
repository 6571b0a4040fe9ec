// Golden of seed 003's manual path: cluster-a holds a ServiceEntry (as Deckhouse renders it for a federated
// service) for bar.xyz.svc.cluster-b.local through cluster-b's ingress gateway 203.0.113.10:15443. A sidecar in
// cluster-a gets an mTLS cluster (SNI outbound_.8080_._.<host>, SANs only of cluster-b.local's xyz namespace)
// and EDS with the gateway itself. UPDATE_GOLDEN=1 rewrites the file; every resource passes Envoy's validate rules.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { VIEW_RESOURCES } from '../../src/generate/generator.js';
import { createGenerators } from '../../src/generate/index.js';
import type { MeshSnapshot } from '../../src/model/mesh.js';
import { proxyOf } from '../../src/model/proxy.js';
import { Registry } from '../../src/registry/registry.js';
import { parseMeshText } from '../../src/sources/file/parse.js';
import { meshToSource } from '../../src/sources/file/to-model.js';
import { serviceEntryToModel } from '../../src/sources/kube/service-entry.js';
import { validateResource } from '../../src/validate/index.js';
import { encodeEntry } from '../../src/xds/resource.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const NAME = 'sidecar-serviceentry-seed003';

const serviceEntry = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: 'bar-xyz-svc-cluster-b-local-bcdf', namespace: 'd8-istio' },
  spec: {
    hosts: ['bar.xyz.svc.cluster-b.local'],
    location: 'MESH_INTERNAL',
    ports: [{ name: 'http', number: 8080, protocol: 'HTTP' }],
    resolution: 'STATIC',
    endpoints: [{ address: '203.0.113.10', ports: { http: 15443 } }],
  },
};

function snapshot(): MeshSnapshot {
  let snap: MeshSnapshot | undefined;
  const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s) => (snap = s), pino({ level: 'silent' }));
  const local = { clusters: [{ id: 'cluster-a', network: 'network-a', domain: 'cluster-a.local' }] };
  registry.setSource('file', meshToSource(parseMeshText(JSON.stringify(local), 'mesh.json'), 'file:mesh.json'));
  const r = serviceEntryToModel(serviceEntry, { clusterId: 'cluster-a', localDomain: 'cluster-a.local', resolve: () => undefined });
  if (r.kind !== 'services') throw new Error(r.reason);
  registry.setSource('serviceentries:cluster-a', { clusters: new Map(), services: r.services, raw: new Map() });
  registry.flush();
  return snap!;
}

describe(`golden ${NAME}`, () => {
  const mesh = snapshot();
  const view = proxyOf({
    id: 'sidecar~10.0.0.9~client-1.abc~abc.svc.cluster-a.local',
    metadata: { CLUSTER_ID: 'cluster-a', NETWORK: 'network-a', NAMESPACE: 'abc', SERVICE_ACCOUNT: 'client', ISTIO_VERSION: '1.24.0' },
  }).view;
  const rendered = createGenerators({ sdsConfig: 'ads' }).flatMap((gen) =>
    [VIEW_RESOURCES, ...[...mesh.services.keys()].sort()].flatMap((h) =>
      gen.generate(mesh, view, h).map((r) => ({ typeUrl: gen.typeUrl, name: r.name, body: r.body })),
    ),
  );

  it('matches the reviewed golden file', () => {
    const actual = {
      about: 'seed 003: a ServiceEntry for a federated service through the remote ingress gateway',
      resources: rendered.map((r) => encodeEntry(r.typeUrl, r.name, r.body).toJSON()),
    };
    const file = path.join(here, `${NAME}.json`);
    if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(file, JSON.stringify(actual, null, 2) + '\n');
    expect(actual).toEqual(JSON.parse(readFileSync(file, 'utf8')));
  });

  it("passes the validate rules of Envoy's protos", () => {
    for (const r of rendered) expect({ name: r.name, errors: validateResource(r.typeUrl, r.body) }).toEqual({ name: r.name, errors: [] });
  });

  it('sends the gateway as the endpoint and checks only cluster-b.local identities of namespace xyz', () => {
    const text = JSON.stringify(rendered);
    expect(text).toContain('"address":"203.0.113.10","port_value":15443');
    expect(text).toContain('"match_subject_alt_names":[{"prefix":"spiffe://cluster-b.local/ns/xyz/sa/"}]');
    expect(text).not.toContain('spiffe://cluster-a.local/ns/xyz');
  });
});
