// One cluster's objects → its contribution: port mapping by name, duplicates, mTLS rule, selectors.
import { describe, expect, it } from 'vitest';
import { parseLabelSelector, rejectReason } from '../../src/sources/kube/objects.js';
import { ClusterIndex, objectKey } from '../../src/sources/kube/to-model.js';

const svc = { metadata: { name: 'foo', namespace: 'abc' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 'web' }, { name: 'grpc-api', port: 9090 }] } };
const slice = (name: string, ips: string[], ports: { name: string; port: number }[]) => ({
  metadata: { name, namespace: 'abc', labels: { 'kubernetes.io/service-name': 'foo' } },
  addressType: 'IPv4',
  endpoints: ips.map((ip, i) => ({ addresses: [ip], targetRef: { kind: 'Pod', name: `p${i}` } })),
  ports,
});

function index(selectors: string[] = []): ClusterIndex {
  const ix = new ClusterIndex({ id: 'c1', network: 'n1', domain: 'cluster.local', discoverySelectors: selectors.map(parseLabelSelector) });
  ix.setNamespace({ metadata: { name: 'abc', labels: { team: 'a' } } }, 'abc');
  ix.setService(svc, objectKey(svc));
  return ix;
}

describe('ClusterIndex', () => {
  it('maps slice ports to service ports by name and counts an address in two slices once', () => {
    const ix = index();
    ix.setSlice(slice('foo-1', ['10.0.0.1', '10.0.0.2'], [{ name: 'http', port: 8080 }, { name: 'grpc-api', port: 9091 }]), 'abc/foo-1');
    ix.setSlice(slice('foo-2', ['10.0.0.2'], [{ name: 'http', port: 8080 }, { name: 'grpc-api', port: 9091 }]), 'abc/foo-2');
    const c = ix.contribution('abc/foo')!;
    expect(c.hostname).toBe('foo.abc.svc.cluster.local');
    expect(c.ports.map((p) => `${p.name}:${p.port}:${p.protocol}`)).toEqual(['http:80:HTTP', 'grpc-api:9090:GRPC']);
    expect(c.endpoints.map((e) => `${e.address} ${JSON.stringify(e.ports)}`)).toEqual([
      '10.0.0.1 {"http":8080,"grpc-api":9091}',
      '10.0.0.2 {"http":8080,"grpc-api":9091}',
    ]);
  });

  it('takes mTLS and identity from the pod, and leaves pod-less endpoints plaintext', () => {
    const ix = index();
    const touched = ix.setSlice(slice('foo-1', ['10.0.0.1', '10.0.0.2'], [{ name: 'http', port: 8080 }]), 'abc/foo-1');
    expect(touched).toEqual(['abc/foo']);
    expect(ix.setPod({ metadata: { name: 'p0', namespace: 'abc', labels: { 'topology.istio.io/network': 'n9' } }, spec: { serviceAccountName: 'sa0' } }, 'abc/p0')).toEqual(['abc/foo']);
    ix.setPod({ metadata: { name: 'p1', namespace: 'abc', labels: { 'sidecar.istio.io/inject': 'false' } } }, 'abc/p1');
    const [a, b] = ix.contribution('abc/foo')!.endpoints;
    expect(a).toMatchObject({ serviceAccount: 'sa0', mtls: true, network: 'n9' });
    expect(b).toMatchObject({ serviceAccount: 'default', mtls: false, network: 'n1' });
    ix.setPod(undefined, 'abc/p0');
    expect(ix.contribution('abc/foo')!.endpoints[0]).toMatchObject({ mtls: false, serviceAccount: 'default' });
  });

  it('sees only services in namespaces a discovery selector matches', () => {
    expect(index(['team=a']).contribution('abc/foo')).toBeDefined();
    expect(index(['team=b', 'env in (prod)']).contribution('abc/foo')).toBeUndefined();
    expect(index(['!team']).contribution('abc/foo')).toBeUndefined();
  });

  it('rejects objects meshfed cannot read', () => {
    expect(rejectReason('Service', { kind: 'ConfigMap', metadata: { name: 'x' } })).toMatch(/kind ConfigMap/);
    expect(rejectReason('EndpointSlice', { metadata: { name: 'x' }, endpoints: 42 })).toMatch(/not a list/);
    expect(rejectReason('Service', { metadata: { name: 'x' }, spec: { ports: [{ port: 'eighty' }] } })).toMatch(/port number/);
    expect(rejectReason('Service', svc)).toBeUndefined();
  });
});
