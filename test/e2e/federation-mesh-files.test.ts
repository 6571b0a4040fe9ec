// Two clusters federate with no hand work (issue 9, must-show 2): two `meshfed serve --config` processes, each with a
// `federations:` entry naming the other's metadata endpoint. Each accepts the other's tokens only once it has fetched
// the other's public.json, so both must converge by polling alone; then A serves B's exported service through B's
// gateway, with B's root bound to B's trust domain.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { PeerRow } from '../../src/alliance/peers/controller.js';
import { fetchPeers } from '../../src/cli/status.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import { freePort } from '../helpers/ports.js';
import { RawXdsClient, type SotwResponse } from '../helpers/raw-client.js';

const repo = path.resolve(import.meta.dirname, '../..');
const BAR = 'bar.xyz.svc.cluster-b.local';
const FOO = 'foo.abc.svc.cluster-a.local';

interface Side {
  readonly name: 'cluster-a' | 'cluster-b';
  readonly xds: number;
  readonly metadata: number;
  proc?: ChildProcess;
  out: string;
  debug?: number;
}

const sides: Side[] = [];

/** Each side's mesh file: its own cluster, gateway and one exported service, and the other side as a federation peer. */
function meshFile(self: Side, other: Side): string {
  const letter = self.name.slice(-1);
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), `meshfed-fed-${self.name}-`)), 'mesh.json');
  writeFileSync(
    file,
    JSON.stringify({
      clusters: [
        {
          id: self.name,
          network: `net-${letter}`,
          domain: `${self.name}.local`,
          gateways: [{ address: letter === 'a' ? '198.51.100.1' : '192.0.2.20', port: 15443 }],
        },
      ],
      services: [
        letter === 'a'
          ? {
              name: 'foo',
              namespace: 'abc',
              cluster: self.name,
              exported: true,
              ports: [{ name: 'grpc', port: 8080 }],
              endpoints: [{ address: '10.1.0.1', serviceAccount: 'foo' }],
            }
          : {
              name: 'bar',
              namespace: 'xyz',
              cluster: self.name,
              exported: true,
              ports: [{ name: 'grpc', port: 9090 }],
              endpoints: [{ address: '10.2.0.1', serviceAccount: 'bar' }],
            },
      ],
      federations: [
        { name: other.name, trustDomain: `${other.name}.local`, metadataEndpoint: `http://127.0.0.1:${other.metadata}/metadata/` },
      ],
    }),
  );
  return file;
}

