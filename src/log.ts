// Structured JSON logs (pino). One root logger; modules take children.
import * as grpc from '@grpc/grpc-js';
import { format } from 'node:util';
import { pino, type Logger } from 'pino';

/** The levels --log-level takes (pino's, and `silent`). */
export const LOG_LEVELS: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export function createLogger(level = process.env['MESHFED_LOG_LEVEL'] ?? 'info'): Logger {
  if (!LOG_LEVELS.includes(level)) throw new Error(`unknown log level "${level}" (${LOG_LEVELS.join(', ')})`);
  return pino({ name: 'meshfed', level, base: undefined });
}

/**
 * A client-supplied string as it may appear in a log line or a gRPC status: at most `max`
 * characters, with the original length when cut, so a 10 MiB type_url costs 300 bytes.
 */
export function clip(s: string, max = 256): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${Buffer.byteLength(s)} bytes)`;
}

/**
 * grpc-js's own messages (e.g. "No address added…" before a failed bind) as log lines of this process,
 * not bare text on stderr next to the one line a failed start prints. Global: the CLI calls it once.
 */
export function routeGrpcLogs(log: Logger): void {
  const l = log.child({ module: 'grpc-js' });
  grpc.setLogger({
    error: (...args: unknown[]) => l.error(format(...args)),
    info: (...args: unknown[]) => l.info(format(...args)),
    debug: (...args: unknown[]) => l.debug(format(...args)),
  });
}
