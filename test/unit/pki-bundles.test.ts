// The federated trust bundle: roots per trust domain, the SPIFFE JWKS document and its HTTP endpoint.
import { createPublicKey, X509Certificate } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { MeshCluster } from '../../src/model/mesh.js';
import {
  CertificateAuthority,
  memoryCaStore,
  serveSpiffeBundle,
  SPIFFE_BUNDLE_PATH,
  spiffeValidatorConfig,
  TrustBundles,
} from '../../src/pki/index.js';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((f) => f()));

const cluster = (id: string, domain: string, rootCaPem: string): MeshCluster => ({
  id,
  network: `net-${id}`,
  domain,
  rootCaPem,
  gateways: [],
});
const clusters = (...cs: MeshCluster[]): Map<string, MeshCluster> => new Map(cs.map((c) => [c.id, c]));
const rootOf = async (td: string, keyType: 'ec' | 'rsa' = 'ec'): Promise<string> =>
  (await CertificateAuthority.open({ trustDomain: td, store: memoryCaStore(), keyType })).roots[0]!;

async function setup(): Promise<{ ca: CertificateAuthority; bundles: TrustBundles; changes: () => number }> {
  const ca = await CertificateAuthority.open({ trustDomain: 'cluster-a.local', store: memoryCaStore() });
  const bundles = new TrustBundles(ca);
  let n = 0;
  bundles.onChange(() => n++);
  cleanups.push(() => (bundles.close(), ca.close()));
  return { ca, bundles, changes: () => n };
}

describe('trust bundles by domain', () => {
  it('keeps each remote root under its own trust domain; same-domain peers join the local bundle', async () => {
    const { ca, bundles, changes } = await setup();
    const [rootB, rootA2] = [await rootOf('cluster-b.local'), await rootOf('cluster-a.local')];
    const local = ca.roots[0]!;
    expect([...bundles.byDomain()]).toEqual([['cluster-a.local', [local]]]);

    bundles.setClusters(
      clusters(
        cluster('a', 'cluster-a.local', local), // the local cluster itself: no duplicate
        cluster('a2', 'cluster-a.local', rootA2), // a multicluster peer of the same domain
        cluster('b', 'cluster-b.local', rootB),
        cluster('c', 'cluster-c.local', ''), // no root known yet: no bundle
      ),
    );
    expect([...bundles.byDomain()]).toEqual([
      ['cluster-a.local', [local, rootA2].sort()],
      ['cluster-b.local', [rootB]],
    ]);
    expect(changes()).toBe(1);
    expect(bundles.allPems()).toBe([local, rootA2, rootB].sort().join(''));
    expect(spiffeValidatorConfig(bundles.byDomain())).toEqual({
      trust_domains: [
        { name: 'cluster-a.local', trust_bundle: { inline_string: [local, rootA2].sort().join('') } },
        { name: 'cluster-b.local', trust_bundle: { inline_string: rootB } },
      ],
    });

    // The same clusters again: nothing changed, nobody is told.
    bundles.setClusters(
      clusters(cluster('a', 'cluster-a.local', local), cluster('a2', 'cluster-a.local', rootA2), cluster('b', 'cluster-b.local', rootB)),
    );
    expect(changes()).toBe(1);
  });

  it('ignores a remote root that is not a CA certificate or not a certificate, keeping the rest', async () => {
    const { ca, bundles } = await setup();
    const rootB = await rootOf('cluster-b.local');
    const leaf = ca
      .issue({ trustDomain: 'cluster-a.local', namespace: 'n', serviceAccount: 's' })
      .certChainPem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!;
    const warnings: string[] = [];
    const log = { warn: (_o: unknown, msg: string) => warnings.push(msg) } as unknown as import('pino').Logger;
    const withLog = new TrustBundles(ca, { log });
    cleanups.push(() => withLog.close());
    const broken = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    withLog.setClusters(clusters(cluster('b', 'cluster-b.local', rootB + leaf + broken)));
    expect(withLog.byDomain().get('cluster-b.local')).toEqual([rootB]);
    expect(warnings).toEqual([
      expect.stringMatching(/ignoring a root of cluster b: .*is not a CA certificate/),
      expect.stringMatching(/ignoring a root of cluster b: not a parsable certificate/),
    ]);
    expect(bundles.byDomain().size).toBe(1);
  });

  it('follows the CA: a rotation adds the next root to the local bundle at once', async () => {
    const { ca, bundles, changes } = await setup();
    await ca.rotateRoot();
    expect(changes()).toBe(1);
    expect(bundles.byDomain().get('cluster-a.local')).toEqual([...ca.roots].sort());
    expect(bundles.byDomain().get('cluster-a.local')).toHaveLength(2);
  });
});

