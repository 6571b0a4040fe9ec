// A few seconds of the xDS request fuzzer (scripts/fuzz.ts) with a fixed seed: random and
// mutated DiscoveryRequests, SotW and Delta, on ADS and the per-type services, against a real
// meshfed process. It must stay up, bounded in memory, and keep serving a bystander proxy.
// Longer runs: npm run fuzz -- --seconds 600 [--seed S]; a failure names its seed.
import { expect, it } from 'vitest';
import { runFuzz } from '../../scripts/fuzz.js';

it('meshfed survives fuzzed xDS requests and keeps serving a bystander (seed 14)', async () => {
  const res = await runFuzz({ seconds: 4, seed: 14 });
  expect(res.cases).toBeGreaterThan(0);
  expect(res.bystanderUpdates).toBeGreaterThan(0);
}, 90_000);
