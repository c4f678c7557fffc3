// Measures offline verification of defense bundles. Real bundles are built through the
// services on a throwaway database. Part (a) times verifyBundle in-process in three modes:
// the bundle alone, with a pinned key set, and with a pinned key set plus the note text, then
// on a pool of worker threads. CPU time is that of the whole process (process.cpuUsage), so
// the pool row includes its workers and V8's helper threads. It varies much less with other
// programs' load than the rates do.
// Part (b) runs the `cdil verify` command as a new process per call, from the JavaScript build
// when it is current and once more from the TypeScript sources. Bare `node -e 0` and
// `cdil --help` runs are timed next to it, so the process start cost can be read off.
//
// Each row starts after a full garbage collection. Without it, the pool row was about a fifth
// slower than in a process of its own: the garbage of the single-thread rows was still being
// collected while it ran. A 5 s pause before the pool row had the same effect as the collection.
//
// Run: node --import tsx bench/verify.ts [--bundles 200] [--seconds 5] [--cli-runs 20] [--threads N]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { readNotesFile } from '../src/cli/notes-file.ts';
import { loadConfig } from '../src/config/config.ts';
import { verifyBundle, type BundleVerifyOptions } from '../src/core/bundle.ts';
import { nodeCrypto } from '../src/core/crypto-node.ts';
import type { Jwks } from '../src/core/key.ts';
import { createServices } from '../src/services/container.ts';
import { BundleVerifierPool, defaultThreadCount } from '../src/services/verify-pool.ts';
import { benchEnv, benchIssueRequest, corpusPath, machineLine, percentile } from './issuance.ts';

// gc() is only exposed by a flag, and a flag set at run time reaches only new contexts.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const repoRoot = fileURLToPath(new URL('../', import.meta.url));
const TENANT = 'bench-verify';

interface Bundle {
  zip: Uint8Array;
  noteText: string;
}

function parsePositive(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number, got ${text}`);
  }
  return value;
}

/** Issues one certificate per note and exports each as a defense bundle. */
async function buildBundles(
  dataDir: string,
  count: number,
): Promise<{ bundles: Bundle[]; jwks: Jwks }> {
  const services = await createServices(loadConfig(benchEnv(dataDir)));
  try {
    await services.tenants.create(TENANT);
    const notes = readNotesFile(corpusPath()).slice(0, count);
    const outcomes = await Promise.all(
      notes.map((note, index) => services.issuance.issue(TENANT, benchIssueRequest(note, index))),
    );
    const bundles: Bundle[] = [];
    for (const [index, outcome] of outcomes.entries()) {
      const { zip } = await services.certificates.defenseBundle(
        TENANT,
        outcome.certificate.certificate_id,
      );
      bundles.push({ zip, noteText: notes[index]!.text });
    }
    return { bundles, jwks: await services.tenants.jwks(TENANT) };
  } finally {
    await services.close();
  }
}

/** Returns the CPU time of the whole process since `start`, in µs. */
function cpuMicrosecondsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return used.user + used.system;
}

/**
 * Verifies bundles round-robin for `seconds` and returns bundles/s, wall and CPU µs per bundle,
 * and failures.
 */
function timeVerify(
  bundles: Bundle[],
  seconds: number,
  optionsFor: (bundle: Bundle) => BundleVerifyOptions,
): {
  perSecond: number;
  microseconds: number;
  cpuMicroseconds: number;
  invalid: number;
  count: number;
} {
  let count = 0;
  let invalid = 0;
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  while (performance.now() < deadline) {
    // Check the clock once per pass over all bundles, so timing calls stay out of the loop.
    for (const bundle of bundles) {
      if (!verifyBundle(nodeCrypto, bundle.zip, optionsFor(bundle)).valid) {
        invalid += 1;
      }
    }
    count += bundles.length;
  }
  const elapsed = (performance.now() - started) / 1000;
  return {
    perSecond: count / elapsed,
    microseconds: (elapsed * 1e6) / count,
    cpuMicroseconds: cpuMicrosecondsSince(cpuStart) / count,
    invalid,
    count,
  };
}

/** Runs a command `runs` times in sequence and returns per-call wall times in ms and the exit codes. */
function timeCommand(
  args: string[],
  runs: number,
  env: NodeJS.ProcessEnv = {},
): { ms: number[]; statuses: Set<number | null> } {
  const ms: number[] = [];
  const statuses = new Set<number | null>();
  for (let run = 0; run < runs; run += 1) {
    const started = performance.now();
    const result = spawnSync(process.execPath, args, {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    ms.push(performance.now() - started);
    statuses.add(result.status);
  }
  return { ms, statuses };
}

const { values } = parseArgs({
  options: {
    bundles: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '5' },
    'cli-runs': { type: 'string', default: '20' },
    threads: { type: 'string', default: String(defaultThreadCount()) },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`Usage: node --import tsx bench/verify.ts [options]
  --bundles N    bundles issued and exported for the run (default 200)
  --seconds S    seconds per in-process mode, after a 1 s warm-up (default 5)
  --threads N    worker threads of the pool row (default ${defaultThreadCount()})
  --cli-runs N   calls of each \`cdil\` command row; 0 skips the command rows (default 20)`);
  process.exit(0);
}
const bundleCount = parsePositive(values.bundles, '--bundles');
const seconds = parsePositive(values.seconds, '--seconds');
const cliRuns = Number(values['cli-runs']);
if (!Number.isSafeInteger(cliRuns) || cliRuns < 0) {
  throw new Error(`--cli-runs must be a non-negative integer, got ${values['cli-runs']}`);
}

