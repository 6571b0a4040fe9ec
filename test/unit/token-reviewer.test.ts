// TokenReview is the apiserver's work, paid per distinct token: a stranger's garbage must not reach it, and a
// token presented on many streams at once is reviewed once.
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenReviewer } from '../../src/auth/authenticators.js';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';

let api: FakeApiServer;
let reviewer: TokenReviewer;
const reviews = (): number => api.requests.filter((r) => r.path.includes('tokenreviews')).length;

beforeAll(async () => {
  api = await startFakeApiServer();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(api.kubeconfig());
  reviewer = new TokenReviewer({ kubeConfig, trustDomain: 'cluster.local', audience: 'istio-ca', log: pino({ level: 'silent' }) });
});
afterAll(() => api.close());

describe('TokenReviewer', () => {
  it('refuses a token that is not a JWT without asking the apiserver', async () => {
    const before = reviews();
    expect(await reviewer.review('x'.repeat(100))).toEqual({ kind: 'rejected', reason: 'token is not a JWT' });
    expect(reviews()).toBe(before);
  });

  it('reviews a token presented on many streams at once a single time', async () => {
    const token = api.issueServiceAccountToken('abc', 'foo', { audiences: ['istio-ca'] });
    const before = reviews();
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => reviewer.review(token)));
    expect(outcomes.every((o) => o.kind === 'authenticated')).toBe(true);
    expect(reviews() - before).toBe(1);
  });
});
