// Load balancer hostnames of gateways: looked up once when first wanted, again on every refresh, and a
// failed lookup keeps the last addresses that worked.
import { describe, expect, it, vi } from 'vitest';
import { HostnameResolver } from '../../src/sources/kube/gateway-dns.js';

const WAIT = { timeout: 10_000, interval: 20 }; // for lookups on the 20 ms refresh, polled every 20 ms

describe('HostnameResolver', () => {
  it('resolves wanted hostnames, reports changes, and keeps the last addresses through a DNS failure', async () => {
    let answer: string[] | Error = ['198.51.100.1'];
    let lookups = 0;
    let changes = 0;
    const r = new HostnameResolver(
      () => changes++,
      20,
      async (h) => {
        lookups++;
        if (h !== 'lb.example.com') throw new Error(`ENOTFOUND ${h}`);
        if (answer instanceof Error) throw answer;
        return answer;
      },
    );
    const resolved = (want: unknown) => vi.waitFor(() => expect(r.get('lb.example.com')).toEqual(want), WAIT); // resolution
    try {
      r.want(new Set(['lb.example.com']));
      expect(r.get('lb.example.com')).toBeUndefined();
      await resolved({ addresses: ['198.51.100.1'] });
      expect(changes).toBe(1);

      answer = ['198.51.100.2'];
      await resolved({ addresses: ['198.51.100.2'] });
      const [changesBefore, lookupsBefore] = [changes, lookups];
      await vi.waitFor(() => expect(lookups).toBeGreaterThanOrEqual(lookupsBefore + 2), WAIT); // two more refreshes
      expect(changes).toBe(changesBefore); // the same answer again is no change

      answer = new Error('SERVFAIL');
      await resolved({ addresses: ['198.51.100.2'], error: 'SERVFAIL' });

      r.want(new Set());
      expect(r.get('lb.example.com')).toBeUndefined();
    } finally {
      r.stop();
    }
  });
});
