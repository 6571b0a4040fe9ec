// Generates TypeScript typings for the Envoy protos meshfed loads into src/gen/envoy/, with
// @grpc/proto-loader's `proto-loader-gen-types`. The proto list and include dirs come from
// src/xds/protos.ts, so they live in exactly one place.
//
// Run with `tsx scripts/gen-envoy-types.ts` (part of `npm run gen`).
//
// Output is written to a temporary sibling directory and swapped in only when the generator succeeds,
// so a failed run never leaves a half-written tree and files for protos dropped from the list disappear.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENVOY_PROTO_FILES, INCLUDE_DIRS } from '../src/envoy/protos.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'src', 'gen', 'envoy');
const TMP = `${OUT}.tmp-${process.pid}`;

/**
 * The `__Output` typings are only true of objects decoded with the same conversion options
 * (`toObject(…, { longs: String, enums: String, defaults: true, oneofs: true, json: true })`).
 */
const GEN_OPTIONS = [
  '--keepCase',
  '--longs=String',
  '--enums=String',
  '--defaults',
  '--oneofs',
  '--json',
  '--grpcLib=@grpc/grpc-js',
  // Our tsconfig uses NodeNext resolution: relative imports need an explicit .js suffix.
  '--importFileExtension=.js',
];

function generatorBin(): string {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve('@grpc/proto-loader/package.json');
  const pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8')) as { bin?: Record<string, string> };
  const bin = pkg.bin?.['proto-loader-gen-types'];
  if (!bin) throw new Error(`${pkgPath} declares no proto-loader-gen-types bin`);
  return path.join(path.dirname(pkgPath), bin);
}

function main(): void {
  // Relative include dirs keep machine-specific absolute paths out of the generated "Original file" comments.
  const includes = INCLUDE_DIRS.flatMap((dir) => ['-I', path.relative(ROOT, dir) || '.']);
  const outRel = path.relative(ROOT, TMP);

  fs.rmSync(TMP, { recursive: true, force: true });
  const res = spawnSync(
    process.execPath,
    [generatorBin(), ...GEN_OPTIONS, ...includes, '-O', outRel, ...ENVOY_PROTO_FILES],
    { cwd: ROOT, stdio: 'inherit' },
  );
  try {
    if (res.error) throw res.error;
    if (res.status !== 0) {
      throw new Error(`proto-loader-gen-types exited with ${res.signal ?? `status ${String(res.status)}`}`);
    }
    // The generator writes one "root" file per proto basename (files sharing a basename, e.g. the two
    // cluster.proto, share one root file); check each one is there so a silent partial run cannot pass.
    for (const file of ENVOY_PROTO_FILES) {
      const rootFile = path.join(TMP, path.basename(file).replace(/\.proto$/, '.ts'));
      if (!fs.existsSync(rootFile)) throw new Error(`generator produced no ${path.relative(ROOT, rootFile)} for ${file}`);
    }
    fs.rmSync(OUT, { recursive: true, force: true });
    fs.renameSync(TMP, OUT);
  } catch (err) {
    fs.rmSync(TMP, { recursive: true, force: true });
    throw err;
  }

  let count = 0;
  for (const entry of fs.readdirSync(OUT, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.ts')) count++;
  }
  console.log(`gen-envoy-types: ${String(count)} files from ${String(ENVOY_PROTO_FILES.length)} protos -> ${path.relative(ROOT, OUT)}`);
}

main();
