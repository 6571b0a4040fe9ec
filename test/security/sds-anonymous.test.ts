// An Envoy without credentials (deploy/examples/envoy-sidecar-bootstrap.yaml against a plaintext
// meshfed) names SDS `default` and `ROOTCA` in its mTLS clusters. It must keep its ADS stream:
// `default` is answered like a secret that does not exist, the public trust bundle is served, and
// CDS/EDS keep flowing. Asking for another identity's secret still ends the stream (sds-auth.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import type { SynczEntry, SynczType } from '../helpers/grpc-mesh.js';
import { startTlsMesh, type TlsMesh } from '../helpers/mesh-tls.js';
import { type DecodedResource, RawXdsClient, type RawXdsStream, type SotwResponse } from '../helpers/raw-client.js';

const TD = 'cluster-a.local';
const FOO = `outbound|8080||foo.abc.svc.${TD}`;
const doc = (port: number): Record<string, unknown> => ({
  clusters: [{ id: 'cluster-a', network: 'network-a', domain: TD, rootCaPem: '' }],
  services: [
    {
      name: 'foo',
      namespace: 'abc',
      cluster: 'cluster-a',
      ports: [{ name: 'grpc', port: 8080 }],
      endpoints: [{ address: '10.0.0.1', port }],
    },
  ],
  // A secret from the mesh file is not public either: an anonymous stream never gets it.
  resources: [{ '@type': TypeUrl.Secret, name: 'file-secret', generic_secret: { secret: { inline_string: 'hunter2' } } }],
});

let mesh: TlsMesh;
let client: RawXdsClient;

beforeAll(async () => {
  mesh = await startTlsMesh({ trustDomain: TD, doc: doc(8080) });
  client = new RawXdsClient(`127.0.0.1:${mesh.plaintextPort}`); // no credentials: anonymous
});

afterAll(async () => {
  client?.close();
  await mesh?.stop();
});

async function withheldCount(): Promise<number> {
  const m = /^meshfed_xds_withheld_secrets_total\{reason="unauthenticated"\} (\d+)$/m.exec(await mesh.meshfed.metrics.registry.metrics());
  return m ? Number(m[1]) : 0;
}

async function sdsInSyncz(node: string): Promise<SynczType & { notSent?: Array<{ name: string; state: string; reason: string }> }> {
  const syncz = (await (await fetch(`http://127.0.0.1:${mesh.meshfed.debugPort}/debug/syncz`)).json()) as SynczEntry[];
  return syncz.find((e) => e.proxy === node)!.types.find((t) => t.type === 'SDS')!;
}

const names = (rs: readonly DecodedResource[]): string[] => rs.map((r) => r.name).sort();

/** The next response of a type, ACKed; responses of other types in between are ACKed too. */
async function nextOf(s: RawXdsStream<SotwResponse>, typeUrl: string, subscribed: Record<string, string[]>): Promise<SotwResponse> {
  for (;;) {
    const r = await s.next(5000);
    s.send({ type_url: r.type_url, resource_names: subscribed[r.type_url] ?? [], version_info: r.version_info, response_nonce: r.nonce });
    if (r.type_url === typeUrl) return r;
  }
}

