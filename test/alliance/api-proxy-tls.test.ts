// The api-proxy without certificate files: meshfed (startMeshfed with Kubernetes and the mesh CA) serves it with a
// certificate from the mesh CA for --api-proxy-dns-names, and one signed by the new root once a rotation activates.
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Meshfed, startMeshfed } from '../../src/app.js';
import { memoryAuthnKeyStore } from '../../src/alliance/identity/key-store.js';
import { createLogger } from '../../src/log.js';
import { memoryCaStore } from '../../src/pki/index.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { OWN_UUID } from './deckhouse-peer.js';

function servedLeaf(port: number, ca: readonly string[]): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    // Verified against the mesh CA's roots, for one of the DNS names.
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'meshfed-peers.meshfed.svc', ca: [...ca] }, () => {
      resolve(new X509Certificate(s.getPeerX509Certificate()!.raw));
      s.destroy();
    });
    s.on('error', reject);
  });
}

describe('api-proxy certificate from the mesh CA', () => {
  let api: FakeApiServer;
  let m: Meshfed;
  beforeAll(async () => {
    api = await startFakeApiServer();
    const kubeconfig = api.writeKubeconfig(mkdtempSync(path.join(os.tmpdir(), 'meshfed-api-proxy-tls-')));
    m = await startMeshfed({
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      debugPort: 0,
      log: createLogger('silent'),
      kube: { kubeconfig, clusterId: 'cluster-b', clusterDomain: 'cluster.local', namespace: 'meshfed' },
      pki: { trustDomain: 'cluster.local', caStore: memoryCaStore() },
      alliance: {
        clusterUuid: OWN_UUID,
        keyStore: memoryAuthnKeyStore(),
        apiProxy: { host: '127.0.0.1', port: 0, tls: { dnsNames: ['meshfed-peers.meshfed.svc', 'localhost'] } },
      },
    });
  });
  afterAll(async () => {
    await m.stop(100);
    await api.close();
  });

  it('is issued for the DNS names, and re-issued by the new root once a rotation activates', async () => {
    const ca = m.pki!.ca;
    const port = m.alliance!.apiProxyPort!;
    const first = await servedLeaf(port, ca.roots);
    expect(first.subjectAltName).toContain('DNS:meshfed-peers.meshfed.svc');
    const oldRoot = new X509Certificate(ca.signingRoot);
    expect(first.checkIssued(oldRoot)).toBe(true);
    await ca.rotateRoot();
    await ca.activateRotation();
    const newRoot = new X509Certificate(ca.signingRoot);
    const next = await servedLeaf(port, [ca.signingRoot]);
    expect(next.checkIssued(newRoot) && next.verify(newRoot.publicKey)).toBe(true);
  });
});
