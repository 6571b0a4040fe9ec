// Parsing, validating and modelling mesh descriptions: good files in YAML and JSON, and the
// messages for bad ones (file, line, path and problem).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadDefaultMesh } from '../../src/config/default-mesh.js';
import { MeshFileError, meshToSource, parseMeshText } from '../../src/sources/file/index.js';

const MINIMAL = `
clusters:
  - id: c1
    gateways: [{ address: 10.0.0.1, port: 15443 }]
services:
  - name: foo
    namespace: abc
    cluster: c1
    ports: [{ name: grpc, port: 8080 }]
    endpoints:
      - address: 10.1.0.1
`;

function model(text: string, file = 'mesh.yaml') {
  return meshToSource(parseMeshText(text, file), `file:${file}`);
}

function parseError(text: string): MeshFileError {
  try {
    parseMeshText(text, 'mesh.yaml');
  } catch (e) {
    if (e instanceof MeshFileError) return e;
    throw e;
  }
  throw new Error('expected a MeshFileError');
}

/** A mesh with one service whose ports and endpoints the test supplies, indented as YAML lines. */
function meshWith(service: string, extra = ''): string {
  return `clusters:
  - id: c1
services:
  - name: foo
    namespace: abc
    cluster: c1
${service}
${extra}`;
}

