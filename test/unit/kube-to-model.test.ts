// One cluster's objects → its contribution: port mapping by name, duplicates, mTLS rule, selectors,
// and the network gateways its labelled Services stand for.
import { describe, expect, it } from 'vitest';
import { parseLabelSelector, rejectReason, type ServiceObj } from '../../src/sources/kube/objects.js';
import { ClusterIndex, gatewayServiceOf, objectKey } from '../../src/sources/kube/to-model.js';

const svc = {
  metadata: { name: 'foo', namespace: 'abc' },
  spec: {
    ports: [
      { name: 'http', port: 80, targetPort: 'web' },
      { name: 'grpc-api', port: 9090 },
    ],
  },
};
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
    ix.setSlice(
      slice(
        'foo-1',
        ['10.0.0.1', '10.0.0.2'],
        [
          { name: 'http', port: 8080 },
          { name: 'grpc-api', port: 9091 },
        ],
      ),
      'abc/foo-1',
    );
    ix.setSlice(
      slice(
        'foo-2',
        ['10.0.0.2'],
        [
          { name: 'http', port: 8080 },
          { name: 'grpc-api', port: 9091 },
        ],
      ),
      'abc/foo-2',
    );
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
    expect(
      ix.setPod(
        { metadata: { name: 'p0', namespace: 'abc', labels: { 'topology.istio.io/network': 'n9' } }, spec: { serviceAccountName: 'sa0' } },
        'abc/p0',
      ),
    ).toEqual(['abc/foo']);
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

const gatewaySvc = (o: {
  labels?: Record<string, string>;
  type?: string;
  ingress?: { ip?: string; hostname?: string }[];
  externalIPs?: string[];
}): ServiceObj => ({
  metadata: { name: 'eastwest', namespace: 'istio-system', labels: o.labels ?? { 'topology.istio.io/network': 'net-2' } },
  spec: { type: o.type ?? 'LoadBalancer', ports: [{ name: 'tls', port: 15443 }], ...(o.externalIPs ? { externalIPs: o.externalIPs } : {}) },
  ...(o.ingress ? { status: { loadBalancer: { ingress: o.ingress } } } : {}),
});

describe('network gateways from labelled Services', () => {
  it('takes LoadBalancer ingress IPs and hostnames and externalIPs, at port 15443 by default', () => {
    const g = gatewayServiceOf(
      gatewaySvc({
        ingress: [{ ip: '198.51.100.7' }, { hostname: 'lb.example.com' }, { ip: '198.51.100.7', hostname: 'ignored.example.com' }],
        externalIPs: ['203.0.113.9'],
      }),
    );
    expect(g).toEqual({
      service: 'istio-system/eastwest',
      network: 'net-2',
      port: 15443,
      addresses: ['198.51.100.7', '203.0.113.9', 'lb.example.com'],
      notes: [],
    });
  });

  it('takes the port from networking.istio.io/gatewayPort, and says when the label is not a port', () => {
    const labels = (port: string) => ({ 'topology.istio.io/network': 'net-2', 'networking.istio.io/gatewayPort': port });
    expect(gatewayServiceOf(gatewaySvc({ labels: labels('15444'), ingress: [{ ip: '198.51.100.7' }] }))).toMatchObject({
      port: 15444,
      notes: [],
    });
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
    expect(gatewayServiceOf(gatewaySvc({ type: 'ClusterIP', ingress: [{ ip: '198.51.100.7' }] }))!.notes.join()).toMatch(
      /type ClusterIP with no spec.externalIPs/,
    );
    expect(gatewayServiceOf(gatewaySvc({ type: 'ClusterIP', externalIPs: ['203.0.113.9'] }))).toMatchObject({
      addresses: ['203.0.113.9'],
      notes: [],
    });
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
    expect(
      rejectReason('Service', gatewaySvc({ ingress: [{ hostname: 'lb.example.com' }], externalIPs: ['203.0.113.9'] })),
    ).toBeUndefined();
  });
});

describe('exported services', () => {
  it('are labelled meshfed.io/exported=true or Deckhouse\'s federation.istio.deckhouse.io/public-service="" (empty value only)', () => {
    const exported = (labels: Record<string, string>): boolean | undefined => {
      const ix = index();
      const s = { ...svc, metadata: { ...svc.metadata, labels } };
      ix.setService(s, objectKey(s));
      return ix.contribution('abc/foo')?.exported;
    };
    expect(exported({})).toBe(false);
    expect(exported({ 'meshfed.io/exported': 'true' })).toBe(true);
    expect(exported({ 'federation.istio.deckhouse.io/public-service': '' })).toBe(true);
    expect(exported({ 'federation.istio.deckhouse.io/public-service': 'true' })).toBe(false);
    expect(exported({ 'meshfed.io/exported': 'false' })).toBe(false);
  });
});

