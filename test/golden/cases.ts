// The meshes and proxies of the golden tests: one case per role and topology.
import type { Endpoint } from '../../src/model/mesh.js';
import type { NodeInfo } from '../../src/model/proxy.js';

export interface GoldenCase {
  readonly name: string;
  /** What the golden shows, for whoever reviews it. */
  readonly about: string;
  readonly mesh: Record<string, unknown>;
  readonly node: NodeInfo;
  readonly sdsConfig?: 'ads' | 'sds-grpc';
  /** Endpoint fields the file source cannot set, by address: priority (a demoted stale remote) and provenance (a peer). */
  readonly patch?: Readonly<Record<string, Partial<Endpoint>>>;
}

const meta = (clusterId: string, network: string, extra: Record<string, string> = {}): Record<string, string> => ({
  CLUSTER_ID: clusterId,
  NETWORK: network,
  ...extra,
});

/** istio-agent announces its version: the Envoy is istio-proxy, whose telemetry reads istio.workload. */
const ISTIO_VERSION = '1.24.0';

const sidecar = (clusterId: string, network: string, domain: string): NodeInfo => ({
  id: `sidecar~10.0.0.9~client-1.abc~abc.svc.${domain}`,
  metadata: meta(clusterId, network, { NAMESPACE: 'abc', SERVICE_ACCOUNT: 'client', ISTIO_VERSION }),
});

const ep = (address: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  address,
  serviceAccount: 'foo',
  locality: { region: 'r1', zone: 'z1' },
  ...extra,
});

/** Istio's TestSplitHorizonEds: networks 1–4 hold 1, 2, 3, 4 endpoints behind 1, 1, 2, 0 gateways. */
const istioWorkedExample = {
  clusters: [
    { id: 'c1', network: 'network1', domain: 'cluster.local', gateways: [{ address: '1.1.1.1', port: 15443 }] },
    { id: 'c2', network: 'network2', domain: 'cluster.local', gateways: [{ address: '2.2.2.2', port: 15443 }] },
    {
      id: 'c3',
      network: 'network3',
      domain: 'cluster.local',
      gateways: [
        { address: '3.3.3.3', port: 15443 },
        { address: '3.3.3.4', port: 15443 },
      ],
    },
    { id: 'c4', network: 'network4', domain: 'cluster.local' },
  ],
  services: [
    {
      name: 'foo',
      namespace: 'abc',
      cluster: 'c1',
      exported: true,
      ports: [{ name: 'http', port: 80 }],
      endpoints: [
        ep('10.0.0.1', { port: 8080 }),
        ep('20.0.0.1', { port: 8080, cluster: 'c2' }),
        ep('20.0.0.2', { port: 8080, cluster: 'c2' }),
        ep('20.0.0.3', { port: 8080, cluster: 'c2', mtls: false }), // plaintext: unreachable through a gateway
        ep('30.0.0.1', { port: 8080, cluster: 'c3' }),
        ep('30.0.0.2', { port: 8080, cluster: 'c3' }),
        ep('30.0.0.3', { port: 8080, cluster: 'c3' }),
        ep('40.0.0.1', { port: 8080, cluster: 'c4' }),
        ep('40.0.0.2', { port: 8080, cluster: 'c4' }),
        ep('40.0.0.3', { port: 8080, cluster: 'c4' }),
        ep('40.0.0.4', { port: 8080, cluster: 'c4' }),
      ],
    },
  ],
};

const twoClusters = (sameNetwork: boolean): Record<string, unknown> => ({
  clusters: [
    { id: 'cluster-a', network: 'network-a', domain: 'cluster-a.local', gateways: [{ address: '192.0.2.1', port: 15443 }] },
    {
      id: 'cluster-b',
      network: sameNetwork ? 'network-a' : 'network-b',
      domain: 'cluster-b.local',
      gateways: [{ address: '192.0.2.2', port: 15443 }],
    },
  ],
  services: [
    {
      name: 'foo',
      namespace: 'abc',
      cluster: 'cluster-a',
      exported: true,
      ports: [{ name: 'grpc', port: 8080, protocol: 'GRPC' }],
      endpoints: [
        {
          address: '10.1.0.1',
          port: 8080,
          serviceAccount: 'foo',
          locality: { region: 'r1', zone: 'z1' },
          labels: { app: 'foo', version: 'v1' },
        },
        {
          address: '10.1.0.2',
          port: 8080,
          serviceAccount: 'foo',
          locality: { region: 'r1', zone: 'z1' },
          labels: { app: 'foo', version: 'v1' },
        },
      ],
    },
    {
      name: 'bar',
      namespace: 'xyz',
      cluster: 'cluster-b',
      exported: true,
      ports: [{ name: 'grpc', port: 9090, protocol: 'GRPC' }],
      endpoints: [
        { address: '10.2.0.1', port: 9090, serviceAccount: 'bar', locality: { region: 'r2', zone: 'z1' } },
        { address: '10.2.0.2', port: 9090, serviceAccount: 'bar-admin', locality: { region: 'r2', zone: 'z2' } },
      ],
    },
  ],
});

