// Compiles src/ to JavaScript for `node dist/cli/main.js` (the bin and the image run this, never tsx).
// Run with `tsx scripts/build.ts [outDir] [--tsc-flag…]` after `npm run gen` (`npm run build` does both;
// default outDir: dist). Flags go to tsc (the image test passes --noCheck: its run has typechecked already).
//
// The output directory is emptied first, so a module deleted from src/ does not live on in dist/. Files
// that are not TypeScript (src/config/default-mesh.yaml) are copied next to the modules that read them.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SRC = path.join(ROOT, 'src');
const args = process.argv.slice(2);
const out = path.resolve(args.find((a) => !a.startsWith('-')) ?? path.join(ROOT, 'dist'));
const tscFlags = args.filter((a) => a.startsWith('-'));

fs.rmSync(out, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const res = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', out, ...tscFlags], {
  stdio: 'inherit',
});
if (res.status !== 0) {
  process.stderr.write(`build: tsc failed (${res.signal ?? `exit ${String(res.status)}`})\n`);
  process.exit(1);
}
for (const rel of fs.readdirSync(SRC, { recursive: true, encoding: 'utf8' })) {
  const from = path.join(SRC, rel);
  if (rel.endsWith('.ts') || !fs.statSync(from).isFile()) continue;
  fs.mkdirSync(path.dirname(path.join(out, rel)), { recursive: true });
  fs.copyFileSync(from, path.join(out, rel));
}
