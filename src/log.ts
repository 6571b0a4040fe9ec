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
