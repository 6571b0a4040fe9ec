// Per-peer gauges, read from the controller at scrape time. The fetch-error gauge mirrors Deckhouse's
// d8_istio_federation_metadata_endpoints_fetch_error_count (0/1), so the same alert can be written.
import client from 'prom-client';
import type { PeerRow } from './controller.js';

const IMPORTS = ['none', 'fresh', 'stale', 'withdrawn'] as const;

export function registerPeerMetrics(registry: client.Registry, rows: () => readonly PeerRow[]): void {
  new client.Gauge({
    name: 'meshfed_federation_metadata_endpoints_fetch_error_count',
    help: '1 when the last fetch of a federation peer\'s metadata failed, else 0',
    labelNames: ['federation_name', 'endpoint'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) this.set({ federation_name: r.name, endpoint: r.metadataEndpoint }, r.fetchError);
    },
  });
  new client.Gauge({
    name: 'meshfed_federation_peer_imports',
    help: '1 for the state of each federation peer\'s imports: none, fresh, stale (demoted) or withdrawn',
    labelNames: ['federation_name', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) for (const s of IMPORTS) this.set({ federation_name: r.name, state: s }, r.imports === s ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'meshfed_federation_peer_imported_services',
    help: 'Services imported from each federation peer',
    labelNames: ['federation_name'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) this.set({ federation_name: r.name }, r.servicesImported);
    },
  });
}
