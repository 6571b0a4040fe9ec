// The exporter over HTTPS picks up a renewed certificate (as cert-manager rotates a mounted Secret) without a restart,
// and keeps serving the old one when the new files are broken.
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { memoryAuthnKeyStore } from '../../src/alliance/identity/key-store.js';
import { type Meshfed, startMeshfed } from '../../src/app.js';
import { memoryCaStore } from '../../src/pki/index.js';
import { captureLog } from '../helpers/mesh-tls.js';
import { issueWorkloadCert, makeRoot, type TestRoot } from '../helpers/test-certs.js';

const WAIT = { timeout: 10_000, interval: 20 }; // for the exporter to serve what changed, polled every 20 ms

/** The serial of the certificate a fresh TLS connection is served. */
function servedSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, checkServerIdentity: () => undefined }, () => {
      resolve(s.getPeerX509Certificate()!.serialNumber);
      s.end();
    });
    s.on('error', reject);
  });
}

describe('metadata exporter TLS files', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-exporter-tls-'));
  const certFile = path.join(dir, 'tls.crt');
  const keyFile = path.join(dir, 'tls.key');
  const log = captureLog();
  let root: TestRoot;
  let m: Meshfed;
  beforeAll(async () => {
    root = await makeRoot(dir, 'metadata.test');
    const first = await issueWorkloadCert(dir, root, 'meshfed', 'first');
    copyFileSync(first.certFile, certFile);
    copyFileSync(first.keyFile, keyFile);
    m = await startMeshfed({
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      debugPort: 0,
      log: log.log,
      pki: { trustDomain: 'cluster-b.local', caStore: memoryCaStore() },
      alliance: {
        clusterUuid: 'u-1',
        keyStore: memoryAuthnKeyStore(),
        localClusterId: 'cluster-b',
        exporter: { host: '127.0.0.1', port: 0, federation: false, tls: { certFile, keyFile, reloadIntervalMs: 50 } },
      },
    });
  });
  afterAll(() => m?.stop(100));

  it('serves a renewed certificate to new connections, and keeps the last good one when the files break', async () => {
    const port = m.alliance!.metadataPort!;
    const serial = (pem: string): string => new X509Certificate(pem).serialNumber;
    const first = await servedSerial(port, root.certPem);
    const second = await issueWorkloadCert(dir, root, 'meshfed', 'second');
    // Replaced as a mounted Secret is: new files renamed into place.
    copyFileSync(second.keyFile, `${keyFile}.new`);
    copyFileSync(second.certFile, `${certFile}.new`);
    renameSync(`${keyFile}.new`, keyFile);
    renameSync(`${certFile}.new`, certFile);
    await vi.waitFor(async () => expect(await servedSerial(port, root.certPem)).toBe(serial(second.certPem)), WAIT); // the renewed certificate is served
    expect(first).not.toBe(serial(second.certPem));

    writeFileSync(certFile, 'garbage\n');
    await vi.waitFor(
      () => expect(JSON.stringify(log.lines)).toMatch(/new TLS certificate or key is unusable \(the old pair keeps serving\)/),
      WAIT,
    ); // the broken files are reported
    expect(await servedSerial(port, root.certPem)).toBe(serial(second.certPem));
  });
});
