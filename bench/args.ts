// Flags of the bench scripts. --help prints the usage and exits 0; an unknown flag or a bad value prints
// one line and exits 2, before anything starts (never a stack trace, never a run with NaN clients).
import { parseArgs } from 'node:util';

/**
 * Parses process.argv against `defaults` (every flag takes a value): `--scenario` must be one of
 * `scenarios`, every other flag a positive whole number.
 */
export function benchArgs<T extends Record<string, string>>(usage: string, scenarios: readonly string[], defaults: T): T {
  const options = Object.fromEntries(Object.entries(defaults).map(([k, v]) => [k, { type: 'string' as const, default: v }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } } }));
  } catch (err) {
    return fail((err as Error).message);
  }
  if (values['help']) {
    process.stdout.write(usage);
    process.exit(0);
  }
  for (const [k, v] of Object.entries(values)) {
    if (k === 'scenario' ? !scenarios.includes(String(v)) : !/^[1-9][0-9]*$/.test(String(v))) {
      fail(`--${k} ${String(v)}: ${k === 'scenario' ? `must be one of ${scenarios.join(', ')}` : 'must be a positive whole number'}`);
    }
  }
  return values as T;
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message} (--help for usage)\n`);
  process.exit(2);
}
