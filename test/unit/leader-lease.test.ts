// Lease-based leader election against the fake kube-apiserver over real HTTPS with @kubernetes/client-node.
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { LeaseLeadership } from '../../src/leader/index.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';

const DURATION_MS = 2000;
const log = pino({ level: process.env['TEST_LOG'] ?? 'silent' });
let api: FakeApiServer;
let kc: KubeConfig;
const started: LeaseLeadership[] = [];

beforeAll(async () => {
  api = await startFakeApiServer();
  kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
});
afterEach(async () => {
  api.faults.set(null);
  await Promise.all(started.splice(0).map((l) => l.stop()));
});
afterAll(() => api.close());

async function candidate(namespace: string, identity: string): Promise<LeaseLeadership> {
  const l = await LeaseLeadership.start({ kubeConfig: kc, namespace, identity, durationMs: DURATION_MS, log });
  started.push(l);
  return l;
}

const spec = (ns: string) =>
  api.get('coordination.k8s.io/v1', 'Lease', ns, 'meshfed-leader')?.['spec'] as
    | { holderIdentity: string; leaseTransitions: number; leaseDurationSeconds: number; renewTime: string }
    | undefined;

describe('Lease leader election', () => {
  it('of two candidates exactly one leads, recorded in the Lease; the other follows while it renews', async () => {
    const a = await candidate('one', 'pod-a');
    const b = await candidate('one', 'pod-b');
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    expect(spec('one')).toMatchObject({ holderIdentity: 'pod-a', leaseTransitions: 0, leaseDurationSeconds: 2 });
    const firstRenew = spec('one')!.renewTime;
    // Across several lease durations the holder keeps renewing and the follower never takes over.
    await vi.waitFor(() => expect(spec('one')!.renewTime).not.toBe(firstRenew), { timeout: 5000 });
    await new Promise((r) => setTimeout(r, 2 * DURATION_MS));
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    expect(spec('one')).toMatchObject({ holderIdentity: 'pod-a', leaseTransitions: 0 });
  });

  it('a leader that stops hands the Lease back and the other takes it (one transition), telling its listeners', async () => {
    const a = await candidate('two', 'pod-a');
    const b = await candidate('two', 'pod-b');
    const changes: boolean[] = [];
    b.onChange((leader) => changes.push(leader));
    await a.stop();
    expect(a.isLeader()).toBe(false);
    await vi.waitFor(() => expect(b.isLeader()).toBe(true), { timeout: 5000 });
    expect(changes).toEqual([true]);
    expect(spec('two')).toMatchObject({ holderIdentity: 'pod-b', leaseTransitions: 1 });
  });

  it('takes a Lease whose holder vanished only after it has seen the record unchanged for the lease duration', async () => {
    const old = '2020-01-01T00:00:00.000000Z';
    api.upsert({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'meshfed-leader', namespace: 'three' },
      spec: { holderIdentity: 'crashed-pod', leaseDurationSeconds: 2, acquireTime: old, renewTime: old, leaseTransitions: 4 },
    });
    const b = await candidate('three', 'pod-b');
    // The record's renewTime is years old, but clocks differ across nodes: only its own observation counts.
    expect(b.isLeader()).toBe(false);
    await vi.waitFor(() => expect(b.isLeader()).toBe(true), { timeout: 8000 });
    expect(spec('three')).toMatchObject({ holderIdentity: 'pod-b', leaseTransitions: 5 });
  });

  it('a leader that cannot reach the apiserver steps down before its Lease can expire for the others', async () => {
    const a = await candidate('four', 'pod-a');
    expect(a.isLeader()).toBe(true);
    const changes: boolean[] = [];
    a.onChange((leader) => changes.push(leader));
    api.faults.set({ kind: 'status500', path: /leases/ });
    await vi.waitFor(() => expect(a.isLeader()).toBe(false), { timeout: 5000 });
    expect(changes).toEqual([false]);
    api.faults.set(null);
    await vi.waitFor(() => expect(a.isLeader()).toBe(true), { timeout: 5000 }); // still its own Lease: it renews
    expect(spec('four')).toMatchObject({ holderIdentity: 'pod-a', leaseTransitions: 0 });
  });
});
