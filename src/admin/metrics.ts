// Prometheus metrics (prom-client), fed by the xDS layer's observer hooks.
import client from 'prom-client';
import type { XdsObserver, StreamKind } from '../xds/observer.js';
import type { Limit } from '../xds/limits.js';
import { isXdsType, SHORT } from '../envoy/protos.js';
import { isIstioConfigType, istioTypeLabel } from '../istio/config-types.js';

/** Istio config types are named by clients (istiod), so any not Istio's own share one label. */
const short = (t: string): string => (isXdsType(t) ? SHORT[t] : isIstioConfigType(t) ? istioTypeLabel(t) : t);

/**
 * Types Envoy asks ADS for that meshfed does not serve. A label comes from this closed set or
 * is `unknown`: a client's type_url must not become a new series (nor a 48 MiB label).
 */
const KNOWN_UNSERVED = new Set([
  'type.googleapis.com/envoy.service.runtime.v3.Runtime',
  'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig',
  'type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration',
  'type.googleapis.com/envoy.config.route.v3.VirtualHost',
]);

export class Metrics implements XdsObserver {
  readonly registry = new client.Registry();
  private readonly proxies = new client.Gauge({
    name: 'meshfed_xds_connected_proxies',
    help: 'Open xDS streams',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  private readonly pushes = new client.Counter({
    name: 'meshfed_xds_pushes_total',
    help: 'Responses written',
    labelNames: ['type'],
    registers: [this.registry],
  });
  private readonly bytes = new client.Counter({
    name: 'meshfed_xds_pushed_bytes_total',
    help: 'Response bytes written',
    labelNames: ['type'],
    registers: [this.registry],
  });
  private readonly pushedResources = new client.Counter({
    name: 'meshfed_xds_pushed_resources_total',
    help: 'Resources in written responses',
    labelNames: ['type'],
    registers: [this.registry],
  });
  private readonly latency = new client.Histogram({
    name: 'meshfed_xds_push_latency_seconds',
    help: 'From a change in a source to the response that carries it, debounce included',
    labelNames: ['type'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  private readonly nacks = new client.Counter({
    name: 'meshfed_xds_nacks_total',
    help: 'Responses proxies rejected',
    labelNames: ['type'],
    registers: [this.registry],
  });
  private readonly unknown = new client.Counter({
    name: 'meshfed_xds_unknown_type_requests_total',
    help: 'Requests for types meshfed does not serve',
    labelNames: ['type_url'],
    registers: [this.registry],
  });
  private readonly limits = new client.Counter({
    name: 'meshfed_xds_limited_total',
    help: 'Requests and streams refused, or streams closed, at a limit (request-bytes, names, name-bytes, streams-per-connection, connections-per-address, idle-write-timeout)',
    labelNames: ['limit'],
    registers: [this.registry],
  });
  private readonly malformedRequests = new client.Counter({
    name: 'meshfed_xds_malformed_requests_total',
    help: 'Requests that could not be decoded',
    registers: [this.registry],
  });
  private readonly encodes = new client.Counter({
    name: 'meshfed_xds_resource_encodes_total',
    help: 'Resources encoded; changed="false" when the bytes came out the same',
    labelNames: ['type', 'changed'],
    registers: [this.registry],
  });
  private readonly resourceCount = new client.Gauge({
    name: 'meshfed_xds_resources',
    help: 'Resources held in the store, across views',
    labelNames: ['type'],
    registers: [this.registry],
  });
  private readonly denials = new client.Counter({
    name: 'meshfed_xds_denied_total',
    help: 'Streams refused: bad credentials (UNAUTHENTICATED), credentials that cannot be checked now (UNAVAILABLE), or a secret of another identity (PERMISSION_DENIED)',
    labelNames: ['code', 'reason'],
    registers: [this.registry],
  });
  private readonly withheldSecrets = new client.Counter({
    name: 'meshfed_xds_withheld_secrets_total',
    help: 'SDS secret names asked for by streams without an identity: answered as not existing, the stream stays (reason="unauthenticated")',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly configErrors = new client.Counter({
    name: 'meshfed_config_errors_total',
    help: 'Rejected configuration loads',
    labelNames: ['source'],
    registers: [this.registry],
  });
  readonly configValid = new client.Gauge({
    name: 'meshfed_config_valid',
    help: "1 if the source's latest configuration was accepted",
    labelNames: ['source'],
    registers: [this.registry],
  });

  private readonly kubeRejected = new client.Counter({
    name: 'meshfed_kube_rejected_objects_total',
    help: 'Objects from an apiserver rejected (bad JSON, wrong kind, malformed, oversized)',
    labelNames: ['cluster', 'kind', 'reason'],
    registers: [this.registry],
  });
  private readClusters: () => readonly ClusterGauges[] = () => [];
  private readonly clusterState = new client.Gauge({
    name: 'meshfed_remote_cluster_state',
    help: '1 for the state each remote cluster is in',
    labelNames: ['cluster', 'state'],
    registers: [this.registry],
    collect: () => this.fillClusterGauges(),
  });
  private readonly clusterEndpoints = new client.Gauge({
    name: 'meshfed_remote_cluster_endpoints',
    help: 'Endpoints accepted from each remote cluster',
    labelNames: ['cluster'],
    registers: [this.registry],
  });
  private readonly clusterStaleness = new client.Gauge({
    name: 'meshfed_remote_cluster_staleness_seconds',
    help: 'How long each remote cluster has been unreachable (0 when reachable)',
    labelNames: ['cluster'],
    registers: [this.registry],
  });
  private readonly clusterHeld = new client.Gauge({
    name: 'meshfed_remote_cluster_held_updates',
    help: 'Services whose mass withdrawal is held until confirmed, per remote cluster',
    labelNames: ['cluster'],
    registers: [this.registry],
  });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry });
  }

  /** Remote clusters' gauges are read from `read` at scrape time. */
  remoteClusters(states: readonly string[], read: () => readonly ClusterGauges[]): void {
    this.clusterStates = states;
    this.readClusters = read;
  }
  private clusterStates: readonly string[] = [];

  rejected(cluster: string, kind: string, reason: string): void {
    this.kubeRejected.inc({ cluster, kind, reason });
  }

  private fillClusterGauges(): void {
    for (const g of [this.clusterState, this.clusterEndpoints, this.clusterStaleness, this.clusterHeld]) g.reset();
    for (const c of this.readClusters()) {
      for (const s of this.clusterStates) this.clusterState.set({ cluster: c.cluster, state: s }, s === c.state ? 1 : 0);
      this.clusterEndpoints.set({ cluster: c.cluster }, c.endpoints);
      this.clusterStaleness.set({ cluster: c.cluster }, c.stalenessSeconds);
      this.clusterHeld.set({ cluster: c.cluster }, c.heldServices);
    }
  }

  streamOpened(kind: StreamKind): void {
    this.proxies.inc({ kind });
  }
  streamClosed(kind: StreamKind): void {
    this.proxies.dec({ kind });
  }
  pushed(typeUrl: string, bytes: number, resources: number, latencyMs: number | undefined): void {
    const type = short(typeUrl);
    this.pushes.inc({ type });
    this.bytes.inc({ type }, bytes);
    this.pushedResources.inc({ type }, resources);
    if (latencyMs !== undefined) this.latency.observe({ type }, latencyMs / 1000);
  }
  nacked(typeUrl: string): void {
    this.nacks.inc({ type: short(typeUrl) });
  }
  unknownType(typeUrl: string): void {
    this.unknown.inc({ type_url: KNOWN_UNSERVED.has(typeUrl) ? typeUrl : 'unknown' });
  }
  malformed(): void {
    this.malformedRequests.inc();
  }
  encoded(typeUrl: string, changed: boolean): void {
    this.encodes.inc({ type: short(typeUrl), changed: String(changed) });
  }
  resources(typeUrl: string, count: number): void {
    this.resourceCount.set({ type: short(typeUrl) }, count);
  }
  denied(code: string, reason: string): void {
    this.denials.inc({ code, reason });
  }
  limited(limit: Limit): void {
    this.limits.inc({ limit });
  }

  withheld(reason: string, names: number): void {
    this.withheldSecrets.inc({ reason }, names);
  }
}

export interface ClusterGauges {
  readonly cluster: string;
  readonly state: string;
  readonly endpoints: number;
  readonly stalenessSeconds: number;
  readonly heldServices: number;
}
