// How inputs from outside the mesh (the PKI) learn which views are wanted: the store tells who opens a
// table, and says whether a table is still watched, by the rule it uses to let idle tables go.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TypeUrl } from '../../src/envoy/protos.js';
import { sdsGenerator } from '../../src/generate/sds.js';
import { proxyOf } from '../../src/model/proxy.js';
import { XdsStore } from '../../src/xds/store.js';

const ID = 'spiffe://cluster.local/ns/abc/sa/foo';
const view = { ...proxyOf({ id: 'sidecar~10.0.0.1~foo.abc~abc.svc.cluster.local' }).view, identity: ID };

beforeEach(() => void vi.useFakeTimers({ now: Date.parse('2026-03-01T00:00:00Z') }));
afterEach(() => void vi.useRealTimers());

describe('the store reports opened tables', () => {
  it('tells every open of an SDS table, new or kept, by view key; watched while a stream watches and a minute after', () => {
    const store = new XdsStore([sdsGenerator({ certificate: () => undefined, bundles: () => new Map() })]);
    const opened: string[] = [];
    store.onOpen((typeUrl, key) => opened.push(`${typeUrl === TypeUrl.Secret ? 'SDS' : typeUrl} ${key}`));
    expect(store.watched(TypeUrl.Secret, ID)).toBe(false);

    const table = store.table(TypeUrl.Secret, view);
    const watcher = { tableChanged: () => {} };
    table.attach(watcher);
    expect(store.table(TypeUrl.Secret, view)).toBe(table); // a second stream of the same identity
    expect(opened).toEqual([`SDS ${ID}`, `SDS ${ID}`]);
    vi.advanceTimersByTime(3600_000);
    expect(store.watched(TypeUrl.Secret, ID)).toBe(true);

    table.detach(watcher);
    vi.advanceTimersByTime(60_000);
    expect(store.watched(TypeUrl.Secret, ID)).toBe(true); // kept for a reconnect
    vi.advanceTimersByTime(1);
    expect(store.watched(TypeUrl.Secret, ID)).toBe(false);
  });
});

describe('tables of types nothing generates', () => {
  it('do not pile up: past 256, the unwatched ones go at once (a client naming ever new type URLs), the watched stay', () => {
    const store = new XdsStore([]);
    const type = (i: number): string => `type.googleapis.com/networking.istio.io.v1.Kind${i}`;
    store.table(type(0), view).attach({ tableChanged: () => {} });
    for (let i = 1; i <= 300; i++) store.table(type(i), view);
    expect(store.watched(type(0), '')).toBe(true);
    expect(store.watched(type(1), '')).toBe(false);
    expect(store.watched(type(300), '')).toBe(true); // the newest, just made
  });
});
