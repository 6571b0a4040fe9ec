import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { KeyDebouncer } from '../../src/registry/debounce.js';

describe('per-key debounce (100 ms quiet, 1 s max)', () => {
  let released: Array<{ keys: string[]; at: number }>;
  let d: KeyDebouncer;
  beforeEach(() => {
    vi.useFakeTimers();
    released = [];
    d = new KeyDebouncer({ quietMs: 100, maxMs: 1000 }, (keys) => released.push({ keys: keys.sort(), at: Date.now() }));
  });
  afterEach(() => {
    d.stop();
    vi.useRealTimers();
  });

  it('releases a key once it has been quiet for 100 ms, coalescing a burst', () => {
    const t0 = Date.now();
    d.touch('a');
    vi.advanceTimersByTime(50);
    d.touch('a');
    vi.advanceTimersByTime(99);
    expect(released).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(released).toEqual([{ keys: ['a'], at: t0 + 150 }]);
  });

  it('does not hold a quiet key back for a busy one', () => {
    const t0 = Date.now();
    d.touch('busy');
    d.touch('quiet');
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(60);
      d.touch('busy');
    }
    expect(released[0]).toEqual({ keys: ['quiet'], at: t0 + 100 });
  });

  it('releases a key that never goes quiet after the 1 s maximum', () => {
    const t0 = Date.now();
    d.touch('x');
    for (let i = 0; i < 30; i++) {
      vi.advanceTimersByTime(50);
      d.touch('x');
    }
    expect(released[0]).toEqual({ keys: ['x'], at: t0 + 1000 });
  });

  it('flush releases everything at once', () => {
    d.touch('a');
    d.touch('b');
    d.flush();
    expect(released).toEqual([{ keys: ['a', 'b'], at: Date.now() }]);
    expect(d.size).toBe(0);
  });
});
