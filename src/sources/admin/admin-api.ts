// meshfed.v1.AdminService: lets a test harness apply a mesh description over gRPC.
// Each request names a source; REPLACE swaps what that source holds, MERGE replaces only
// the clusters, services and resources it names (cheap enough for benchmarks' churn).
// On a TLS port only listed admin identities (mesh-CA client certificates) may call it; raw
// Secrets are refused unless allowed: one named `default` would be every workload's certificate.
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
import { TypeUrl } from '../../envoy/protos.js';
import type { StreamAuthenticator } from '../../xds/auth.js';
import type { Registry } from '../../registry/registry.js';
import { formatPath, MeshFileError } from '../file/errors.js';
import { meshToSource } from '../file/to-model.js';
import { validateMesh } from '../file/validate.js';

export interface AdminApiOptions {
  /** The TLS port's authenticator; undefined on a plaintext port, where every caller is let in. */
  readonly authenticator: StreamAuthenticator | undefined;
  /** SPIFFE ids allowed to call, with a client certificate. */
  readonly admins: readonly string[];
  readonly allowSecrets: boolean;
}

export function registerAdminApi(server: grpc.Server, registry: Registry, log: Logger, opts: AdminApiOptions): void {
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
      void handle(call).then(
        (response) => done(null, response),
        (err: unknown) => {
          const status: Partial<grpc.StatusObject> =
            err instanceof Refused
              ? err.status
              : {
                  code: grpc.status.INVALID_ARGUMENT,
                  details: err instanceof MeshFileError ? err.message : `cannot apply the mesh: ${(err as Error).message}`,
                };
          log.warn({ peer: call.getPeer() }, `admin API call refused: ${status.details}`);
          done(status);
        },
      );
    },
  });

  async function handle(call: grpc.ServerUnaryCall<ApplyMeshRequest, ApplyMeshResponse>): Promise<ApplyMeshResponse> {
    if (opts.authenticator) await authorize(opts.authenticator, opts.admins, call);
    if (!opts.allowSecrets && call.request.mesh?.resources.some((r) => r['@type'] === TypeUrl.Secret)) {
      throw new Refused(
        grpc.status.PERMISSION_DENIED,
        'raw Secrets are refused: they are served to every identity that asks for their name, over CA-issued certificates (--admin-api-allow-secrets)',
      );
    }
    return apply(registry, call.request);
  }
}

class Refused extends Error {
  readonly status: Partial<grpc.StatusObject>;
  constructor(code: grpc.status, details: string) {
    super(details);
    this.status = { code, details };
  }
}

/** Returns when the caller is a listed admin; else throws the status to refuse it with. */
async function authorize(
  authenticator: StreamAuthenticator,
  admins: readonly string[],
  call: grpc.ServerUnaryCall<ApplyMeshRequest, ApplyMeshResponse>,
): Promise<void> {
  // The stream authenticator reads only the verified peer certificate and the metadata, which a unary call has too.
  const outcome = await authenticator.authenticate(call as unknown as grpc.ServerDuplexStream<unknown, Buffer>);
  if (outcome.kind === 'authenticated' && outcome.identity.via === 'certificate') {
    if (admins.includes(outcome.identity.spiffeId)) return;
    throw new Refused(grpc.status.PERMISSION_DENIED, `${outcome.identity.spiffeId} is not an admin identity (--admin-identities)`);
  }
  const why = outcome.kind === 'rejected' || outcome.kind === 'unavailable' ? ` (${outcome.reason})` : '';
  throw new Refused(grpc.status.UNAUTHENTICATED, `the admin API needs the mesh-CA client certificate of an admin identity${why}`);
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
  if (problems.length > 0)
    throw new MeshFileError(
      id,
      problems.map((p) => ({ path: formatPath(p.segments), message: p.message })),
    );
  const model = meshToSource(checked, id);
  bySource.set(id, clusters);
  const changed = merge
    ? registry.patchSource(id, { clusters: model.clusters, services: model.services, raw: model.raw })
    : registry.setSource(id, model);
  return create(ApplyMeshResponseSchema, { changedServices: changed, services: registry.source(id)?.services.size ?? 0 });
}

function mergeBy<T>(base: readonly T[], update: readonly T[], key: (t: T) => string): T[] {
  const out = new Map(base.map((t) => [key(t), t]));
  for (const t of update) out.set(key(t), t);
  return [...out.values()];
}