const dataDir = mkdtempSync(join(tmpdir(), 'cdil-bench-verify-'));
try {
  console.log(`machine: ${machineLine()}`);
  const { bundles, jwks } = await buildBundles(dataDir, bundleCount);
  const meanBytes = bundles.reduce((sum, bundle) => sum + bundle.zip.length, 0) / bundles.length;
  console.log(
    `${bundles.length} bundles, mean ${(meanBytes / 1000).toFixed(1)} KB; ${seconds} s per mode after a 1 s warm-up`,
  );

  timeVerify(bundles, 1, () => ({ trustedKeys: jwks, noteText: bundles[0]!.noteText }));
  const modes: [string, (bundle: Bundle) => BundleVerifyOptions][] = [
    ['bundle only', () => ({})],
    ['pinned key set', () => ({ trustedKeys: jwks })],
    [
      'pinned key set and note text',
      (bundle) => ({ trustedKeys: jwks, noteText: bundle.noteText }),
    ],
  ];
  console.log('');
  console.log(
    '| in-process verifyBundle | bundles/s | µs per bundle | CPU µs per bundle | verified | not valid |',
  );
  console.log('|---|---:|---:|---:|---:|---:|');
  let anyInvalid = false;
  for (const [name, optionsFor] of modes) {
    collectGarbage();
    const result = timeVerify(bundles, seconds, optionsFor);
    anyInvalid ||= result.invalid > 0;
    console.log(
      `| ${name} | ${result.perSecond.toFixed(0)} | ${result.microseconds.toFixed(0)} | ${result.cpuMicroseconds.toFixed(0)} | ${result.count} | ${result.invalid} |`,
    );
  }

  // Worker-thread pool: the same verifier on every core, as `cdil verify A.zip B.zip ...` uses.
  const threads = parsePositive(values.threads, '--threads');
  collectGarbage();
  const pool = new BundleVerifierPool(threads);
  try {
    const zips = bundles.map((bundle) => bundle.zip);
    // The same 1 s warm-up as the in-process modes, so the workers' code is optimized too.
    const warmUpEnd = performance.now() + 1000;
    while (performance.now() < warmUpEnd) {
      await pool.verifyMany(zips, { trustedKeys: jwks });
    }
    let count = 0;
    let invalid = 0;
    const cpuStart = process.cpuUsage();
    const started = performance.now();
    while (performance.now() - started < seconds * 1000) {
      const outcomes = await pool.verifyMany(zips, { trustedKeys: jwks });
      invalid += outcomes.filter((outcome) => !outcome.report?.valid).length;
      count += zips.length;
    }
    const elapsed = (performance.now() - started) / 1000;
    const cpuPerBundle = cpuMicrosecondsSince(cpuStart) / count;
    anyInvalid ||= invalid > 0;
    console.log(
      `| pinned key set, pool of ${threads} worker threads | ${(count / elapsed).toFixed(0)} | ${((elapsed * 1e6) / count).toFixed(0)} | ${cpuPerBundle.toFixed(0)} | ${count} | ${invalid} |`,
    );
  } finally {
    await pool.close();
  }

  const zipPath = join(dataDir, 'bundle.zip');
  const jwksPath = join(dataDir, 'tenant-jwks.json');
  const notePath = join(dataDir, 'note.txt');
  writeFileSync(zipPath, bundles[0]!.zip);
  writeFileSync(jwksPath, JSON.stringify(jwks));
  writeFileSync(notePath, bundles[0]!.noteText);
  const cli = join(repoRoot, 'bin/cdil.mjs');
  const fromSource = { CDIL_FROM_SOURCE: '1' };
  const commands: [string, string[], NodeJS.ProcessEnv][] =
    cliRuns === 0
      ? []
      : [
          ['node -e 0 (process start only)', ['-e', '0'], {}],
          ['cdil --help (start and CLI set-up)', [cli, '--help'], {}],
          ['cdil verify bundle.zip', [cli, 'verify', zipPath], {}],
          [
            'cdil verify bundle.zip --trusted-keys --note',
            [cli, 'verify', zipPath, '--trusted-keys', jwksPath, '--note', notePath],
            {},
          ],
          [
            'cdil verify bundle.zip, TypeScript sources through tsx',
            [cli, 'verify', zipPath],
            fromSource,
          ],
        ];
  console.log('');
  if (commands.length === 0) {
    console.log('command rows skipped (--cli-runs 0)');
  } else {
    console.log(
      `| command, run ${cliRuns} times in sequence | calls/s | ms per call (mean) | p50 ms | max ms | exit status |`,
    );
    console.log('|---|---:|---:|---:|---:|---|');
  }
  for (const [name, args, env] of commands) {
    const { ms, statuses } = timeCommand(args, cliRuns, env);
    const mean = ms.reduce((sum, value) => sum + value, 0) / ms.length;
    const statusText = [...statuses].join(', ');
    if (statuses.size !== 1 || !statuses.has(0)) {
      anyInvalid = true;
    }
    console.log(
      `| ${name} | ${(1000 / mean).toFixed(1)} | ${mean.toFixed(0)} | ${percentile(ms, 0.5).toFixed(0)} | ${percentile(ms, 1).toFixed(0)} | ${statusText} |`,
    );
  }
  if (anyInvalid) {
    console.log('\nsome verifications did not report a valid bundle or exit with status 0');
    process.exitCode = 1;
  }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
