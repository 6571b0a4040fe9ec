// Endpoint metadata only where the receiving proxy reads it: istio.workload for istio-proxy
// (it announces ISTIO_VERSION), the tlsMode socket-match key only where the cluster has a socket
// match (a service mixing mTLS and plaintext endpoints), and then only on plaintext endpoints.
// Envoy must still pick the right socket for every endpoint, also while it warms a cluster whose
// shape changed (the old cluster with the new assignment), and equal views still share one table
// and its bytes.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { createGenerators } from '../../src/generate/index.js';
import type { MeshSnapshot } from '../../src/model/mesh.js';
import { type NodeInfo, type ProxyView, proxyOf } from '../../src/model/proxy.js';
import { Registry } from '../../src/registry/registry.js';
import { parseMeshText } from '../../src/sources/file/parse.js';
import { meshToSource } from '../../src/sources/file/to-model.js';
import { NO_OBSERVER } from '../../src/xds/observer.js';
import { encodeEntry } from '../../src/xds/resource.js';
import { XdsStore } from '../../src/xds/store.js';

type Body = Record<string, unknown>;
interface LbEndpoint {
  endpoint: { address: { socket_address: { address: string } } };
  metadata?: { filter_metadata: Record<string, { fields: Record<string, { stringValue: string }> }> };
}
interface SocketMatch {
  name: string;
  match: { fields?: Record<string, { stringValue: string }> };
  transport_socket: { name: string };
}

const META = { CLUSTER_ID: 'a', NETWORK: 'na', NAMESPACE: 'abc', SERVICE_ACCOUNT: 'client' };
const NODES: Record<string, NodeInfo> = {
  istioProxy: { id: 'sidecar~10.9.0.1~c.abc~abc.svc.cluster.local', metadata: { ...META, ISTIO_VERSION: '1.24.0' } },
  plainEnvoy: { id: 'sidecar~10.9.0.2~d.abc~abc.svc.cluster.local', metadata: META },
  grpc: { id: 'grpc-1', user_agent_name: 'gRPC Go', metadata: META },
  istioGateway: { id: 'router~10.9.0.3~gw.istio-system~istio-system.svc.cluster.local', metadata: { ...META, ISTIO_VERSION: '1.24.0' } },
};
const view = (n: keyof typeof NODES): ProxyView => proxyOf(NODES[n]).view;

/** Pods 10.0.<service>.<n> in cluster a; 10.1.* in cluster b (network nb, behind gateway 192.0.2.2). */
function meshText(mixedPlain = true): string {
  const svc = (name: string, i: number, eps: Array<{ mtls: boolean; remote?: boolean }>): Body => ({
    name,
    namespace: 'abc',
    cluster: 'a',
    exported: true,
    ports: [{ name: 'http', port: 8080 }],
    endpoints: eps.map((e, n) => ({
      address: `10.${e.remote ? 1 : 0}.${i}.${n + 1}`,
      serviceAccount: name,
      mtls: e.mtls,
      ...(e.remote ? { cluster: 'b' } : {}),
    })),
  });
  return JSON.stringify({
    clusters: [
      { id: 'a', network: 'na', domain: 'cluster.local', gateways: [{ address: '192.0.2.1', port: 15443 }] },
      { id: 'b', network: 'nb', domain: 'cluster.local', gateways: [{ address: '192.0.2.2', port: 15443 }] },
    ],
    services: [
      svc('secure', 0, [{ mtls: true }, { mtls: true }, { mtls: true, remote: true }]),
      svc('plain', 1, [{ mtls: false }, { mtls: false }]),
      svc('mixed', 2, [{ mtls: true }, { mtls: !mixedPlain }, { mtls: true, remote: true }]),
    ],
  });
}

function snapshotOf(text: string): MeshSnapshot {
  let snap: MeshSnapshot | undefined;
  const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s) => (snap = s), pino({ level: 'silent' }));
  registry.setSource('t', meshToSource(parseMeshText(text, 'mesh.json'), 't'));
  registry.flush();
  return snap!;
}

const host = (name: string): string => `${name}.abc.svc.cluster.local`;
const generator = (typeUrl: string): ReturnType<typeof createGenerators>[number] => createGenerators().find((g) => g.typeUrl === typeUrl)!;

function lbEndpoints(mesh: MeshSnapshot, v: ProxyView, name: string): LbEndpoint[] {
  const [cla] = generator(TypeUrl.Endpoint).generate(mesh, v, host(name));
  const groups = cla!.body['endpoints'] as Array<{ lb_endpoints: LbEndpoint[]; metadata?: unknown }>;
  // Envoy also matches a locality's metadata; meshfed sends none, so socketFor may skip that step.
  expect(groups.map((g) => g.metadata)).toEqual(groups.map(() => undefined));
  return groups.flatMap((g) => g.lb_endpoints);
}

function cluster(mesh: MeshSnapshot, v: ProxyView, name: string): Body {
  return generator(TypeUrl.Cluster).generate(mesh, v, host(name))[0]!.body;
}

