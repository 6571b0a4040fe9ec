// `meshfed agent --csr`: each workload's key is made by its agent and never crosses the wire. A
// TLS tap between the agents and meshfed's TLS port records every decrypted byte both ways: the
// certificates go through it, the keys do not. The two workloads then talk mTLS as in
// mtls-federation.test.ts (proxyless gRPC client and XdsServer, certificates from the agents' files).
import type * as grpc from '@grpc/grpc-js';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { freePort, MtlsClient, startWorkload, startXdsEchoServer, type Workload } from '../helpers/grpc-mtls.js';
import { startTlsMesh, type TlsMesh } from '../helpers/mesh-tls.js';
import { startTlsTap, type TlsTap } from '../helpers/tls-tap.js';

const TD = 'cluster-a.local';

let api: FakeApiServer;
let mesh: TlsMesh;
let tap: TlsTap;
let client: Workload;
let serverWl: Workload;
let barServer: grpc.Server;
let barPort: number;
let channel: MtlsClient | undefined;

function doc(): Record<string, unknown> {
  return {
    clusters: [{ id: 'cluster-a', network: 'net', domain: TD, rootCaPem: '' }],
    services: [
      {
        name: 'bar',
        namespace: 'xyz',
        cluster: 'cluster-a',
        ports: [{ name: 'grpc', port: 9000, protocol: 'GRPC' }],
        endpoints: [
          {
            address: '127.0.0.1',
            port: barPort,
            serviceAccount: 'bar',
            locality: { region: 'r', zone: 'z' },
            health: 'HEALTHY',
            mtls: true,
          },
        ],
      },
    ],
  };
}

beforeAll(async () => {
  api = await startFakeApiServer({ clusterName: 'cluster-a' });
  barPort = await freePort();
  mesh = await startTlsMesh({ trustDomain: TD, apiserver: api, doc: doc() });
  tap = await startTlsTap(mesh.meshfed.pki!.ca, mesh.meshfed.xdsPort);
  const token = (ns: string, sa: string): string => api.issueServiceAccountToken(ns, sa, { audiences: ['istio-ca'] });
  const common = { mesh, clusterId: 'Kubernetes', csr: true, xdsPort: tap.port };
  [client, serverWl] = await Promise.all([
    startWorkload({ ...common, token: token('abc', 'foo'), namespace: 'abc', serviceAccount: 'foo' }),
    startWorkload({ ...common, token: token('xyz', 'bar'), namespace: 'xyz', serviceAccount: 'bar' }),
  ]);
  barServer = await startXdsEchoServer(await serverWl.bootstrap(), barPort, 'bar');
}, 40_000);

afterAll(async () => {
  channel?.close();
  barServer?.forceShutdown();
  await Promise.all([client?.stop(), serverWl?.stop()]);
  await tap?.close();
  await mesh?.stop();
  await api?.close();
});

/** The forms a private key could take on the wire: its PEM body, PKCS#8 DER, and the bare scalar. */
function keyForms(keyPem: string): Array<[string, Buffer]> {
  const key = createPrivateKey(keyPem);
  const body = keyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return [
    ['PEM body', Buffer.from(body.slice(8, 72))],
    ['PKCS#8 DER', key.export({ type: 'pkcs8', format: 'der' })],
    ['private scalar', Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url')],
  ];
}

describe('meshfed agent --csr', () => {
  it('writes a key of its own making, which the certificate meshfed signed is for', async () => {
    for (const [wl, id] of [
      [client, 'ns/abc/sa/foo'],
      [serverWl, 'ns/xyz/sa/bar'],
    ] as const) {
      const files = wl.agent.files;
      expect((await stat(files.key)).mode & 0o777).toBe(0o600);
      const leaf = new X509Certificate(await readFile(files.certChain, 'utf8'));
      expect(leaf.subjectAltName).toBe(`URI:spiffe://${TD}/${id}`);
      expect(leaf.checkPrivateKey(createPrivateKey(await readFile(files.key, 'utf8')))).toBe(true);
      expect(leaf.verify(new X509Certificate(mesh.rootPem).publicKey)).toBe(true);
    }
  });

  it('no message to or from meshfed carries a private key, while the certificates do go through the tap', async () => {
    const sent = tap.toMeshfed();
    const received = tap.fromMeshfed();
    for (const wl of [client, serverWl]) {
      const leafPem = (await readFile(wl.agent.files.certChain, 'utf8')).split('\n')[1]!;
      expect(received.includes(leafPem), 'the tap saw the certificate meshfed sent').toBe(true);
      for (const [form, bytes] of keyForms(await readFile(wl.agent.files.key, 'utf8'))) {
        expect(sent.includes(bytes), `${form} sent to meshfed`).toBe(false);
        expect(received.includes(bytes), `${form} sent by meshfed`).toBe(false);
      }
    }
    // Nor any other key: meshfed was never asked for the secret `default`, which carries one.
    expect(received.includes(Buffer.from('PRIVATE KEY'))).toBe(false);
  });

  it('the two workloads talk mTLS with those certificates', async () => {
    channel = new MtlsClient('xds:///bar.xyz.svc.cluster-a.local:9000', await client.bootstrap());
    const ok = await vi.waitFor(
      async () => {
        const r = await channel!.call(2000);
        if (!r.ok) throw new Error(r.value);
        return r;
      },
      { timeout: 20_000, interval: 200 },
    );
    expect(ok.value).toBe('bar');
  }, 30_000);
});
