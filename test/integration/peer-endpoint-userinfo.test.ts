// A metadataEndpoint with a user and password (https://user:pass@host/): refused, and the password never reaches
// a log line, /debug/peers, a metric label or the CR's status. meshfed's own CRD forbids it by pattern; Deckhouse's
// (CEL rules, which only check for an https URL with a host) lets it through, so the CRD here has no pattern.
import { testPeerController } from '../helpers/peer-controller.js';
import { mkdtempSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { pino } from 'pino';
import client from 'prom-client';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PeerController } from '../../src/alliance/peers/controller.js';
import { IstioPeerWatch } from '../../src/alliance/peers/kube.js';
import { registerPeerMetrics } from '../../src/alliance/peers/metrics.js';
import { metadataEndpointProblem } from '../../src/sources/file/validate.js';
import { localKubeConfig } from '../../src/sources/kube/transport.js';
import { type FakeApiServer, type KubeObject, startFakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { localIdentity } from '../helpers/peer-metadata.js';

const SECRET = 's3cret-pw';
const DH = 'deckhouse.io/v1alpha1';
const lines: string[] = [];
const log = pino({ level: 'debug' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
let api: FakeApiServer;
let watch: IstioPeerWatch;
let ctl: PeerController;
const metrics = new client.Registry();

beforeAll(async () => {
  api = await startFakeApiServer();
  const crd = parse(
    readFileSync(path.resolve(import.meta.dirname, '../../deploy/kubernetes/crds/istiomulticluster.yaml'), 'utf8'),
  ) as KubeObject;
  const text = JSON.stringify(crd).replace(/"pattern":"[^"]*(\\.[^"]*)*",/g, '');
  api.upsert(JSON.parse(text) as KubeObject);
  ctl = testPeerController({ mintToken: localIdentity('11111111-1111-4111-8111-111111111111').mint, fetchTimeoutMs: 1000 }, log);
  registerPeerMetrics(metrics, () => ctl.rows());
  watch = new IstioPeerWatch(
    localKubeConfig(api.writeKubeconfig(mkdtempSync(path.join(tmpdir(), 'meshfed-ui-')))),
    log,
    'IstioMulticluster',
  );
  ctl.useStatusSink(watch, 'multicluster');
  watch.start(ctl);
});
afterAll(async () => {
  watch?.stop();
  ctl?.stop();
  await api?.close();
});

describe('a metadataEndpoint with user:pass@', () => {
  it('is refused in the mesh file, without echoing it', () => {
    const why = metadataEndpointProblem(`https://user:${SECRET}@m.b.example.com/metadata/`);
    expect(why).toBe('must have no user or password (user:pass@)');
    // Other mistakes found first must not print the password either.
    for (const bad of [`ftp://user:${SECRET}@m.b.example.com/`, `https://user:${SECRET}@[bad/`]) {
      expect(metadataEndpointProblem(bad)).toBeDefined();
      expect(metadataEndpointProblem(bad)).not.toContain(SECRET);
    }
  });

  it('refuses the IstioMulticluster with a condition, and the password is nowhere', async () => {
    api.upsert({
      apiVersion: DH,
      kind: 'IstioMulticluster',
      metadata: { name: 'b' },
      spec: { metadataEndpoint: `https://user:${SECRET}@127.0.0.1:1/metadata/` },
    } as KubeObject);
    const status = await vi.waitFor(
      () => {
        const s = api.get(DH, 'IstioMulticluster', undefined, 'b')?.['status'] as
          | { conditions?: Array<Record<string, string>> }
          | undefined;
        expect(s?.conditions?.[0]).toMatchObject({
          type: 'PublicMetadataExchangeReady',
          status: 'False',
          reason: 'InvalidMetadataEndpoint',
          message: 'spec.metadataEndpoint must have no user or password (user:pass@)',
        });
        return s;
      },
      { timeout: 10_000, interval: 20 },
    ); // refused
    const everywhere = JSON.stringify([status, ctl.rows(), await metrics.metrics(), lines]);
    expect(everywhere).not.toContain(SECRET);
    expect(everywhere).not.toContain('//user');
  });
});
