// Fills one tenant's chain to --count certificates through the real IssuanceService (no HTTP)
// and shows whether issuance slows down as the chain grows. Many issue() calls are kept in
// flight at once so the service batches them into shared append transactions, as it does under
// HTTP load. Throughput is recorded for every window of --window certificates, and the windows
// that start at chain lengths 0, 10 %, 50 % and at the end of the fill are tabulated. Then the
// database size per certificate is printed, and the HTTP server is started on the filled
// database for one autocannon run (16 connections, one tenant).
//
// Run: node --import tsx bench/chain-length.ts [--count 1000000] [--window 20000]
//        [--concurrency 512] [--http-seconds 10] [--keep]
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { readNotesFile } from '../src/cli/notes-file.ts';
import { loadConfig } from '../src/config/config.ts';
import { createServices } from '../src/services/container.ts';
import type { IssueRequest } from '../src/services/issuance.ts';
import {
  benchEnv,
  checkChainHeads,
  clinicianToken,
  corpusPath,
  formatCellTable,
  machineLine,
  prepareNotes,
  reportCellProblems,
  runLoadCell,
  startServerProcess,
  type IssuedCounts,
  benchIssueRequest,
} from './issuance.ts';

const TENANT = 'bench-chain';

function parseCount(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer, got ${text}`);
  }
  return value;
}

function fileSize(path: string): number {
  return existsSync(path) ? statSync(path).size : 0;
}

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000000' },
    window: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '512' },
    'http-seconds': { type: 'string', default: '10' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`Usage: node --import tsx bench/chain-length.ts [options]
  --count N          certificates issued into one tenant's chain (default 1000000)
  --window N         certificates per throughput window (default 20000)
  --concurrency N    issue() calls in flight (default 512)
  --http-seconds S   seconds of HTTP load on the filled database; 0 skips it (default 10)
  --keep             keep the data folder`);
  process.exit(0);
}
const count = parseCount(values.count, '--count');
const windowSize = parseCount(values.window, '--window');
const concurrency = parseCount(values.concurrency, '--concurrency');
const httpSeconds = parseCount(values['http-seconds'], '--http-seconds');
if (windowSize === 0 || concurrency === 0 || count < windowSize) {
  throw new Error('--window and --concurrency must be positive, and --count at least --window');
}

const requests: IssueRequest[] = readNotesFile(corpusPath()).map(benchIssueRequest);

const dataDir = mkdtempSync(join(tmpdir(), 'cdil-bench-chain-'));
const config = loadConfig(benchEnv(dataDir));
console.log(`machine: ${machineLine()}`);
console.log(
  `filling tenant ${TENANT} to ${count} certificates, ${concurrency} issue() calls in flight, data folder ${dataDir}`,
);

const services = await createServices(config);
await services.tenants.create(TENANT);

// windowEnds[i] is the time in ms at which certificate (i + 1) * windowSize completed, and
// windowCpu[i] the CPU time in µs this process had used by then. CPU time per certificate is
// reported next to wall-clock throughput because other programs on a shared machine take
// wall-clock time from this one but not CPU time.
const windowEnds: number[] = [];
const windowCpu: number[] = [];
const cpuMicroseconds = () => {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
};
const fillStart = performance.now();
const fillCpuStart = cpuMicroseconds();
let next = 0;
let completed = 0;
let lastCertificateId = '';

async function worker(): Promise<void> {
  while (next < count) {
    const n = next++;
    const outcome = await services.issuance.issue(TENANT, requests[n % requests.length]!);
    lastCertificateId = outcome.certificate.certificate_id;
    completed += 1;
    if (completed % windowSize === 0) {
      const now = performance.now();
      windowEnds.push(now);
      windowCpu.push(cpuMicroseconds());
      const previous = windowEnds.length > 1 ? windowEnds[windowEnds.length - 2]! : fillStart;
      const previousCpu = windowCpu.length > 1 ? windowCpu[windowCpu.length - 2]! : fillCpuStart;
      if (
        windowEnds.length % Math.max(1, Math.round(count / windowSize / 20)) === 0 ||
        completed === count
      ) {
        const elapsed = (now - fillStart) / 1000;
        console.log(
          `  ${String(completed).padStart(String(count).length)}/${count}  ` +
            `window ${(windowSize / ((now - previous) / 1000)).toFixed(0)}/s ` +
            `${((windowCpu[windowCpu.length - 1]! - previousCpu) / windowSize).toFixed(0)} CPU µs each  ` +
            `overall ${(completed / elapsed).toFixed(0)}/s  elapsed ${elapsed.toFixed(0)} s  ` +
            `load average ${loadavg()[0]!.toFixed(1)}`,
        );
      }
    }
  }
}

await Promise.all(Array.from({ length: concurrency }, () => worker()));
const fillSeconds = (performance.now() - fillStart) / 1000;

const cpuPerCertificate = windowCpu.map(
  (cpu, i) => (cpu - (i > 0 ? windowCpu[i - 1]! : fillCpuStart)) / windowSize,
);
const rates = windowEnds.map(
  (end, i) => windowSize / ((end - (i > 0 ? windowEnds[i - 1]! : fillStart)) / 1000),
);
const report = await services.certificates.verify(TENANT, lastCertificateId);
await services.close();

// Closing the only connection checkpoints the WAL into the main file.
const databaseBytes = fileSize(config.sqlitePath) + fileSize(`${config.sqlitePath}-wal`);

console.log('');
console.log(
  `filled ${count} certificates in ${fillSeconds.toFixed(0)} s: ${(count / fillSeconds).toFixed(0)} certificates/s overall`,
);
console.log(
  `last certificate verifies against its stored predecessor: ${report.valid ? 'yes' : `NO (${report.summary})`}`,
);
console.log('');
console.log(
  `| chain length at window start | certificates/s over the next ${windowSize} | CPU µs per certificate |`,
);
console.log('|---:|---:|---:|');
for (const fraction of [0, 0.1, 0.5, 1]) {
  const index = Math.min(rates.length - 1, Math.floor((count * fraction) / windowSize));
  console.log(
    `| ${index * windowSize} | ${rates[index]!.toFixed(0)} | ${cpuPerCertificate[index]!.toFixed(0)} |`,
  );
}
const describe = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return `min ${sorted[0]!.toFixed(0)}, median ${median.toFixed(0)}, max ${sorted[sorted.length - 1]!.toFixed(0)}`;
};
console.log('');
console.log(
  `all ${rates.length} windows: certificates/s ${describe(rates)}; CPU µs per certificate ${describe(cpuPerCertificate)}`,
);
// Every tenth of the fill, so a trend with chain length shows without printing every window.
const tenth = Math.max(1, Math.floor(rates.length / 10));
console.log(
  `CPU µs per certificate, mean of each tenth of the fill: ` +
    Array.from({ length: Math.floor(rates.length / tenth) }, (_, i) => {
      const slice = cpuPerCertificate.slice(i * tenth, (i + 1) * tenth);
      return (slice.reduce((sum, value) => sum + value, 0) / slice.length).toFixed(0);
    }).join(', '),
);
console.log(
  `database: ${(databaseBytes / 1e6).toFixed(0)} MB, ${(databaseBytes / count).toFixed(0)} bytes per certificate`,
);
if (!report.valid) {
  process.exitCode = 1;
}

if (httpSeconds > 0) {
  console.log('');
  console.log(
    `HTTP on the filled database: 1 tenant, 16 connections, ${httpSeconds} s after a 3 s warm-up`,
  );
  const notes = prepareNotes();
  const server = await startServerProcess(dataDir);
  const issued: IssuedCounts = new Map([[TENANT, count]]);
  const tokens = [{ tenantId: TENANT, token: await clinicianToken(config, TENANT) }];
  let inFlightLimit = 0;
  try {
    const warmup = await runLoadCell({
      url: server.url,
      tokens,
      notes,
      connections: 16,
      seconds: 3,
      issued,
    });
    reportCellProblems(warmup);
    inFlightLimit += 16;
    const cell = await runLoadCell({
      url: server.url,
      tokens,
      notes,
      connections: 16,
      seconds: httpSeconds,
      issued,
    });
    inFlightLimit += 16;
    console.log(formatCellTable([cell]));
    reportCellProblems(cell);
    if (cell.non2xx + cell.errors + cell.timeouts + cell.invalidBodies > 0) {
      process.exitCode = 1;
    }
  } finally {
    await server.stop();
  }
  const { problems } = await checkChainHeads(config, issued, inFlightLimit);
  console.log(
    problems.length === 0
      ? 'database check passed'
      : `database check FAILED:\n  ${problems.join('\n  ')}`,
  );
  if (problems.length > 0) {
    process.exitCode = 1;
  }
}

if (values.keep) {
  console.log(`kept data folder ${dataDir}`);
} else {
  rmSync(dataDir, { recursive: true, force: true });
}
