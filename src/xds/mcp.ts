// Istio config (ServiceEntry, DestinationRule, …) as store entries: each resource packed in an
// istio.mcp.v1alpha1.Resource, the envelope istiod's config-source client reads. Its metadata
// version is the content hash, so it changes exactly when the name, labels, annotations or
// body do; istiod updates a stored config only when that version changes.
import { create, fromBinary, toBinary, toJson } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { createHash } from 'node:crypto';
import { MCP_RESOURCE_TYPE_URL } from '../istio/config-types.js';
import { type IstioConfigBody, ISTIO_REGISTRY, ResourceSchema } from '../istio/messages.js';
import { EncodedEntry, type Entry } from './resource.js';

/**
 * Every resource's create_time. istiod orders configs by it (oldest first: the first
 * DestinationRule for a host gives its traffic policy in a merge); unset it reads as 1970. A
 * constant is the same on every replica and across restarts, and older than any config a user
 * writes, so meshfed's ISTIO_MUTUAL for an import is not overridden by a later rule.
 */
export const MCP_CREATE_TIME_MS = Date.UTC(2020, 0, 1);

const mcpJson = (_typeUrl: string, value: Uint8Array): Record<string, unknown> => ({
  '@type': MCP_RESOURCE_TYPE_URL,
  ...(toJson(ResourceSchema, fromBinary(ResourceSchema, value), { registry: ISTIO_REGISTRY }) as Record<string, unknown>),
});

/** Encodes one Istio config resource; `previous` is kept when nothing changed. */
export function encodeMcpEntry(typeUrl: string, name: string, body: IstioConfigBody, previous?: Entry): Entry {
  const resource = create(ResourceSchema, {
    metadata: { name, createTime: timestampFromMs(MCP_CREATE_TIME_MS), labels: sorted(body.labels), annotations: sorted(body.annotations) },
    body: body.spec,
  });
  const version = createHash('sha256').update(toBinary(ResourceSchema, resource)).digest('hex').slice(0, 16);
  if (previous?.version === version && previous.name === name) return previous;
  resource.metadata!.version = version;
  const value = toBinary(ResourceSchema, resource);
  return new EncodedEntry(typeUrl, name, version, MCP_RESOURCE_TYPE_URL, value, undefined, mcpJson);
}

/** Map fields are written in key order, so equal maps give equal bytes. */
function sorted(m: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
