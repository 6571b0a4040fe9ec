import type { ChildProcess } from 'node:child_process';
import { expect, vi } from 'vitest';

/**
 * Waits until `url` answers 2xx while `proc` (meshfed, or what wraps it) runs. Fails at once if the process
 * exits first, and with its output either way: that output says why it never served.
 */
export async function waitForHttpOk(proc: ChildProcess, url: string, output: () => string, timeoutMs: number): Promise<void> {
  const exited = await vi.waitFor(
    async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return true; // ends the wait: nothing will serve
      const ok = await fetch(url).then(
        (r) => r.ok,
        () => false,
      );
      expect(ok, `${url} not OK yet; output so far:\n${output()}`).toBe(true);
      return false;
    },
    { timeout: timeoutMs, interval: 100 },
  );
  if (exited) throw new Error(`exited ${proc.exitCode ?? proc.signalCode} before ${url} answered: ${output()}`);
}
