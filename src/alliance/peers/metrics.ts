// Per-peer gauges, read from the controller at scrape time. The fetch-error gauges mirror Deckhouse's
// d8_istio_{federation,multicluster}_metadata_endpoints_fetch_error_count (0/1), so the same alerts can be written.
import client from 'prom-client';
import type { PeerRow } from './controller.js';

const IMPORTS = ['none', 'fresh', 'stale', 'withdrawn'] as const;
/** RemoteAPIServerReady reasons of a `GET /api` that was made and failed. */
const API_PROBE_FAILURES = new Set([
  'RemoteAPIUnreachable',
  'RemoteAPIBadResponse',
  'RemoteAPIInvalidResponse',
  'RemoteAPIUnexpectedResponse',
]);

export function registerPeerMetrics(registry: client.Registry, allRows: () => readonly PeerRow[]): void {
  const rows = (): PeerRow[] => allRows().filter((r) => r.kind === 'federation');
  const multiclusters = (): PeerRow[] => allRows().filter((r) => r.kind === 'multicluster');
  new client.Gauge({
    name: 'meshfed_multicluster_metadata_endpoints_fetch_error_count',
    help: "1 when the last fetch of a multicluster peer's metadata failed, else 0",
    labelNames: ['multicluster_name', 'endpoint'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of multiclusters()) this.set({ multicluster_name: r.name, endpoint: r.metadataEndpoint }, r.fetchError);
    },
  });
  new client.Gauge({
    name: 'meshfed_multicluster_api_host_check_error_count',
    help: "1 when the last probe of a multicluster peer's api-proxy (GET /api) failed, else 0 (Deckhouse's d8_istio_multicluster_api_host_check_error_count)",
    labelNames: ['multicluster_name'],
    registers: [registry],
    collect() {
      this.reset();
      // Only a probe that failed: not one never made (AwaitingPrivate) or a peer refused before probing.
      for (const r of multiclusters())
        this.set({ multicluster_name: r.name }, r.api?.status === 'False' && API_PROBE_FAILURES.has(r.api.reason) ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'meshfed_federation_metadata_endpoints_fetch_error_count',
    help: "1 when the last fetch of a federation peer's metadata failed, else 0",
    labelNames: ['federation_name', 'endpoint'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) this.set({ federation_name: r.name, endpoint: r.metadataEndpoint }, r.fetchError);
    },
  });
  new client.Gauge({
    name: 'meshfed_federation_peer_imports',
    help: "1 for the state of each federation peer's imports: none, fresh, stale (demoted) or withdrawn",
    labelNames: ['federation_name', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) for (const s of IMPORTS) this.set({ federation_name: r.name, state: s }, (r.imports ?? 'none') === s ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'meshfed_federation_peer_imported_services',
    help: 'Services imported from each federation peer',
    labelNames: ['federation_name'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) this.set({ federation_name: r.name }, r.servicesImported ?? 0);
    },
  });
}
