// `meshfed status`: the federation and multicluster peers as /debug/peers reports them, one row each.
import type { PeerRow } from '../alliance/peers/controller.js';

const MAX_BODY = 8 << 20;

export async function fetchPeers(debugUrl: string, timeoutMs = 10_000): Promise<PeerRow[]> {
  let url: URL;
  try {
    url = new URL('/debug/peers', debugUrl);
  } catch {
    throw new Error(`--debug-url "${debugUrl}" is not a URL`);
  }
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new Error(`cannot reach ${url.href}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
  }
  const text = await res.text();
  if (text.length > MAX_BODY) throw new Error(`${url.href}: the answer is too large`);
  if (!res.ok) throw new Error(`${url.href}: HTTP ${res.status}`);
  let body: { peers?: unknown };
  try {
    body = JSON.parse(text) as { peers?: unknown };
  } catch {
    throw new Error(`${url.href}: the answer is not JSON (is this meshfed's debug address?)`);
  }
  if (!Array.isArray(body.peers)) throw new Error(`${url.href}: no peers list in the answer`);
  return body.peers as PeerRow[];
}

const cond = (c: PeerRow['public']): string => (c.status === 'True' ? 'Ready' : c.reason || c.status);

export function peerTable(rows: readonly PeerRow[]): string {
  if (rows.length === 0) return 'no federation or multicluster peers\n';
  const head = [
    'NAME',
    'KIND',
    'TRUST DOMAIN',
    'UUID',
    'PUBLIC',
    'PRIVATE',
    'API',
    'LAST SUCCESS',
    'SERVICES',
    'GATEWAYS',
    'REMOTE CLUSTER',
    'IMPORTS',
  ];
  const lines = rows.map((r) => [
    r.name,
    r.kind ?? 'federation',
    r.trustDomain,
    r.clusterUUID ?? '-',
    cond(r.public),
    cond(r.private),
    r.api ? cond(r.api) : '-',
    r.lastSuccess ?? 'never',
    r.servicesImported === undefined ? '-' : String(r.servicesImported),
    r.gateways.join(',') || '-',
    // A multicluster peer's cluster: its id, sync state and endpoints, as /debug/clusters shows them.
    r.remoteCluster
      ? `${r.remoteCluster.id} ${r.remoteCluster.state}${r.remoteCluster.rotating ? ' (rotating)' : ''} ${r.remoteCluster.endpoints} endpoints`
      : '-',
    r.imports ?? '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 2)))
      .join('')
      .trimEnd();
  const problems = rows.flatMap((r) =>
    [r.public, r.private, ...(r.api ? [r.api] : [])]
      .filter((c) => c.status !== 'True' && c.message)
      .map((c) => `  ${r.name}: ${c.reason}: ${c.message}`),
  );
  return [fmt(head), ...lines.map(fmt), ...(problems.length ? ['', ...problems] : [])].join('\n') + '\n';
}
