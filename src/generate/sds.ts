// SDS: workload certificates come with the trust work; until then only raw secrets are served.
import type { MeshChanges } from '../model/mesh.js';
import type { ProxyView } from '../model/proxy.js';
import { TypeUrl } from '../envoy/protos.js';
import type { Generator } from './generator.js';

export const sdsGenerator: Generator = {
  typeUrl: TypeUrl.Secret,
  viewKey: (view: ProxyView) => `${view.namespace}/${view.serviceAccount}`,
  affected: (_changes: MeshChanges) => new Set<string>(),
  generate: () => [],
};
