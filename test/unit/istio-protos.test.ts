// The hand-written Istio protos (proto/istio): every message survives a round trip through its
// bytes, and its top-level field numbers are those of istio/api (as listed in
// ../shared/reference/istio-interfaces.md), read back with meshfed's own wire scanner rather than
// the generated code, so a wrong number in a .proto file fails here.
import { create, type DescMessage, equals, fromBinary, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { anyPack, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { MetadataSchema } from '../../src/gen/istio/mcp/v1alpha1/metadata_pb.js';
import { ResourceSchema } from '../../src/gen/istio/mcp/v1alpha1/resource_pb.js';
import {
  ClientTLSSettings_TLSmode,
  ClientTLSSettingsSchema,
  DestinationRuleSchema,
  SubsetSchema,
  TrafficPolicySchema,
} from '../../src/gen/istio/networking/v1alpha3/destination_rule_pb.js';
import {
  ServiceEntry_Location,
  ServiceEntry_Resolution,
  ServiceEntrySchema,
  ServicePortSchema,
} from '../../src/gen/istio/networking/v1alpha3/service_entry_pb.js';
import { WorkloadSelectorSchema } from '../../src/gen/istio/networking/v1alpha3/sidecar_pb.js';
import { WorkloadEntrySchema } from '../../src/gen/istio/networking/v1alpha3/workload_entry_pb.js';
import { WorkloadSelectorSchema as TypeWorkloadSelectorSchema } from '../../src/gen/istio/type/v1beta1/selector_pb.js';
import { IstioCertificateRequestSchema, IstioCertificateResponseSchema } from '../../src/gen/istio/v1/auth/ca_pb.js';
import { scanFields } from '../helpers/wire.js';

const workloadEntry = {
  address: '192.0.2.2',
  ports: { http: 15443 },
  labels: { 'security.istio.io/tlsMode': 'istio' },
  network: 'network-b',
  locality: 'r/z',
  weight: 2,
  serviceAccount: 'bar',
};
const tls = {
  mode: ClientTLSSettings_TLSmode.ISTIO_MUTUAL,
  clientCertificate: '/c.pem',
  privateKey: '/k.pem',
  caCertificates: '/ca.pem',
  subjectAltNames: ['spiffe://cluster-b.local/ns/xyz/sa/bar'],
  sni: 'outbound_.8080_._.bar.xyz.svc.cluster-b.local',
  credentialName: 'cred',
  insecureSkipVerify: true,
  caCrl: '/crl.pem',
};
const serviceEntry = {
  hosts: ['bar.xyz.svc.cluster-b.local'],
  addresses: ['240.240.0.1'],
  ports: [{ number: 8080, protocol: 'HTTP', name: 'http', targetPort: 80 }],
  location: ServiceEntry_Location.MESH_INTERNAL,
  resolution: ServiceEntry_Resolution.DYNAMIC_DNS,
  endpoints: [workloadEntry],
  exportTo: ['*'],
  subjectAltNames: ['spiffe://cluster-b.local/ns/xyz/sa/bar'],
  workloadSelector: { labels: { app: 'bar' } },
};
const destinationRule = {
  host: 'bar.xyz.svc.cluster-b.local',
  trafficPolicy: { tls },
  subsets: [{ name: 'v1', labels: { version: 'v1' }, trafficPolicy: { tls } }],
  exportTo: ['.'],
  workloadSelector: { matchLabels: { app: 'client' } },
};
const metadata = {
  name: 'istio-config/bar',
  createTime: timestampFromMs(Date.UTC(2020, 0, 1)),
  version: 'abc',
  labels: { a: 'b' },
  annotations: { c: 'd' },
};

/** Each message fully set, and the field numbers istio/api gives it. */
const CASES: ReadonlyArray<[string, DescMessage, object, number[]]> = [
  ['istio.mcp.v1alpha1.Metadata', MetadataSchema, metadata, [1, 2, 3, 4, 5]],
  [
    'istio.mcp.v1alpha1.Resource',
    ResourceSchema,
    { metadata, body: anyPack(ServiceEntrySchema, create(ServiceEntrySchema, serviceEntry)) },
    [1, 2],
  ],
  ['istio.networking.v1alpha3.ServiceEntry', ServiceEntrySchema, serviceEntry, [1, 2, 3, 4, 5, 6, 7, 8, 9]],
  ['istio.networking.v1alpha3.ServicePort', ServicePortSchema, serviceEntry.ports[0]!, [1, 2, 3, 4]],
  ['istio.networking.v1alpha3.WorkloadEntry', WorkloadEntrySchema, workloadEntry, [1, 2, 3, 4, 5, 6, 7]],
  ['istio.networking.v1alpha3.WorkloadSelector', WorkloadSelectorSchema, { labels: { app: 'bar' } }, [1]],
  ['istio.type.v1beta1.WorkloadSelector', TypeWorkloadSelectorSchema, { matchLabels: { app: 'bar' } }, [1]],
  ['istio.networking.v1alpha3.DestinationRule', DestinationRuleSchema, destinationRule, [1, 2, 3, 4, 5]],
  ['istio.networking.v1alpha3.TrafficPolicy', TrafficPolicySchema, { tls }, [4]],
  ['istio.networking.v1alpha3.Subset', SubsetSchema, destinationRule.subsets[0]!, [1, 2, 3]],
  ['istio.networking.v1alpha3.ClientTLSSettings', ClientTLSSettingsSchema, tls, [1, 2, 3, 4, 5, 6, 7, 8, 9]],
  [
    'istio.v1.auth.IstioCertificateRequest',
    IstioCertificateRequestSchema,
    { csr: 'PEM', validityDuration: 86400n, metadata: { CertSigner: '' } },
    [1, 3, 4],
  ],
  ['istio.v1.auth.IstioCertificateResponse', IstioCertificateResponseSchema, { certChain: ['leaf', 'root'] }, [1]],
];

describe('hand-written Istio protos', () => {
  it.each(CASES)('%s round-trips with istio/api field numbers', (typeName, schema, init, fields) => {
    expect(schema.typeName).toBe(typeName);
    const msg = create(schema, init as MessageInitShape<DescMessage>);
    const bytes = toBinary(schema, msg);
    expect(equals(schema, fromBinary(schema, bytes), msg)).toBe(true);
    expect([...new Set(scanFields(bytes).map((f) => f.field))].sort((a, b) => a - b)).toEqual(fields);
  });

  it("writes enums with Istio's numbers", () => {
    expect([
      ServiceEntry_Location.MESH_INTERNAL,
      ServiceEntry_Resolution.STATIC,
      ServiceEntry_Resolution.DNS,
      ClientTLSSettings_TLSmode.ISTIO_MUTUAL,
    ]).toEqual([1, 1, 2, 3]);
  });
});
