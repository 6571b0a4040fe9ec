// meshfed.v1.AdminService: lets a test harness apply a mesh description over gRPC.
// Each request names a source; REPLACE swaps what that source holds, MERGE replaces only
// the clusters, services and resources it names (cheap enough for benchmarks' churn).
import { fromBinary, toBinary, create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  AdminService,
  ApplyMeshRequestSchema,
  ApplyMeshResponseSchema,
  ApplyMode,
  type ApplyMeshRequest,
  type ApplyMeshResponse,
} from '../../gen/meshfed/v1/admin_pb.js';
import { MeshSchema, type Cluster } from '../../gen/meshfed/v1/mesh_pb.js';
import type { Registry } from '../../registry/registry.js';
import { formatPath, MeshFileError } from '../file/errors.js';
import { meshToSource } from '../file/to-model.js';
import { validateMesh } from '../file/validate.js';

export function registerAdminApi(server: grpc.Server, registry: Registry, log: Logger): void {
  const method = AdminService.method.applyMesh;
  const definition: grpc.ServiceDefinition = {
    ApplyMesh: {
      path: `/${AdminService.typeName}/${method.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (m: ApplyMeshRequest) => Buffer.from(toBinary(ApplyMeshRequestSchema, m)),
      requestDeserialize: (b: Buffer) => fromBinary(ApplyMeshRequestSchema, b),
      responseSerialize: (m: ApplyMeshResponse) => Buffer.from(toBinary(ApplyMeshResponseSchema, m)),
      responseDeserialize: (b: Buffer) => fromBinary(ApplyMeshResponseSchema, b),
    },
  };
  server.addService(definition, {
    ApplyMesh: (call: grpc.ServerUnaryCall<ApplyMeshRequest, ApplyMeshResponse>, done: grpc.sendUnaryData<ApplyMeshResponse>) => {
      try {
        done(null, apply(registry, call.request));
      } catch (err) {
        const message = err instanceof MeshFileError ? err.message : `cannot apply the mesh: ${(err as Error).message}`;
        log.warn({ source: call.request.source }, message);
        done({ code: grpc.status.INVALID_ARGUMENT, details: message });
      }
    },
  });
}

/** The clusters each admin source holds: a merge may name services of clusters it does not repeat. */
const held = new WeakMap<Registry, Map<string, Cluster[]>>();

function apply(registry: Registry, req: ApplyMeshRequest): ApplyMeshResponse {
  const id = `admin:${req.source || 'default'}`;
  let bySource = held.get(registry);
  if (!bySource) held.set(registry, (bySource = new Map()));
  const incoming = req.mesh ?? create(MeshSchema);
  const merge = req.mode === ApplyMode.MERGE;
  const clusters = merge ? mergeBy(bySource.get(id) ?? [], incoming.clusters, (c) => c.id) : incoming.clusters;
  const checked = create(MeshSchema, { clusters, services: incoming.services, resources: incoming.resources });
  const problems = validateMesh(checked);
  if (problems.length > 0) throw new MeshFileError(id, problems.map((p) => ({ path: formatPath(p.segments), message: p.message })));
  const model = meshToSource(checked, id);
  bySource.set(id, clusters);
  const changed = merge ? registry.patchSource(id, { clusters: model.clusters, services: model.services, raw: model.raw }) : registry.setSource(id, model);
  return create(ApplyMeshResponseSchema, { changedServices: changed, services: registry.source(id)?.services.size ?? 0 });
}

function mergeBy<T>(base: readonly T[], update: readonly T[], key: (t: T) => string): T[] {
  const out = new Map(base.map((t) => [key(t), t]));
  for (const t of update) out.set(key(t), t);
  return [...out.values()];
}
