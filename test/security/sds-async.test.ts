// Workload certificates are issued off the push path: a stream opening SDS for its identity asks the PKI, which
// issues in the background (key generation on the libuv pool) and tells the store when the certificate is ready;
// building or refreshing an SDS table only reads what was already issued.
// A delta stream is never told a certificate that is still being issued does not exist.
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { dataText, SERVER_NAME, startTlsMesh, type TlsMesh, tlsStream } from '../helpers/mesh-tls.js';
import { type DecodedResource, type DeltaResponse, RawXdsStream } from '../helpers/raw-client.js';

const TD = 'cluster-a.local';
const DOC = { clusters: [{ id: 'cluster-a', network: 'network-a', domain: TD, rootCaPem: '' }], services: [] };

let apiserver: FakeApiServer;
let mesh: TlsMesh;
const open: Array<{ close(): void }> = [];

beforeAll(async () => {
  apiserver = await startFakeApiServer({ clusterName: 'cluster-a' });
  mesh = await startTlsMesh({ trustDomain: TD, doc: DOC, apiserver });
});

afterAll(async () => {
  for (const s of open) s.close();
  await mesh?.stop();
  await apiserver?.close();
});

const token = (ns: string, sa: string): string => apiserver.issueServiceAccountToken(ns, sa, { audiences: ['istio-ca'] });

function sds(sa: string, names: string[]) {
  const s = tlsStream(mesh.meshfed.xdsPort, mesh.rootPem, { token: token('abc', sa), names });
  open.push(s);
  return s.stream;
}

function leafOf(r: DecodedResource | undefined): X509Certificate {
  const tls = r!.body['tls_certificate'] as Record<string, unknown>;
  return new X509Certificate(dataText(tls['certificate_chain']));
}

describe('SDS certificates issued off the push path', () => {
  it('no key is generated while the store builds a table; two streams of one identity share one issuance and both get it', async () => {
    const { ca } = mesh.meshfed.pki!;
    const { store } = mesh.meshfed;
    // ca.issue generates the key and signs on the caller's path; the store must never reach it.
    const issueSync = vi.spyOn(ca, 'issue');
    const issueAsync = vi.spyOn(ca, 'issueAsync');
    const tables = vi.spyOn(store, 'table');
    const id = `spiffe://${TD}/ns/abc/sa/foo`;

    const a = sds('foo', ['default', 'ROOTCA']);
    const b = sds('foo', [id]);
    const [ra, rb] = await Promise.all([a.next(5000), b.next(5000)]);

    expect(tables.mock.calls.some(([type]) => type === TypeUrl.Secret)).toBe(true);
    expect(issueSync).not.toHaveBeenCalled();
    expect(issueAsync).toHaveBeenCalledTimes(1);
    // The certificate and the trust bundle arrive together, in the first response.
    expect(ra.resources.map((r) => r.name).sort()).toEqual(['ROOTCA', 'default']);
    expect(rb.resources.map((r) => r.name)).toEqual([id]);
    const leaf = leafOf(ra.resources.find((r) => r.name === 'default'));
    expect(leaf.subjectAltName).toContain(`URI:${id}`);
    expect(leaf.serialNumber).toBe(leafOf(rb.resources[0]).serialNumber);
    vi.restoreAllMocks();
  });

  it('a delta stream is not told its pending certificate does not exist: it gets the certificate when it is ready, issued in the background too', async () => {
    const { ca } = mesh.meshfed.pki!;
    const issueSync = vi.spyOn(ca, 'issue');
    // Issuance waits for the test, so the certificate is surely pending while the stream is served.
    let release!: () => void;
    const issuing = new Promise<void>((resolve) => (release = resolve));
    const issue = ca.issueAsync.bind(ca);
    const issueAsync = vi.spyOn(ca, 'issueAsync').mockImplementation(async (...args) => {
      await issuing;
      return issue(...args);
    });
    const client = new grpc.Client(`127.0.0.1:${mesh.meshfed.xdsPort}`, grpc.credentials.createSsl(Buffer.from(mesh.rootPem)), {
      'grpc.ssl_target_name_override': SERVER_NAME,
    });
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token('abc', 'delta')}`);
    const s = new RawXdsStream<DeltaResponse>(
      client,
      '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
      'delta',
      md,
    );
    open.push({ close: () => (s.close(), client.close()) });
    s.send({ node: { id: 'delta-node' }, type_url: TypeUrl.Secret, resource_names_subscribe: ['default', 'ROOTCA', 'no-such-secret'] });
    // The stream has opened its SDS table (and asked for the certificate), so its answer is on its way.
    await vi.waitFor(() => expect(issueAsync).toHaveBeenCalledTimes(1));
    // A CDS request sent after that is answered after it: whatever the stream says about the
    // pending secrets, it has said it by the time CDS is answered.
    s.send({ type_url: TypeUrl.Cluster });
    const before: DeltaResponse[] = [];
    for (let r = await s.next(5000); ; r = await s.next(5000)) {
      before.push(r);
      if (r.type_url === TypeUrl.Cluster) break;
    }
    expect(
      before
        .filter((r) => r.type_url === TypeUrl.Secret)
        .map((r) => ({ resources: r.resources.map((x) => x.name), removed: r.removed_resources })),
    ).toEqual([]);

    release();
    const res = await s.next(5000);
    // Once the table is ready, a name that still does not exist is reported as such.
    expect({ type: res.type_url, removed: res.removed_resources, names: res.resources.map((r) => r.name).sort() }).toEqual({
      type: TypeUrl.Secret,
      removed: ['no-such-secret'],
      names: ['ROOTCA', 'default'],
    });
    expect(leafOf(res.resources.find((r) => r.name === 'default')).subjectAltName).toContain(`URI:spiffe://${TD}/ns/abc/sa/delta`);
    expect(issueSync).not.toHaveBeenCalled();
    vi.restoreAllMocks();
  });
});
