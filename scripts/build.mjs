#!/usr/bin/env node
// Compiles the cdil command and the verifier worker thread to JavaScript in dist/, so the
// command starts without compiling TypeScript at run time. `npm install` runs it (the
// `prepare` script). bin/cdil.mjs runs the build only while no source file it was made from
// has changed since, and otherwise the TypeScript sources.
//
// Run: node scripts/build.mjs [--outdir DIR]   (default: dist, relative to the repository)
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { BUILD_INPUTS_FILE } from '../bin/build-state.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { outdir: { type: 'string', default: 'dist' } } });
const outdir = resolve(root, values.outdir);
// The build is written next to its final place and renamed, so an interrupted build never
// leaves a half-written dist/ that bin/cdil.mjs would take for a current one.
const staging = `${outdir}.partial-${process.pid}`;
rmSync(staging, { recursive: true, force: true });

// Sources changed after this moment may be missing from the build, so it counts as current only
// while every source file is older.
const startedAt = Date.now();
try {
  const result = await build({
    absWorkingDir: root,
    entryPoints: {
      cli: 'src/cli/main.ts',
      // BundleVerifierPool and SqliteAppendThread start their threads from a .mjs file beside
      // their own module. Entries and chunks share one folder, so those files are these entries.
      'verify-pool-worker': 'src/services/verify-pool-worker.ts',
      'append-thread-worker': 'src/services/append-thread-worker.ts',
    },
    outdir: staging,
    outExtension: { '.js': '.mjs' },
    chunkNames: '[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Packages stay in node_modules and load from there, as they do for the sources.
    packages: 'external',
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
  });
  const inputs = Object.keys(result.metafile.inputs)
    .map((input) => relative(root, resolve(root, input)))
    .sort();
  // Written last, so its presence marks a complete build.
  writeFileSync(
    join(staging, BUILD_INPUTS_FILE),
    `${JSON.stringify({ startedAt, inputs }, null, 2)}\n`,
  );
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(dirname(outdir), { recursive: true });
  renameSync(staging, outdir);
  console.log(`built ${relative(root, outdir) || '.'} from ${inputs.length} source files`);
} catch (error) {
  rmSync(staging, { recursive: true, force: true });
  throw error;
}
