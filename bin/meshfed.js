#!/usr/bin/env node
// Launcher for `npx meshfed …`: runs the compiled CLI, dist/cli/main.js (`npm run build`; `npm ci` builds it).
// Imported in this same process, no child: signals reach the CLI directly and its exit code is the process's.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('meshfed: dist/cli/main.js is missing; run `npm run build` first\n');
  process.exit(1);
}
// `npx meshfed` runs this under a `sh -c` that npm starts; on SIGTERM npm signals that shell, which dies without
// passing the signal on. So under npm exec, losing that parent is the SIGTERM it stood for (graceful shutdown).
if (process.env['npm_command'] === 'exec') {
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch);
    process.kill(process.pid, 'SIGTERM');
  }, 500);
  watch.unref();
}
// The CLI sees itself as the entry point (argv[1]), as under `node dist/cli/main.js`; the arguments are unchanged.
process.argv[1] = fileURLToPath(main);
await import(main.href);
