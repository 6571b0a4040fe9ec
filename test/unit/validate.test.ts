// The protoc-gen-validate validator catches each kind of rule Envoy's protos carry, with paths;
// `meshfed validate` reports every problem of a file (Envoy resources or a mesh description).
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateText } from '../../src/validate/file.js';
import { validateDocument, validateJson } from '../../src/validate/index.js';
import { issueWorkloadCert, makeRoot, type TestRoot, type WorkloadCert } from '../helpers/test-certs.js';

const CLUSTER = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const CLA = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const ROUTE = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';

const goodCluster = { '@type': CLUSTER, name: 'c1', type: 'EDS', connect_timeout: '1s', eds_cluster_config: { eds_config: { ads: {} } } };

describe('validator', () => {
  it('passes a correct cluster, in snake_case or camelCase', () => {
    expect(validateJson(goodCluster)).toEqual([]);
    expect(validateJson({ '@type': CLUSTER, name: 'c1', connectTimeout: '1s', lbPolicy: 'LEAST_REQUEST' })).toEqual([]);
  });

  it('catches string lengths, duration ranges and undefined enums in a broken Cluster', () => {
    const errors = validateJson({ '@type': CLUSTER, name: '', connect_timeout: '0s', lb_policy: 42 });
    expect(errors).toEqual([
      { path: 'name', reason: 'must be at least 1 character(s) long' },
      { path: 'connect_timeout', reason: 'must be > 0s, is 0s' },
      { path: 'lb_policy', reason: '42 is not a defined value of LbPolicy' },
    ]);
  });

  it('catches numeric ranges, also on wrappers, with the full path', () => {
    const errors = validateJson({
      '@type': CLA,
      cluster_name: 'c1',
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 70000 } } }, load_balancing_weight: 0 },
          ],
        },
      ],
    });
    expect(errors).toEqual([
      { path: 'endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value', reason: 'must be <= 65535, is 70000' },
      { path: 'endpoints[0].lb_endpoints[0].load_balancing_weight', reason: 'must be >= 1, is 0' },
    ]);
  });

  it('catches a required oneof left unset and a required message missing', () => {
    const errors = validateJson({
      '@type': CLA,
      cluster_name: 'c1',
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1' } } } }] }],
    });
    expect(errors).toContainEqual({
      path: 'endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_specifier',
      reason: 'exactly one of port_value, named_port is required',
    });
    const route = validateJson({
      '@type': ROUTE,
      name: 'r',
      virtual_hosts: [{ name: 'vh', domains: ['*'], routes: [{ route: { cluster: 'c1' } }] }],
    });
    expect(route).toContainEqual({ path: 'virtual_hosts[0].routes[0].match', reason: 'is required' });
  });

  it('catches repeated min_items and recurses into Any by type URL', () => {
    const errors = validateJson({
      '@type': LISTENER,
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 15443 } },
      filter_chains: [
        {
          filters: [
            {
              name: 'tcp',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
                stat_prefix: '',
                cluster: 'c1',
              },
            },
          ],
        },
      ],
    });
    expect(errors).toEqual([
      {
        path: 'filter_chains[0].filters[0].typed_config(envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy).stat_prefix',
        reason: 'must be at least 1 character(s) long',
      },
    ]);
    const vh = validateJson({ '@type': ROUTE, name: 'r', virtual_hosts: [{ name: 'vh', domains: [] }] });
    expect(vh).toEqual([{ path: 'virtual_hosts[0].domains', reason: 'must have at least 1 item(s), has 0' }]);
  });

  it('reports unknown fields and types instead of dropping them', () => {
    expect(validateJson({ ...goodCluster, conect_timeout: '1s' })).toEqual([
      { path: 'conect_timeout', reason: 'unknown field of envoy.config.cluster.v3.Cluster' },
    ]);
    expect(validateJson({ '@type': 'type.googleapis.com/no.such.Type' })).toEqual([
      { path: '(root)', reason: 'unknown type type.googleapis.com/no.such.Type' },
    ]);
  });

  it('rejects enum names that do not exist, in either spelling of the field', () => {
    expect(validateJson({ ...goodCluster, type: 'STATIK' })).toEqual([
      {
        path: 'type',
        reason:
          '"STATIK" is not a value of envoy.config.cluster.v3.Cluster.DiscoveryType (one of STATIC, STRICT_DNS, LOGICAL_DNS, EDS, ORIGINAL_DST)',
      },
    ]);
    expect(validateJson({ ...goodCluster, lbPolicy: 'ROUND_ROBINN' })).toEqual([
      {
        path: 'lbPolicy',
        reason: expect.stringMatching(
          /^"ROUND_ROBINN" is not a value of envoy\.config\.cluster\.v3\.Cluster\.LbPolicy \(one of ROUND_ROBIN, /,
        ),
      },
    ]);
    expect(validateJson({ ...goodCluster, lb_policy: 'MAGLEV' })).toEqual([]);
  });

  it('reports every problem of a resource: an unknown field hides none of the others', () => {
    const errors = validateJson({
      '@type': CLUSTER,
      name: '',
      conect_timeout: '1s',
      connect_timeout: '-1s',
      load_assignment: {
        cluster_name: 'c1',
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 70000 } } } }] }],
      },
    });
    expect(errors).toEqual([
      { path: 'conect_timeout', reason: 'unknown field of envoy.config.cluster.v3.Cluster' },
      { path: 'name', reason: 'must be at least 1 character(s) long' },
      { path: 'connect_timeout', reason: 'must be > 0s, is -1s' },
      {
        path: 'load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value',
        reason: 'must be <= 65535, is 70000',
      },
    ]);
  });

  it('reports a value of the wrong kind once, at its path, instead of throwing or coercing it', () => {
    expect(validateJson({ ...goodCluster, connect_timeout: 5 })).toEqual([
      { path: 'connect_timeout', reason: 'expected a duration like "5s", got number 5' },
    ]);
    // camelCase paths as written; the rules' echo of the dropped value (connect_timeout > 0) is not repeated.
    expect(
      validateJson({
        '@type': CLUSTER,
        name: 7,
        connectTimeout: 'soon',
        perConnectionBufferLimitBytes: -1,
        dns_lookup_family: 'V4_ONLY',
        filters: {},
      }),
    ).toEqual([
      { path: 'name', reason: 'expected a string, got number 7' },
      { path: 'connectTimeout', reason: '"soon" is not a duration like "1.5s"' },
      { path: 'perConnectionBufferLimitBytes', reason: '-1 is out of range for uint32 (0 to 4294967295)' },
      { path: 'filters', reason: 'expected a list, got a mapping' },
    ]);
  });

  it('validates the example bootstraps in deploy/examples as Bootstrap messages', () => {
    for (const f of ['envoy-gateway-bootstrap.yaml', 'envoy-sidecar-beside-istiod-bootstrap.yaml', 'envoy-sidecar-bootstrap.yaml']) {
      const doc = parse(readFileSync(path.join('deploy/examples', f), 'utf8')) as unknown;
      expect(validateDocument(doc)).toEqual([{ resource: '[0] envoy.config.bootstrap.v3.Bootstrap', errors: [] }]);
    }
  });
});

