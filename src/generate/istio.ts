// Istio config for istiod (meshConfig.configSources: xds://meshfed): what meshfed knows and
// istiod cannot learn from Kubernetes. For every federation import (a service of another trust
// domain) a ServiceEntry and a DestinationRule, as Deckhouse renders them for IstioFederation:
//
// - ServiceEntry: the remote FQDN (bar.xyz.svc.cluster-b.local), MESH_INTERNAL, the service's
//   ports, and one endpoint per gateway of the clusters that define it, every port mapped to the
//   gateway's port; STATIC, or DNS when a gateway address is a hostname. An endpoint carries its
//   gateway's network (istiod sends it as is, or through the gateways it knows for that network,
//   which a consistent setup makes the same) and tlsMode istio (mTLS-capable: istiod never sends
//   a plaintext endpoint through a gateway). No addresses: VIPs come from Istio's DNS proxy.
// - DestinationRule: ISTIO_MUTUAL with the peer trust domain's SPIFFE ids as SANs (also on the
//   ServiceEntry, so a user's own rule without SANs keeps them). No `sni`: for ISTIO_MUTUAL
//   without one, Istio sets outbound_.<port>_._.<host> per port, which is what the peer's
//   AUTO_PASSTHROUGH gateway routes on; one DestinationRule-wide sni would be wrong for all but
//   one port of a multi-port service.
//
// Nothing for local services or multicluster peers (same trust domain): istiod reads those from
// Kubernetes and remote secrets itself, and their gateways from topology.istio.io/network Services
// or meshNetworks (MeshConfig, which a config source cannot set).
//
// Names: `<hostname with . → ->-<FNV-32a of the hostname>`, like Deckhouse's (which hashes the
// endpoint set instead): the same on every replica, and unchanged when gateways change, so
// istiod updates the config in place rather than deleting and re-creating it.
import { create } from '@bufbuild/protobuf';
import { anyPack } from '@bufbuild/protobuf/wkt';
import { isIP } from 'node:net';
import { IstioType } from '../istio/config-types.js';
import {
  ClientTLSSettings_TLSmode,
  type IstioConfigBody,
  DestinationRuleSchema,
  ServiceEntry_Location,
  ServiceEntry_Resolution,
  ServiceEntrySchema,
} from '../istio/messages.js';
import { compare, type Gateway, type MeshChanges, type MeshSnapshot, type Service, type ServicePort } from '../model/mesh.js';
import { type GeneratedResource, type Generator, trustDomainOf, union } from './generator.js';
import { serviceSans } from './tls.js';

export interface IstioConfigOptions {
  /** The namespace the configs appear in (istiod scopes DestinationRules and exportTo by it). */
  readonly namespace: string;
  /** The local trust domain: a service of any other is a federation import. '' : none known, nothing is produced. */
  readonly trustDomain: string;
}

const LABELS = { 'app.kubernetes.io/managed-by': 'meshfed' } as const;

/** Every Istio config generator: ServiceEntry and DestinationRule, under both type URLs istiod may use. */
export function istioGenerators(opts: IstioConfigOptions): Generator[] {
  return [
    ...IstioType.ServiceEntry.map((t) => importGenerator(t, opts, serviceEntry)),
    ...IstioType.DestinationRule.map((t) => importGenerator(t, opts, destinationRule)),
  ];
}

/** One federation import as istiod needs it. */
export interface FederationImport {
  readonly service: Service;
  /** The defining clusters' gateways with their networks, sorted and without duplicates. */
  readonly gateways: ReadonlyArray<Required<Gateway>>;
  readonly sans: readonly string[];
}

function importGenerator(typeUrl: string, opts: IstioConfigOptions, build: (imp: FederationImport) => IstioConfigBody): Generator {
  return {
    typeUrl,
    viewKey: () => '', // every istiod sees the same configs
    // Gateways live on clusters; SANs on endpoint identities; the rest on the service.
    affected: (changes: MeshChanges) => (changes.clusters ? 'all' : union(changes.services, changes.identities)),
    generate(mesh: MeshSnapshot, _view, hostname: string): GeneratedResource[] {
      const imp = federationImport(mesh, opts.trustDomain, hostname);
      return imp ? [{ name: `${opts.namespace}/${configName(hostname)}`, body: build(imp) as unknown as Record<string, unknown> }] : [];
    },
  };
}

