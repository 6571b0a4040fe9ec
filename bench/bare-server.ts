// The practical limit: a bare grpc-js ADS server that writes pre-encoded responses and keeps
// no per-stream state. It serves the same resources meshfed generates for the benchmark mesh,
// over SotW (the sync baseline) and Delta (the churn baseline). For churn, the parent writes one
// JSON line per change to stdin (`{"services": [...]}`, what it applies to meshfed); the bare server
// regenerates that service's EDS resource once and writes the same bytes to every Delta stream.
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fromJson } from '@bufbuild/protobuf';
import { MeshSchema } from '../src/gen/meshfed/v1/mesh_pb.js';
import { cdsGenerator } from '../src/generate/cds.js';
import { edsGenerator } from '../src/generate/eds.js';
import type { Generator } from '../src/generate/generator.js';
import { BENCH_NODE_METADATA } from './mesh.js';
import { proxyOf } from '../src/model/proxy.js';
import type { MeshSnapshot } from '../src/model/mesh.js';
import { Registry } from '../src/registry/registry.js';
import { meshToSource } from '../src/sources/file/to-model.js';
import { encodeEntry } from '../src/xds/resource.js';
import { DeltaDiscoveryRequest, DiscoveryRequest } from '../src/envoy/protos.js';
import { DeltaResponseField as D, DiscoveryResponseField as F, MessageWriter, encodeRepeated } from '../src/xds/wire.js';
import { pino } from 'pino';

const [meshFile, port] = process.argv.slice(2);
const log = pino({ level: 'silent' });
let snapshot!: MeshSnapshot;
let changed: ReadonlySet<string> = new Set();
const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s, c) => ((snapshot = s), (changed = c.endpoints)), log);
const mesh = JSON.parse(readFileSync(meshFile!, 'utf8')) as { clusters: unknown[] };
registry.setSource('bench', meshToSource(fromJson(MeshSchema, mesh as never), 'bench'));
registry.flush();

const view = proxyOf({ id: 'sidecar~10.0.0.1~bench.bench~bench.svc.cluster.local', metadata: BENCH_NODE_METADATA }).view;
const entries = (gen: Generator, hostnames: Iterable<string>): ReturnType<typeof encodeEntry>[] =>
  [...hostnames].flatMap((h) => gen.generate(snapshot, view, h).map((r) => encodeEntry(gen.typeUrl, r.name, r.body)));
function sotw(gen: Generator): Buffer {
  const anys = entries(gen, snapshot.services.keys()).map((e) => e.any);
  return new MessageWriter()
    .string(F.versionInfo, '1')
    .raw(encodeRepeated(F.resources, anys))
    .string(F.typeUrl, gen.typeUrl)
    .string(F.nonce, '1')
    .finish();
}
function delta(gen: Generator, hostnames: Iterable<string>, nonce: string): Buffer {
  const resources = entries(gen, hostnames).map((e) => e.deltaBytes());
  return new MessageWriter().raw(encodeRepeated(D.resources, resources)).string(D.typeUrl, gen.typeUrl).string(D.nonce, nonce).finish();
}
const cdsGen = cdsGenerator();
const cds = sotw(cdsGen);
const eds = sotw(edsGenerator);
const deltaCds = delta(cdsGen, snapshot.services.keys(), '1');
const deltaEds = delta(edsGenerator, snapshot.services.keys(), '1');

/** Delta streams that asked for EDS: each change goes to all of them, as the same bytes. */
const deltaStreams = new Set<grpc.ServerDuplexStream<unknown, Buffer>>();
let nonce = 1;
createInterface({ input: process.stdin }).on('line', (line) => {
  const { services } = JSON.parse(line) as { services: unknown[] };
  const patch = meshToSource(fromJson(MeshSchema, { clusters: mesh.clusters, services } as never), 'bench').services;
  // As meshfed's admin API does: the change is another source's, merged with the file's.
  registry.patchSource('bench-churn', { services: patch });
  registry.flush();
  const response = delta(edsGenerator, changed, String(++nonce));
  for (const call of deltaStreams) call.write(response);
});

const raw = { requestSerialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b };
const server = new grpc.Server({ 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 });
server.addService(
  {
    StreamAggregatedResources: {
      ...raw,
      path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
      requestStream: true,
      responseStream: true,
      requestDeserialize: (b: Buffer) => DiscoveryRequest.decode(b),
    },
    DeltaAggregatedResources: {
      ...raw,
      path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
      requestStream: true,
      responseStream: true,
      requestDeserialize: (b: Buffer) => DeltaDiscoveryRequest.decode(b),
    },
  },
  {
    StreamAggregatedResources: (call: grpc.ServerDuplexStream<{ type_url: string; response_nonce: string }, Buffer>) => {
      call.on('data', (req) => {
        if (req.response_nonce) return; // ACKs need nothing
        call.write(req.type_url === cdsGen.typeUrl ? cds : eds);
      });
      call.on('error', () => {});
    },
    DeltaAggregatedResources: (call: grpc.ServerDuplexStream<{ type_url: string; response_nonce: string }, Buffer>) => {
      call.on('data', (req) => {
        if (req.response_nonce) return;
        if (req.type_url === cdsGen.typeUrl) call.write(deltaCds);
        else {
          call.write(deltaEds);
          deltaStreams.add(call);
        }
      });
      call.on('error', () => deltaStreams.delete(call));
      call.on('cancelled', () => deltaStreams.delete(call));
    },
  },
);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write(`ready ${cds.length} ${eds.length}\n`);
});