describe('validateText: what a file is and everything wrong with it', () => {
  let dir: string;
  let root: TestRoot;
  let leaf: WorkloadCert;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-validate-'));
    root = await makeRoot(dir, 'cluster-a.local');
    leaf = await issueWorkloadCert(dir, root, 'abc', 'foo');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const indent = (pem: string): string =>
    pem
      .trim()
      .split('\n')
      .map((l) => `      ${l}`)
      .join('\n');
  const mesh = (rootCaPem: string, port = 8080): string => `clusters:
  - id: cluster-a
    network: network-a
    domain: cluster-a.local
    rootCaPem: |
${indent(rootCaPem)}
services:
  - name: foo
    namespace: abc
    cluster: cluster-a
    ports: [{ name: grpc, port: ${port}, protocol: GRPC }]
`;

  it('has nothing to validate in an empty file, a comment, an empty list or mapping', () => {
    expect(validateText('', 'e.yaml')).toEqual({ ok: false, lines: ['e.yaml: nothing to validate (the file is empty)'] });
    expect(validateText('# just a comment\n---\n', 'c.yaml')).toEqual({
      ok: false,
      lines: ['c.yaml: nothing to validate (no document, only comments)'],
    });
    expect(validateText('[]', 'l.json')).toEqual({ ok: false, lines: ['l.json: nothing to validate (an empty list)'] });
    expect(validateText('{}', 'm.json')).toEqual({ ok: false, lines: ['m.json: nothing to validate (an empty mapping)'] });
  });

  it('checks a mesh description as serve does, with file:line: path: reason, and a root that is a CA', () => {
    expect(validateText(mesh(root.certPem), 'mesh.yaml')).toEqual({
      ok: true,
      lines: ['mesh.yaml: ok (mesh description: 1 cluster(s), 1 service(s), 0 raw resource(s))'],
    });
    const bad = mesh(leaf.certPem, 70000);
    const portLine = bad.split('\n').findIndex((l) => l.includes('ports:')) + 1;
    expect(validateText(bad, 'mesh.yaml')).toEqual({
      ok: false,
      lines: [
        expect.stringMatching(/^mesh\.yaml:5: clusters\[0\]\.rootCaPem: .* is not a CA certificate$/),
        `mesh.yaml:${portLine}: services[0].ports[0].port: must be between 1 and 65535`,
      ],
    });
    expect(validateText(mesh('-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----'), 'm.yaml').lines).toEqual([
      expect.stringMatching(/^m\.yaml:5: clusters\[0\]\.rootCaPem: not a parsable certificate/),
    ]);
    expect(validateText(mesh('no pem here'), 'm.yaml').lines).toEqual([
      'm.yaml:5: clusters[0].rootCaPem: holds no PEM certificate (-----BEGIN CERTIFICATE-----)',
    ]);
  });

  it("passes the example mesh in deploy/examples and checks its raw resources against Envoy's rules", () => {
    const example = 'deploy/examples/mesh.yaml';
    expect(validateText(readFileSync(example, 'utf8'), example)).toMatchObject({ ok: true });
    const raw = `resources:\n  - { "@type": "${CLA}", cluster_name: raw, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.0.1, port_value: 70000 } } } }] }] }\n`;
    expect(validateText(raw, 'raw.yaml')).toEqual({
      ok: false,
      lines: [
        'raw.yaml: resources[0] raw: endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: must be <= 65535, is 70000',
      ],
    });
  });
});

