// A process of simulated proxies. Each opens its own connection and ADS stream and behaves
// like Envoy: CDS wildcard, then EDS for every cluster it got, ACKing each response.
// Responses are scanned, not decoded. Reports to the parent over IPC.
import * as grpc from '@grpc/grpc-js';
import { DeltaDiscoveryRequest, DiscoveryRequest, TypeUrl } from '../src/envoy/protos.js';
import { MessageWriter } from '../src/xds/wire.js';
import { fields, innerString, str } from './proto-scan.js';
import { benchNodeStruct } from './mesh.js';

export interface WorkerConfig {
  readonly address: string;
  readonly kind: 'sotw' | 'delta';
  readonly count: number;
  readonly offset: number;
  /** Clusters (and CLAs) a client holds once synced. */
  readonly expect: number;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'synced'; t: number; bytes: number }
  | { type: 'update'; name: string; t: number }
  | { type: 'error'; message: string }
  | { type: 'stats'; bytes: number; responses: number; errors: number; bytesByType: Record<string, number> };

const send = (m: WorkerMessage): void => void process.send!(m);
const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/';

let bytes = 0;
/** Response bytes by short type name (CDS, EDS), over every client of this worker. */
const bytesByType: Record<string, number> = {};
let responses = 0;
let errors = 0;
/** Per changed name, how many of this worker's clients got it after their initial sync. */
const updates = new Map<string, { clients: Set<number>; t: number }>();
let cfg: WorkerConfig;

function encodeSotw(m: object): Buffer {
  return Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromObject(m)).finish());
}
function encodeDelta(m: object): Buffer {
  return Buffer.from(DeltaDiscoveryRequest.encode(DeltaDiscoveryRequest.fromObject(m)).finish());
}

/** Envoy repeats every EDS name in each ACK; the names part is encoded once per worker. */
let namesBlock: { names: string[]; bytes: Buffer } | undefined;
function sotwEdsAck(clusters: string[], version: string, nonce: string): Buffer {
  if (namesBlock?.names !== clusters) namesBlock = { names: clusters, bytes: encodeRepeatedStrings(3, clusters) };
  return new MessageWriter().string(1, version).raw(namesBlock.bytes).string(4, TypeUrl.Endpoint).string(5, nonce).finish();
}

function encodeRepeatedStrings(field: number, values: string[]): Buffer {
  const w = new MessageWriter();
  for (const v of values) w.string(field, v);
  return w.finish();
}

function node(i: number): object {
  const ip = `10.250.${(i >> 8) & 255}.${i & 255}`;
  return { id: `sidecar~${ip}~bench-${i}.bench~bench.svc.cluster.local`, cluster: 'bench', metadata: benchNodeStruct() };
}

function countResources(buf: Buffer): number {
  let n = 0;
  for (const f of fields(buf)) if (f.num === 2) n++;
  return n;
}

/** Names of the resources in a response: CDS/EDS resources carry their name in field 1. */
function names(buf: Buffer, delta: boolean): string[] {
  const out: string[] = [];
  for (const f of fields(buf)) {
    if (f.num !== 2) continue;
    if (delta) out.push(innerString(buf, f.start, f.end, 3));
    else {
      for (const a of fields(buf, f.start, f.end)) if (a.num === 2) out.push(innerString(buf, a.start, a.end, 1));
    }
  }
  return out;
}

function header(buf: Buffer): { typeUrl: string; nonce: string; version: string } {
  let typeUrl = '';
  let nonce = '';
  let version = '';
  for (const f of fields(buf)) {
    if (f.num === 4) typeUrl = str(buf, f);
    else if (f.num === 5) nonce = str(buf, f);
    else if (f.num === 1) version = str(buf, f);
  }
  return { typeUrl, nonce, version };
}

function noteUpdate(client: number, got: string[]): void {
  const t = Date.now();
  for (const name of got) {
    let u = updates.get(name);
    if (!u) updates.set(name, (u = { clients: new Set(), t }));
    u.clients.add(client);
    u.t = Math.max(u.t, t);
    if (u.clients.size === cfg.count) send({ type: 'update', name, t: u.t });
  }
}

function startClient(i: number): void {
  const id = cfg.offset + i;
  const client = new grpc.Client(cfg.address, grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1, // one connection per proxy, as real proxies have
    'grpc.max_receive_message_length': -1,
  });
  const delta = cfg.kind === 'delta';
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(
    ADS + (delta ? 'DeltaAggregatedResources' : 'StreamAggregatedResources'),
    (b: Buffer) => b,
    (b: Buffer) => b,
  );
  let clusters: string[] = [];
  let held = 0;
  let synced = false;
  let myBytes = 0;
  let edsRequest: object | undefined;
  call.on('data', (buf: Buffer) => {
    bytes += buf.length;
    myBytes += buf.length;
    responses++;
    const h = header(buf);
    const short = h.typeUrl === TypeUrl.Cluster ? 'CDS' : h.typeUrl === TypeUrl.Endpoint ? 'EDS' : h.typeUrl;
    bytesByType[short] = (bytesByType[short] ?? 0) + buf.length;
    if (h.typeUrl === TypeUrl.Cluster) {
      clusters = names(buf, delta);
      call.write(
        delta
          ? encodeDelta({ type_url: h.typeUrl, response_nonce: h.nonce })
          : encodeSotw({ type_url: h.typeUrl, version_info: h.version, response_nonce: h.nonce }),
      );
      if (!edsRequest) {
        edsRequest = delta
          ? { type_url: TypeUrl.Endpoint, resource_names_subscribe: clusters }
          : { type_url: TypeUrl.Endpoint, resource_names: clusters };
        call.write(delta ? encodeDelta(edsRequest) : encodeSotw(edsRequest));
      }
    } else if (h.typeUrl === TypeUrl.Endpoint) {
      // Names matter only after the initial sync, to time changes; before it, counting is enough.
      if (synced) noteUpdate(i, names(buf, delta));
      else held += countResources(buf);
      call.write(delta ? encodeDelta({ type_url: h.typeUrl, response_nonce: h.nonce }) : sotwEdsAck(clusters, h.version, h.nonce));
    }
    if (!synced && clusters.length === cfg.expect && held >= cfg.expect) {
      synced = true;
      send({ type: 'synced', t: Date.now(), bytes: myBytes });
    }
  });
  call.on('error', (err: Error) => {
    errors++;
    send({ type: 'error', message: `client ${id}: ${err.message}` });
  });
  call.write(
    delta
      ? encodeDelta({ node: node(id), type_url: TypeUrl.Cluster })
      : encodeSotw({ node: node(id), type_url: TypeUrl.Cluster, resource_names: [] }),
  );
}

process.on('message', (m: { type: string; config?: WorkerConfig }) => {
  if (m.type === 'start') {
    cfg = m.config!;
    for (let i = 0; i < cfg.count; i++) startClient(i);
  } else if (m.type === 'stats') send({ type: 'stats', bytes, responses, errors, bytesByType });
  else if (m.type === 'exit') process.exit(0);
});
send({ type: 'ready' });
