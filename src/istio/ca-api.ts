// Istio's CA API on the wire (istio.v1.auth.IstioCertificateService/CreateCertificate): the method path and the
// protobuf codecs, shared by the server (src/auth/istio-ca.ts) and its clients (the agent's --csr mode, the tests).
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  IstioCertificateRequestSchema,
  IstioCertificateResponseSchema,
  IstioCertificateService,
  type IstioCertificateRequest,
  type IstioCertificateResponse,
} from '../gen/istio/v1/auth/ca_pb.js';

export const ISTIO_CA_METHOD = `/${IstioCertificateService.typeName}/${IstioCertificateService.method.createCertificate.name}`;

export const caRequestCodec = {
  serialize: (m: IstioCertificateRequest): Buffer => Buffer.from(toBinary(IstioCertificateRequestSchema, m)),
  deserialize: (b: Buffer): IstioCertificateRequest => fromBinary(IstioCertificateRequestSchema, b),
};

export const caResponseCodec = {
  serialize: (m: IstioCertificateResponse): Buffer => Buffer.from(toBinary(IstioCertificateResponseSchema, m)),
  deserialize: (b: Buffer): IstioCertificateResponse => fromBinary(IstioCertificateResponseSchema, b),
};
