// Semantic checks of a mesh description, after its shape has been checked against the schema.
// Reports every problem with its path, so one edit can fix them all.
import net from 'node:net';
import type { Mesh, Service } from '../../gen/meshfed/v1/mesh_pb.js';
import { rootProblem, splitPems } from '../../pki/x509.js';
import type { PathProblem, PathSegment } from './errors.js';
import { checkRawResource } from './raw-resource.js';
import { endpointPorts } from './to-model.js';

const DNS_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Cluster ids end up in keys like `${cluster}/${hostname}` and in node metadata. */
const CLUSTER_ID = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** appProtocol values protocolOf understands (see model/mesh.ts). */
const PROTOCOLS = ['tcp', 'http', 'https', 'http2', 'h2c', 'kubernetes.io/h2c', 'grpc', 'grpc-web'];

export function validateMesh(mesh: Mesh): PathProblem[] {
  const out: PathProblem[] = [];
  const problem = (segments: PathSegment[], message: string): void => void out.push({ segments, message });
  const clusterIds = checkClusters(mesh, problem);
  const serviceKeys = new Map<string, number>();
  mesh.services.forEach((svc, i) => {
    const at = ['services', i];
    checkService(svc, at, clusterIds, problem);
    const key = `${svc.cluster}/${svc.namespace}/${svc.name}`;
    const first = serviceKeys.get(key);
    if (first !== undefined)
      problem(at, `service ${svc.namespace}/${svc.name} in cluster "${svc.cluster}" is already defined at services[${first}]`);
    else serviceKeys.set(key, i);
  });
  checkResources(mesh, out);
  checkFederations(mesh, problem);
  return out;
}

/** Deckhouse's trustDomain pattern. */
const TRUST_DOMAIN = /^[0-9a-zA-Z._-]+$/;

function checkFederations(mesh: Mesh, problem: Report): void {
  checkPeers(mesh.federations, 'federations', 'federation', problem, (f, at) => {
    if (!TRUST_DOMAIN.test(f.trustDomain))
      problem([...at, 'trustDomain'], f.trustDomain === '' ? 'must not be empty' : `"${f.trustDomain}" is not a trust domain`);
  });
  checkPeers(mesh.multiclusters, 'multiclusters', 'multicluster', problem);
}

/** What every peer entry needs: a unique DNS name and a metadata endpoint; `more` checks a kind's own fields. */
function checkPeers<P extends { name: string; metadataEndpoint: string }>(
  peers: readonly P[],
  list: string,
  kind: string,
  problem: Report,
  more?: (p: P, at: PathSegment[]) => void,
): void {
  const names = new Map<string, number>();
  peers.forEach((p, i) => {
    const at: PathSegment[] = [list, i];
    if (!DNS_SUBDOMAIN.test(p.name)) problem([...at, 'name'], p.name === '' ? 'must not be empty' : `"${p.name}" is not a DNS name`);
    else if (names.has(p.name)) problem([...at, 'name'], `duplicate ${kind} "${p.name}" (also ${list}[${names.get(p.name)}])`);
    else names.set(p.name, i);
    more?.(p, at);
    const why = metadataEndpointProblem(p.metadataEndpoint);
    if (why) problem([...at, 'metadataEndpoint'], why);
  });
}

/** An http(s) URL with a host, no query and no fragment (Deckhouse's CEL rule, plus plain http for meshfed's exporter). */
export function metadataEndpointProblem(v: string): string | undefined {
  if (v === '') return 'must not be empty';
  // Never echoed with a user or password in it: that would reach every log line and status that prints it.
  const shown = /\/\/[^/]*@/.test(v) ? 'the endpoint' : `"${v}"`;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return `${shown} is not a URL`;
  }
  if (u.username !== '' || u.password !== '') return 'must have no user or password (user:pass@)';
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return `${shown} must be an https (or http) URL`;
  if (u.hostname === '') return `${shown} has no host`;
  if (u.search !== '' || u.hash !== '' || v.includes('?') || v.includes('#')) return `"${v}" must have no query or fragment`;
  return undefined;
}

type Report = (segments: PathSegment[], message: string) => void;

function checkClusters(mesh: Mesh, problem: Report): Set<string> {
  const ids = new Map<string, number>();
  mesh.clusters.forEach((c, i) => {
    const at = ['clusters', i];
    if (c.id === '') problem([...at, 'id'], 'must not be empty');
    else if (!CLUSTER_ID.test(c.id)) problem([...at, 'id'], `"${c.id}" is not a valid cluster id (letters, digits, "-", "_", ".")`);
    else if (ids.has(c.id)) problem([...at, 'id'], `duplicate cluster id "${c.id}" (also clusters[${ids.get(c.id)}])`);
    else ids.set(c.id, i);
    if (c.domain !== '' && !DNS_SUBDOMAIN.test(c.domain)) problem([...at, 'domain'], `"${c.domain}" is not a DNS name`);
    if (c.rootCaPem.trim() !== '') {
      // Every certificate in it becomes a root of the cluster's trust domain: each must be a CA.
      const pems = splitPems(c.rootCaPem);
      if (pems.length === 0) problem([...at, 'rootCaPem'], 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)');
      pems.forEach((pem, k) => {
        const why = rootProblem(pem);
        if (why) problem([...at, 'rootCaPem'], pems.length > 1 ? `certificate ${k + 1}: ${why}` : why);
      });
    }
    c.gateways.forEach((g, j) => {
      const gat = [...at, 'gateways', j];
      if (g.address === '') problem([...gat, 'address'], 'must not be empty');
      else if (net.isIP(g.address) === 0 && !DNS_SUBDOMAIN.test(g.address)) {
        problem([...gat, 'address'], `"${g.address}" is neither an IP address nor a DNS name`);
      }
      checkPort(g.port, [...gat, 'port'], problem);
    });
  });
  return new Set(ids.keys());
}

