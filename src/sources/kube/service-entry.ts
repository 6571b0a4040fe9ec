// Istio ServiceEntries (networking.istio.io) → the mesh model. MESH_INTERNAL entries become services:
// every host with the entry's ports; endpoints from STATIC IPs or DNS names (resolved by the caller);
// each endpoint's `ports` map, network, locality, labels and weight. SANs come from `subjectAltNames`;
// without them an endpoint's serviceAccount is a SPIFFE id in the *host's* trust domain (Istio would use
// the local one, which is wrong for a foreign host such as bar.xyz.svc.cluster-b.local). Pure.
import net from 'node:net';
import { compare, type Endpoint, type Protocol, type ServicePort } from '../../model/mesh.js';
import type { ServiceContribution } from '../../model/source.js';
import type { KubeObj } from './objects.js';

export interface ServiceEntryObj extends KubeObj {
  readonly spec?: unknown;
}

export interface EntryContext {
  readonly clusterId: string;
  readonly localDomain: string;
  /** Addresses a DNS name resolved to; undefined while unknown. */
  readonly resolve: (hostname: string) => readonly string[] | undefined;
}

export type EntryResult =
  | { readonly kind: 'services'; readonly services: ReadonlyMap<string, ServiceContribution>; readonly dnsNames: readonly string[] }
  | { readonly kind: 'ignored'; readonly reason: string }
  | { readonly kind: 'invalid'; readonly reason: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const PORT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536;

/** Istio's port protocols in the model's terms (HTTPS, TLS, MONGO, … are opaque bytes to the proxy). */
function protocolOf(p: string): Protocol {
  switch (p.toUpperCase()) {
    case 'HTTP':
      return 'HTTP';
    case 'HTTP2':
      return 'HTTP2';
    case 'GRPC':
    case 'GRPC-WEB':
      return 'GRPC';
    default:
      return 'TCP';
  }
}

/** `<name>.<ns>.svc.<domain>` → its parts. */
function svcHost(host: string): { name: string; namespace: string; domain: string } | undefined {
  const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.(.+)$/.exec(host);
  return m ? { name: m[1]!, namespace: m[2]!, domain: m[3]! } : undefined;
}

export function serviceEntryToModel(obj: ServiceEntryObj, ctx: EntryContext): EntryResult {
  const invalid = (reason: string): EntryResult => ({ kind: 'invalid', reason });
  const spec = obj.spec;
  if (!isObject(spec)) return invalid('spec is missing or not an object');
  const location = spec['location'] ?? 'MESH_EXTERNAL';
  if (location !== 'MESH_INTERNAL') {
    return location === 'MESH_EXTERNAL'
      ? { kind: 'ignored', reason: 'MESH_EXTERNAL entries are not imported' }
      : invalid(`location ${JSON.stringify(location)} is not MESH_INTERNAL or MESH_EXTERNAL`);
  }
  if (spec['workloadSelector'] !== undefined) return invalid('workloadSelector is not supported (list endpoints)');
  const hosts = spec['hosts'];
  if (!Array.isArray(hosts) || hosts.length === 0) return invalid('hosts: at least one host is required');
  for (const h of hosts) {
    if (typeof h !== 'string' || !DNS_NAME.test(h))
      return invalid(`hosts: ${JSON.stringify(h)} is not a DNS name (wildcards are not supported)`);
  }
  const rawPorts = spec['ports'];
  if (!Array.isArray(rawPorts) || rawPorts.length === 0) return invalid('ports: at least one port is required');
  const ports: ServicePort[] = [];
  for (const [i, p] of rawPorts.entries()) {
    if (!isObject(p) || !isPort(p['number'])) return invalid(`ports[${i}].number must be 1-65535`);
    if (typeof p['name'] !== 'string' || !PORT_NAME.test(p['name'])) return invalid(`ports[${i}].name must be a DNS label`);
    if (p['targetPort'] !== undefined && !isPort(p['targetPort'])) return invalid(`ports[${i}].targetPort must be 1-65535`);
    if (ports.some((q) => q.port === p['number'] || q.name === p['name'])) return invalid(`ports[${i}]: duplicate port number or name`);
    const protocol = typeof p['protocol'] === 'string' ? p['protocol'] : '';
    ports.push({
      name: p['name'],
      port: p['number'],
      protocol: protocolOf(protocol),
      targetPort: (p['targetPort'] as number | undefined) ?? p['number'],
    });
  }
  ports.sort((a, b) => a.port - b.port);
  const resolution = spec['resolution'] ?? 'NONE';
  if (resolution !== 'STATIC' && resolution !== 'DNS' && resolution !== 'DNS_ROUND_ROBIN')
    return invalid(`resolution ${JSON.stringify(resolution)} is not supported (STATIC or DNS)`);
  const sansRaw = spec['subjectAltNames'];
  if (sansRaw !== undefined && (!Array.isArray(sansRaw) || !sansRaw.every((x) => typeof x === 'string' && x !== '')))
    return invalid('subjectAltNames must be a list of strings');
  const rawEps = spec['endpoints'] ?? [];
  if (!Array.isArray(rawEps)) return invalid('endpoints must be a list');
  if (resolution !== 'STATIC' && rawEps.length === 0)
    return invalid('DNS resolution needs endpoints (resolving the hosts themselves is not supported)');

  interface Ep {
    address: string;
    ports: Record<string, number>;
    labels: Record<string, string>;
    network: string;
    locality: Endpoint['locality'];
    weight: number;
    serviceAccount: string;
  }
  const eps: Ep[] = [];
  const dnsNames: string[] = [];
  for (const [i, e] of rawEps.entries()) {
    const at = `endpoints[${i}]`;
    if (!isObject(e) || typeof e['address'] !== 'string' || e['address'] === '') return invalid(`${at}.address is required`);
    const address = e['address'];
    if (resolution === 'STATIC' && net.isIP(address) === 0)
      return invalid(`${at}.address "${address}" is not an IP address (resolution STATIC)`);
    if (net.isIP(address) === 0 && !DNS_NAME.test(address))
      return invalid(`${at}.address "${address}" is neither an IP address nor a DNS name`);
    const epPorts = e['ports'] ?? {};
    if (!isObject(epPorts)) return invalid(`${at}.ports must be a map of port name to number`);
    for (const [name, n] of Object.entries(epPorts)) {
      if (!ports.some((p) => p.name === name)) return invalid(`${at}.ports: the entry has no port named "${name}"`);
      if (!isPort(n)) return invalid(`${at}.ports.${name} must be 1-65535`);
    }
    const labels = e['labels'] ?? {};
    if (!isObject(labels) || !Object.values(labels).every((v) => typeof v === 'string'))
      return invalid(`${at}.labels must be a string map`);
    const weight = e['weight'] ?? 1;
    if (!Number.isInteger(weight) || (weight as number) < 0) return invalid(`${at}.weight must be a whole number`);
    for (const f of ['network', 'locality', 'serviceAccount'] as const)
      if (e[f] !== undefined && typeof e[f] !== 'string') return invalid(`${at}.${f} must be a string`);
    const [region = '', zone = '', subzone = ''] = ((e['locality'] as string | undefined) ?? '').split('/');
    const byName = Object.fromEntries(ports.map((p) => [p.name, (epPorts[p.name] as number | undefined) ?? p.targetPort]));
    const base = {
      ports: byName,
      labels: labels as Record<string, string>,
      network: (e['network'] as string | undefined) ?? '',
      locality: { region, zone, subzone },
      weight: (weight as number) || 1,
      serviceAccount: (e['serviceAccount'] as string | undefined) ?? '',
    };
    if (net.isIP(address) !== 0) eps.push({ address, ...base });
    else {
      dnsNames.push(address);
      for (const ip of ctx.resolve(address) ?? []) eps.push({ address: ip, ...base });
    }
  }

  const ns = obj.metadata.namespace ?? '';
  const services = new Map<string, ServiceContribution>();
  for (const host of hosts as string[]) {
    const svc = svcHost(host);
    const domain = svc?.domain ?? ctx.localDomain;
    const namespace = svc?.namespace ?? ns;
    const endpoints = eps.map(
      (e): Endpoint => ({
        address: e.address,
        ports: e.ports,
        serviceAccount: e.serviceAccount,
        labels: e.labels,
        locality: e.locality,
        health: 'HEALTHY',
        weight: e.weight,
        // MESH_INTERNAL: the mesh's mTLS (Deckhouse pairs each entry with an ISTIO_MUTUAL DestinationRule).
        mtls: e.labels['security.istio.io/tlsMode'] !== 'disabled',
        clusterId: ctx.clusterId,
        network: e.network,
        sans: sansRaw
          ? (sansRaw as string[])
          : e.serviceAccount
            ? [`spiffe://${domain}/ns/${namespace}/sa/${e.serviceAccount}`]
            : svc && svc.domain !== ctx.localDomain
              ? [`spiffe://${domain}/ns/${namespace}/sa/`] // any account of the namespace, in the host's own domain
              : [],
        provenance: { source: `serviceentry:${ns}/${obj.metadata.name}` },
      }),
    );
    endpoints.sort((a, b) => compare(a.address, b.address) || compare(JSON.stringify(a.ports), JSON.stringify(b.ports)));
    services.set(`${ns}/${obj.metadata.name} ${host}`, {
      hostname: host,
      name: svc?.name ?? host,
      namespace,
      cluster: ctx.clusterId,
      ports,
      exported: false,
      origin: svc && svc.domain !== ctx.localDomain ? 'federation' : 'local',
      endpoints,
    });
  }
  return { kind: 'services', services, dnsNames };
}
