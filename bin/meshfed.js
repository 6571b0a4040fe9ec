#!/usr/bin/env node
// Launcher for `npx meshfed …`: runs src/cli/main.ts in this same process through tsx's loader.
// No child process, so signals reach the CLI directly and its exit code is the process's exit code.
// src/gen/ must exist (`npm run gen`; `npm start` and `npm test` run it for you).
import { fileURLToPath, pathToFileURL } from 'node:url';
import { register } from 'tsx/esm/api';

register();
const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
// Make the CLI see itself as the entry point (argv[1]), exactly as under `tsx src/cli/main.ts`;
// process.argv.slice(2) — the user's arguments — is unchanged.
process.argv[1] = main;
await import(pathToFileURL(main).href);
