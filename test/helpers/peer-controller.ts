// A PeerController as the unit and integration tests use it: one peer poll per test (an hour between polls), small
// bounds, a federation source on a registry of its own, and only what a test cares about given.
import { pino, type Logger } from 'pino';
import { PeerController, type PeerControllerOptions } from '../../src/alliance/peers/controller.js';
import { Registry } from '../../src/registry/registry.js';
import { FederationSource } from '../../src/sources/federation/federation-source.js';

export function testPeerController(
  o: Partial<PeerControllerOptions> & Pick<PeerControllerOptions, 'mintToken'>,
  log: Logger = pino({ level: 'silent' }),
): PeerController {
  return new PeerController({
    localTrustDomain: 'cluster.local',
    isLeader: () => true,
    pollIntervalMs: 3_600_000,
    fetchTimeoutMs: 2000,
    maxPublicBytes: 1 << 20,
    maxPrivateBytes: 1 << 20,
    source: new FederationSource(
      new Registry({ quietMs: 0, maxMs: 0 }, () => undefined, log),
      { staleAfterMs: 1e6, withdrawAfterMs: 2e6, maxDropShare: 0.5, confirmAfterMs: 1e6, dropWindowMs: 1e4 },
      log,
    ),
    log,
    ...o,
  });
}
