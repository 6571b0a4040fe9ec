// The protoc-gen-validate validator catches each kind of rule Envoy's protos carry, with paths.
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { validateDocument, validateJson } from '../../src/validate/index.js';

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
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 70000 } } }, load_balancing_weight: 0 }] }],
    });
    expect(errors).toEqual([
      { path: 'endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value', reason: 'must be <= 65535, is 70000' },
      { path: 'endpoints[0].lb_endpoints[0].load_balancing_weight', reason: 'must be >= 1, is 0' },
    ]);
  });

  it('catches a required oneof left unset and a required message missing', () => {
    const errors = validateJson({ '@type': CLA, cluster_name: 'c1', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1' } } } }] }] });
    expect(errors).toContainEqual({ path: 'endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_specifier', reason: 'exactly one of port_value, named_port is required' });
    const route = validateJson({ '@type': ROUTE, name: 'r', virtual_hosts: [{ name: 'vh', domains: ['*'], routes: [{ route: { cluster: 'c1' } }] }] });
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
            { name: 'tcp', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: '', cluster: 'c1' } },
          ],
        },
      ],
    });
    expect(errors).toEqual([
      { path: 'filter_chains[0].filters[0].typed_config(envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy).stat_prefix', reason: 'must be at least 1 character(s) long' },
    ]);
    const vh = validateJson({ '@type': ROUTE, name: 'r', virtual_hosts: [{ name: 'vh', domains: [] }] });
    expect(vh).toEqual([{ path: 'virtual_hosts[0].domains', reason: 'must have at least 1 item(s), has 0' }]);
  });

  it('reports unknown fields and types instead of dropping them', () => {
    expect(validateJson({ ...goodCluster, conect_timeout: '1s' })).toEqual([{ path: 'conect_timeout', reason: 'unknown field of envoy.config.cluster.v3.Cluster' }]);
    expect(validateJson({ '@type': 'type.googleapis.com/no.such.Type' })).toEqual([{ path: '(root)', reason: 'unknown type type.googleapis.com/no.such.Type' }]);
  });

  it('validates the example bootstraps in deploy/examples as Bootstrap messages', () => {
    for (const f of ['envoy-gateway-bootstrap.yaml', 'envoy-sidecar-beside-istiod-bootstrap.yaml', 'envoy-sidecar-bootstrap.yaml']) {
      const doc = parse(readFileSync(path.join('deploy/examples', f), 'utf8')) as unknown;
      expect(validateDocument(doc)).toEqual([{ resource: '[0] envoy.config.bootstrap.v3.Bootstrap', errors: [] }]);
    }
  });
});

describe('meshfed validate', () => {
  const run = (file: string): { code: number; out: string } => {
    try {
      return { code: 0, out: execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'validate', file], { encoding: 'utf8' }) };
    } catch (err) {
      const e = err as { status: number; stdout: string };
      return { code: e.status, out: e.stdout };
    }
  };

  it('prints each error with its resource and path and exits 1; exits 0 on a clean file', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-validate-'));
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, `- "@type": ${CLUSTER}\n  name: ""\n  connect_timeout: 1s\n- "@type": ${CLA}\n  cluster_name: ok\n`);
    const r = run(bad);
    expect(r.code).toBe(1);
    expect(r.out).toBe(`${bad}: [0] envoy.config.cluster.v3.Cluster: name: must be at least 1 character(s) long\n`);
    const good = path.join(dir, 'good.json');
    writeFileSync(good, JSON.stringify(goodCluster));
    expect(run(good)).toEqual({ code: 0, out: `${good}: ok\n` });
  });
});
