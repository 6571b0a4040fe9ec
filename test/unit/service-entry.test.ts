// ServiceEntries → model: STATIC and DNS endpoints, port maps, network/locality/labels/weight, SANs
// (subjectAltNames; else serviceAccount in the host's own trust domain), and invalid entries with reasons.
import { describe, expect, it } from 'vitest';
import { serviceEntryToModel, type ServiceEntryObj } from '../../src/sources/kube/service-entry.js';

const ctx = {
  clusterId: 'cluster-a',
  localDomain: 'cluster-a.local',
  resolve: (h: string) => (h === 'gw.cluster-b.example.com' ? ['198.51.100.7', '198.51.100.8'] : undefined),
};
const entry = (spec: Record<string, unknown>, name = 'bar'): ServiceEntryObj => ({ metadata: { name, namespace: 'd8-istio' }, spec });
const internal = {
  location: 'MESH_INTERNAL',
  hosts: ['bar.xyz.svc.cluster-b.local'],
  ports: [
    { name: 'http', number: 8080, protocol: 'HTTP' },
    { name: 'grpc', number: 9000, protocol: 'GRPC', targetPort: 9001 },
  ],
};

function services(spec: Record<string, unknown>) {
  const r = serviceEntryToModel(entry(spec), ctx);
  if (r.kind !== 'services') throw new Error(`${r.kind}: ${r.reason}`);
  return [...r.services.values()];
}

describe('serviceEntryToModel', () => {
  it('STATIC: IP endpoints with the ports map, network, locality, labels and weight', () => {
    const [svc] = services({
      ...internal,
      resolution: 'STATIC',
      endpoints: [
        {
          address: '203.0.113.10',
          ports: { http: 15443, grpc: 15443 },
          network: 'net-b',
          locality: 'r1/z1/s1',
          labels: { app: 'bar' },
          weight: 3,
        },
        { address: '203.0.113.11' },
      ],
    });
    expect(svc).toMatchObject({
      hostname: 'bar.xyz.svc.cluster-b.local',
      name: 'bar',
      namespace: 'xyz',
      cluster: 'cluster-a',
      origin: 'federation',
    });
    expect(svc!.ports).toEqual([
      { name: 'http', port: 8080, protocol: 'HTTP', targetPort: 8080 },
      { name: 'grpc', port: 9000, protocol: 'GRPC', targetPort: 9001 },
    ]);
    expect(svc!.endpoints.map((e) => [e.address, e.ports, e.network, e.locality, e.labels, e.weight, e.mtls])).toEqual([
      ['203.0.113.10', { http: 15443, grpc: 15443 }, 'net-b', { region: 'r1', zone: 'z1', subzone: 's1' }, { app: 'bar' }, 3, true],
      ['203.0.113.11', { http: 8080, grpc: 9001 }, '', { region: '', zone: '', subzone: '' }, {}, 1, true],
    ]);
  });

  it('DNS: each endpoint name becomes the addresses it resolves to', () => {
    const [svc] = services({
      ...internal,
      resolution: 'DNS',
      endpoints: [{ address: 'gw.cluster-b.example.com', ports: { http: 15443 } }],
    });
    expect(svc!.endpoints.map((e) => `${e.address}:${e.ports['http']}`)).toEqual(['198.51.100.7:15443', '198.51.100.8:15443']);
    const r = serviceEntryToModel(entry({ ...internal, resolution: 'DNS', endpoints: [{ address: 'gw.cluster-b.example.com' }] }), ctx);
    expect(r.kind === 'services' && r.dnsNames).toEqual(['gw.cluster-b.example.com']);
  });

  it("SANs: subjectAltNames as given; else the serviceAccount in the host's trust domain (not the local one); else any account of the host's namespace there", () => {
    const ep = { address: '203.0.113.10', serviceAccount: 'bar' };
    expect(
      services({ ...internal, resolution: 'STATIC', endpoints: [ep], subjectAltNames: ['spiffe://cluster-b.local/ns/xyz/sa/bar-v2'] })[0]!
        .endpoints[0]!.sans,
    ).toEqual(['spiffe://cluster-b.local/ns/xyz/sa/bar-v2']);
    expect(services({ ...internal, resolution: 'STATIC', endpoints: [ep] })[0]!.endpoints[0]!.sans).toEqual([
      'spiffe://cluster-b.local/ns/xyz/sa/bar',
    ]);
    expect(services({ ...internal, resolution: 'STATIC', endpoints: [{ address: '203.0.113.10' }] })[0]!.endpoints[0]!.sans).toEqual([
      'spiffe://cluster-b.local/ns/xyz/sa/',
    ]);
    // A local-domain or non-svc host without SANs: Istio's rule (local trust domain; none without an account).
    const local = services({
      ...internal,
      hosts: ['db.example.com'],
      resolution: 'STATIC',
      endpoints: [ep, { address: '203.0.113.11' }],
    })[0]!;
    expect(local.endpoints.map((e) => e.sans)).toEqual([['spiffe://cluster-a.local/ns/d8-istio/sa/bar'], []]);
    expect(local).toMatchObject({ name: 'db.example.com', namespace: 'd8-istio', origin: 'local' });
  });

  it('ignores MESH_EXTERNAL entries', () => {
    expect(serviceEntryToModel(entry({ ...internal, location: 'MESH_EXTERNAL' }), ctx)).toEqual({
      kind: 'ignored',
      reason: 'MESH_EXTERNAL entries are not imported',
    });
  });

  it.each([
    [{ ...internal, ports: [] }, 'ports: at least one port is required'],
    [{ ...internal, hosts: ['*.cluster-b.local'] }, 'hosts: "*.cluster-b.local" is not a DNS name (wildcards are not supported)'],
    [
      { ...internal, resolution: 'STATIC', endpoints: [{ address: 'gw.example.com' }] },
      'endpoints[0].address "gw.example.com" is not an IP address (resolution STATIC)',
    ],
    [
      { ...internal, resolution: 'STATIC', endpoints: [{ address: '203.0.113.1', ports: { tcp: 1 } }] },
      'endpoints[0].ports: the entry has no port named "tcp"',
    ],
    [{ ...internal, resolution: 'DNS' }, 'DNS resolution needs endpoints (resolving the hosts themselves is not supported)'],
    [{ ...internal, resolution: 'NONE' }, 'resolution "NONE" is not supported (STATIC or DNS)'],
    [{ ...internal, resolution: 'STATIC', subjectAltNames: 'spiffe://x' }, 'subjectAltNames must be a list of strings'],
    [{ ...internal, workloadSelector: { labels: { app: 'x' } } }, 'workloadSelector is not supported (list endpoints)'],
  ])('refuses an invalid entry, saying why (%#)', (spec, reason) => {
    expect(serviceEntryToModel(entry(spec), ctx)).toEqual({ kind: 'invalid', reason });
  });
});