describe('NodePort network gateways', () => {
  const node = (name: string, o: { addresses?: [string, string][]; ready?: string; unschedulable?: boolean; taint?: string } = {}) => ({
    metadata: { name },
    spec: { ...(o.unschedulable ? { unschedulable: true } : {}), ...(o.taint ? { taints: [{ key: o.taint, effect: 'NoSchedule' }] } : {}) },
    status: {
      addresses: (o.addresses ?? [['InternalIP', `10.0.${name.slice(1)}.1`]]).map(([type, address]) => ({ type, address })),
      conditions: [{ type: 'Ready', status: o.ready ?? 'True' }],
    },
  });
  const gw = {
    metadata: { name: 'ingressgateway', namespace: 'd8-istio', labels: { 'topology.istio.io/network': 'n1' } },
    spec: { type: 'NodePort', ports: [{ name: 'tls', port: 15443, nodePort: 31443 }] },
  };
  const gwSlice = (eps: { node: string; ready?: boolean }[]) => ({
    metadata: { name: 'ingressgateway-1', namespace: 'd8-istio', labels: { 'kubernetes.io/service-name': 'ingressgateway' } },
    addressType: 'IPv4',
    endpoints: eps.map((e, i) => ({ addresses: [`10.9.0.${i + 1}`], nodeName: e.node, conditions: { ready: e.ready ?? true } })),
    ports: [{ name: 'tls', port: 15443 }],
  });

  it('are the nodePort on Ready, schedulable nodes running a ready gateway endpoint (ExternalIP, else InternalIP)', () => {
    const ix = index();
    ix.setService(gw, objectKey(gw));
    for (const n of [
      node('n1', {
        addresses: [
          ['InternalIP', '10.0.1.1'],
          ['ExternalIP', '203.0.113.1'],
        ],
      }),
      node('n2'),
      node('n3', { ready: 'False' }),
      node('n4', { unschedulable: true }),
      node('n5', { taint: 'node.kubernetes.io/unschedulable' }),
      node('n6', { addresses: [['ExternalIP', '203.0.113.6']] }),
      node('n7', { addresses: [['ExternalIP', '203.0.113.7']] }),
    ]) {
      ix.setNode(n, n.metadata.name);
    }
    // n6 runs only a gateway pod that is not ready; n7 runs none.
    ix.setSlice(
      gwSlice([
        { node: 'n1' },
        { node: 'n2' },
        { node: 'n3' },
        { node: 'n4' },
        { node: 'n5' },
        { node: 'n6', ready: false },
        { node: 'n1' },
      ]),
      'd8-istio/ingressgateway-1',
    );
    expect(ix.gateways()).toEqual([
      {
        service: 'd8-istio/ingressgateway',
        network: 'n1',
        port: 31443,
        nodePort: 31443,
        addresses: ['10.0.2.1', '203.0.113.1'],
        notes: [],
      },
    ]);
    // The node goes NotReady: it is no gateway any more.
    ix.setNode(node('n1', { ready: 'Unknown', addresses: [['ExternalIP', '203.0.113.1']] }), 'n1');
    expect(ix.gateways()[0]!.addresses).toEqual(['10.0.2.1']);
  });

  it('say why there is none: no node, or no nodePort for the gateway port', () => {
    const ix = index();
    ix.setService(gw, objectKey(gw));
    expect(ix.gateways()[0]).toMatchObject({
      addresses: [],
      notes: [expect.stringMatching(/NodePort 31443: no Ready, schedulable node .* no gateway into network n1/)],
    });
    const noNodePort = { ...gw, spec: { type: 'NodePort', ports: [{ name: 'https', port: 443 }] } };
    expect(gatewayServiceOf(noNodePort)).toMatchObject({
      addresses: [],
      notes: [expect.stringMatching(/no nodePort for port 15443 \(nor a port named tls\)/)],
    });
    expect(rejectReason('Node', { metadata: { name: 'n' }, status: { addresses: 'x' } })).toBe(
      'status.addresses is not a list of {type, address}',
    );
  });
});