function checkService(svc: Service, at: PathSegment[], clusters: Set<string>, problem: Report): void {
  if (!DNS_LABEL.test(svc.name)) problem([...at, 'name'], dnsLabelMessage(svc.name));
  if (!DNS_LABEL.test(svc.namespace)) problem([...at, 'namespace'], dnsLabelMessage(svc.namespace));
  checkClusterRef(svc.cluster, [...at, 'cluster'], clusters, problem, true);

  if (svc.ports.length === 0) problem([...at, 'ports'], 'must list at least one port');
  const numbers = new Map<number, number>();
  const names = new Map<string, number>();
  svc.ports.forEach((p, j) => {
    const pat = [...at, 'ports', j];
    if (checkPort(p.port, [...pat, 'port'], problem)) {
      const dup = numbers.get(p.port);
      if (dup !== undefined) problem([...pat, 'port'], `duplicate port ${p.port} (also ports[${dup}])`);
      else numbers.set(p.port, j);
    }
    if (p.targetPort !== 0) checkPort(p.targetPort, [...pat, 'targetPort'], problem);
    if (p.name === '' && svc.ports.length > 1) problem([...pat, 'name'], 'must be set when a service has several ports');
    else if (p.name !== '' && !DNS_LABEL.test(p.name)) problem([...pat, 'name'], dnsLabelMessage(p.name));
    else if (names.has(p.name)) problem([...pat, 'name'], `duplicate port name "${p.name}" (also ports[${names.get(p.name)}])`);
    else names.set(p.name, j);
    if (p.protocol !== '' && !PROTOCOLS.includes(p.protocol.toLowerCase())) {
      problem([...pat, 'protocol'], `unknown protocol "${p.protocol}" (one of TCP, HTTP, HTTP2, GRPC)`);
    }
  });

  const seen = new Map<string, number>();
  svc.endpoints.forEach((ep, k) => {
    const eat = [...at, 'endpoints', k];
    if (net.isIP(ep.address) === 0) {
      // Envoy takes only IP literals in EDS.
      problem([...eat, 'address'], ep.address === '' ? 'must not be empty' : `"${ep.address}" is not an IP address`);
    }
    if (ep.port !== 0) checkPort(ep.port, [...eat, 'port'], problem);
    for (const [name, port] of Object.entries(ep.ports)) {
      if (!names.has(name)) problem([...eat, 'ports', name], `service ${svc.name} has no port named "${name}"`);
      checkPort(port, [...eat, 'ports', name], problem);
    }
    if (ep.cluster !== '') checkClusterRef(ep.cluster, [...eat, 'cluster'], clusters, problem, false);
    if (ep.serviceAccount !== '' && !DNS_SUBDOMAIN.test(ep.serviceAccount)) {
      problem([...eat, 'serviceAccount'], `"${ep.serviceAccount}" is not a valid service account name`);
    }
    const key = `${ep.address} ${JSON.stringify(endpointPorts(svc, ep))}`;
    const dup = seen.get(key);
    if (dup !== undefined) problem(eat, `duplicate endpoint ${ep.address} with the same ports (also endpoints[${dup}])`);
    else seen.set(key, k);
  });
}

function checkResources(mesh: Mesh, out: PathProblem[]): void {
  const names = new Map<string, number>();
  mesh.resources.forEach((r, i) => {
    const at = ['resources', i];
    const { resource, problems } = checkRawResource(r, at);
    out.push(...problems);
    if (!resource) return;
    const key = `${resource.typeUrl} ${resource.name}`;
    const dup = names.get(key);
    if (dup !== undefined)
      out.push({ segments: at, message: `duplicate resource "${resource.name}" of the same type (also resources[${dup}])` });
    else names.set(key, i);
  });
}

function checkClusterRef(id: string, at: PathSegment[], clusters: Set<string>, problem: Report, required: boolean): void {
  if (id === '') {
    if (required) problem(at, 'must name a cluster');
  } else if (!clusters.has(id)) {
    const known = [...clusters].sort().join(', ') || 'none';
    problem(at, `unknown cluster "${id}" (declared: ${known})`);
  }
}

/** True when the port is usable. */
function checkPort(port: number, at: PathSegment[], problem: Report): boolean {
  if (port >= 1 && port <= 65535) return true;
  problem(at, port === 0 ? 'must be between 1 and 65535 (not set)' : 'must be between 1 and 65535');
  return false;
}

function dnsLabelMessage(v: string): string {
  return v === '' ? 'must not be empty' : `"${v}" is not a DNS-1123 label (lower-case letters, digits and "-", at most 63)`;
}
