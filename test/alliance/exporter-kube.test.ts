// The exporter with Kubernetes discovery, against the fake kube-apiserver: the cluster UUID is kube-system's uid, the
// key pair is a Secret, and federation.json follows the cluster — Services labelled as Deckhouse or meshfed label
// them, the NodePort gateway on the nodes that run it — from the registry snapshot the generators read.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { kubeAuthnKeyStore } from '../../src/alliance/identity/key-store.js';
import { StaticPeerDirectory } from '../../src/alliance/static-peers.js';
import type { Meshfed } from '../../src/app.js';
import { localKubeConfig } from '../../src/sources/kube/index.js';
import { memoryCaStore } from '../../src/pki/index.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { namespace, startKubeMeshfed, expectEqual } from '../helpers/kube-cluster.js';
import { deckhouseClaims, deckhousePeer, handMadeToken } from './deckhouse-peer.js';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const WAIT = { timeout: 10_000, interval: 20 }; // for meshfed to follow the apiservers, polled every 20 ms

const PEER = deckhousePeer('1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0');

describe('metadata exporter with --kube', () => {
  let api: FakeApiServer;
  let m: Meshfed;
  let uid: string;
  beforeAll(async () => {
    api = await startFakeApiServer();
    uid = (api.upsert(namespace('kube-system')) as { metadata: { uid: string } }).metadata.uid;
    api.upsert(namespace('meshfed'));
    api.upsert(namespace('xyz'));
    api.upsert(namespace('d8-istio'));
    const kubeconfig = api.writeKubeconfig(mkdtempSync(path.join(os.tmpdir(), 'meshfed-exp-kube-')));
    m = await startKubeMeshfed(
      api,
      { kubeconfig, clusterId: 'cluster-b', clusterDomain: 'cluster-b.local' },
      {
        pki: { trustDomain: 'cluster-b.local', caStore: memoryCaStore() },
        alliance: {
          keyStore: kubeAuthnKeyStore(localKubeConfig(kubeconfig), 'meshfed'),
          peers: new StaticPeerDirectory([{ clusterUUID: PEER.uuid, authnKeyPub: PEER.pubPem, rootCA: 'unused' }]),
          exporter: { host: '127.0.0.1', port: 0, federation: true },
        },
      },
    );
  });
  afterAll(async () => {
    await m?.stop(100);
    await api?.close();
  });

  const base = (): string => `http://127.0.0.1:${m.alliance!.metadataPort!}`;
  const federation = async (): Promise<unknown> => {
    const token = handMadeToken(PEER, deckhouseClaims(PEER.uuid, uid, 'private-federation'));
    const r = await fetch(`${base()}/metadata/private/federation.json`, { headers: { authorization: `Bearer ${token}` } });
    if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`);
    return r.json();
  };

  it('is the cluster UUID of kube-system, with the key pair from Secret meshfed-authn-keypair', async () => {
    const pub = (await (await fetch(`${base()}/metadata/public/public.json`)).json()) as { clusterUUID: string; authnKeyPub: string };
    expect(pub.clusterUUID).toBe(uid);
    const secret = api.get('v1', 'Secret', 'meshfed', 'meshfed-authn-keypair') as { data?: Record<string, string> } | undefined;
    expect(Buffer.from(secret!.data!['pub.pem']!, 'base64').toString()).toBe(pub.authnKeyPub);
  });

  it('publishes labelled Services and the NodePort gateway as the cluster changes', async () => {
    const svc = (name: string, labels: Record<string, string>) => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: 'xyz', labels },
      spec: { type: 'ClusterIP', ports: [{ name: 'grpc', port: 9090 }] },
    });
    api.upsert(svc('bar', { 'federation.istio.deckhouse.io/public-service': '' }));
    api.upsert(svc('baz', { 'meshfed.io/exported': 'true' }));
    api.upsert(svc('secret-sauce', {}));
    api.upsert({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-a' },
      status: {
        addresses: [
          { type: 'InternalIP', address: '10.0.0.5' },
          { type: 'ExternalIP', address: '203.0.113.5' },
        ],
        conditions: [{ type: 'Ready', status: 'True' }],
      },
    });
    api.upsert({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'ingressgateway', namespace: 'd8-istio', labels: { 'topology.istio.io/network': 'cluster-b' } },
      spec: { type: 'NodePort', ports: [{ name: 'tls', port: 15443, nodePort: 30443 }] },
    });
    api.upsert({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'ingressgateway-1', namespace: 'd8-istio', labels: { 'kubernetes.io/service-name': 'ingressgateway' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.1.0.9'], nodeName: 'node-a', conditions: { ready: true } }],
      ports: [{ name: 'tls', port: 15443 }],
    });
    const grpc = [{ name: 'grpc', port: 9090 }];
    // federation.json lists the labelled services and the gateway
    await vi.waitFor(
      async () =>
        expectEqual(await federation(), {
          ingressGateways: [{ address: '203.0.113.5', port: 30443 }],
          publicServices: [
            { hostname: 'bar.xyz.svc.cluster-b.local', ports: grpc },
            { hostname: 'baz.xyz.svc.cluster-b.local', ports: grpc },
          ],
        }),
      WAIT,
    );
    // Unlabelled: gone from the next answer; the node cordoned: no gateway.
    api.upsert(svc('bar', {}));
    api.upsert({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-a' },
      spec: { unschedulable: true },
      status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.5' }] },
    });
    // federation.json follows
    await vi.waitFor(
      async () =>
        expectEqual(await federation(), {
          ingressGateways: [],
          publicServices: [{ hostname: 'baz.xyz.svc.cluster-b.local', ports: grpc }],
        }),
      WAIT,
    );
  });
});
