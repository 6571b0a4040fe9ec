// No key material on any admin or debug page, or in the log: with the mesh CA on and a proxy
// holding its certificate, every page is read as an attacker would. As in Envoy's config_dump,
// sensitive fields are "[redacted]" and bytes are base64. The debug pages are not on the admin port.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { captureLog, type CapturedLog, type TlsMesh, startTlsMesh, tlsStream } from '../helpers/mesh-tls.js';

const TD = 'cluster-a.local';
const FILE_KEY = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+not+a+real+key+only+test+bytes+AAAAAAA=\n-----END PRIVATE KEY-----\n';
const DOC = {
  clusters: [{ id: 'cluster-a', network: 'network-a', domain: TD, rootCaPem: '' }],
  services: [],
  // Secrets written into the mesh file are redacted the same way.
  resources: [
    {
      '@type': TypeUrl.Secret,
      name: 'file-tls',
      tls_certificate: { certificate_chain: { inline_string: 'chain' }, private_key: { inline_string: FILE_KEY } },
    },
    {
      '@type': TypeUrl.Secret,
      name: 'file-generic',
      generic_secret: { secret: { inline_bytes: Buffer.from('hunter2').toString('base64') } },
    },
  ],
};

let mesh: TlsMesh;
let logs: CapturedLog;
let close: () => void = () => {};

beforeAll(async () => {
  logs = captureLog();
  mesh = await startTlsMesh({ trustDomain: TD, doc: DOC, log: logs.log });
  const cert = mesh.meshfed.pki!.ca.issue({ trustDomain: TD, namespace: 'abc', serviceAccount: 'foo' });
  const s = tlsStream(mesh.meshfed.xdsPort, mesh.rootPem, { cert, names: ['default', 'ROOTCA', 'file-tls', 'file-generic'] });
  close = () => s.close();
  // The proxy really holds its key: the pages below have it to show. The mesh file's secrets may come
  // first, the certificate (issued in the background) with the bundle in a later response.
  const received = new Set<string>();
  while (received.size < 4) for (const r of (await s.stream.next(5000)).resources) received.add(r.name);
  expect([...received].sort()).toEqual(['ROOTCA', 'default', 'file-generic', 'file-tls']);
});

afterAll(async () => {
  close();
  await mesh?.stop();
});

const debug = (p: string): Promise<Response> => fetch(`http://127.0.0.1:${mesh.meshfed.debugPort}${p}`);
const admin = (p: string): Promise<Response> => fetch(`http://127.0.0.1:${mesh.meshfed.adminPort}${p}`);

type Dump = Array<{ types: Record<string, { resources: Array<{ name: string; resource: Record<string, unknown> }> }> }>;

describe('debug pages with the mesh CA on', () => {
  it('config_dump redacts every private key and secret, and shows bytes as base64', async () => {
    const res = await debug(`/debug/config_dump?proxy=${encodeURIComponent('test-node')}`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain('PRIVATE KEY');
    expect(text).not.toContain('"Buffer"');
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain(Buffer.from('hunter2').toString('base64'));
    const byName = new Map((JSON.parse(text) as Dump)[0]!.types['SDS']!.resources.map((r) => [r.name, r.resource]));
    const tls = byName.get('default')!['tls_certificate'] as Record<string, { inline_bytes: string }>;
    expect(tls['private_key']).toEqual({ inline_bytes: '[redacted]' });
    // The certificate is not secret: it stays, as base64 of its PEM.
    expect(Buffer.from(tls['certificate_chain']!.inline_bytes, 'base64').toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(byName.get('file-tls')!['tls_certificate']).toEqual({
      certificate_chain: { inline_string: 'chain' },
      private_key: { inline_string: '[redacted]' },
    });
    expect(byName.get('file-generic')!['generic_secret']).toEqual({ secret: { inline_bytes: '[redacted]' } });
    // The trust bundle's roots are public: base64 PEM.
    const validator = (
      byName.get('ROOTCA')!['validation_context'] as Record<
        string,
        Record<string, { trust_domains: Array<{ trust_bundle: { inline_bytes: string } }> }>
      >
    )['custom_validator_config']!;
    const bundle = Buffer.from(validator['typed_config']!.trust_domains[0]!.trust_bundle.inline_bytes, 'base64').toString();
    expect(bundle).toBe(mesh.rootPem.trim() + '\n');
  });

  it('no other page, nor the log, holds key material', async () => {
    for (const p of ['/debug/syncz', '/debug/mesh', '/debug/clusters']) {
      const text = await (await debug(p)).text();
      expect(text, p).not.toContain('PRIVATE KEY');
      expect(text, p).not.toContain('"Buffer"');
      expect(text, p).not.toContain('hunter2');
    }
    for (const p of ['/metrics', '/readyz', '/.well-known/spiffe-bundle'])
      expect(await (await admin(p)).text(), p).not.toContain('PRIVATE KEY');
    const log = JSON.stringify(logs.lines);
    expect(log).not.toContain('PRIVATE KEY');
    expect(log).not.toContain('hunter2');
  });

  it('the debug pages are not served on the admin port, which says where they are', async () => {
    for (const p of ['/debug/config_dump?proxy=test-node', '/debug/syncz', '/debug/mesh']) {
      const res = await admin(p);
      expect(res.status, p).toBe(404);
      expect(((await res.json()) as { error: string }).error, p).toContain(`--debug-address, here 127.0.0.1:${mesh.meshfed.debugPort}`);
    }
    expect((await admin('/healthz')).status).toBe(200);
    expect((await debug('/healthz')).status).toBe(404);
  });

  it('a debug page that needs a flag names it', async () => {
    const res = await debug('/debug/clusters');
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: string }).error).toContain('--kube');
  });
});
