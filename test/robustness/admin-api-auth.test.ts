// Row 9 of issue 14: the admin gRPC API on a TLS port. Anonymous callers once applied a raw Secret
// named `default`, which replaced every workload's CA-issued certificate on its open SDS stream.
// Now: only a mesh-CA client certificate of a listed admin identity may call it, and raw Secrets
// are refused unless allowed.
import { create, fromBinary, fromJson, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Meshfed, startMeshfed } from '../../src/app.js';
import { TypeUrl } from '../../src/envoy/protos.js';
import { ApplyMeshRequestSchema, ApplyMeshResponseSchema, type ApplyMeshResponse } from '../../src/gen/meshfed/v1/admin_pb.js';
import { MeshSchema } from '../../src/gen/meshfed/v1/mesh_pb.js';
import { memoryCaStore } from '../../src/pki/index.js';
import { dataText, SERVER_NAME, tlsStream } from '../helpers/mesh-tls.js';

const TD = 'cluster-a.local';
const ADMIN = { trustDomain: TD, namespace: 'ops', serviceAccount: 'mesh-admin' };
const WORKLOAD = { trustDomain: TD, namespace: 'abc', serviceAccount: 'foo' };
const CLUSTERS = [{ id: 'cluster-a', network: 'network-a', domain: TD }];
/** What the attacker sent: a Secret named like every workload's certificate. */
const FAKE_DEFAULT = { '@type': TypeUrl.Secret, name: 'default', generic_secret: { secret: { inline_string: 'attacker' } } };
const SERVICE = {
  name: 'svc',
  namespace: 'abc',
  cluster: 'cluster-a',
  ports: [{ name: 'http', port: 80 }],
  endpoints: [{ address: '10.0.0.1' }],
};

let meshfed: Meshfed;
let rootPem: string;
const closers: Array<{ close(): void }> = [];

beforeAll(async () => {
  meshfed = await startMeshfed({
    xdsHost: '127.0.0.1',
    xdsPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    debugPort: 0,
    debounceMs: 0,
    pki: { trustDomain: TD, caStore: memoryCaStore() },
    xdsTls: { dnsNames: [SERVER_NAME] },
    enableAdminApi: true,
    adminIdentities: [`spiffe://${TD}/ns/ops/sa/mesh-admin`],
    log: pino({ level: 'silent' }),
  });
  rootPem = meshfed.pki!.ca.roots.join('');
});

afterAll(async () => {
  for (const c of closers) c.close();
  await meshfed?.stop(300);
});

type Caller = 'anonymous' | typeof ADMIN | typeof WORKLOAD;

/** A client of the TLS port, with the caller's mesh-CA certificate (none when anonymous). */
function tlsClient(caller: Caller): grpc.Client {
  const cert = caller === 'anonymous' ? undefined : meshfed.pki!.ca.issue(caller);
  const creds = cert
    ? grpc.credentials.createSsl(Buffer.from(rootPem), Buffer.from(cert.privateKeyPem), Buffer.from(cert.certChainPem))
    : grpc.credentials.createSsl(Buffer.from(rootPem));
  const client = new grpc.Client(`127.0.0.1:${meshfed.xdsPort}`, creds, { 'grpc.ssl_target_name_override': SERVER_NAME });
  closers.push(client);
  return client;
}

function plaintextClient(port: number): grpc.Client {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  closers.push(client);
  return client;
}

function apply(client: grpc.Client, mesh: object): Promise<ApplyMeshResponse> {
  const req = create(ApplyMeshRequestSchema, { source: 'harness', mesh: fromJson(MeshSchema, mesh as never) });
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      '/meshfed.v1.AdminService/ApplyMesh',
      (m: typeof req) => Buffer.from(toBinary(ApplyMeshRequestSchema, m)),
      (b: Buffer) => fromBinary(ApplyMeshResponseSchema, b),
      req,
      (err, res) => (err ? reject(err) : resolve(res!)),
    ),
  );
}

/** Names of the raw Secrets the admin API's source holds. */
function adminSecrets(m: Meshfed): string[] {
  return [...(m.registry.source('admin:harness')?.raw.values() ?? [])].filter((r) => r.typeUrl === TypeUrl.Secret).map((r) => r.name);
}

async function refusal(p: Promise<unknown>): Promise<grpc.ServiceError> {
  const err = await p.then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
  if (!err) throw new Error('the call was accepted');
  return err;
}