function start(self: Side, other: Side): void {
  const args = [
    'serve',
    '--config',
    meshFile(self, other),
    '--cluster-id',
    self.name,
    '--trust-domain',
    `${self.name}.local`,
    '--xds-address',
    `127.0.0.1:${self.xds}`,
    '--admin-address',
    '127.0.0.1:0',
    '--debug-address',
    '127.0.0.1:0',
    '--metadata-address',
    `127.0.0.1:${self.metadata}`,
    '--federation',
    '--peer-poll-interval',
    '1',
  ];
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  self.proc = proc;
  proc.stdout!.on('data', (d: Buffer) => (self.out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (self.out += d.toString()));
}

/** The debug port, from the "meshfed is serving" log line. */
function debugPort(s: Side): number | undefined {
  const line = s.out.split('\n').find((l) => l.includes('"msg":"meshfed is serving"'));
  return line ? (JSON.parse(line) as { debugPort: number }).debugPort : undefined;
}

const converged = (rows: PeerRow[]): boolean =>
  rows.length === 1 && rows[0]!.public.status === 'True' && rows[0]!.private.status === 'True';

beforeAll(async () => {
  for (const name of ['cluster-a', 'cluster-b'] as const) sides.push({ name, xds: await freePort(), metadata: await freePort(), out: '' });
  start(sides[0]!, sides[1]!);
  start(sides[1]!, sides[0]!);
  for (const s of sides) {
    await vi.waitFor(
      () => {
        if (s.proc!.exitCode !== null) return; // stop waiting: it will not serve
        expect((s.debug = debugPort(s)), `${s.name} not serving yet: ${s.out}`).toBeDefined();
      },
      { timeout: 20_000, interval: 50 },
    );
    if (s.proc!.exitCode !== null) throw new Error(`${s.name} exited ${s.proc!.exitCode}: ${s.out}`);
  }
}, 30_000);

afterAll(() => sides.forEach((s) => s.proc?.kill('SIGKILL')));

describe('two meshfed processes federated by their mesh files', () => {
  it('both converge to public and private metadata exchanged, each seeing the other by UUID', async () => {
    const rows = new Map<string, PeerRow[]>();
    await vi.waitFor(
      async () => {
        for (const s of sides) rows.set(s.name, await fetchPeers(`http://127.0.0.1:${s.debug}`));
        for (const s of sides) expect(converged(rows.get(s.name)!), `${s.name} Ready: ${JSON.stringify(rows.get(s.name))}`).toBe(true);
      },
      { timeout: 15_000, interval: 50 },
    );
    const uuid = async (s: Side) =>
      ((await (await fetch(`http://127.0.0.1:${s.metadata}/metadata/public/public.json`)).json()) as { clusterUUID: string }).clusterUUID;
    expect(rows.get('cluster-a')![0]).toMatchObject({
      name: 'cluster-b',
      trustDomain: 'cluster-b.local',
      clusterUUID: await uuid(sides[1]!),
      servicesImported: 1,
      gateways: ['192.0.2.20:15443'],
    });
    expect(rows.get('cluster-b')![0]).toMatchObject({
      name: 'cluster-a',
      trustDomain: 'cluster-a.local',
      clusterUUID: await uuid(sides[0]!),
      servicesImported: 1,
      gateways: ['198.51.100.1:15443'],
    });
  });

  it("A's xDS serves B's exported service through B's gateway, and B's root bound to cluster-b.local in ROOTCA", async () => {
    const [a, b] = sides as [Side, Side];
    const rootB = ((await (await fetch(`http://127.0.0.1:${b.metadata}/metadata/public/public.json`)).json()) as { rootCA: string }).rootCA;
    const rootA = ((await (await fetch(`http://127.0.0.1:${a.metadata}/metadata/public/public.json`)).json()) as { rootCA: string }).rootCA;
    expect(rootB).toContain('BEGIN CERTIFICATE');
    const client = new RawXdsClient(`127.0.0.1:${a.xds}`);
    try {
      const node = {
        id: 'sidecar~10.1.0.9~client-1.abc~abc.svc.cluster-a.local',
        metadata: {
          fields: {
            CLUSTER_ID: { string_value: 'cluster-a' },
            NETWORK: { string_value: 'net-a' },
            NAMESPACE: { string_value: 'abc' },
            SERVICE_ACCOUNT: { string_value: 'client' },
          },
        },
      };
      const ask = async (typeUrl: string, names: string[]): Promise<SotwResponse> => {
        const s = client.sotw();
        s.send({ node, type_url: typeUrl, resource_names: names });
        const res = await s.next(10_000);
        s.close();
        return res;
      };
      const cluster = `outbound|9090||${BAR}`;
      // The import reaches the registry after its debounce: the first full CDS that has it.
      let cds: SotwResponse | undefined;
      const barCluster = await vi.waitFor(
        async () => {
          cds = await ask(TypeUrl.Cluster, []);
          const found = cds.resources.find((r) => r.name === cluster);
          expect(found, `${cluster} in CDS`).toBeDefined();
          return found!;
        },
        { timeout: 5_000, interval: 200 },
      );
      expect(JSON.stringify(barCluster.body)).toContain('spiffe://cluster-b.local/ns/xyz/sa/');
      expect(cds!.resources.some((r) => r.name.endsWith(`||${FOO}`))).toBe(true);

      const eds = await ask(TypeUrl.Endpoint, [cluster]);
      const endpoints = JSON.stringify(eds.resources.find((r) => r.name === cluster)?.body);
      expect(endpoints).toContain('"address":"192.0.2.20"');
      expect(endpoints).toContain('"port_value":15443');
      expect(endpoints).not.toContain('10.2.0.1'); // B's pod addresses stay behind its gateway

      const sds = await ask(TypeUrl.Secret, ['ROOTCA']);
      const validator = (
        sds.resources.find((r) => r.name === 'ROOTCA')!.body['validation_context'] as Record<string, Record<string, unknown>>
      )['custom_validator_config']!['typed_config'] as {
        trust_domains: Array<{ name: string; trust_bundle: { inline_bytes?: Uint8Array | string; inline_string?: string } }>;
      };
      expect(validator.trust_domains.map((d) => d.name).sort()).toEqual(['cluster-a.local', 'cluster-b.local']);
      const body = (pem: string) => pem.split('\n')[1]!;
      const decoded = (name: string) => {
        const tb = validator.trust_domains.find((d) => d.name === name)!.trust_bundle;
        return tb.inline_string ?? Buffer.from(tb.inline_bytes as Uint8Array).toString();
      };
      expect(decoded('cluster-b.local')).toContain(body(rootB));
      expect(decoded('cluster-b.local')).not.toContain(body(rootA));
      expect(decoded('cluster-a.local')).toContain(body(rootA));
    } finally {
      client.close();
    }
  });
});