describe('meshfed validate (the command, as a process)', () => {
  const run = (file: string): { code: number | null; out: string; err: string } => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'validate', file], { encoding: 'utf8' });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-validate-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    const f = path.join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  it('prints each error with its resource and path and exits 1; exits 0 on a clean file', () => {
    const bad = write('bad.yaml', `- "@type": ${CLUSTER}\n  name: ""\n  connect_timeout: 1s\n- "@type": ${CLA}\n  cluster_name: ok\n`);
    expect(run(bad)).toEqual({
      code: 1,
      out: `${bad}: [0] envoy.config.cluster.v3.Cluster: name: must be at least 1 character(s) long\n`,
      err: '',
    });
    const good = write('good.json', JSON.stringify(goodCluster));
    expect(run(good)).toEqual({ code: 0, out: `${good}: ok\n`, err: '' });
  });

  it('prints every problem of a Cluster, bad enum names included', () => {
    const f = write(
      'cluster.yaml',
      `"@type": ${CLUSTER}
name: ""
conect_timeout: 1s
connect_timeout: -1s
type: STATIK
lb_policy: ROUND_ROBINN
load_assignment: { cluster_name: c, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.0.1, port_value: 70000 } } } }] }] }
`,
    );
    const r = run(f);
    expect(r.code).toBe(1);
    expect(
      r.out
        .trimEnd()
        .split('\n')
        .map((l) => l.split(': ')[2]),
    ).toEqual([
      'conect_timeout',
      'type',
      'lb_policy',
      'name',
      'connect_timeout',
      'load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value',
    ]);
  });

  it('says in one line that connect_timeout: 5 is not a duration, without a stack trace', () => {
    const f = write('c5.yaml', `"@type": ${CLUSTER}\nname: c1\nconnect_timeout: 5\n`);
    expect(run(f)).toEqual({
      code: 1,
      out: `${f}: [0] envoy.config.cluster.v3.Cluster c1: connect_timeout: expected a duration like "5s", got number 5\n`,
      err: '',
    });
  });

  it('has nothing to validate in an empty file, and says so with exit 1', () => {
    const f = write('empty.yaml', '');
    expect(run(f)).toEqual({ code: 1, out: `${f}: nothing to validate (the file is empty)\n`, err: '' });
  });

  it('validates a mesh description instead of calling it ok', () => {
    const f = write(
      'mesh.yaml',
      'clusters:\n  - id: a\n    rootCaPem: "-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----"\nservices: []\n',
    );
    const r = run(f);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(
      new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: clusters\\[0\\]\\.rootCaPem: not a parsable certificate \\(.*\\)\\n$`),
    );
    expect(run('deploy/examples/mesh.yaml')).toMatchObject({
      code: 0,
      out: expect.stringMatching(/^deploy\/examples\/mesh\.yaml: ok \(mesh description: 2 cluster/),
    });
  });

  it('names a file it cannot read in one line on stderr', () => {
    const f = path.join(dir, 'missing.yaml');
    expect(run(f)).toEqual({ code: 1, out: '', err: `${f}: ENOENT: no such file or directory, open '${f}'\n` });
  });
});
