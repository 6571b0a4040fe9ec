// The api-proxy under test: meshfed's alliance layer with only the api-proxy, in front of the fake kube-apiserver,
// trusting the given peers. Every request the fake apiserver records after start came through the proxy.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import client from 'prom-client';
import { stringify } from 'yaml';
import { memoryAuthnKeyStore } from '../../src/alliance/identity/key-store.js';
import { type Alliance, startAlliance } from '../../src/alliance/start.js';
import { StaticPeerDirectory } from '../../src/alliance/static-peers.js';
import { createLogger } from '../../src/log.js';
import { EMPTY_SNAPSHOT } from '../../src/model/mesh.js';
import { localKubeConfig } from '../../src/sources/kube/transport.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { testPki } from '../fixtures/kube-apiserver/pki.js';
import { deckhouseClaims, type DeckhousePeer, handMadeToken, OWN_UUID } from './deckhouse-peer.js';

export interface ApiProxyUnderTest {
  readonly api: FakeApiServer;
  readonly alliance: Alliance;
  readonly url: string;
  /** The CA that signed the proxy's certificate (the fixture's test CA). */
  readonly caPem: string;
  readonly dir: string;
  /** A peer's `api` token, as Deckhouse mints it for the multicluster kubeconfig (claims overridable). */
  token(peer: DeckhousePeer, over?: Record<string, unknown>): string;
  /** A kubeconfig for kubectl: the proxy as server, a peer's token as the user. */
  kubeconfig(token: string): string;
  /** A counter's values by its one label. */
  counter(name: string): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

export async function startApiProxy(o: { peers: readonly DeckhousePeer[]; maxInFlightPerPeer?: number }): Promise<ApiProxyUnderTest> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-api-proxy-'));
  const api = await startFakeApiServer({ clusterName: 'local' });
  const pki = testPki();
  writeFileSync(path.join(dir, 'proxy.crt'), pki.serverCertPem);
  writeFileSync(path.join(dir, 'proxy.key'), pki.serverKeyPem, { mode: 0o600 });
  const metrics = new client.Registry();
  const alliance = await startAlliance(
    {
      clusterUuid: OWN_UUID,
      keyStore: memoryAuthnKeyStore(),
      peers: new StaticPeerDirectory(o.peers.map((p) => ({ clusterUUID: p.uuid, authnKeyPub: p.pubPem, rootCA: 'unused' }))),
      apiProxy: {
        host: '127.0.0.1',
        port: 0,
        tls: { certFile: path.join(dir, 'proxy.crt'), keyFile: path.join(dir, 'proxy.key') },
        maxInFlightPerPeer: o.maxInFlightPerPeer,
      },
    },
    { kubeConfig: localKubeConfig(api.writeKubeconfig(dir)), snapshot: () => EMPTY_SNAPSHOT, metrics, log: createLogger('silent') },
  );
  const url = `https://127.0.0.1:${alliance.apiProxyPort!}`;
  return {
    api,
    alliance,
    url,
    caPem: pki.caPem,
    dir,
    token: (peer, over = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return handMadeToken(peer, { ...deckhouseClaims(peer.uuid, OWN_UUID, 'api', now), exp: now + 366 * 24 * 3600, ...over });
    },
    kubeconfig(token) {
      const file = path.join(dir, `kubeconfig-peer-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(
        file,
        stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'peer', cluster: { server: url, 'certificate-authority-data': Buffer.from(pki.caPem).toString('base64') } }],
          users: [{ name: 'peer', user: { token } }],
          contexts: [{ name: 'peer', context: { cluster: 'peer', user: 'peer' } }],
          'current-context': 'peer',
        }),
        { mode: 0o600 },
      );
      return file;
    },
    async counter(name) {
      const m = (await metrics.getSingleMetric(name)?.get())?.values ?? [];
      return Object.fromEntries(m.map((v) => [String(Object.values(v.labels)[0] ?? ''), v.value]));
    },
    stop: async () => {
      await alliance.close();
      await api.close();
    },
  };
}
