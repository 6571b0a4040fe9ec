// IstioFederation custom resources: the CRDs (deploy/kubernetes/crds/) applied with the real kubectl to the
// fake apiserver (schema defaults and checks, the status subresource), and meshfed --kube following a CR:
// fetching the peer, writing status exactly as Deckhouse does (merge-patch on /status), refusing the local
// trust domain, and letting only the leader write.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startMeshfed, type Meshfed } from '../../src/app.js';
import { CertificateAuthority, memoryCaStore } from '../../src/pki/index.js';
import { startFakeApiServer, type FakeApiServer, type KubeObject } from '../fixtures/kube-apiserver/index.js';
import { localIdentity, type PeerServer, startPeerServer } from '../helpers/peer-metadata.js';

const WAIT = { timeout: 10_000, interval: 50 }; // for the exchange and the CRs' status to follow

const run = promisify(execFile);
const KUBECTL = execFileSync('which', ['kubectl'], { encoding: 'utf8' }).trim();
const CRDS = path.resolve(import.meta.dirname, '../../deploy/kubernetes/crds');
const FED = 'deckhouse.io/v1alpha1';
const A_UUID = '11111111-1111-4111-8111-111111111111';
const B_UUID = '22222222-2222-4222-8222-222222222222';

const idA = localIdentity(A_UUID);
const dir = mkdtempSync(path.join(tmpdir(), 'meshfed-fedkube-'));
let api: FakeApiServer;
let kubeconfig: string;
let peer: PeerServer;
let rootB: string;
const started: Meshfed[] = [];

