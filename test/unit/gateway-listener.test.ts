// The east-west gateway's 15443 listener: which server names route where, matched as Envoy's
// FilterChainManager matches them (server_names compared with the ClientHello's SNI as plain,
// lower-cased strings), and nothing on it that would terminate TLS.
import { describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { VIEW_RESOURCES } from '../../src/generate/generator.js';
import { GATEWAY_LISTENER, ldsGenerator } from '../../src/generate/lds.js';
import type { MeshCluster, MeshSnapshot, Service } from '../../src/model/mesh.js';
import { proxyOf } from '../../src/model/proxy.js';
import { validateResource } from '../../src/validate/index.js';
import { captureClientHello, parseClientHello } from '../fixtures/sni-gateway/client-hello.js';

const cluster = (id: string, network: string): MeshCluster => ({
  id,
  network,
  domain: 'cluster.local',
  rootCaPem: '',
  gateways: [{ address: '192.0.2.2', port: 15443 }],
});
const service = (name: string, ports: number[]): Service => ({
  hostname: `${name}.abc.svc.cluster.local`,
  name,
  namespace: 'abc',
  ports: ports.map((port, i) => ({ name: `p${i}`, port, protocol: 'GRPC', targetPort: port })),
  exported: true,
  clusters: ['c2'],
  origin: 'local',
});
const ONE = service('one', [8080]);
const TWO = service('two', [8080, 9090]);
const MESH: MeshSnapshot = {
  clusters: new Map([['c2', cluster('c2', 'net-2')]]),
  services: new Map([ONE, TWO].map((s) => [s.hostname, s])),
  endpoints: new Map(),
  raw: new Map(),
};

interface Chain {
  name: string;
  filter_chain_match: { server_names: string[] };
  filters: Array<{ name: string; typed_config: { cluster?: string } }>;
  transport_socket?: unknown;
}
interface GatewayListener {
  listener_filters: Array<{ name: string }>;
  filter_chains: Chain[];
}

function gatewayListener(): GatewayListener {
  const view = proxyOf({
    id: 'router~10.2.0.5~gw.istio-system~istio-system.svc.cluster.local',
    metadata: { CLUSTER_ID: 'c2', NETWORK: 'net-2' },
  }).view;
  const [listener] = ldsGenerator.generate(MESH, view, VIEW_RESOURCES);
  expect(listener?.name).toBe(GATEWAY_LISTENER);
  return listener!.body as unknown as GatewayListener;
}

/** The cluster Envoy sends a connection with this SNI to: sni_cluster names it by the SNI, else tcp_proxy's. */
function route(l: GatewayListener, sni: string): string | undefined {
  const chain = l.filter_chains.find((c) => c.filter_chain_match.server_names.includes(sni.toLowerCase()));
  if (!chain) return undefined;
  return chain.filters.some((f) => f.name === 'envoy.filters.network.sni_cluster') ? sni : chain.filters.at(-1)?.typed_config.cluster;
}

describe('gateway listener server names', () => {
  it('matches <host>:<port> for every port of every exported service, single- or multi-port', () => {
    const l = gatewayListener();
    for (const s of [ONE, TWO]) {
      for (const { port } of s.ports) {
        expect(route(l, `${s.hostname}:${port}`), `${s.hostname}:${port}`).toBe(`outbound_.${port}_._.${s.hostname}`);
        expect(route(l, `outbound_.${port}_._.${s.hostname}`)).toBe(`outbound_.${port}_._.${s.hostname}`);
      }
    }
    expect(route(l, ONE.hostname)).toBe(`outbound_.8080_._.${ONE.hostname}`);
    expect(route(l, TWO.hostname)).toBeUndefined(); // ambiguous: which port?
    expect(route(l, `${TWO.hostname}:7070`)).toBeUndefined();
  });

  it('routes a real ClientHello whose SNI is the target authority <host>:<port>', async () => {
    const hello = parseClientHello(await captureClientHello(`${TWO.hostname}:9090`));
    expect(hello).toEqual({ kind: 'sni', serverName: `${TWO.hostname}:9090` });
    expect(route(gatewayListener(), hello.kind === 'sni' ? hello.serverName : '')).toBe(`outbound_.9090_._.${TWO.hostname}`);
  });

  it('never terminates TLS: no transport socket on any chain, only tls_inspector before them', () => {
    const l = gatewayListener();
    expect(l.listener_filters.map((f) => f.name)).toEqual(['envoy.filters.listener.tls_inspector']);
    for (const c of l.filter_chains) {
      expect(c.transport_socket, c.name).toBeUndefined();
      expect(c.filters.map((f) => f.name).at(-1)).toBe('envoy.filters.network.tcp_proxy');
    }
  });

  it("passes the validate rules of Envoy's protos, <host>:<port> server names included", () => {
    expect(validateResource(TypeUrl.Listener, gatewayListener() as unknown as Record<string, unknown>)).toEqual([]);
  });
});
