// Checks of what a peer publishes, before any of it reaches status, the trust bundle or the mesh.
// Deckhouse requires the three public fields and the presence of the two private lists; the
// entries are checked too here, since they end up as gateways and hostnames in every proxy.
import net from 'node:net';
import type { FederationMetadata, IngressGateway, MulticlusterMetadata, PublicMetadata, PublicService } from '../types.js';
import { portProtocol } from './protocol.js';

type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string; readonly reason?: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const nonEmpty = (v: unknown): v is string => typeof v === 'string' && v !== '';
const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536;

export function checkPublic(body: unknown): Checked<PublicMetadata> {
  if (!isObject(body)) return { ok: false, message: 'public.json is not a JSON object' };
  const missing = (['clusterUUID', 'authnKeyPub', 'rootCA'] as const).filter((k) => !nonEmpty(body[k]));
  if (missing.length) return { ok: false, message: `public.json: ${missing.join(', ')} missing or empty` };
  return {
    ok: true,
    value: { clusterUUID: body['clusterUUID'] as string, authnKeyPub: body['authnKeyPub'] as string, rootCA: body['rootCA'] as string },
  };
}

/** federation.json, with each port's protocol derived from its name (Deckhouse's `updatePortProtocols`). */
export function checkFederation(body: unknown): Checked<Required<FederationMetadata>> {
  if (!isObject(body)) return { ok: false, message: 'federation.json is not a JSON object' };
  const gws = body['ingressGateways'];
  const svcs = body['publicServices'];
  if (!Array.isArray(gws)) return { ok: false, message: 'federation.json: ingressGateways missing or not a list' };
  if (!Array.isArray(svcs)) return { ok: false, message: 'federation.json: publicServices missing or not a list' };
  const ingressGateways = checkGateways(gws, 'federation.json');
  if (!Array.isArray(ingressGateways)) return ingressGateways;
  const publicServices: PublicService[] = [];
  for (const [i, s] of svcs.entries()) {
    if (!isObject(s) || !nonEmpty(s['hostname']) || !Array.isArray(s['ports']))
      return { ok: false, message: `federation.json: publicServices[${i}] needs a hostname and a ports list` };
    const ports = [];
    for (const [j, p] of s['ports'].entries()) {
      if (!isObject(p) || typeof (p['name'] ?? '') !== 'string' || !isPort(p['port'])) {
        return { ok: false, message: `federation.json: publicServices[${i}].ports[${j}] needs a name and a port (1-65535)` };
      }
      const name = (p['name'] as string | undefined) ?? '';
      ports.push({ name, port: p['port'], protocol: portProtocol(name) });
    }
    publicServices.push({ hostname: s['hostname'], ports });
  }
  return { ok: true, value: { ingressGateways, publicServices } };
}

/** More gateways than any real cluster has: each is an endpoint in every proxy's EDS. */
export const MAX_INGRESS_GATEWAYS = 256;
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\.?$/i;

function checkGateways(gws: unknown[], doc: string): IngressGateway[] | { ok: false; message: string } {
  if (gws.length > MAX_INGRESS_GATEWAYS)
    return { ok: false, message: `${doc}: ${gws.length} ingressGateways, more than ${MAX_INGRESS_GATEWAYS}` };
  const out: IngressGateway[] = [];
  for (const [i, g] of gws.entries()) {
    if (!isObject(g) || !nonEmpty(g['address']) || !isPort(g['port']))
      return { ok: false, message: `${doc}: ingressGateways[${i}] needs an address and a port (1-65535)` };
    if (net.isIP(g['address']) === 0 && !DNS_NAME.test(g['address']))
      return { ok: false, message: `${doc}: ingressGateways[${i}].address is neither an IP address nor a DNS name` };
    out.push({ address: g['address'], port: g['port'] });
  }
  return out;
}

/**
 * multicluster.json, as Deckhouse's multicluster discovery requires it: networkName and apiHost non-empty,
 * ingressGateways present, and not empty when the peer is reached through its gateways (`MissingIngressGateways`).
 */
export function checkMulticluster(
  body: unknown,
  enableIngressGateway: boolean,
): Checked<MulticlusterMetadata & { ingressGateways: IngressGateway[] }> {
  if (!isObject(body)) return { ok: false, message: 'multicluster.json is not a JSON object' };
  const gws = body['ingressGateways'];
  if (!nonEmpty(body['networkName']) || !nonEmpty(body['apiHost']) || !Array.isArray(gws)) {
    return { ok: false, message: 'networkName, apiHost must be non-empty and ingressGateways must be set' };
  }
  const ingressGateways = checkGateways(gws, 'multicluster.json');
  if (!Array.isArray(ingressGateways)) return ingressGateways;
  if (enableIngressGateway && ingressGateways.length === 0) {
    return { ok: false, reason: 'MissingIngressGateways', message: 'enableIngressGateway is true but ingressGateways list is empty' };
  }
  // Both become names in the mesh model (and in /debug, metrics): Deckhouse's formulas give such names.
  const clusterID = body['clusterID'];
  if (clusterID !== undefined && (typeof clusterID !== 'string' || !NAME.test(clusterID))) {
    return { ok: false, message: 'multicluster.json: clusterID is not a cluster id (letters, digits, ".", "_", "-")' };
  }
  if (!NAME.test(body['networkName'] as string))
    return { ok: false, message: 'multicluster.json: networkName is not a network name (letters, digits, ".", "_", "-")' };
  const apiHost = body['apiHost'] as string;
  const apiHostWrong = apiHostProblem(apiHost);
  if (apiHostWrong) return { ok: false, message: `multicluster.json: apiHost: ${apiHostWrong}` };
  return { ok: true, value: { ingressGateways, apiHost, networkName: body['networkName'] as string, ...(clusterID ? { clusterID } : {}) } };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Deckhouse's probe URL rule: `https://<apiHost>` unless apiHost names a scheme; no trailing slash. */
export function apiServerUrl(apiHost: string): string {
  const h = apiHost.trim();
  return (h.includes('://') ? h : `https://${h}`).replace(/\/+$/, '');
}

/** An apiHost meshfed will dial: an https URL (or host[:port]) with a host and nothing but an optional path. */
function apiHostProblem(apiHost: string): string | undefined {
  let u: URL;
  try {
    u = new URL(apiServerUrl(apiHost));
  } catch {
    return `"${apiHost}" is not a host[:port]`;
  }
  if (u.protocol !== 'https:') return `"${apiHost}" must be https`;
  if (u.username || u.password || u.search || u.hash) return `"${apiHost}" must have no user, query or fragment`;
  return undefined;
}