export const CASES: readonly GoldenCase[] = [
  {
    name: 'sidecar-one-network',
    about:
      'One network, two clusters merged under one hostname: localities sorted with summed weights, UNHEALTHY kept with its status, TERMINATING dropped, mixed mTLS and plaintext pods so the TLS socket as the default of each cluster with one tlsMode-disabled socket match, and tlsMode disabled metadata on the plaintext pod only (the mTLS pods without it: no metadata fails closed to TLS), the cluster-a2 pod demoted (its locality at priority 1) and learnt from a peer (meshfed provenance), SANs of both accounts, HTTP/2 options and h2 ALPN for the grpc port, a TCP port without them.',
    node: sidecar('cluster-a', 'network-a', 'cluster.local'),
    patch: {
      '10.9.0.1': {
        priority: 1,
        provenance: { source: 'kube:cluster-a2', peer: 'meshfed-west', confirmedAt: Date.UTC(2026, 0, 2, 3, 4, 5) },
      },
    },
    mesh: {
      clusters: [
        { id: 'cluster-a', network: 'network-a', domain: 'cluster.local', gateways: [{ address: '192.0.2.1', port: 15443 }] },
        { id: 'cluster-a2', network: 'network-a', domain: 'cluster.local' },
      ],
      services: [
        {
          name: 'foo',
          namespace: 'abc',
          cluster: 'cluster-a',
          ports: [
            { name: 'grpc', port: 8080, protocol: 'GRPC' },
            { name: 'tcp-db', port: 5432 },
          ],
          endpoints: [
            ep('10.0.0.1', { labels: { app: 'foo', version: 'v2' } }),
            ep('10.0.0.2', { locality: { region: 'r1', zone: 'z2' }, health: 'UNHEALTHY' }),
            ep('10.0.0.3', { health: 'TERMINATING' }),
            ep('10.0.0.4', { mtls: false, weight: 3 }),
          ],
        },
        {
          name: 'foo',
          namespace: 'abc',
          cluster: 'cluster-a2',
          ports: [
            { name: 'grpc', port: 8080, protocol: 'GRPC' },
            { name: 'tcp-db', port: 5432 },
          ],
          endpoints: [ep('10.9.0.1', { serviceAccount: 'foo-canary', locality: { region: 'r0', zone: 'z9' } })],
        },
      ],
    },
  },
  {
    name: 'sidecar-istio-worked-example',
    about:
      "Istio's split-horizon example seen from network1: LCM of gateway counts 2, so the local pod weighs 2; network2's gateway 4 (two mTLS pods; the plaintext one dropped, so no endpoint here carries tlsMode metadata, yet the service mixes, so its clusters keep the TLS socket plus the tlsMode-disabled match); each of network3's two gateways 3; network4 has no gateway, so (unlike Istio, which sends its pod IPs) it is dropped.",
    node: sidecar('c1', 'network1', 'cluster.local'),
    mesh: istioWorkedExample,
  },
  {
    name: 'sidecar-federated-import',
    about:
      "cluster-b (trust domain cluster-b.local) shares network-a with the proxy, yet bar.xyz.svc.cluster-b.local is a federated import: EDS holds only cluster-b's gateway (weight 2 for two pods in two localities), SANs only cluster-b.local identities; SDS through istio-agent (--sds-config sds-grpc). Every endpoint takes mTLS, so each cluster has its TLS socket itself (no socket matches) and EDS no tlsMode; istio-proxy gets istio.workload.",
    node: sidecar('cluster-a', 'network-a', 'cluster-a.local'),
    mesh: twoClusters(true),
    sdsConfig: 'sds-grpc',
  },
  {
    name: 'gateway-network-b',
    about:
      "cluster-b's east-west gateway: SNI clusters outbound_.<port>_._.<host> for network-b's exported services only, EDS of network-b's pods with istio.workload only (no socket matches, so no tlsMode), no TLS of its own, and the 15443 listener (tls_inspector; per SNI sni_cluster + tcp_proxy; the target authority <host>:<port> of every port and the bare hostname of a single-port service too, straight to tcp_proxy).",
    node: {
      id: 'router~10.2.0.5~eastwest-gw.istio-system~istio-system.svc.cluster-b.local',
      metadata: meta('cluster-b', 'network-b', { ISTIO_VERSION }),
    },
    mesh: twoClusters(false),
  },
  {
    name: 'grpc-proxyless',
    about:
      "A proxyless gRPC client in cluster-a: an API listener per host:port with RDS over ADS, a route to the outbound cluster, ROUND_ROBIN clusters with mTLS through certificate-provider instances (default, spiffe://<service trust domain>), EDS split by network (bar through cluster-b's gateway).",
    node: {
      id: 'grpc-client-1',
      user_agent_name: 'gRPC Node Pure JS',
      metadata: meta('cluster-a', 'network-a', { NAMESPACE: 'abc', SERVICE_ACCOUNT: 'client' }),
    },
    mesh: twoClusters(false),
  },
];
