// Which replica acts for all: creates and rotates the CA, writes status. Every replica serves either way.
export interface Leadership {
  isLeader(): boolean;
  /** fn(leader) runs on every change; returns the unsubscribe. */
  onChange(fn: (leader: boolean) => void): () => void;
}

/** A single process (no Kubernetes): always the leader. */
export const SOLE_LEADER: Leadership = { isLeader: () => true, onChange: () => () => {} };

export { LeaseLeadership, DEFAULT_LEASE_DURATION_MS, DEFAULT_LEASE_NAME, defaultIdentity, type LeaseOptions } from './lease.js';
