// `cdil ledger verify`: whole-ledger verification of one tenant on the configured database.
// It opens the database read-only and never migrates it, so it is safe to run beside live
// servers and the report describes the rows as they are stored.
import type { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { ConfigError, loadConfig } from '../../config/config.ts';
import type { LedgerFinding, LedgerProgress, LedgerReport } from '../../services/ledger.ts';
import { openReadOnlyStore } from '../read-only-store.ts';
import { printable, readTsaRoots } from './verify.ts';

export const EXIT_CLEAN = 0;
export const EXIT_FINDINGS = 1;
export const EXIT_UNUSABLE = 2;

/** Logs with at least this many leaves get progress output on stderr. */
const PROGRESS_MIN_LEAVES = 10_000;

interface LedgerVerifyOptions {
  tenant: string;
  json?: boolean;
  maxFindings?: string;
  tsaRoots?: string;
}

/** Progress on stderr: a bar on a terminal, a line every tenth of the way otherwise. */
async function createProgress(): Promise<{
  update(progress: LedgerProgress): void;
  stop(): void;
}> {
  let bar: SingleBar | undefined;
  if (process.stderr.isTTY) {
    const { default: cliProgress } = await import('cli-progress');
    bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: 'verifying [{bar}] {percentage}% | {value}/{total} leaves | ETA {eta}s',
      },
      cliProgress.Presets.shades_classic,
    );
  }
  let started = false;
  let nextLine = 0;
  return {
    update: ({ leaves_checked: done, leaves_total: total }) => {
      if (total < PROGRESS_MIN_LEAVES) {
        return;
      }
      if (bar) {
        if (!started) {
          bar.start(total, 0);
          started = true;
        }
        bar.update(done);
      } else if (done >= nextLine || done === total) {
        process.stderr.write(`verified ${done}/${total} leaves\n`);
        nextLine = done + Math.ceil(total / 10);
      }
    },
    stop: () => {
      if (started) {
        bar?.stop();
      }
    },
  };
}

function locate(finding: LedgerFinding): string {
  const parts: string[] = [];
  switch (finding.subject) {
    case 'certificate':
      parts.push(
        finding.certificate_id === undefined
          ? 'certificate'
          : `certificate ${finding.certificate_id}`,
      );
      if (finding.chain_sequence !== undefined) {
        parts.push(`sequence ${finding.chain_sequence}`);
      }
      break;
    case 'audit_event':
      parts.push(`audit event ${finding.event_id ?? ''}`.trim());
      break;
    case 'node':
      parts.push(`node ${finding.node!.level}/${finding.node!.index}`);
      break;
    case 'head':
      // A log head finding has the head's tree size, a chain head finding its chain sequence.
      if (finding.tree_size !== undefined) {
        parts.push(`log head of size ${finding.tree_size}`);
      } else {
        parts.push('chain head');
      }
      if (finding.chain_sequence !== undefined) {
        parts.push(`sequence ${finding.chain_sequence}`);
      }
      break;
    case 'checkpoint':
      parts.push(
        finding.tree_size === undefined ? 'checkpoint' : `checkpoint of size ${finding.tree_size}`,
      );
      break;
    case 'leaf':
      parts.push('leaf');
      break;
  }
  if (finding.log_index !== undefined && finding.subject !== 'checkpoint') {
    parts.push(
      finding.count !== undefined && finding.subject === 'leaf'
        ? `log indexes ${finding.log_index}-${finding.log_index + finding.count - 1}`
        : `log index ${finding.log_index}`,
    );
  }
  return parts.join(', ');
}

function plural(count: number, singular: string, pluralForm = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}

