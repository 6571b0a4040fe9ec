// CPU time and peak RSS of a process, from /proc (Linux).
import { readFileSync } from 'node:fs';

const TICKS = 100; // USER_HZ on Linux

export interface ProcStats {
  /** User + system CPU seconds since the process started. */
  readonly cpuSeconds: number;
  /** Peak resident set size (VmHWM), bytes. */
  readonly peakRssBytes: number;
  readonly rssBytes: number;
}

export function procStats(pid: number): ProcStats {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(after[11]) + Number(after[12])) / TICKS;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { cpuSeconds, peakRssBytes: kb('VmHWM'), rssBytes: kb('VmRSS') };
}
