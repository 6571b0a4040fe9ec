// istio-agent's side of Istio's CA API: CreateCertificate over TLS, with a Bearer token and the
// ClusterID header as istio-agent sends them (security/pkg/nodeagent/caclient/providers/citadel).
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { IstioCertificateRequestSchema, type IstioCertificateResponse } from '../../src/gen/istio/v1/auth/ca_pb.js';
import { caRequestCodec, caResponseCodec, ISTIO_CA_METHOD } from '../../src/istio/ca-api.js';
import { SERVER_NAME } from './mesh-tls.js';

export interface CaCall {
  readonly csr: string;
  readonly validitySec?: number;
  readonly token?: string;
  readonly clusterId?: string;
  /** A client certificate instead of (or with) a token. */
  readonly cert?: { certChainPem: string; privateKeyPem: string };
}

export async function createCertificate(port: number, rootPem: string, c: CaCall): Promise<string[]> {
  const creds = c.cert
    ? grpc.credentials.createSsl(Buffer.from(rootPem), Buffer.from(c.cert.privateKeyPem), Buffer.from(c.cert.certChainPem))
    : grpc.credentials.createSsl(Buffer.from(rootPem));
  const client = new grpc.Client(`127.0.0.1:${port}`, creds, { 'grpc.ssl_target_name_override': SERVER_NAME });
  const md = new grpc.Metadata();
  if (c.token) md.set('authorization', `Bearer ${c.token}`);
  if (c.clusterId !== undefined) md.set('ClusterID', c.clusterId);
  const req = create(IstioCertificateRequestSchema, {
    csr: c.csr,
    validityDuration: BigInt(c.validitySec ?? 0),
    metadata: { CertSigner: '' },
  });
  try {
    const res = await new Promise<IstioCertificateResponse>((resolve, reject) =>
      client.makeUnaryRequest(ISTIO_CA_METHOD, caRequestCodec.serialize, caResponseCodec.deserialize, req, md, (err, value) =>
        err ? reject(err) : resolve(value!),
      ),
    );
    return res.certChain;
  } finally {
    client.close();
  }
}