describe('an anonymous Envoy-like ADS client that asks for SDS default and ROOTCA', () => {
  it('SotW: keeps its stream and its CDS/EDS updates, gets ROOTCA, never default; syncz and a metric say why', async () => {
    const before = await withheldCount();
    const node = 'sidecar~10.0.0.9~anon-sotw.abc~abc.svc.cluster.local';
    const s = client.sotw();
    const subscribed: Record<string, string[]> = {
      [TypeUrl.Cluster]: [],
      [TypeUrl.Endpoint]: [FOO],
      [TypeUrl.Secret]: ['default', 'ROOTCA', 'file-secret'],
    };
    s.send({ node: { id: node }, type_url: TypeUrl.Cluster, resource_names: [] });
    expect(names((await nextOf(s, TypeUrl.Cluster, subscribed)).resources)).toContain(FOO);
    // What Envoy does next: EDS for the cluster, and SDS for its transport socket.
    s.send({ type_url: TypeUrl.Endpoint, resource_names: [FOO] });
    s.send({ type_url: TypeUrl.Secret, resource_names: ['default', 'ROOTCA', 'file-secret'] });
    const sds = await nextOf(s, TypeUrl.Secret, subscribed);
    expect(names(sds.resources)).toEqual(['ROOTCA']);

    // The stream stays and keeps delivering: an endpoint change reaches it.
    await mesh.write(doc(9090));
    const eds = await nextOf(s, TypeUrl.Endpoint, subscribed);
    expect(JSON.stringify(eds.resources.find((r) => r.name === FOO)!.body)).toContain('"port_value":9090');
    expect(s.status).toBeUndefined();
    const everything = s.responses.flatMap((r) => r.resources.map((x) => x.name));
    expect(everything).not.toContain('default');
    expect(everything).not.toContain('file-secret');

    const st = await sdsInSyncz(node);
    expect(st.state).toBe('SYNCED'); // ROOTCA was sent and ACKed
    expect(st.notSent).toEqual([
      { name: 'default', state: 'NOT_SENT', reason: 'unauthenticated' },
      { name: 'file-secret', state: 'NOT_SENT', reason: 'unauthenticated' },
    ]);
    expect(await withheldCount()).toBe(before + 2);
    s.close();
  });

  it('SotW, SDS for default alone: nothing sent, NOT_SENT for "unauthenticated" in syncz; CDS and ROOTCA still answered', async () => {
    const node = 'anon-only-default';
    const s = client.sotw();
    s.send({ node: { id: node }, type_url: TypeUrl.Secret, resource_names: ['default'] });
    s.send({ type_url: TypeUrl.Cluster, resource_names: [] });
    const cds = await s.next(5000);
    expect(cds.type_url).toBe(TypeUrl.Cluster);
    // Nothing was sent for SDS (syncz would show a nonce), and syncz says why.
    expect(await sdsInSyncz(node)).toMatchObject({ state: 'NOT_SENT', reason: 'unauthenticated', notSent: [{ name: 'default' }] });
    s.send({ type_url: TypeUrl.Secret, resource_names: ['default', 'ROOTCA'] });
    const sds = await s.next(5000);
    expect(sds.type_url).toBe(TypeUrl.Secret);
    expect(names(sds.resources)).toEqual(['ROOTCA']);
    s.close();
  });

  it('delta: default is reported as not existing (removed_resources), ROOTCA is sent, the stream stays', async () => {
    const s = client.delta();
    s.send({ node: { id: 'anon-delta' }, type_url: TypeUrl.Cluster, resource_names_subscribe: ['*'] });
    expect((await s.next(5000)).type_url).toBe(TypeUrl.Cluster);
    s.send({ type_url: TypeUrl.Secret, resource_names_subscribe: ['default', 'ROOTCA'] });
    const sds = await s.next(5000);
    expect(sds.type_url).toBe(TypeUrl.Secret);
    expect(names(sds.resources)).toEqual(['ROOTCA']);
    expect(sds.removed_resources).toEqual(['default']);
    // Still alive: a later subscription is answered on the same stream.
    s.send({ type_url: TypeUrl.Secret, resource_names_subscribe: ['ROOTCA_PEM'], response_nonce: sds.nonce });
    expect(names((await s.next(5000)).resources)).toEqual(['ROOTCA_PEM']);
    expect(s.status).toBeUndefined();
    s.close();
  });

  it('the per-type SDS service, SotW and delta: the same non-answer for default, and the stream stays', async () => {
    const sotw = client.sotw('sds');
    sotw.send({ node: { id: 'anon-sds-sotw' }, resource_names: ['default', 'ROOTCA'] });
    const r = await sotw.next(5000);
    expect(names(r.resources)).toEqual(['ROOTCA']);
    sotw.send({ resource_names: ['default', 'ROOTCA', 'ROOTCA_PEM'], version_info: r.version_info, response_nonce: r.nonce });
    expect(names((await sotw.next(5000)).resources)).toEqual(['ROOTCA_PEM']);
    expect(sotw.status).toBeUndefined();
    sotw.close();

    const delta = client.delta('sds');
    delta.send({ node: { id: 'anon-sds-delta' }, resource_names_subscribe: ['default', 'ROOTCA'] });
    const d = await delta.next(5000);
    expect(names(d.resources)).toEqual(['ROOTCA']);
    expect(d.removed_resources).toEqual(['default']);
    expect(delta.status).toBeUndefined();
    delta.close();
  });
});
