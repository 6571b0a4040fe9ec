// What one client may ask of the xDS server: request size, names, streams per connection,
// connections per address, and how long a response may wait for a peer that does not read.
// Each refusal names its limit and the flag that raises it, and is counted by limit.
import { status as Status } from '@grpc/grpc-js';
import { SendBudget } from './send-budget.js';

export interface XdsLimits {
  /** A request larger than this is refused (gRPC's default maximum). */
  readonly maxRequestBytes: number;
  /** Names in one request, and subscribed per type on one delta stream. */
  readonly maxNames: number;
  /** Bytes of one resource name. */
  readonly maxNameBytes: number;
  readonly maxStreamsPerConnection: number;
  readonly maxConnectionsPerAddress: number;
  /** A stream whose peer leaves a response unread this long is closed (UNAVAILABLE: the proxy reconnects); 0: never. */
  readonly idleWriteTimeoutMs: number;
}

export const XDS_LIMITS: XdsLimits = {
  maxRequestBytes: 4 * 1024 * 1024,
  maxNames: 100_000,
  maxNameBytes: 4096,
  maxStreamsPerConnection: 100,
  maxConnectionsPerAddress: 1024,
  idleWriteTimeoutMs: 300_000,
};

/** The flag that sets each limit, for the message that refuses a client at it. */
export const LIMIT_FLAG = {
  'request-bytes': '--max-request-bytes',
  names: '--max-names',
  'name-bytes': '--max-name-bytes',
  'streams-per-connection': '--max-streams-per-connection',
  'connections-per-address': '--max-connections-per-address',
  'idle-write-timeout': '--stream-idle-write-timeout',
} as const;

/** The closed set of limits, as counted in metrics. */
export type Limit = keyof typeof LIMIT_FLAG;

/** A request over a limit; its stream fails with `code`. */
export interface OverLimit {
  readonly limit: Limit;
  readonly code: Status;
  readonly details: string;
}

/** Refusal at a limit: INVALID_ARGUMENT for a name no resource could have, RESOURCE_EXHAUSTED otherwise. */
export function overLimit(limit: Limit, what: string, max: number): OverLimit {
  const code = limit === 'name-bytes' ? Status.INVALID_ARGUMENT : Status.RESOURCE_EXHAUSTED;
  return { limit, code, details: `${what} is over the limit of ${max} (${LIMIT_FLAG[limit]})` };
}

/** One client connection: its streams, and its share of the send budget. */
export interface Connection {
  readonly address: string;
  streams: number;
  readonly budget: SendBudget;
}

/**
 * Connections known by their streams: grpc-js has no public per-connection hook, so a
 * connection is its peer's address and port (`call.getPeer()`), counted while it has a stream.
 */
export class Connections {
  private readonly byPeer = new Map<string, Connection>();
  private readonly perAddress = new Map<string, number>();

  constructor(
    private readonly limits: XdsLimits,
    private readonly budgetBytes: number,
  ) {}

  /** Counts a new stream on its connection, or says which limit refuses it. */
  admit(peer: string): Connection | Limit {
    let c = this.byPeer.get(peer);
    if (c) {
      if (c.streams >= this.limits.maxStreamsPerConnection) return 'streams-per-connection';
    } else {
      const address = addressOf(peer);
      const n = this.perAddress.get(address) ?? 0;
      if (n >= this.limits.maxConnectionsPerAddress) return 'connections-per-address';
      this.perAddress.set(address, n + 1);
      c = { address, streams: 0, budget: new SendBudget(this.budgetBytes) };
      this.byPeer.set(peer, c);
    }
    c.streams++;
    return c;
  }

  /** A stream's call is over (its status sent, or its HTTP/2 stream gone). */
  release(peer: string, c: Connection): void {
    if (--c.streams > 0) return;
    this.byPeer.delete(peer);
    const n = (this.perAddress.get(c.address) ?? 1) - 1;
    if (n > 0) this.perAddress.set(c.address, n);
    else this.perAddress.delete(c.address);
  }
}

/** `10.0.0.1:5000` → `10.0.0.1`; `::1:5000` → `::1` (grpc-js writes IPv6 peers without brackets). */
function addressOf(peer: string): string {
  const i = peer.lastIndexOf(':');
  return i > 0 ? peer.slice(0, i) : peer;
}