/**
 * The socket Envoy takes for an endpoint (Cluster.transport_socket_matches in Envoy's cluster.proto):
 * the first socket match whose fields the endpoint's `envoy.transport_socket_match` metadata holds
 * (an empty match holds for all), else the cluster's transport_socket, else plaintext.
 */
function socketFor(c: Body, ep: LbEndpoint): string {
  const md = ep.metadata?.filter_metadata['envoy.transport_socket_match']?.fields ?? {};
  const matches = (c['transport_socket_matches'] as SocketMatch[] | undefined) ?? [];
  const m = matches.find((s) => Object.entries(s.match.fields ?? {}).every(([k, val]) => md[k]?.stringValue === val.stringValue));
  if (m) return m.transport_socket.name;
  return (c['transport_socket'] as { name: string } | undefined)?.name ?? 'envoy.transport_sockets.raw_buffer';
}

const TLS = 'envoy.transport_sockets.tls';
const MIXED = 'outbound|8080||mixed.abc.svc.cluster.local';
const RAW = 'envoy.transport_sockets.raw_buffer';

describe('EDS endpoint metadata', () => {
  const mesh = snapshotOf(meshText());

  it('gives istio.workload to istio-proxy only: not to a plain Envoy, nor to proxyless gRPC', () => {
    const workloads = (v: ProxyView): Array<string | undefined> =>
      lbEndpoints(mesh, v, 'secure').map((e) => e.metadata?.filter_metadata['istio']?.fields['workload']?.stringValue);
    expect(workloads(view('istioProxy'))).toEqual(['secure;abc;secure;latest;a', 'secure;abc;secure;latest;a', ';;;;b']);
    expect(workloads(view('plainEnvoy'))).toEqual([undefined, undefined, undefined]);
    expect(workloads(view('grpc'))).toEqual([undefined, undefined, undefined]);
    expect(lbEndpoints(mesh, view('grpc'), 'mixed').every((e) => e.metadata === undefined)).toBe(true);
  });

  it('sends tlsMode only where the socket match reads it (plaintext endpoints of a service mixing mTLS and plaintext), and Envoy still picks TLS for exactly the mTLS endpoints', () => {
    const mtls = new Set(['10.0.0.1', '10.0.0.2', '10.0.2.1', '192.0.2.2']); // 192.0.2.2: cluster b's gateway, mTLS passthrough
    for (const v of [view('istioProxy'), view('plainEnvoy')]) {
      const tlsModes = (name: string): Array<Array<string | undefined>> =>
        lbEndpoints(mesh, v, name).map((e) => [
          e.endpoint.address.socket_address.address,
          e.metadata?.filter_metadata['envoy.transport_socket_match']?.fields['tlsMode']?.stringValue,
        ]);
      const matches = (name: string): string[] | undefined =>
        (cluster(mesh, v, name)['transport_socket_matches'] as SocketMatch[] | undefined)?.map((m) => m.name);
      expect(tlsModes('secure')).toEqual([
        ['10.0.0.1', undefined],
        ['10.0.0.2', undefined],
        ['192.0.2.2', undefined],
      ]);
      expect(matches('secure')).toBeUndefined();
      expect(tlsModes('plain')).toEqual([
        ['10.0.1.1', undefined],
        ['10.0.1.2', undefined],
      ]);
      expect(matches('plain')).toBeUndefined();
      expect(tlsModes('mixed')).toEqual([
        ['10.0.2.1', undefined],
        ['10.0.2.2', 'disabled'],
        ['192.0.2.2', undefined],
      ]);
      expect(matches('mixed')).toEqual(['tlsMode-disabled']);
      for (const name of ['secure', 'plain', 'mixed']) {
        const c = cluster(mesh, v, name);
        for (const ep of lbEndpoints(mesh, v, name)) {
          const address = ep.endpoint.address.socket_address.address;
          expect({ name, address, socket: socketFor(c, ep) }).toEqual({ name, address, socket: mtls.has(address) ? TLS : RAW });
        }
      }
    }
    // A plain Envoy is then sent no endpoint metadata at all for a uniform service.
    expect(lbEndpoints(mesh, view('plainEnvoy'), 'secure').map((e) => e.metadata)).toEqual([undefined, undefined, undefined]);
  });

  it('gives a gateway no tlsMode (its SNI clusters have no socket matches), and istio.workload when it is istio-proxy', () => {
    const eps = lbEndpoints(mesh, view('istioGateway'), 'mixed');
    expect(eps.map((e) => Object.keys(e.metadata?.filter_metadata ?? {}))).toEqual([['istio']]);
  });

  it('moves the socket matches and the tlsMode metadata together when a service starts mixing', () => {
    const store = new XdsStore(createGenerators(), NO_OBSERVER);
    const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s, c) => store.update(s, c), pino({ level: 'silent' }));
    const apply = (text: string): void => {
      registry.setSource('t', meshToSource(parseMeshText(text, 'mesh.json'), 't'));
      registry.flush();
    };
    const v = view('plainEnvoy');
    const state = (): { socket: unknown; matches: unknown; tlsModes: unknown } => {
      const c = store.table(TypeUrl.Cluster, v).get(MIXED)!.toJSON();
      const cla = store.table(TypeUrl.Endpoint, v).get(MIXED)!.toJSON() as { endpoints: Array<{ lb_endpoints: LbEndpoint[] }> };
      return {
        socket: (c['transport_socket'] as { name: string } | undefined)?.name,
        matches: (c['transport_socket_matches'] as SocketMatch[] | undefined)?.map((m) => m.name),
        tlsModes: cla.endpoints
          .flatMap((g) => g.lb_endpoints)
          .map((e) => e.metadata?.filter_metadata['envoy.transport_socket_match']?.fields['tlsMode']?.stringValue),
      };
    };
    apply(meshText(false));
    expect(state()).toEqual({ socket: TLS, matches: undefined, tlsModes: [undefined, undefined, undefined] });
    apply(meshText(true));
    expect(state()).toEqual({ socket: TLS, matches: ['tlsMode-disabled'], tlsModes: [undefined, 'disabled', undefined] });
  });

  it('never sends an mTLS endpoint plaintext while Envoy warms a cluster whose TLS mode changed: the old cluster with the new assignment', () => {
    // While an updated cluster warms, the old one stays active and takes the new assignment.
    type Mode = 'all' | 'mixed' | 'none';
    const modes: Mode[] = ['all', 'mixed', 'none'];
    const meshes = new Map(modes.map((m) => [m, snapshotOf(modeText(m))] as const));
    for (const v of [view('istioProxy'), view('plainEnvoy')]) {
      for (const from of modes) {
        for (const to of modes) {
          const oldCluster = cluster(meshes.get(from)!, v, 'mixed');
          const newMesh = meshes.get(to)!;
          const mtls = new Set([
            ...newMesh.endpoints
              .get(host('mixed'))!
              .filter((e) => e.mtls)
              .map((e) => e.address),
            '192.0.2.2',
          ]);
          for (const ep of lbEndpoints(newMesh, v, 'mixed')) {
            const address = ep.endpoint.address.socket_address.address;
            if (!mtls.has(address)) continue;
            // A cluster that had no socket (none) sent plaintext before and still does: no service that had mTLS loses it.
            const want = from === 'none' ? RAW : TLS;
            expect({ from, to, address, socket: socketFor(oldCluster, ep) }).toEqual({ from, to, address, socket: want });
          }
        }
      }
    }
  });
});

