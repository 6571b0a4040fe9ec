// Structured JSON logs (pino). One root logger; modules take children.
import { pino, type Logger } from 'pino';

export function createLogger(level = process.env['MESHFED_LOG_LEVEL'] ?? 'info'): Logger {
  return pino({ name: 'meshfed', level, base: undefined });
}
