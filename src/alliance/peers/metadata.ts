// Checks of what a peer publishes, before any of it reaches status, the trust bundle or the mesh.
// Deckhouse requires the three public fields and the presence of the two private lists; the
// entries are checked too here, since they end up as gateways and hostnames in every proxy.
import type { FederationMetadata, IngressGateway, PublicMetadata, PublicService } from '../types.js';
import { portProtocol } from './protocol.js';

type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const nonEmpty = (v: unknown): v is string => typeof v === 'string' && v !== '';
const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536;

export function checkPublic(body: unknown): Checked<PublicMetadata> {
  if (!isObject(body)) return { ok: false, message: 'public.json is not a JSON object' };
  const missing = (['clusterUUID', 'authnKeyPub', 'rootCA'] as const).filter((k) => !nonEmpty(body[k]));
  if (missing.length) return { ok: false, message: `public.json: ${missing.join(', ')} missing or empty` };
  return { ok: true, value: { clusterUUID: body['clusterUUID'] as string, authnKeyPub: body['authnKeyPub'] as string, rootCA: body['rootCA'] as string } };
}

/** federation.json, with each port's protocol derived from its name (Deckhouse's `updatePortProtocols`). */
export function checkFederation(body: unknown): Checked<Required<FederationMetadata>> {
  if (!isObject(body)) return { ok: false, message: 'federation.json is not a JSON object' };
  const gws = body['ingressGateways'];
  const svcs = body['publicServices'];
  if (!Array.isArray(gws)) return { ok: false, message: 'federation.json: ingressGateways missing or not a list' };
  if (!Array.isArray(svcs)) return { ok: false, message: 'federation.json: publicServices missing or not a list' };
  const ingressGateways: IngressGateway[] = [];
  for (const [i, g] of gws.entries()) {
    if (!isObject(g) || !nonEmpty(g['address']) || !isPort(g['port'])) return { ok: false, message: `federation.json: ingressGateways[${i}] needs an address and a port (1-65535)` };
    ingressGateways.push({ address: g['address'], port: g['port'] });
  }
  const publicServices: PublicService[] = [];
  for (const [i, s] of svcs.entries()) {
    if (!isObject(s) || !nonEmpty(s['hostname']) || !Array.isArray(s['ports'])) return { ok: false, message: `federation.json: publicServices[${i}] needs a hostname and a ports list` };
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