describe('parseMeshText: good descriptions', () => {
  it('reads YAML and applies the defaults', () => {
    const m = model(MINIMAL);
    expect([...m.clusters.values()]).toEqual([
      { id: 'c1', network: 'c1', domain: 'cluster.local', rootCaPem: '', gateways: [{ address: '10.0.0.1', port: 15443 }] },
    ]);
    const svc = m.services.get('c1/foo.abc.svc.cluster.local');
    expect(svc).toMatchObject({
      hostname: 'foo.abc.svc.cluster.local',
      cluster: 'c1',
      origin: 'local',
      exported: false,
      ports: [{ name: 'grpc', port: 8080, protocol: 'GRPC', targetPort: 8080 }],
    });
    expect(svc?.endpoints).toEqual([
      {
        address: '10.1.0.1',
        ports: { grpc: 8080 },
        serviceAccount: 'default',
        labels: {},
        locality: { region: '', zone: '', subzone: '' },
        health: 'HEALTHY',
        weight: 1,
        mtls: true,
        clusterId: 'c1',
        network: 'c1',
        provenance: { source: 'file:mesh.yaml' },
      },
    ]);
    expect(m.raw.size).toBe(0);
  });

  it('reads JSON with proto field names and full enum names like YAML with camelCase and short names', () => {
    const yaml = meshWith(`    ports: [{ name: grpc, port: 80, targetPort: 8080 }]
    endpoints:
      - { address: 10.1.0.1, serviceAccount: foo, health: unhealthy, mtls: false }`);
    const json = JSON.stringify({
      clusters: [{ id: 'c1' }],
      services: [
        {
          name: 'foo',
          namespace: 'abc',
          cluster: 'c1',
          ports: [{ name: 'grpc', port: '80', target_port: 8080 }],
          endpoints: [{ address: '10.1.0.1', service_account: 'foo', health: 'HEALTH_UNHEALTHY', mtls: false }],
        },
      ],
    });
    const fromYaml = model(yaml);
    expect(model(json)).toEqual(fromYaml);
    const ep = fromYaml.services.get('c1/foo.abc.svc.cluster.local')?.endpoints[0];
    expect(ep).toMatchObject({ serviceAccount: 'foo', health: 'UNHEALTHY', mtls: false, ports: { grpc: 8080 } });
  });

  it('picks each endpoint port from ports[name], else port, else the target port', () => {
    const m = model(
      meshWith(`    ports:
      - { name: grpc, port: 80, targetPort: 8080 }
      - { name: http, port: 81 }
    endpoints:
      - { address: 10.1.0.1 }
      - { address: 10.1.0.2, port: 9000 }
      - { address: 10.1.0.3, port: 9000, ports: { http: 9001 } }`),
    );
    const eps = m.services.get('c1/foo.abc.svc.cluster.local')?.endpoints.map((e) => e.ports);
    expect(eps).toEqual([
      { grpc: 8080, http: 81 },
      { grpc: 9000, http: 9000 },
      { grpc: 9000, http: 9001 },
    ]);
  });

  it("defaults an endpoint's network to its own cluster's network", () => {
    const m = model(`clusters:
  - { id: c1, network: n1, domain: one.local }
  - { id: c2, network: n2 }
services:
  - name: foo
    namespace: abc
    cluster: c1
    ports: [{ name: http, port: 80 }]
    endpoints:
      - { address: 10.1.0.1 }
      - { address: 10.2.0.1, cluster: c2 }
      - { address: 10.3.0.1, cluster: c2, network: n3 }
`);
    const svc = m.services.get('c1/foo.abc.svc.one.local');
    expect(svc?.endpoints.map((e) => [e.clusterId, e.network])).toEqual([
      ['c1', 'n1'],
      ['c2', 'n2'],
      ['c2', 'n3'],
    ]);
  });

  it('gives the same model, in the same order, however the file is ordered', () => {
    const a = model(`clusters: [{ id: c2 }, { id: c1 }]
services:
  - { name: b, namespace: x, cluster: c1, ports: [{ name: p, port: 1 }], endpoints: [{ address: 10.0.0.2 }, { address: 10.0.0.1 }] }
  - { name: a, namespace: x, cluster: c2, ports: [{ name: p, port: 1 }] }
`);
    const b = model(`clusters: [{ id: c1 }, { id: c2 }]
services:
  - { name: a, namespace: x, cluster: c2, ports: [{ name: p, port: 1 }] }
  - { name: b, namespace: x, cluster: c1, ports: [{ name: p, port: 1 }], endpoints: [{ address: 10.0.0.1 }, { address: 10.0.0.2 }] }
`);
    expect(a).toEqual(b);
    expect([...a.clusters.keys()]).toEqual([...b.clusters.keys()]);
    expect([...a.services.keys()]).toEqual([...b.services.keys()]);
    expect(a.services.get('c1/b.x.svc.cluster.local')?.endpoints.map((e) => e.address)).toEqual(['10.0.0.1', '10.0.0.2']);
  });

  it('reads raw Envoy resources, keyed by type and name, with "@type" moved out of the body', () => {
    const m = model(
      meshWith(
        `    ports: [{ name: p, port: 1 }]`,
        `resources:
  - "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
    cluster_name: raw
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } }] }]`,
      ),
    );
    const key = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment raw';
    expect(m.raw.get(key)).toMatchObject({ typeUrl: key.split(' ')[0], name: 'raw', body: { cluster_name: 'raw' } });
    expect(m.raw.get(key)?.body).not.toHaveProperty('@type');
  });

  it('accepts the commented example in deploy/examples', () => {
    const file = 'deploy/examples/mesh.yaml';
    const m = model(readFileSync(file, 'utf8'), file);
    expect([...m.clusters.keys()]).toEqual(['cluster-a', 'cluster-b']);
    expect(m.services.size).toBe(2);
    expect(m.raw.size).toBe(1);
  });

  it('embeds the two-cluster topology of the seeds as the default mesh', () => {
    const m = meshToSource(loadDefaultMesh(), 'builtin:default-mesh');
    expect([...m.clusters.values()].map((c) => [c.id, c.network, c.domain, c.gateways])).toEqual([
      ['cluster-a', 'network-a', 'cluster-a.local', [{ address: '127.0.10.1', port: 15443 }]],
      ['cluster-b', 'network-b', 'cluster-b.local', [{ address: '127.0.20.1', port: 15443 }]],
    ]);
    const foo = m.services.get('cluster-a/foo.abc.svc.cluster-a.local');
    const bar = m.services.get('cluster-b/bar.xyz.svc.cluster-b.local');
    expect(m.services.size).toBe(2);
    expect(foo).toMatchObject({ exported: true, ports: [{ name: 'grpc', port: 8080, protocol: 'GRPC' }] });
    expect(bar).toMatchObject({ exported: true, ports: [{ name: 'grpc', port: 9090, protocol: 'GRPC' }] });
    expect(foo?.endpoints.map((e) => [e.address, e.ports['grpc'], e.serviceAccount, e.network, e.locality.zone])).toEqual([
      ['127.0.1.1', 8080, 'foo', 'network-a', 'zone-a1'],
      ['127.0.1.2', 8080, 'foo', 'network-a', 'zone-a1'],
    ]);
    expect(bar?.endpoints.map((e) => [e.address, e.ports['grpc'], e.serviceAccount, e.network, e.locality.region])).toEqual([
      ['127.0.2.1', 9090, 'bar', 'network-b', 'region-b'],
      ['127.0.2.2', 9090, 'bar', 'network-b', 'region-b'],
    ]);
  });
});