export function formatLedgerReport(report: LedgerReport): string {
  const { checked, not_checked: notChecked } = report;
  const lines = [
    `${report.ok ? 'CLEAN' : 'FINDINGS'}  ledger of tenant ${report.tenant_id}, ${plural(report.tree_size, 'leaf', 'leaves')}`,
    `  checked ${plural(checked.leaves, 'leaf', 'leaves')} ` +
      `(${plural(checked.certificates, 'certificate')}, ${plural(checked.audit_events, 'audit event')}), ` +
      `${plural(checked.nodes, 'node')} and ${plural(checked.checkpoints, 'checkpoint')} in ${report.duration_ms} ms`,
  ];
  if (
    notChecked.leaves_appended_during_run > 0 ||
    notChecked.checkpoints_published_during_run > 0
  ) {
    lines.push(
      `  left for a later run: ${notChecked.leaves_appended_during_run} leaves and ` +
        `${notChecked.checkpoints_published_during_run} checkpoints added while verifying`,
    );
  }
  if (checked.timestamp_tokens > 0) {
    lines.push(`  verified ${plural(checked.timestamp_tokens, 'timestamp token')}`);
  }
  if (notChecked.timestamp_tokens_without_roots > 0) {
    lines.push(
      `  not verified: ${plural(notChecked.timestamp_tokens_without_roots, 'timestamp token')}, ` +
        'because no TSA roots were given (--tsa-roots)',
    );
  }
  for (const finding of report.findings) {
    lines.push(`  ${finding.kind.padEnd(19)} ${locate(finding)}: ${finding.detail}`);
  }
  const counted = Object.entries(report.totals)
    .filter(([, count]) => count > 0)
    .map(([kind, count]) => `${kind} ${count}`);
  if (counted.length > 0) {
    lines.push('', `totals: ${counted.join(', ')}`);
  }
  if (report.findings_truncated) {
    lines.push(
      `only the first ${report.findings.length} findings are listed, and the chain analysis ` +
        'may be incomplete; raise --max-findings to see more',
    );
  }
  return lines.map(printable).join('\n');
}

function parseMaxFindings(text: string | undefined): number | undefined {
  if (text === undefined) {
    return undefined;
  }
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 100_000) {
    throw new Error(
      `--max-findings must be an integer from 1 to 100000, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

/** Returns the message of an error on one line; a ConfigError's message lists its problems. */
function describeError(error: unknown): string {
  if (error instanceof ConfigError) {
    return error.problems.join('; ');
  }
  return error instanceof Error ? error.message : String(error);
}

/** Verifies the tenant's ledger and returns the exit status. */
export async function runLedgerVerify(
  options: LedgerVerifyOptions,
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  let report: LedgerReport;
  const progress = await createProgress();
  try {
    const maxFindings = parseMaxFindings(options.maxFindings);
    const tsaRoots = await readTsaRoots(options.tsaRoots);
    const [{ LedgerVerifier }, { systemClock }] = await Promise.all([
      import('../../services/ledger.ts'),
      import('../../services/clock.ts'),
    ]);
    const store = await openReadOnlyStore(loadConfig(process.env, { writeSecrets: false }));
    try {
      report = await new LedgerVerifier(store, systemClock, tsaRoots).verify(options.tenant, {
        maxFindings,
        onProgress: (update) => progress.update(update),
      });
    } finally {
      await store.close();
    }
  } catch (error) {
    progress.stop();
    const message = describeError(error);
    if (options.json) {
      out(JSON.stringify({ ok: false, error: { message } }, null, 2));
    }
    err(`error: ${message}`);
    return EXIT_UNUSABLE;
  }
  progress.stop();
  out(options.json ? JSON.stringify(report, null, 2) : formatLedgerReport(report));
  return report.ok ? EXIT_CLEAN : EXIT_FINDINGS;
}

export function registerLedgerCommand(program: Command): void {
  const ledger = program
    .command('ledger')
    .description("Check a tenant's stored ledger against its signatures, log and checkpoints");
  ledger
    .command('verify')
    .description(
      "Verify a tenant's whole ledger on the configured database: every log leaf against its " +
        'stored bytes, every certificate signature, chain link and column, every stored node, ' +
        'the rebuilt tree against the log head and every signed checkpoint, and, with ' +
        '--tsa-roots, every stored RFC 3161 timestamp token. The database is opened read-only ' +
        'and not migrated. Exit status: 0 clean, 1 findings, 2 unusable (unknown tenant, ' +
        'database error, schema older or newer than this cdil, invalid or unreadable TSA root file).',
    )
    .requiredOption('--tenant <id>', 'tenant whose ledger to verify')
    .option('--json', 'print the full report as JSON')
    .option('--max-findings <n>', 'findings listed in the report, 1 to 100000 (default 1000)')
    .option(
      '--tsa-roots <file>',
      'PEM file of the RFC 3161 TSA root certificates you trust; verifies the stored ' +
        'certificate and checkpoint timestamp tokens (without it they are not checked)',
    )
    .action(async (options: LedgerVerifyOptions) => {
      process.exitCode = await runLedgerVerify(
        options,
        (text) => process.stdout.write(text + '\n'),
        (text) => process.stderr.write(text + '\n'),
      );
    });
}
