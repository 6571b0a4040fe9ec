// Bounds the bytes written to streams but not yet flushed to their sockets, so a thousand
// proxies syncing at once cannot hold a thousand full responses in memory. There is one
// budget across all streams and one per connection, smaller: a connection whose peer stops
// reading (a stopped process, an HTTP/2 window left at zero) fills only its own, and the
// streams of other connections keep being served. A stream that finds a budget spent waits
// its turn and then builds its response from the latest state, so waiting coalesces
// instead of queueing stale responses.

export class SendBudget {
  private inFlight = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly limitBytes: number) {}

  /** True if a stream may build and write a response now. */
  available(): boolean {
    return this.inFlight < this.limitBytes;
  }

  /** Runs `ready` once the budget has room again. */
  wait(ready: () => void): void {
    this.waiters.push(ready);
  }

  take(bytes: number): void {
    this.inFlight += bytes;
  }

  give(bytes: number): void {
    this.inFlight -= bytes;
    while (this.waiters.length > 0 && this.available()) this.waiters.shift()!();
  }
}
