// Who may get which key: meshfed serves xDS over TLS; SDS secrets go only to a stream that
// authenticated (service-account token checked by TokenReview, or a client certificate from the
// mesh CA), and only its own identity's.
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { CertificateAuthority, memoryCaStore } from '../../src/pki/index.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { captureLog, type CapturedLog, dataText, SERVER_NAME, startTlsMesh, type TlsMesh, tlsStream } from '../helpers/mesh-tls.js';
import { type DeltaResponse, RawXdsStream } from '../helpers/raw-client.js';

const TD = 'cluster-a.local';
const FOO = `spiffe://${TD}/ns/abc/sa/foo`;
const BAR = `spiffe://${TD}/ns/xyz/sa/bar`;
const DOC = { clusters: [{ id: 'cluster-a', network: 'network-a', domain: TD, rootCaPem: '' }], services: [] };

let apiserver: FakeApiServer;
let mesh: TlsMesh;
let logs: CapturedLog;
const open: Array<{ close(): void }> = [];

beforeAll(async () => {
  apiserver = await startFakeApiServer({ clusterName: 'cluster-a' });
  logs = captureLog();
  mesh = await startTlsMesh({ trustDomain: TD, doc: DOC, apiserver, log: logs.log });
});

afterAll(async () => {
  for (const s of open) s.close();
  await mesh?.stop();
  await apiserver?.close();
});

function sds(o: Parameters<typeof tlsStream>[2]) {
  const s = tlsStream(mesh.meshfed.xdsPort, mesh.rootPem, o);
  open.push(s);
  return s.stream;
}

const token = (ns: string, sa: string, opts: { audiences?: string[]; expiresInSec?: number } = {}) =>
  apiserver.issueServiceAccountToken(ns, sa, { audiences: ['istio-ca'], ...opts });

async function withheldCount(): Promise<number> {
  const m = /^meshfed_xds_withheld_secrets_total\{reason="unauthenticated"\} (\d+)$/m.exec(await mesh.meshfed.metrics.registry.metrics());
  return m ? Number(m[1]) : 0;
}