describe('parseMeshText: errors name file, line, path and problem', () => {
  it('unknown field', () => {
    const err = parseError(MINIMAL.replace('      - address: 10.1.0.1', '      - address: 10.1.0.1\n        serviceAcount: foo'));
    expect(err.file).toBe('mesh.yaml');
    expect(err.path).toBe('services[0].endpoints[0].serviceAcount');
    expect(err.line).toBe(12);
    expect(err.message).toBe(
      'mesh.yaml:12: services[0].endpoints[0].serviceAcount: unknown field "serviceAcount" (did you mean "serviceAccount"?)',
    );
  });

  it('bad port', () => {
    const err = parseError(
      meshWith(`    ports: [{ name: grpc, port: 80 }]
    endpoints:
      - { address: 10.1.0.1 }
      - { address: 10.1.0.2, port: 70000 }`),
    );
    expect(err.path).toBe('services[0].endpoints[1].port');
    expect(err.message).toBe('mesh.yaml:10: services[0].endpoints[1].port: must be between 1 and 65535');
  });

  it('wrong type', () => {
    const err = parseError(meshWith(`    ports: [{ name: grpc, port: eighty }]`));
    expect(err.message).toMatch(
      /^mesh\.yaml:7: services\[0\]\.ports\[0\]\.port: expected an integer between 0 and 4294967295, got "eighty"/,
    );
  });

  it('bad IP', () => {
    const err = parseError(MINIMAL.replace('10.1.0.1', 'pod-1.example'));
    expect(err.message).toBe('mesh.yaml:11: services[0].endpoints[0].address: "pod-1.example" is not an IP address');
  });

  it('unknown cluster', () => {
    const err = parseError(MINIMAL.replace('cluster: c1', 'cluster: c9'));
    expect(err.message).toBe('mesh.yaml:8: services[0].cluster: unknown cluster "c9" (declared: c1)');
  });

  it('duplicate port', () => {
    const err = parseError(
      meshWith(`    ports:
      - { name: grpc, port: 80 }
      - { name: http, port: 80 }`),
    );
    expect(err.message).toBe('mesh.yaml:9: services[0].ports[1].port: duplicate port 80 (also ports[0])');
  });

  it('bad raw resource', () => {
    const err = parseError(
      meshWith(
        `    ports: [{ name: p, port: 1 }]`,
        `resources:
  - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: raw
    connectTimeout: { seconds: 1 }`,
      ),
    );
    expect(err.message).toBe(
      'mesh.yaml:11: resources[0].connectTimeout: unknown field "connectTimeout": raw resources use the proto field names, write "connect_timeout"',
    );
  });

  it('raw resource without a known "@type", name, or a valid body', () => {
    const err = parseError(`resources:
  - { name: a }
  - { "@type": type.googleapis.com/envoy.config.cluster.v3.Clustr, name: b }
  - { "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster }
  - { "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster, name: c, type: EDS, cluster_type: { name: x } }
  - { "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster, name: d, connect_timeout: 5s }
  - { "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster, name: e }
  - { "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster, name: e }
`);
    expect(err.problems.map((p) => [p.line, p.path, p.message.replace(/ \(.*/, '')])).toEqual([
      [2, 'resources[0]', 'missing "@type"'],
      [3, 'resources[1]["@type"]', 'unknown xDS type "type.googleapis.com/envoy.config.cluster.v3.Clustr"'],
      [4, 'resources[2].name', 'must not be empty'],
      [5, 'resources[3]', 'not a valid Cluster: cluster_discovery_type: multiple values'],
      [6, 'resources[4].connect_timeout', 'expected a mapping, got "5s"'],
      [8, 'resources[6]', 'duplicate resource "e" of the same type'],
    ]);
    expect(err.problems[1]?.message).toContain('(did you mean "type.googleapis.com/envoy.config.cluster.v3.Cluster"?)');
    expect(err.problems[4]?.message).toContain('{seconds: 5, nanos: 0}');
  });

  it('reports every problem together, one per line, in file order', () => {
    const err = parseError(`clusters:
  - id: c1
  - id: c1
services:
  - name: Foo
    namespace: abc
    cluster: nowhere
    ports:
      - { name: grpc, port: 0 }
    endpoints:
      - { address: 10.0.0.1, health: HEALTY }
      - { address: 10.0.0.300 }
`);
    expect(err.message.split('\n')).toEqual([
      'mesh.yaml: 6 problems',
      'mesh.yaml:3: clusters[1].id: duplicate cluster id "c1" (also clusters[0])',
      'mesh.yaml:5: services[0].name: "Foo" is not a DNS-1123 label (lower-case letters, digits and "-", at most 63)',
      'mesh.yaml:7: services[0].cluster: unknown cluster "nowhere" (declared: c1)',
      'mesh.yaml:9: services[0].ports[0].port: must be between 1 and 65535 (not set)',
      'mesh.yaml:11: services[0].endpoints[0].health: expected one of HEALTHY, UNHEALTHY, TERMINATING, got "HEALTY"',
      'mesh.yaml:12: services[0].endpoints[1].address: "10.0.0.300" is not an IP address',
    ]);
    expect(err.problems).toHaveLength(6);
  });

  it('YAML syntax errors carry the line', () => {
    const err = parseError('clusters:\n  - id: c1\n  - id: c2\n    id: c3\n');
    expect(err.line).toBe(4);
    expect(err.message).toBe('mesh.yaml:4: Map keys must be unique');
  });

  it('an empty file is an error, not an empty mesh', () => {
    expect(parseError('# nothing yet\n').message).toBe('mesh.yaml: file is empty (write {} for an empty mesh)');
    expect(model('{}').services.size).toBe(0);
  });

  it('a JSON value of the wrong type says how to fix it', () => {
    const err = parseError('{"clusters": [{"id": "c1", "network": 7}]}');
    expect(err.message).toBe('mesh.yaml:1: clusters[0].network: expected a string, got number 7 (quote it)');
  });
});