describe('SPIFFE bundle (JWKS)', () => {
  it('carries every root as an x509-svid JWK with its certificate, for EC and RSA keys', async () => {
    const { ca, bundles } = await setup();
    const rsaRoot = await rootOf('cluster-a.local', 'rsa');
    bundles.setClusters(clusters(cluster('peer', 'cluster-a.local', rsaRoot)));
    const doc = bundles.spiffeBundleJwks('cluster-a.local')!;
    expect(doc.spiffe_refresh_hint).toBe(300);
    expect(doc.keys).toHaveLength(2);
    for (const key of doc.keys) {
      expect(key['use']).toBe('x509-svid');
      const x5c = key['x5c'] as string[];
      expect(x5c).toHaveLength(1);
      const cert = new X509Certificate(Buffer.from(x5c[0]!, 'base64'));
      expect([ca.roots[0], rsaRoot]).toContain(cert.toString());
      // The key parameters are those of the certificate's key.
      const fromJwk = createPublicKey({ key: key as import('node:crypto').JsonWebKey, format: 'jwk' });
      expect(fromJwk.equals(cert.publicKey)).toBe(true);
      if (key['kty'] === 'EC') expect(key).toMatchObject({ crv: 'P-256', x: expect.any(String), y: expect.any(String) });
      else expect(key).toMatchObject({ kty: 'RSA', n: expect.any(String), e: 'AQAB' });
      expect(key).not.toHaveProperty('d');
    }
    expect(bundles.spiffeBundleJwks('nowhere.local')).toBeUndefined();
  });

  it('spiffe_sequence increases with every change of that domain only', async () => {
    const { ca, bundles } = await setup();
    const rootB = await rootOf('cluster-b.local');
    const seq = (td: string): number => bundles.spiffeBundleJwks(td)!.spiffe_sequence;
    bundles.setClusters(clusters(cluster('b', 'cluster-b.local', rootB)));
    const [a0, b0] = [seq('cluster-a.local'), seq('cluster-b.local')];
    await ca.rotateRoot();
    expect(seq('cluster-a.local')).toBeGreaterThan(a0);
    expect(seq('cluster-b.local')).toBe(b0);
    const a1 = seq('cluster-a.local');
    await ca.activateRotation(); // same two roots, other order: no change
    expect(seq('cluster-a.local')).toBe(a1);
    bundles.setClusters(
      clusters(cluster('b', 'cluster-b.local', rootB), cluster('a2', 'cluster-a.local', await rootOf('cluster-a.local'))),
    );
    expect(seq('cluster-a.local')).toBeGreaterThan(a1);
  });

  it(`is served over HTTP at ${SPIFFE_BUNDLE_PATH}`, async () => {
    const { bundles } = await setup();
    const server = http.createServer((req, res) => serveSpiffeBundle(bundles, req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${SPIFFE_BUNDLE_PATH}`;
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual(bundles.spiffeBundleJwks('cluster-a.local'));
    expect((await fetch(url, { method: 'POST' })).status).toBe(405);
  });
});