async function deniedCount(code: string, reason: string): Promise<number> {
  const text = await mesh.meshfed.metrics.registry.metrics();
  const m = new RegExp(`^meshfed_xds_denied_total\\{code="${code}",reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

describe('SDS over TLS with a service-account token', () => {
  it('gives abc/foo its own certificate and key, and the trust bundle', async () => {
    const s = sds({ token: token('abc', 'foo'), names: ['default', 'ROOTCA'] });
    const res = await s.next(5000);
    const byName = new Map(res.resources.map((r) => [r.name, r.body]));
    const tls = byName.get('default')!['tls_certificate'] as Record<string, unknown>;
    const leaf = new X509Certificate(dataText(tls['certificate_chain']));
    expect(leaf.subjectAltName).toContain(`URI:${FOO}`);
    expect(leaf.checkPrivateKey((await import('node:crypto')).createPrivateKey(dataText(tls['private_key'])))).toBe(true);
    const validator = (byName.get('ROOTCA')!['validation_context'] as Record<string, Record<string, unknown>>)['custom_validator_config']!;
    expect(validator['name']).toBe('envoy.tls.cert_validator.spiffe');
    const domains = (validator['typed_config'] as { trust_domains: Array<{ name: string }> }).trust_domains.map((d) => d.name);
    expect(domains).toEqual([TD]);
  });

  it('missing token: no key (answered as not existing, counted), while the trust bundle and configuration stay readable', async () => {
    const before = await withheldCount();
    const s = sds({ names: ['default', 'ROOTCA'] });
    expect((await s.next(5000)).resources.map((r) => r.name)).toEqual(['ROOTCA']);
    expect(await withheldCount()).toBe(before + 1);
    s.send({ type_url: TypeUrl.Cluster, resource_names: [] }); // the same stream goes on
    expect((await s.next(5000)).type_url).toBe(TypeUrl.Cluster);
  });

  const badTokens: Array<[string, () => string]> = [
    ['invalid', () => 'not-a-token'],
    ['expired', () => token('abc', 'foo', { expiresInSec: -60 })],
    ['wrong-audience', () => token('abc', 'foo', { audiences: ['something-else'] })],
  ];
  it.for(badTokens)('%s token: the stream is refused with UNAUTHENTICATED, no secret', async ([, make]): Promise<void> => {
    const s = sds({ token: make(), names: ['default'] });
    const st = await s.ended(5000);
    expect(st.code).toBe(status.UNAUTHENTICATED);
    expect(s.responses).toHaveLength(0);
  });

  it("abc/foo asking for xyz/bar's secret: PERMISSION_DENIED, counted", async () => {
    const before = await deniedCount('PERMISSION_DENIED', 'foreign-secret');
    const s = sds({ token: token('abc', 'foo'), names: [BAR] });
    const st = await s.ended(5000);
    expect(st.code).toBe(status.PERMISSION_DENIED);
    expect(st.details).toContain(BAR);
    expect(s.responses).toHaveLength(0);
    expect(await deniedCount('PERMISSION_DENIED', 'foreign-secret')).toBe(before + 1);
    // Its own id by name is fine, and is the same key as "default".
    const own = sds({ token: token('abc', 'foo'), names: [FOO, 'default'] });
    const res = await own.next(5000);
    const [a, b] = [FOO, 'default'].map((n) => JSON.stringify(res.resources.find((r) => r.name === n)!.body['tls_certificate']));
    expect(a).toBe(b);
  });

  it("the same on a delta stream: a subscription to xyz/bar's secret is PERMISSION_DENIED", async () => {
    const client = new grpc.Client(`127.0.0.1:${mesh.meshfed.xdsPort}`, grpc.credentials.createSsl(Buffer.from(mesh.rootPem)), {
      'grpc.ssl_target_name_override': SERVER_NAME,
    });
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token('abc', 'foo')}`);
    const s = new RawXdsStream<DeltaResponse>(
      client,
      '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
      'delta',
      md,
    );
    open.push({ close: () => (s.close(), client.close()) });
    s.send({ node: { id: 'delta-node' }, type_url: TypeUrl.Secret, resource_names_subscribe: ['default'] });
    expect((await s.next(5000)).resources.map((r) => r.name)).toEqual(['default']);
    s.send({ type_url: TypeUrl.Secret, resource_names_subscribe: [BAR] });
    expect((await s.ended(5000)).code).toBe(status.PERMISSION_DENIED);
  });

  it('TokenReview unreachable: no secret (UNAVAILABLE) and a clear log line', async () => {
    apiserver.faults.set({ kind: 'drop', path: /tokenreviews/ });
    try {
      const s = sds({ token: token('abc', 'fresh'), names: ['default'] }); // a token meshfed has not cached
      const st = await s.ended(8000);
      expect(st.code).toBe(status.UNAVAILABLE);
      expect(s.responses).toHaveLength(0);
      const line = logs.lines.find((l) => String(l['msg']).startsWith('TokenReview at '));
      expect(line?.['msg']).toMatch(/TokenReview at https:\/\/127\.0\.0\.1:\d+ failed: .*no secrets until it answers/);
    } finally {
      apiserver.faults.set(null);
    }
  });
});

describe('SDS over TLS with a client certificate', () => {
  it('a certificate from the mesh CA authenticates as its SPIFFE id', async () => {
    const cert = mesh.meshfed.pki!.ca.issue({ trustDomain: TD, namespace: 'abc', serviceAccount: 'foo' });
    const s = sds({ cert, names: ['default'] });
    const res = await s.next(5000);
    const tls = res.resources[0]!.body['tls_certificate'] as Record<string, unknown>;
    expect(new X509Certificate(dataText(tls['certificate_chain'])).subjectAltName).toContain(`URI:${FOO}`);
  });

  it('a certificate from a foreign CA claiming the same identity gets no key: the stream is anonymous', async () => {
    const foreign = await CertificateAuthority.open({ trustDomain: TD, store: memoryCaStore() });
    const cert = foreign.issue({ trustDomain: TD, namespace: 'abc', serviceAccount: 'foo' });
    const s = sds({ cert, names: ['default', 'ROOTCA'] });
    expect((await s.next(5000)).resources.map((r) => r.name)).toEqual(['ROOTCA']);
  });
});
