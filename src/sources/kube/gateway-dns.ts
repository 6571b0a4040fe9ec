// Load balancer hostnames of network gateways (AWS ELBs give only a hostname), resolved to the IPs EDS
// needs, as Istio does with RESOLVE_HOSTNAME_GATEWAYS. A load balancer's IPs change over time, so the
// wanted hostnames are looked up again every `refreshMs`; a change is reported through `onChange`.
import { lookup } from 'node:dns/promises';

export type LookupAll = (hostname: string) => Promise<string[]>;

const lookupAll: LookupAll = async (hostname) => (await lookup(hostname, { all: true })).map((a) => a.address).sort();

export interface Resolution {
  readonly addresses: readonly string[];
  readonly error?: string;
}

export class HostnameResolver {
  private readonly results = new Map<string, Resolution>();
  private readonly inflight = new Set<string>();
  private wanted = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly onChange: () => void,
    private readonly refreshMs = 30_000,
    private readonly lookupFn: LookupAll = lookupAll,
  ) {}

  /** The hostnames needed now: new ones are looked up, forgotten ones dropped. */
  want(hostnames: ReadonlySet<string>): void {
    this.wanted = new Set(hostnames);
    for (const h of this.results.keys()) if (!this.wanted.has(h)) this.results.delete(h);
    for (const h of this.wanted) if (!this.results.has(h)) void this.resolve(h);
    if (this.wanted.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    } else if (!this.timer && !this.stopped) {
      this.timer = setInterval(() => {
        for (const h of this.wanted) void this.resolve(h);
      }, this.refreshMs);
      this.timer.unref();
    }
  }

  /** What a hostname resolved to last; undefined while the first lookup runs. */
  get(hostname: string): Resolution | undefined {
    return this.results.get(hostname);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private async resolve(hostname: string): Promise<void> {
    if (this.inflight.has(hostname)) return;
    this.inflight.add(hostname);
    let r: Resolution;
    try {
      r = { addresses: await this.lookupFn(hostname) };
    } catch (err) {
      // Keep serving the last addresses that worked: a DNS hiccup should not withdraw a gateway.
      r = { addresses: this.results.get(hostname)?.addresses ?? [], error: (err as Error).message };
    } finally {
      this.inflight.delete(hostname);
    }
    if (this.stopped || !this.wanted.has(hostname)) return;
    if (JSON.stringify(r) === JSON.stringify(this.results.get(hostname))) return;
    this.results.set(hostname, r);
    this.onChange();
  }
}
