// One cluster's objects → its contribution: port mapping by name, duplicates, mTLS rule, selectors,
// and the network gateways its labelled Services stand for.
import { describe, expect, it } from 'vitest';
import { parseLabelSelector, rejectReason, type ServiceObj } from '../../src/sources/kube/objects.js';
import { ClusterIndex, gatewayServiceOf, objectKey } from '../../src/sources/kube/to-model.js';

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

const gatewaySvc = (o: { labels?: Record<string, string>; type?: string; ingress?: { ip?: string; hostname?: string }[]; externalIPs?: string[] }): ServiceObj => ({
  metadata: { name: 'eastwest', namespace: 'istio-system', labels: o.labels ?? { 'topology.istio.io/network': 'net-2' } },
  spec: { type: o.type ?? 'LoadBalancer', ports: [{ name: 'tls', port: 15443 }], ...(o.externalIPs ? { externalIPs: o.externalIPs } : {}) },
  ...(o.ingress ? { status: { loadBalancer: { ingress: o.ingress } } } : {}),
});

describe('network gateways from labelled Services', () => {
  it('takes LoadBalancer ingress IPs and hostnames and externalIPs, at port 15443 by default', () => {
    const g = gatewayServiceOf(gatewaySvc({ ingress: [{ ip: '198.51.100.7' }, { hostname: 'lb.example.com' }, { ip: '198.51.100.7', hostname: 'ignored.example.com' }], externalIPs: ['203.0.113.9'] }));
    expect(g).toEqual({ service: 'istio-system/eastwest', network: 'net-2', port: 15443, addresses: ['198.51.100.7', '203.0.113.9', 'lb.example.com'], notes: [] });
  });

  it('takes the port from networking.istio.io/gatewayPort, and says when the label is not a port', () => {
    const labels = (port: string) => ({ 'topology.istio.io/network': 'net-2', 'networking.istio.io/gatewayPort': port });
    expect(gatewayServiceOf(gatewaySvc({ labels: labels('15444'), ingress: [{ ip: '198.51.100.7' }] }))).toMatchObject({ port: 15444, notes: [] });
    const bad = gatewayServiceOf(gatewaySvc({ labels: labels('tls'), ingress: [{ ip: '198.51.100.7' }] }))!;
    expect(bad.port).toBe(15443);
    expect(bad.notes).toEqual(['istio-system/eastwest: label networking.istio.io/gatewayPort="tls" is not a port; using 15443']);
  });

  it('gives no gateway for a pending LoadBalancer, and says why', () => {
    for (const ingress of [undefined, []]) {
      const g = gatewayServiceOf(gatewaySvc({ ingress }))!;
      expect(g.addresses).toEqual([]);
      expect(g.notes.join()).toMatch(/LoadBalancer has no ingress address yet \(<PENDING>\): no gateway into network net-2/);
    }
    // Ingress on a Service that is no LoadBalancer (any more) is not an address; externalIPs are.
    expect(gatewayServiceOf(gatewaySvc({ type: 'ClusterIP', ingress: [{ ip: '198.51.100.7' }] }))!.notes.join()).toMatch(/type ClusterIP with no spec.externalIPs/);
    expect(gatewayServiceOf(gatewaySvc({ type: 'ClusterIP', externalIPs: ['203.0.113.9'] }))).toMatchObject({ addresses: ['203.0.113.9'], notes: [] });
  });

  it('ignores Services without the network label, and indexes labelled ones in any namespace', () => {
    expect(gatewayServiceOf(gatewaySvc({ labels: { app: 'x' }, ingress: [{ ip: '198.51.100.7' }] }))).toBeUndefined();
    const ix = index(['team=a']); // discovery selectors do not hide gateways: istio-system is not selected
    const gw = gatewaySvc({ ingress: [{ ip: '198.51.100.7' }] });
    ix.setService(gw, objectKey(gw));
    expect(ix.gateways().map((g) => `${g.network} ${g.addresses.join()}:${g.port}`)).toEqual(['net-2 198.51.100.7:15443']);
    ix.setService(undefined, objectKey(gw));
    expect(ix.gateways()).toEqual([]);
  });

  it('rejects a Service whose addresses are malformed', () => {
    expect(rejectReason('Service', { metadata: { name: 'x' }, status: { loadBalancer: { ingress: [{ ip: 7 }] } } })).toMatch(/ingress/);
    expect(rejectReason('Service', { metadata: { name: 'x' }, spec: { externalIPs: '1.2.3.4' } })).toMatch(/externalIPs/);
    expect(rejectReason('Service', gatewaySvc({ ingress: [{ hostname: 'lb.example.com' }], externalIPs: ['203.0.113.9'] }))).toBeUndefined();
  });
});
