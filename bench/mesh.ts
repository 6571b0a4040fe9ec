// The benchmark's mesh: services spread over namespaces, each with endpoints on one cluster.
import { stringStruct } from '../src/xds/struct.js';

export interface BenchMeshOptions {
  readonly services: number;
  readonly endpointsPerService: number;
}

export const BENCH_DOMAIN = 'cluster.local';

/** The simulated sidecars run in cluster-a on net-a, as Istio's injector tells them (NETWORK, CLUSTER_ID). */
export const BENCH_NODE_METADATA = { CLUSTER_ID: 'cluster-a', NETWORK: 'net-a' } as const;

/** The same metadata as a google.protobuf.Struct, for encoding. */
export function benchNodeStruct(): object {
  return stringStruct(BENCH_NODE_METADATA);
}

export function serviceName(i: number): string {
  return `svc-${i}`;
}

export function namespaceOf(i: number): string {
  return `ns-${i % 50}`;
}

export function hostname(i: number): string {
  return `${serviceName(i)}.${namespaceOf(i)}.svc.${BENCH_DOMAIN}`;
}

export function clusterName(i: number): string {
  return `outbound|8080||${hostname(i)}`;
}

/** Endpoint addresses are 10.x.y.z (never dialled: the clients only receive config). */
export function endpointAddress(service: number, j: number, generation = 0): string {
  const n = service * 64 + j + generation * 17;
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

export function benchService(i: number, endpointsPerService: number, generation = 0): object {
  return {
    name: serviceName(i),
    namespace: namespaceOf(i),
    cluster: 'cluster-a',
    ports: [{ name: 'http', port: 8080, protocol: 'HTTP', targetPort: 8080 }],
    endpoints: Array.from({ length: endpointsPerService }, (_, j) => ({
      address: endpointAddress(i, j, generation),
      serviceAccount: serviceName(i),
      locality: { region: 'r1', zone: `z${j % 3}` },
    })),
  };
}

export function benchMesh(o: BenchMeshOptions): object {
  return {
    clusters: [{ id: 'cluster-a', network: 'net-a', domain: BENCH_DOMAIN, gateways: [{ address: '192.0.2.10', port: 15443 }] }],
    services: Array.from({ length: o.services }, (_, i) => benchService(i, o.endpointsPerService)),
  };
}