/** Service `mixed` with every endpoint on mTLS (all), its second pod plaintext (mixed), or every endpoint plaintext (none). */
function modeText(mode: 'all' | 'mixed' | 'none'): string {
  const mesh = JSON.parse(meshText(mode === 'mixed')) as { services: Array<{ name: string; endpoints: Array<{ mtls: boolean }> }> };
  if (mode === 'none') for (const ep of mesh.services.find((s) => s.name === 'mixed')!.endpoints) ep.mtls = false;
  return JSON.stringify(mesh);
}

describe('EDS views', () => {
  const mesh = snapshotOf(meshText());
  const eds = generator(TypeUrl.Endpoint);
  const bytes = (v: ProxyView): string[] =>
    [...mesh.services.keys()]
      .sort()
      .flatMap((h) => eds.generate(mesh, v, h).map((r) => encodeEntry(TypeUrl.Endpoint, r.name, r.body).any.toString('base64')));

  it('gives equal views the same bytes and one table: other pods, accounts, Istio versions', () => {
    const otherIstio = proxyOf({
      id: 'sidecar~10.9.0.7~e.xyz~xyz.svc.cluster.local',
      metadata: { ...META, NAMESPACE: 'xyz', SERVICE_ACCOUNT: 'other', ISTIO_VERSION: '1.25.1' },
    }).view;
    const otherPlain = proxyOf({
      id: 'sidecar~10.9.0.8~f.xyz~xyz.svc.cluster.local',
      metadata: { ...META, NAMESPACE: 'xyz', SERVICE_ACCOUNT: 'other' },
    }).view;
    const otherGrpc = proxyOf({ id: 'grpc-2', user_agent_name: 'gRPC Node Pure JS', metadata: { ...META, ISTIO_VERSION: '1.24.0' } }).view;
    expect(bytes(otherIstio)).toEqual(bytes(view('istioProxy')));
    expect(bytes(otherPlain)).toEqual(bytes(view('plainEnvoy')));
    expect(bytes(otherGrpc)).toEqual(bytes(view('grpc')));
    expect(bytes(view('plainEnvoy'))).not.toEqual(bytes(view('istioProxy')));

    const store = new XdsStore(createGenerators(), NO_OBSERVER);
    store.update(mesh, { clusters: true, services: new Set(), endpoints: new Set(), identities: new Set(), raw: new Map() });
    const table = (v: ProxyView): unknown => store.table(TypeUrl.Endpoint, v);
    expect(table(otherIstio)).toBe(table(view('istioProxy')));
    expect(table(otherPlain)).toBe(table(view('plainEnvoy')));
    expect(table(otherGrpc)).toBe(table(view('grpc')));
    // Envoy sidecars on one network: two tables, one per kind, however many proxies.
    expect(new Set([otherIstio, otherPlain, view('istioProxy'), view('plainEnvoy')].map(table)).size).toBe(2);
  });
});
