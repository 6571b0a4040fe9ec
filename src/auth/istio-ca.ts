// Istio's CA API (istio.v1.auth.IstioCertificateService/CreateCertificate) on the TLS xDS port, for
// istio-agent (CA_ADDR) and `meshfed agent --csr`. The caller is authenticated as for SDS (a
// mesh-CA client certificate, or a service-account token through TokenReview); the certificate
// is for that identity whatever the CSR asks for, as istiod does: only the CSR's public key is
// used, once its signature proves the caller holds the private key.
//
// Choices: the lifetime is the requested one, at most --workload-cert-ttl (istiod refuses more
// than 90 days; meshfed gives no CSR client a longer certificate than its own SDS clients get);
// a token caller's ClusterID header must be empty or the local cluster's id (TokenReview goes to
// the local apiserver only). Errors: UNAUTHENTICATED for credentials, UNAVAILABLE while they
// cannot be checked (istio-agent retries), INVALID_ARGUMENT for the CSR.
import { caRequestCodec, caResponseCodec, ISTIO_CA_METHOD } from '../istio/ca-api.js';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { IstioCertificateResponseSchema, type IstioCertificateRequest, type IstioCertificateResponse } from '../gen/istio/v1/auth/ca_pb.js';
import { clip } from '../log.js';
import { pemBlob } from '../envoy/names.js';
import { type CertificateAuthority, CsrError, parseCsr } from '../pki/index.js';
import { splitPems } from '../pki/x509.js';
import type { MeshAuthenticator } from './authenticators.js';

export interface IstioCaOptions {
  readonly ca: CertificateAuthority;
  readonly auth: MeshAuthenticator;
  /** The local cluster's id: the only ClusterID (besides none) a token caller may name. */
  readonly clusterId: string;
  readonly log: Logger;
}

export function registerIstioCa(server: grpc.Server, opts: IstioCaOptions): void {
  const definition: grpc.ServiceDefinition = {
    CreateCertificate: {
      path: ISTIO_CA_METHOD,
      requestStream: false,
      responseStream: false,
      requestSerialize: caRequestCodec.serialize,
      requestDeserialize: caRequestCodec.deserialize,
      responseSerialize: caResponseCodec.serialize,
      responseDeserialize: caResponseCodec.deserialize,
    },
  };
  server.addService(definition, {
    CreateCertificate: (
      call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
      done: grpc.sendUnaryData<IstioCertificateResponse>,
    ) => {
      createCertificate(call, opts).then(
        (res) => done(null, res),
        (err: Error & { code?: grpc.status }) => {
          const code = err.code ?? grpc.status.INTERNAL;
          if (code === grpc.status.INTERNAL) opts.log.error({ err }, 'issuing a certificate failed');
          else
            opts.log.warn({ peer: call.getPeer(), code: grpc.status[code], reason: clip(err.message) }, 'refusing a certificate request');
          done({ code, details: clip(err.message) });
        },
      );
    },
  });
}

function fail(code: grpc.status, message: string): Error & { code: grpc.status } {
  return Object.assign(new Error(message), { code });
}

async function createCertificate(
  call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
  opts: IstioCaOptions,
): Promise<IstioCertificateResponse> {
  // The authenticator reads only the peer certificate and the metadata, which a unary call has too.
  const outcome = await opts.auth.authenticate(call as unknown as grpc.ServerDuplexStream<unknown, Buffer>);
  if (outcome.kind === 'unavailable') throw fail(grpc.status.UNAVAILABLE, outcome.reason);
  if (outcome.kind === 'rejected') throw fail(grpc.status.UNAUTHENTICATED, outcome.reason);
  if (outcome.kind !== 'authenticated')
    throw fail(
      grpc.status.UNAUTHENTICATED,
      'a certificate needs a service-account token (authorization: Bearer) or a mesh-CA client certificate',
    );
  const { identity } = outcome;
  const clusterId = String(call.metadata.get('clusterid')[0] ?? '');
  if (identity.via === 'token' && clusterId !== '' && clusterId !== opts.clusterId) {
    throw fail(
      grpc.status.UNAUTHENTICATED,
      `ClusterID ${clip(clusterId, 256)} is not this cluster (${opts.clusterId}): meshfed reviews tokens of its own cluster only`,
    );
  }
  const req = call.request;
  let spki: Buffer;
  try {
    spki = parseCsr(req.csr).spki;
  } catch (err) {
    if (err instanceof CsrError) throw fail(grpc.status.INVALID_ARGUMENT, err.message);
    throw err;
  }
  const max = opts.ca.workloadTtlMs;
  const asked = Number(req.validityDuration) * 1000;
  const ttlMs = asked > 0 ? Math.min(asked, max) : max;
  const cert = opts.ca.certify(
    { trustDomain: identity.trustDomain, namespace: identity.namespace, serviceAccount: identity.serviceAccount },
    spki,
    { ttlMs },
  );
  opts.log.debug({ identity: identity.spiffeId, notAfter: cert.notAfter.toISOString() }, 'certificate issued for a CSR');
  // Leaf, the CA chain, then every trusted root as one last element (istio-agent takes the last as
  // its root bundle and needs at least two).
  const chain = splitPems(cert.certChainPem).filter((p) => p !== cert.rootPem);
  return create(IstioCertificateResponseSchema, { certChain: [...chain, pemBlob(opts.ca.roots)] });
}
