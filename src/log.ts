// Structured JSON logs (pino). One root logger; modules take children.
import { pino, type Logger } from 'pino';

export function createLogger(level = process.env['MESHFED_LOG_LEVEL'] ?? 'info'): Logger {
  return pino({ name: 'meshfed', level, base: undefined });
}

/**
 * A client-supplied string as it may appear in a log line or a gRPC status: at most `max`
 * characters, with the original length when cut, so a 10 MiB type_url costs 300 bytes.
 */
export function clip(s: string, max = 256): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${Buffer.byteLength(s)} bytes)`;
}