describe('admin API on a TLS port', () => {
  it('an anonymous caller is refused with UNAUTHENTICATED, and the mesh is unchanged', async () => {
    const err = await refusal(apply(tlsClient('anonymous'), { clusters: CLUSTERS, services: [SERVICE] }));
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err.details).toContain('client certificate of an admin identity');
    expect(meshfed.registry.source('admin:harness')).toBeUndefined();
  });

  it('a workload certificate that is not an admin identity is refused with PERMISSION_DENIED', async () => {
    const err = await refusal(apply(tlsClient(WORKLOAD), { clusters: CLUSTERS, services: [SERVICE] }));
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toBe(`spiffe://${TD}/ns/abc/sa/foo is not an admin identity (--admin-identities)`);
  });

  it('an admin identity applies a mesh', async () => {
    const res = await apply(tlsClient(ADMIN), { clusters: CLUSTERS, services: [SERVICE] });
    expect(res.services).toBe(1);
    expect(meshfed.registry.source('admin:harness')?.services.size).toBe(1);
  });

  it("even an admin's raw Secret is refused, and workloads keep their CA-issued certificate", async () => {
    const sds = tlsStream(meshfed.xdsPort, rootPem, { cert: meshfed.pki!.ca.issue(WORKLOAD), names: ['default'] });
    closers.push(sds);
    const first = await sds.stream.next(5000);
    const before = dataText((first.resources[0]!.body['tls_certificate'] as Record<string, unknown>)['certificate_chain']);
    expect(new X509Certificate(before).subjectAltName).toContain(`URI:spiffe://${TD}/ns/abc/sa/foo`);

    const err = await refusal(apply(tlsClient(ADMIN), { clusters: CLUSTERS, resources: [FAKE_DEFAULT] }));
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toContain('raw Secrets are refused');
    expect(adminSecrets(meshfed)).toEqual([]);

    // A new stream for `default` still gets the workload's certificate, not the attacker's Secret.
    const again = tlsStream(meshfed.xdsPort, rootPem, { cert: meshfed.pki!.ca.issue(WORKLOAD), names: ['default'] });
    closers.push(again);
    const now = (await again.stream.next(5000)).resources[0]!.body;
    expect(now['generic_secret']).toBeUndefined();
    expect(
      new X509Certificate(dataText((now['tls_certificate'] as Record<string, unknown>)['certificate_chain'])).subjectAltName,
    ).toContain(`URI:spiffe://${TD}/ns/abc/sa/foo`);
  });

  it('an admin identity that no mesh-CA certificate can carry is refused at start', async () => {
    const start = startMeshfed({
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      debugPort: 0,
      pki: { trustDomain: TD, caStore: memoryCaStore() },
      xdsTls: { dnsNames: [SERVER_NAME] },
      enableAdminApi: true,
      adminIdentities: ['spiffe://other.local/ns/ops/sa/mesh-admin'],
      log: pino({ level: 'silent' }),
    });
    await expect(start).rejects.toThrow(
      `--admin-identities: "spiffe://other.local/ns/ops/sa/mesh-admin" is not a SPIFFE id of trust domain ${TD}`,
    );
  });
});

describe('admin API on a plaintext port (test harnesses)', () => {
  it('takes anonymous calls, but raw Secrets only with adminApiAllowSecrets', async () => {
    const plain = await startMeshfed({
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      debugPort: 0,
      debounceMs: 0,
      enableAdminApi: true,
      log: pino({ level: 'silent' }),
    });
    const allowing = await startMeshfed({
      xdsHost: '127.0.0.1',
      xdsPort: 0,
      adminHost: '127.0.0.1',
      adminPort: 0,
      debugPort: 0,
      debounceMs: 0,
      enableAdminApi: true,
      adminApiAllowSecrets: true,
      log: pino({ level: 'silent' }),
    });
    try {
      expect((await apply(plaintextClient(plain.xdsPort), { clusters: CLUSTERS, services: [SERVICE] })).services).toBe(1);
      expect((await refusal(apply(plaintextClient(plain.xdsPort), { clusters: CLUSTERS, resources: [FAKE_DEFAULT] }))).code).toBe(
        grpc.status.PERMISSION_DENIED,
      );
      await apply(plaintextClient(allowing.xdsPort), { clusters: CLUSTERS, resources: [FAKE_DEFAULT] });
      expect(adminSecrets(allowing)).toEqual(['default']);
    } finally {
      await plain.stop(100);
      await allowing.stop(100);
    }
  });
});
