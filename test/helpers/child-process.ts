import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
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

export interface MeshfedProcess {
  readonly proc: ChildProcess;
  /** Its stdout and stderr so far. */
  output(): string;
  /** Its exit code, once it exits. */
  readonly exited: Promise<number | null>;
}

/** `meshfed serve <args>` from the source tree, its output collected; `running` collects it for the test's cleanup. */
export function spawnServe(args: readonly string[], running: ChildProcess[]): MeshfedProcess {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', ...args], {
    cwd: path.resolve(import.meta.dirname, '../..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, output: () => out, exited: new Promise((resolve) => proc.once('exit', (code) => resolve(code))) };
}
