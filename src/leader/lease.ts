// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: a candidate takes
// the Lease when it is free, or when its record has not changed for a lease duration by the candidate's own
// clock (never comparing clocks across nodes); the holder renews every duration/3 and steps down when it has
// not renewed for 2/3 of the duration, before any other candidate may take over. Updates carry the
// resourceVersion read, so of two candidates racing only one wins (409 for the other).
import os from 'node:os';
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { apiErrorMessage, statusOf } from '../kube/api-error.js';
import type { Leadership } from './index.js';

export const DEFAULT_LEASE_NAME = 'meshfed-leader';
export const DEFAULT_LEASE_DURATION_MS = 15_000;

export interface LeaseOptions {
  readonly kubeConfig: KubeConfig;
  /** meshfed's namespace: the Lease lives there. */
  readonly namespace: string;
  readonly name?: string;
  /** holderIdentity: the pod name. */
  readonly identity: string;
  readonly durationMs?: number;
  readonly log: Logger;
}

/** The pod name (POD_NAME from the downward API, else the hostname); outside a pod the pid keeps processes apart. */
export function defaultIdentity(): string {
  return process.env['POD_NAME'] || (process.env['KUBERNETES_SERVICE_HOST'] ? os.hostname() : `${os.hostname()}_${process.pid}`);
}

export class LeaseLeadership implements Leadership {
  private readonly api: CoordinationV1Api;
  private readonly name: string;
  private readonly durationMs: number;
  private leader = false;
  private readonly listeners = new Set<(leader: boolean) => void>();
  /** The Lease record as last seen (resourceVersion) and when it was first seen so, by the local clock. */
  private observed: { rv: string; at: number } | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private lastError: string | undefined;

  private constructor(private readonly opts: LeaseOptions) {
    this.api = opts.kubeConfig.makeApiClient(CoordinationV1Api);
    this.name = opts.name ?? DEFAULT_LEASE_NAME;
    this.durationMs = Math.max(opts.durationMs ?? DEFAULT_LEASE_DURATION_MS, 1000);
  }

  /** Makes the first attempt (so a lone replica leads at once), then keeps trying or renewing. */
  static async start(opts: LeaseOptions): Promise<LeaseLeadership> {
    const l = new LeaseLeadership(opts);
    await (l.running = l.tick());
    return l;
  }

  isLeader(): boolean {
    return this.leader;
  }

  onChange(fn: (leader: boolean) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Stops; a leader hands the Lease back (holder cleared) so another replica takes over at once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.tickTimer);
    await this.running;
    if (!this.leader) return;
    this.set(false);
    const release = async (): Promise<void> => {
      const lease = await this.api.readNamespacedLease({ name: this.name, namespace: this.opts.namespace });
      if (lease.spec?.holderIdentity !== this.opts.identity) return;
      const now = new V1MicroTime(Date.now());
      lease.spec = { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now };
      await this.api.replaceNamespacedLease({ name: this.name, namespace: this.opts.namespace, body: lease });
      this.opts.log.info({ lease: this.where }, 'released the Lease');
    };
    // Bounded: a shutdown must not hang on an unreachable apiserver.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>(
      (_, reject) => (timer = setTimeout(() => reject(new Error('the apiserver did not answer in time')), this.durationMs / 3)),
    );
    try {
      await Promise.race([release(), timeout]);
    } catch (err) {
      this.opts.log.warn(
        { lease: this.where, err: apiErrorMessage(err) },
        'could not release the Lease; another replica takes over once it expires',
      );
    } finally {
      clearTimeout(timer);
    }
  }

  private get where(): string {
    return `${this.opts.namespace}/${this.name}`;
  }

  private async tick(): Promise<void> {
    const period = this.durationMs / 3;
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), period)));
    try {
      const decision = await Promise.race([this.tryAcquireOrRenew(started), timeout]);
      if (decision === 'timeout') throw new Error(`the apiserver did not answer within ${Math.round(period)} ms`);
      if (this.lastError !== undefined) this.opts.log.info({ lease: this.where }, 'the Lease is reachable again');
      this.lastError = undefined;
      if (decision) this.renewed(started);
      else this.set(false);
    } catch (err) {
      const message = apiErrorMessage(err);
      if (message !== this.lastError)
        this.opts.log.warn({ lease: this.where, err: message }, 'could not take or renew the Lease; retrying');
      this.lastError = message;
    } finally {
      clearTimeout(timer);
    }
    if (this.stopped) return;
    this.tickTimer = setTimeout(() => void (this.running = this.tick()), Math.max(period - (Date.now() - started), 0));
    this.tickTimer.unref();
  }

  /** True when this candidate holds the Lease now (taken or renewed), false when another does. */
  private async tryAcquireOrRenew(now: number): Promise<boolean> {
    const { namespace, identity } = this.opts;
    const stamp = new V1MicroTime(now);
    const durationSec = Math.ceil(this.durationMs / 1000);
    let lease: V1Lease | undefined;
    try {
      lease = await this.api.readNamespacedLease({ name: this.name, namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    if (!lease) {
      const body: V1Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.name, namespace, labels: { 'app.kubernetes.io/name': 'meshfed' } },
        spec: { holderIdentity: identity, leaseDurationSeconds: durationSec, acquireTime: stamp, renewTime: stamp, leaseTransitions: 0 },
      };
      return this.write(() => this.api.createNamespacedLease({ namespace, body }));
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const rv = lease.metadata?.resourceVersion ?? '';
    if (this.observed?.rv !== rv) this.observed = { rv, at: now };
    const mine = holder === identity;
    const expired = this.observed.at + (spec.leaseDurationSeconds ?? durationSec) * 1000 <= now;
    if (!mine && holder !== '' && !expired) return false;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: durationSec,
      renewTime: stamp,
      acquireTime: mine && spec.acquireTime ? spec.acquireTime : stamp,
      leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
    };
    return this.write(() => this.api.replaceNamespacedLease({ name: this.name, namespace, body: lease }));
  }

  /** A create or an update of the Lease: true when it went through, false when another candidate won. */
  private async write(op: () => Promise<V1Lease>): Promise<boolean> {
    try {
      const written = await op();
      this.observed = { rv: written.metadata?.resourceVersion ?? '', at: Date.now() };
      return true;
    } catch (err) {
      if (statusOf(err) === 409) return false;
      throw err;
    }
  }

  /** Leading until 2/3 of the duration after this renewal's start, unless the next renewal comes first. */
  private renewed(startedAt: number): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(
      () => {
        this.opts.log.warn({ lease: this.where }, 'could not renew the Lease in time; stepping down');
        this.set(false);
      },
      Math.max(startedAt + (this.durationMs * 2) / 3 - Date.now(), 0),
    );
    this.deadlineTimer.unref();
    this.set(true);
  }

  private set(leader: boolean): void {
    if (!leader) clearTimeout(this.deadlineTimer);
    if (leader === this.leader) return;
    this.leader = leader;
    this.opts.log.info({ lease: this.where, identity: this.opts.identity }, leader ? 'leading: holds the Lease' : 'not leading');
    for (const fn of [...this.listeners]) fn(leader);
  }
}
