// Per-key debouncing: a key is released once it has been quiet for `quietMs`, or `maxMs`
// after its first unreleased change. Keys are independent, so a steady trickle of changes
// to different services is not held back by each other, while a burst on one key coalesces.

export interface DebounceOptions {
  readonly quietMs: number;
  readonly maxMs: number;
}

export class KeyDebouncer<K = string> {
  private readonly pending = new Map<K, { first: number; last: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: DebounceOptions,
    /** Receives the released keys and the time of the oldest change among them. */
    private readonly release: (keys: K[], oldestChange: number) => void,
  ) {}

  touch(key: K, now = Date.now()): void {
    const p = this.pending.get(key);
    if (p) p.last = now;
    else this.pending.set(key, { first: now, last: now });
    if (!this.timer) this.arm(this.opts.quietMs);
  }

  /** Releases everything now (shutdown, tests, or a zero debounce). */
  flush(): void {
    this.fire(Number.POSITIVE_INFINITY);
  }

  get size(): number {
    return this.pending.size;
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(delay: number): void {
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.fire(Date.now());
      },
      Math.max(0, delay),
    );
  }

  private fire(now: number): void {
    const due: K[] = [];
    let oldest = Number.POSITIVE_INFINITY;
    let next = Number.POSITIVE_INFINITY;
    for (const [key, p] of this.pending) {
      const deadline = Math.min(p.last + this.opts.quietMs, p.first + this.opts.maxMs);
      if (deadline <= now) {
        due.push(key);
        oldest = Math.min(oldest, p.first);
      } else next = Math.min(next, deadline);
    }
    for (const k of due) this.pending.delete(k);
    if (this.pending.size > 0 && !this.timer) this.arm(next - Date.now());
    if (due.length > 0) this.release(due, oldest);
  }
}