/** The import behind a hostname, if it is one and can be reached (through at least one gateway). */
function federationImport(mesh: MeshSnapshot, localTrustDomain: string, hostname: string): FederationImport | undefined {
  const service = mesh.services.get(hostname);
  const td = trustDomainOf(hostname);
  if (!service || !localTrustDomain || !td || td === localTrustDomain) return undefined;
  const seen = new Map<string, Required<Gateway>>();
  for (const id of service.clusters) {
    const c = mesh.clusters.get(id);
    for (const g of c?.gateways ?? [])
      seen.set(`${g.address} ${g.port}`, { address: g.address, port: g.port, network: g.network ?? c!.network });
  }
  if (seen.size === 0) return undefined;
  const gateways = [...seen.values()].sort((a, b) => compare(a.address, b.address) || a.port - b.port);
  // Istio's subjectAltNames are exact: an account known only as a namespace prefix (a Deckhouse-style import)
  // cannot be named there, and is left to the peer trust domain's root alone.
  const sans = serviceSans(mesh, service).flatMap((s) => ('exact' in s && s.exact.startsWith(`spiffe://${td}/`) ? [s.exact] : []));
  return { service, gateways, sans };
}

const PROTOCOL: Readonly<Record<ServicePort['protocol'], string>> = { TCP: 'TCP', HTTP: 'HTTP', HTTP2: 'HTTP2', GRPC: 'GRPC' };

/** Istio requires port names; a nameless port gets one from its number. */
function portName(p: ServicePort): string {
  return p.name || `port-${p.port}`;
}

export function serviceEntry({ service, gateways, sans }: FederationImport): IstioConfigBody {
  const spec = create(ServiceEntrySchema, {
    hosts: [service.hostname],
    ports: service.ports.map((p) => ({ number: p.port, protocol: PROTOCOL[p.protocol], name: portName(p) })),
    location: ServiceEntry_Location.MESH_INTERNAL,
    resolution: gateways.every((g) => isIP(g.address) !== 0) ? ServiceEntry_Resolution.STATIC : ServiceEntry_Resolution.DNS,
    endpoints: gateways.map((g) => ({
      address: g.address,
      ports: Object.fromEntries(service.ports.map((p) => [portName(p), g.port])),
      labels: { 'security.istio.io/tlsMode': 'istio' },
      network: g.network,
    })),
    subjectAltNames: [...sans],
  });
  return { labels: LABELS, annotations: annotations(service), spec: anyPack(ServiceEntrySchema, spec) };
}

export function destinationRule({ service, sans }: FederationImport): IstioConfigBody {
  const spec = create(DestinationRuleSchema, {
    host: service.hostname,
    trafficPolicy: { tls: { mode: ClientTLSSettings_TLSmode.ISTIO_MUTUAL, subjectAltNames: [...sans] } },
  });
  return { labels: LABELS, annotations: annotations(service), spec: anyPack(DestinationRuleSchema, spec) };
}

/** Which peer clusters the import comes from, for whoever reads istiod's /debug/configz. */
function annotations(service: Service): Record<string, string> {
  return { 'meshfed.io/clusters': service.clusters.join(',') };
}

const MAX_NAME = 253;
// Kubernetes' SafeEncodeString alphabet (pod-template-hash), which Deckhouse uses too: no vowels, no 0/1/3.
const SAFE = 'bcdfghjklmnpqrstvwxz2456789';

/** `<hostname with . → ->-<hash>`, at most 253 characters. */
export function configName(hostname: string): string {
  const hash = [...String(fnv32a(hostname))].map((d) => SAFE[d.charCodeAt(0) % SAFE.length]).join('');
  return `${hostname
    .replace(/\./g, '-')
    .slice(0, MAX_NAME - hash.length - 1)
    .replace(/-+$/, '')}-${hash}`;
}

function fnv32a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}
