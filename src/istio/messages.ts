// Istio's messages as meshfed writes and reads them: the hand-written protos under proto/istio,
// compiled by protoc-gen-es into src/gen/istio. One registry resolves their Anys for JSON.
import { createRegistry } from '@bufbuild/protobuf';
import type { Any } from '@bufbuild/protobuf/wkt';
import { DestinationRuleSchema } from '../gen/istio/networking/v1alpha3/destination_rule_pb.js';
import { ServiceEntrySchema } from '../gen/istio/networking/v1alpha3/service_entry_pb.js';
import { ResourceSchema } from '../gen/istio/mcp/v1alpha1/resource_pb.js';

export { ResourceSchema } from '../gen/istio/mcp/v1alpha1/resource_pb.js';
export { MetadataSchema } from '../gen/istio/mcp/v1alpha1/metadata_pb.js';
export {
  ServiceEntrySchema,
  ServicePortSchema,
  ServiceEntry_Location,
  ServiceEntry_Resolution,
} from '../gen/istio/networking/v1alpha3/service_entry_pb.js';
export { WorkloadEntrySchema } from '../gen/istio/networking/v1alpha3/workload_entry_pb.js';
export {
  DestinationRuleSchema,
  TrafficPolicySchema,
  ClientTLSSettingsSchema,
  ClientTLSSettings_TLSmode,
} from '../gen/istio/networking/v1alpha3/destination_rule_pb.js';

/** For proto3 JSON of a Resource and its body (debug pages, goldens). */
export const ISTIO_REGISTRY = createRegistry(ResourceSchema, ServiceEntrySchema, DestinationRuleSchema);

/** What a generator of Istio config gives for one resource (its name is `<namespace>/<name>`). */
export interface IstioConfigBody {
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** The Istio message, packed (anyPack). */
  readonly spec: Any;
}
