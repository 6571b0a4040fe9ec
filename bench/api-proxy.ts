// The api-proxy's cost for a watch (issue 10, "numbers in the note"): added latency of one event through the proxy
// (p50/p99, against the same event on a direct watch) and the proxy's CPU per 1,000 events. The proxy runs in its
// own process so its CPU is its own; the fake apiserver and both watchers run here.
//   npx tsx bench/api-proxy.ts [events=1000]
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import client from 'prom-client';
import { memoryAuthnKeyStore } from '../src/alliance/identity/key-store.js';
import { startAlliance } from '../src/alliance/start.js';
import { StaticPeerDirectory } from '../src/alliance/static-peers.js';
import { createLogger } from '../src/log.js';
import { EMPTY_SNAPSHOT } from '../src/model/mesh.js';
import { localKubeConfig } from '../src/sources/kube/transport.js';
import { startFakeApiServer } from '../test/fixtures/kube-apiserver/index.js';
import { testPki } from '../test/fixtures/kube-apiserver/pki.js';
import { deckhouseClaims, deckhousePeer, handMadeToken, OWN_UUID } from '../test/alliance/deckhouse-peer.js';

interface ChildArgs {
  kubeconfig: string;
  certFile: string;
  keyFile: string;
  peer: { uuid: string; pubPem: string };
}

if (process.argv[2] === 'proxy-child') {
  const a = JSON.parse(process.argv[3]!) as ChildArgs;
  const alliance = await startAlliance(
    {
      clusterUuid: OWN_UUID,
      keyStore: memoryAuthnKeyStore(),
      peers: new StaticPeerDirectory([{ clusterUUID: a.peer.uuid, authnKeyPub: a.peer.pubPem, rootCA: '' }]),
      apiProxy: { host: '127.0.0.1', port: 0, tls: { certFile: a.certFile, keyFile: a.keyFile } },
    },
    {
      kubeConfig: localKubeConfig(a.kubeconfig),
      snapshot: () => EMPTY_SNAPSHOT,
      metrics: new client.Registry(),
      log: createLogger('silent'),
    },
  );
  process.on('message', (m) => {
    if (m === 'stats') process.send!({ cpu: process.cpuUsage(), rss: process.memoryUsage().rss });
    if (m === 'exit') void alliance.close().then(() => process.exit(0));
  });
  process.send!({ port: alliance.apiProxyPort });
} else {
  await main(Number(process.argv[2] ?? 1000));
}

async function main(events: number): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-api-proxy-'));
  const api = await startFakeApiServer({ clusterName: 'bench', bookmarkIntervalMs: 60_000 });
  const pki = testPki();
  const peer = deckhousePeer('5e3b1c2a-9d8f-4e7a-b6c5-0a1b2c3d4e5f');
  writeFileSync(path.join(dir, 'tls.crt'), pki.serverCertPem);
  writeFileSync(path.join(dir, 'tls.key'), pki.serverKeyPem);
  const args: ChildArgs = {
    kubeconfig: api.writeKubeconfig(dir),
    certFile: path.join(dir, 'tls.crt'),
    keyFile: path.join(dir, 'tls.key'),
    peer: { uuid: peer.uuid, pubPem: peer.pubPem },
  };
  const child = fork(fileURLToPath(import.meta.url), ['proxy-child', JSON.stringify(args)], { execArgv: ['--import', 'tsx'] });
  const reply = <T>(): Promise<T> => new Promise((resolve) => child.once('message', (m) => resolve(m as T)));
  const { port } = await reply<{ port: number }>();
  const stats = (): Promise<{ cpu: NodeJS.CpuUsage; rss: number }> => {
    const p = reply<{ cpu: NodeJS.CpuUsage; rss: number }>();
    child.send('stats');
    return p;
  };

  const now = Math.floor(Date.now() / 1000);
  const token = handMadeToken(peer, { ...deckhouseClaims(peer.uuid, OWN_UUID, 'api', now), exp: now + 3600 });
  const slice = (i: number) => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'bench-1', namespace: 'bench' },
    addressType: 'IPv4',
    endpoints: [{ addresses: [`10.0.${(i >> 8) & 255}.${i & 255}`] }],
  });
  api.upsert(slice(0));
  const rv = api.resourceVersion;
  const watchPath = `/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices?watch=true&resourceVersion=${rv}`;
  const arrivals = { direct: new Map<string, bigint>(), proxy: new Map<string, bigint>() };
  const watch = (url: string, auth: string, into: Map<string, bigint>): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = https.request(url, { headers: { authorization: `Bearer ${auth}` }, ca: pki.caPem, agent: false }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`watch ${url}: HTTP ${res.statusCode}`));
        let buf = '';
        res.on('data', (d: Buffer) => {
          const t = process.hrtime.bigint();
          buf += d.toString();
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const ev = JSON.parse(buf.slice(0, nl)) as { object: { metadata: { resourceVersion: string } } };
            buf = buf.slice(nl + 1);
            into.set(ev.object.metadata.resourceVersion, t);
          }
        });
        resolve();
      });
      req.on('error', reject);
      req.end();
    });
  await watch(`${api.url}${watchPath}`, api.adminToken, arrivals.direct);
  await watch(`https://127.0.0.1:${port}${watchPath}`, token, arrivals.proxy);

  const until = async (ok: () => boolean): Promise<void> => {
    while (!ok()) await new Promise((r) => setImmediate(r));
  };
  const warm = 100;
  let before = await stats();
  const added: number[] = [];
  for (let i = 1; i <= warm + events; i++) {
    if (i === warm + 1) before = await stats();
    api.upsert(slice(i));
    const v = api.resourceVersion;
    await until(() => arrivals.direct.has(v) && arrivals.proxy.has(v));
    if (i > warm) added.push(Number(arrivals.proxy.get(v)! - arrivals.direct.get(v)!) / 1000);
  }
  const after = await stats();
  added.sort((a, b) => a - b);
  const q = (p: number): number => added[Math.min(added.length - 1, Math.floor(p * added.length))]!;
  const cpuMs = (after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / 1000;
  console.log(
    JSON.stringify({
      events,
      addedLatencyUs: { p50: Math.round(q(0.5)), p99: Math.round(q(0.99)) },
      proxyCpuMsPer1000Events: Math.round((cpuMs / events) * 1000 * 10) / 10,
      proxyRssMiB: Math.round(after.rss / 2 ** 20),
    }),
  );
  child.send('exit');
  await new Promise((r) => (child as ChildProcess).once('exit', r));
  await api.close();
}