async function kubectl(args: string[], input?: object): Promise<string> {
  let file: string | undefined;
  if (input) {
    file = path.join(dir, `in-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, stringify(input));
  }
  const { stdout } = await run(KUBECTL, [...args, ...(file ? ['-f', file] : [])], {
    env: { ...process.env, KUBECONFIG: kubeconfig },
    timeout: 20_000,
  });
  return stdout;
}

async function kubectlFails(args: string[], input?: object): Promise<string> {
  try {
    await kubectl(args, input);
  } catch (err) {
    return (err as { stderr?: string }).stderr ?? String(err);
  }
  throw new Error(`kubectl ${args.join(' ')} succeeded`);
}

const federation = (name: string, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: FED,
  kind: 'IstioFederation',
  metadata: { name },
  spec,
});
const getFed = (name: string): KubeObject | undefined => api.get(FED, 'IstioFederation', undefined, name);
const conditionOf = (name: string, type: string): Record<string, string> | undefined =>
  ((getFed(name)?.['status'] as { conditions?: Array<Record<string, string>> } | undefined)?.conditions ?? []).find(
    (c) => c['type'] === type,
  );

async function startA(apiserver: FakeApiServer, isLeader?: () => boolean): Promise<Meshfed> {
  const m = await startMeshfed({
    kube: { kubeconfig: apiserver.writeKubeconfig(dir), clusterId: 'cluster-a', clusterDomain: 'cluster-a.local' },
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 0,
    pki: { trustDomain: 'cluster-a.local', caStore: memoryCaStore() },
    federation: { mintToken: idA.mint, isLeader, pollIntervalMs: 3_600_000 },
    log: pino({ level: 'silent' }),
  });
  started.push(m);
  return m;
}

beforeAll(async () => {
  api = await startFakeApiServer({ clusterName: 'cluster-a' });
  kubeconfig = api.writeKubeconfig(dir);
  const caB = await CertificateAuthority.open({ trustDomain: 'cluster-b.local', store: memoryCaStore() });
  rootB = caB.roots[0]!;
  caB.close();
  peer = await startPeerServer(
    {
      uuid: B_UUID,
      rootCA: rootB,
      ingressGateways: [{ address: '192.0.2.20', port: 15443 }],
      publicServices: [{ hostname: 'bar.xyz.svc.cluster-b.local', ports: [{ name: 'grpc', port: 9000 }] }],
    },
    () => [idA],
  );
}, 30_000);

afterAll(async () => {
  await Promise.all(started.map((m) => m.stop(100)));
  await peer?.close();
  await api?.close();
});

describe('the CRDs, applied with kubectl', () => {
  it('register both kinds with their status subresource', async () => {
    const out = await kubectl(['apply', '-f', CRDS]);
    expect(out).toContain('customresourcedefinition.apiextensions.k8s.io/istiofederations.deckhouse.io created');
    expect(out).toContain('customresourcedefinition.apiextensions.k8s.io/istiomulticlusters.deckhouse.io created');
    await kubectl(['wait', '--for=condition=Established', 'crd/istiofederations.deckhouse.io', 'crd/istiomulticlusters.deckhouse.io']);
    const resources = await kubectl(['api-resources', '--api-group=deckhouse.io', '--no-headers']);
    expect(resources).toMatch(/istiofederations\s+deckhouse.io\/v1alpha1\s+false\s+IstioFederation/);
    expect(resources).toMatch(/istiomulticlusters\s+deckhouse.io\/v1alpha1\s+false\s+IstioMulticluster/);
  });

  it('default enableIngressGateway to true and insecureSkipVerify to false', async () => {
    await kubectl(['apply'], {
      apiVersion: FED,
      kind: 'IstioMulticluster',
      metadata: { name: 'mc' },
      spec: { metadataEndpoint: 'https://istio-metadata.b.example.com:8443/metadata/' },
    });
    expect(await kubectl(['get', 'istiomulticluster', 'mc', '-o', 'jsonpath={.spec.enableIngressGateway}'])).toBe('true');
    // meshfed follows IstioMulticluster CRs too: this one would be a second (unreachable) peer below.
    await kubectl(['delete', 'istiomulticluster', 'mc']);
    await kubectl(
      ['apply'],
      federation('defaults', { trustDomain: 'cluster-x.local', metadataEndpoint: 'https://x.example.com/metadata/', metadata: {} }),
    );
    expect(await kubectl(['get', 'istiofederation', 'defaults', '-o', 'jsonpath={.spec.metadata.insecureSkipVerify}'])).toBe('false');
    await kubectl(['delete', 'istiofederation', 'defaults']);
  });

  it('refuse a CR without trustDomain, or with an endpoint that has a query', async () => {
    expect(await kubectlFails(['apply'], federation('bad', { metadataEndpoint: 'https://x.example.com/metadata/' }))).toContain(
      'spec.trustDomain: Required value',
    );
    expect(
      await kubectlFails(['apply'], federation('bad', { trustDomain: 'b.local', metadataEndpoint: 'https://x.example.com/metadata/?a=b' })),
    ).toMatch(
      /spec.metadataEndpoint: Invalid value: "https:\/\/x.example.com\/metadata\/\?a=b": spec.metadataEndpoint in body should match/,
    );
  });

  it('write status only through /status, and ignore status in a write of the object', async () => {
    await kubectl(['apply'], federation('sub', { trustDomain: 'cluster-s.local', metadataEndpoint: 'https://s.example.com/metadata/' }));
    const cond = { type: 'DataplaneConnectionReady', status: 'True', reason: 'Connected', message: '' };
    await kubectl([
      'patch',
      'istiofederation',
      'sub',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { conditions: [cond] }, spec: { trustDomain: 'changed.local' } }),
    ]);
    expect(getFed('sub')).toMatchObject({
      spec: { trustDomain: 'cluster-s.local' },
      status: { conditions: [cond] },
      metadata: { generation: 1 },
    });
    await kubectl([
      'patch',
      'istiofederation',
      'sub',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { conditions: [] }, spec: { trustDomain: 'cluster-t.local' } }),
    ]);
    expect(getFed('sub')).toMatchObject({
      spec: { trustDomain: 'cluster-t.local' },
      status: { conditions: [cond] },
      metadata: { generation: 2 },
    });
    await kubectl(['delete', 'istiofederation', 'sub']);
    // A create through the main resource starts without status.
    await kubectl(['create'], {
      ...federation('fresh', { trustDomain: 'cluster-f.local', metadataEndpoint: 'https://f.example.com/' }),
      status: { conditions: [cond] },
    });
    expect(getFed('fresh')?.['status']).toBeUndefined();
    await kubectl(['delete', 'istiofederation', 'fresh']);
  });
});

describe('meshfed --kube and an IstioFederation', () => {
  let m: Meshfed;
  const dataplane = {
    type: 'DataplaneConnectionReady',
    status: 'False',
    reason: 'NotChecked',
    message: 'written by another controller',
    lastTransitionTime: '2026-01-01T00:00:00Z',
  };

  beforeAll(async () => {
    m = await startA(api);
    await kubectl(
      ['apply'],
      federation('cluster-b', { trustDomain: 'cluster-b.local', metadataEndpoint: peer.endpoint, metadata: { ca: peer.caPem } }),
    );
    await kubectl([
      'patch',
      'istiofederation',
      'cluster-b',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { conditions: [dataplane] } }),
    ]);
    m.peers.pollAll();
    await vi.waitFor(
      () => expect(conditionOf('cluster-b', 'PrivateMetadataExchangeReady')?.['status'], 'the CR conditions').toBe('True'),
      WAIT,
    );
  }, 20_000);

  it('writes status exactly as Deckhouse does, keeping conditions of other types', () => {
    const status = getFed('cluster-b')!['status'] as { conditions: Array<Record<string, string>> };
    const t = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(status).toEqual({
      metadataCache: {
        public: { clusterUUID: B_UUID, authnKeyPub: 'peer key', rootCA: rootB },
        private: {
          ingressGateways: [{ address: '192.0.2.20', port: 15443 }],
          publicServices: [{ hostname: 'bar.xyz.svc.cluster-b.local', ports: [{ name: 'grpc', port: 9000, protocol: 'HTTP2' }] }],
        },
      },
      conditions: [
        dataplane,
        { type: 'PublicMetadataExchangeReady', status: 'True', reason: 'Succeeded', message: '', lastTransitionTime: t, lastProbeTime: t },
        { type: 'PrivateMetadataExchangeReady', status: 'True', reason: 'Succeeded', message: '', lastTransitionTime: t, lastProbeTime: t },
      ],
    });
    m.registry.flush();
    expect(m.registry.snapshot.services.get('bar.xyz.svc.cluster-b.local')?.origin).toBe('federation');
  });

  it('keeps lastTransitionTime while nothing changes, and the last good cache through a fault', async () => {
    const before = conditionOf('cluster-b', 'PublicMetadataExchangeReady')!;
    const probed = (): Promise<void> =>
      new Promise((resolve) => {
        const off = m.peers.onProbe(() => (off(), resolve()));
        m.peers.pollAll();
      });
    await probed();
    expect(conditionOf('cluster-b', 'PublicMetadataExchangeReady')!['lastTransitionTime']).toBe(before['lastTransitionTime']);
    const cache = (getFed('cluster-b')!['status'] as Record<string, unknown>)['metadataCache'];
    peer.fault = 'status500';
    try {
      await probed();
      expect(conditionOf('cluster-b', 'PublicMetadataExchangeReady')).toMatchObject({ status: 'False', reason: 'NonOKResponse' });
      expect(conditionOf('cluster-b', 'PrivateMetadataExchangeReady')).toMatchObject({ status: 'False', reason: 'AwaitingPublic' });
      expect((getFed('cluster-b')!['status'] as Record<string, unknown>)['metadataCache']).toEqual(cache);
      expect(conditionOf('cluster-b', 'DataplaneConnectionReady')).toEqual(dataplane);
    } finally {
      peer.fault = 'none';
    }
    await probed();
    expect(conditionOf('cluster-b', 'PublicMetadataExchangeReady')).toMatchObject({ status: 'True', reason: 'Succeeded' });
  });

  it('refuses a CR that claims the local trust domain, with a condition', async () => {
    await kubectl(
      ['apply'],
      federation('self', { trustDomain: 'cluster-a.local', metadataEndpoint: peer.endpoint, metadata: { ca: peer.caPem } }),
    );
    await vi.waitFor(
      () => expect(conditionOf('self', 'PublicMetadataExchangeReady')?.['reason'], 'the refusal').toBe('LocalTrustDomain'),
      WAIT,
    );
    expect(conditionOf('self', 'PublicMetadataExchangeReady')!['message']).toContain('cluster-a.local');
    expect(m.peers.rows().find((r) => r.name === 'self')).toMatchObject({ servicesImported: 0, imports: 'none' });
    await kubectl(['delete', 'istiofederation', 'self']);
  });

  it('drops the imports and the peer root when the CR is deleted', async () => {
    expect(m.pki!.bundles.byDomain().has('cluster-b.local')).toBe(true);
    await kubectl(['delete', 'istiofederation', 'cluster-b']);
    await vi.waitFor(() => {
      m.registry.flush();
      expect([...m.registry.snapshot.services.keys()], 'the import gone').not.toContain('bar.xyz.svc.cluster-b.local');
    }, WAIT);
    await vi.waitFor(() => expect([...m.pki!.bundles.byDomain().keys()], 'the root gone').not.toContain('cluster-b.local'), {
      timeout: 5000,
      interval: 50,
    });
    expect(m.peers.rows()).toEqual([]);
  });
});

describe('a replica that does not lead', () => {
  it('fetches and serves the peer but writes no status', async () => {
    const api2 = await startFakeApiServer({ clusterName: 'cluster-a2' });
    try {
      for (const f of ['istiofederation.yaml', 'istiomulticluster.yaml']) {
        const { stdout } = await run(KUBECTL, ['apply', '-f', path.join(CRDS, f)], {
          env: { ...process.env, KUBECONFIG: api2.writeKubeconfig(dir) },
        });
        expect(stdout).toContain('created');
      }
      api2.upsert(
        federation('cluster-b', { trustDomain: 'cluster-b.local', metadataEndpoint: peer.endpoint, metadata: { ca: peer.caPem } }),
      );
      const m2 = await startA(api2, () => false);
      await vi.waitFor(() => expect(m2.peers.rows()[0]?.private.status, 'the exchange').toBe('True'), WAIT);
      m2.registry.flush();
      expect(m2.registry.snapshot.services.has('bar.xyz.svc.cluster-b.local')).toBe(true);
      expect(api2.requests.filter((r) => r.method === 'PATCH')).toEqual([]);
      expect(api2.get(FED, 'IstioFederation', undefined, 'cluster-b')?.['status']).toBeUndefined();
    } finally {
      await api2.close();
    }
  });
});
