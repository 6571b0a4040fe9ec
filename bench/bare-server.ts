// The practical limit: a bare grpc-js ADS server that writes pre-encoded responses and keeps
// no state. It serves the same resources meshfed generates for the benchmark mesh.
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { fromJson } from '@bufbuild/protobuf';
import { MeshSchema } from '../src/gen/meshfed/v1/mesh_pb.js';
import { cdsGenerator } from '../src/generate/cds.js';
import { edsGenerator } from '../src/generate/eds.js';
import type { Generator } from '../src/generate/generator.js';
import { BENCH_NODE_METADATA } from './mesh.js';
import { proxyOf } from '../src/model/proxy.js';
import { Registry } from '../src/registry/registry.js';
import { meshToSource } from '../src/sources/file/to-model.js';
import { encodeEntry } from '../src/xds/resource.js';
import { DiscoveryRequest } from '../src/envoy/protos.js';
import { DiscoveryResponseField as F, MessageWriter, encodeRepeated } from '../src/xds/wire.js';
import { pino } from 'pino';

const [meshFile, port] = process.argv.slice(2);
const log = pino({ level: 'silent' });
let snapshot!: import('../src/model/mesh.js').MeshSnapshot;
const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s) => (snapshot = s), log);
registry.setSource('bench', meshToSource(fromJson(MeshSchema, JSON.parse(readFileSync(meshFile!, 'utf8'))), 'bench'));
registry.flush();

const view = proxyOf({ id: 'sidecar~10.0.0.1~bench.bench~bench.svc.cluster.local', metadata: BENCH_NODE_METADATA }).view;
function response(gen: Generator): Buffer {
  const anys: Buffer[] = [];
  for (const h of snapshot.services.keys()) for (const r of gen.generate(snapshot, view, h)) anys.push(encodeEntry(gen.typeUrl, r.name, r.body).any);
  return new MessageWriter().string(F.versionInfo, '1').raw(encodeRepeated(F.resources, anys)).string(F.typeUrl, gen.typeUrl).string(F.nonce, '1').finish();
}
const cdsGen = cdsGenerator();
const cds = response(cdsGen);
const eds = response(edsGenerator);

const server = new grpc.Server({ 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 });
server.addService(
  {
    StreamAggregatedResources: {
      path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
      requestStream: true,
      responseStream: true,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => DiscoveryRequest.decode(b),
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
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
  },
);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write(`ready ${cds.length} ${eds.length}\n`);
});
