// Compares the offline verifier of another build with this one, in one process. On a shared
// machine the load changes from minute to minute, so separate benchmark runs of two builds can
// differ by more than the change under test. This script loads both builds' verifyBundle and
// worker pool, alternates short rounds between them (A B B A ...), and prints the median CPU
// time per bundle and bundles/s of each. CPU time is that of the whole process.
//
// The baseline is a source tree of another commit, for example:
//   git archive COMMIT src | tar -x -C .tmp/baseline
// Placed inside this checkout, it finds the same node_modules.
//
// Run: node --import tsx bench/verify-compare.ts --baseline .tmp/baseline [--rounds 10]
//      [--round-ms 1000] [--bundles 200] [--threads 2]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { readNotesFile } from '../src/cli/notes-file.ts';
import { loadConfig } from '../src/config/config.ts';
import type { BundleVerifyOptions } from '../src/core/bundle.ts';
import type { CryptoProvider } from '../src/core/crypto.ts';
import type { Jwks } from '../src/core/key.ts';
import type { VerificationReport } from '../src/core/verify/verify.ts';
import { createServices } from '../src/services/container.ts';
import { benchEnv, benchIssueRequest, corpusPath, machineLine } from './issuance.ts';

const TENANT = 'bench-verify-compare';

/** The parts of a build that are compared. */
interface Build {
  name: string;
  verifyBundle: (
    crypto: CryptoProvider,
    zip: Uint8Array,
    options?: BundleVerifyOptions,
  ) => VerificationReport;
  crypto: CryptoProvider;
  pool: {
    verifyMany(
      zips: Uint8Array[],
      options: { trustedKeys?: Jwks },
    ): Promise<{ report?: { valid: boolean } }[]>;
    close(): Promise<void>;
  };
}

/** Result of one round: CPU µs per bundle, bundles/s and bundles that did not verify. */
interface Round {
  cpuMicroseconds: number;
  perSecond: number;
  invalid: number;
}

function parsePositive(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number, got ${text}`);
  }
  return value;
}

async function loadBuild(name: string, root: string, threads: number): Promise<Build> {
  const url = (path: string) => pathToFileURL(join(root, path)).href;
  const bundle = (await import(url('src/core/bundle.ts'))) as Pick<Build, 'verifyBundle'>;
  const cryptoNode = (await import(url('src/core/crypto-node.ts'))) as {
    nodeCrypto: CryptoProvider;
  };
  const pools = (await import(url('src/services/verify-pool.ts'))) as {
    BundleVerifierPool: new (threads: number) => Build['pool'];
  };
  return {
    name,
    verifyBundle: bundle.verifyBundle,
    crypto: cryptoNode.nodeCrypto,
    pool: new pools.BundleVerifierPool(threads),
  };
}

/** Issues one certificate per note with this build's services and exports each bundle. */
async function buildBundles(count: number): Promise<{ zips: Uint8Array[]; jwks: Jwks }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'cdil-bench-compare-'));
  const services = await createServices(loadConfig(benchEnv(dataDir)));
  try {
    await services.tenants.create(TENANT);
    const zips: Uint8Array[] = [];
    for (const [index, note] of readNotesFile(corpusPath()).slice(0, count).entries()) {
      const { certificate } = await services.issuance.issue(TENANT, benchIssueRequest(note, index));
      const bundle = await services.certificates.defenseBundle(TENANT, certificate.certificate_id);
      zips.push(bundle.zip);
    }
    return { zips, jwks: await services.tenants.jwks(TENANT) };
  } finally {
    await services.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function measure(
  milliseconds: number,
  verifySome: () => Promise<{ count: number; invalid: number }>,
): Promise<Round> {
  let count = 0;
  let invalid = 0;
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  while (performance.now() - started < milliseconds) {
    const result = await verifySome();
    count += result.count;
    invalid += result.invalid;
  }
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  return { cpuMicroseconds: (cpu.user + cpu.system) / count, perSecond: count / elapsed, invalid };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const { values } = parseArgs({
  options: {
    baseline: { type: 'string' },
    rounds: { type: 'string', default: '10' },
    'round-ms': { type: 'string', default: '1000' },
    bundles: { type: 'string', default: '200' },
    threads: { type: 'string', default: '2' },
  },
});
if (values.baseline === undefined) {
  throw new Error('missing --baseline, the folder of another build that contains its src folder');
}
const rounds = parsePositive(values.rounds, '--rounds');
const roundMs = parsePositive(values['round-ms'], '--round-ms');
const threads = parsePositive(values.threads, '--threads');

console.log(`machine: ${machineLine()}`);
const { zips, jwks } = await buildBundles(parsePositive(values.bundles, '--bundles'));
const builds = [
  await loadBuild('baseline', resolve(values.baseline), threads),
  await loadBuild('current', resolve(import.meta.dirname, '..'), threads),
];
try {
  const modes: [string, (build: Build) => Promise<{ count: number; invalid: number }>][] = [
    [
      'one thread',
      (build) => {
        let invalid = 0;
        for (const zip of zips) {
          if (!build.verifyBundle(build.crypto, zip, { trustedKeys: jwks }).valid) {
            invalid += 1;
          }
        }
        return Promise.resolve({ count: zips.length, invalid });
      },
    ],
    [
      `pool of ${threads} worker threads`,
      async (build) => {
        const outcomes = await build.pool.verifyMany(zips, { trustedKeys: jwks });
        const invalid = outcomes.filter((outcome) => !outcome.report?.valid).length;
        return { count: zips.length, invalid };
      },
    ],
  ];
  console.log(
    `${zips.length} bundles, pinned key set; ${rounds} rounds of ${roundMs} ms per build and mode, after a 2 s warm-up of each`,
  );
  console.log('');
  console.log(
    '| mode | build | CPU µs per bundle (median) | bundles/s (median) | CPU µs per round | not valid |',
  );
  console.log('|---|---|---:|---:|---|---:|');
  for (const [mode, verifySome] of modes) {
    for (const build of builds) {
      await measure(2000, () => verifySome(build));
    }
    const results = new Map<Build, Round[]>(builds.map((build) => [build, []]));
    for (let round = 0; round < rounds; round++) {
      // Alternating the order evens out a steady drift in the machine's load between builds.
      const order = round % 2 === 0 ? builds : [...builds].reverse();
      for (const build of order) {
        results.get(build)!.push(await measure(roundMs, () => verifySome(build)));
      }
    }
    for (const build of builds) {
      const measured = results.get(build)!;
      const cpu = measured.map((result) => result.cpuMicroseconds);
      const invalid = measured.reduce((sum, result) => sum + result.invalid, 0);
      console.log(
        `| ${mode} | ${build.name} | ${median(cpu).toFixed(1)} | ${median(measured.map((result) => result.perSecond)).toFixed(0)} | ${cpu.map((value) => value.toFixed(0)).join(' ')} | ${invalid} |`,
      );
      if (invalid > 0) {
        process.exitCode = 1;
      }
    }
  }
} finally {
  await Promise.all(builds.map((build) => build.pool.close()));
}
