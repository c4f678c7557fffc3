// `cdil audit export` writes a tenant's audit trail with proofs to one JSON Lines file, and
// `cdil audit verify` checks such a file offline. Exit statuses follow `cdil verify`.
import { createReadStream, existsSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { AuditExportVerifier, type AuditExportReport } from '../../core/audit-export.ts';
import { parseVerifierKey } from '../../core/checkpoint.ts';
import { nodeCrypto } from '../../core/crypto-node.ts';
import { AuditError, BundleError } from '../../core/errors.ts';
import { cliAuditContext } from '../../services/audit.ts';
import { withServices } from './admin.ts';
import { EXIT_INVALID, EXIT_UNUSABLE, EXIT_VALID, printable, readInput } from './verify.ts';

/** Longest accepted line of an export. Entries are a few KiB, and a header at most 130 KiB. */
export const MAX_EXPORT_LINE_BYTES = 1024 * 1024;
/** Characters of export lines collected before each write call. */
const WRITE_BUFFER_CHARS = 1024 * 1024;

type Output = (text: string) => void;

export interface AuditExportCliOptions {
  tenant: string;
  out: string;
  /** Inclusive lower bound of occurred_at, ISO 8601 UTC. */
  from?: string | undefined;
  /** Exclusive upper bound of occurred_at, ISO 8601 UTC. */
  to?: string | undefined;
}

export interface AuditVerifyCliOptions {
  logKey?: string | undefined;
  json?: boolean | undefined;
}

/** Parses an ISO 8601 date-time option into the stored UTC form (a usage error otherwise). */
function parseInstant(value: string): string {
  const instant = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(instant.getTime())) {
    throw new InvalidArgumentError('expected an ISO 8601 date-time such as 2026-03-01T00:00:00Z');
  }
  return instant.toISOString();
}

/**
 * Writes the export to `<out>.partial` and renames it into place once complete, then records
 * an `audit.export` event. Returns 0, 1 when the log has leaves without a stored row, or 2
 * without writing or recording anything when --from is not earlier than --to or the tenant
 * does not exist.
 */
export async function runAuditExport(
  options: AuditExportCliOptions,
  out: Output,
  err: Output,
): Promise<number> {
  // The range includes --from and excludes --to, so equal bounds also match nothing.
  if (
    options.from !== undefined &&
    options.to !== undefined &&
    Date.parse(options.from) >= Date.parse(options.to)
  ) {
    err(
      `error: --from ${options.from} must be earlier than --to ${options.to}, ` +
        'because the range includes --from and excludes --to',
    );
    return EXIT_UNUSABLE;
  }
  const range = { occurredFrom: options.from, occurredTo: options.to };
  const partial = `${options.out}.partial`;
  const result = await withServices(async (services) => {
    if (!(await services.store.getTenant(options.tenant))) {
      return undefined;
    }
    const file = await open(partial, 'w', 0o600);
    let buffered: string[] = [];
    let bufferedChars = 0;
    const flush = async () => {
      await file.write(buffered.join(''));
      buffered = [];
      bufferedChars = 0;
    };
    try {
      const written = await services.auditExport.export(options.tenant, range, async (line) => {
        buffered.push(`${line}\n`);
        bufferedChars += line.length + 1;
        if (bufferedChars >= WRITE_BUFFER_CHARS) {
          await flush();
        }
      });
      await flush();
      await file.sync();
      await file.close();
      await rename(partial, options.out);
      await services.audit.record(options.tenant, cliAuditContext(), [
        {
          action: 'audit.export',
          outcome: 'success',
          object: { type: 'checkpoint', id: String(written.header.tree_size) },
        },
      ]);
      return written;
    } catch (error) {
      await file.close().catch(() => undefined);
      await rm(partial, { force: true });
      throw error;
    }
  });
  if (result === undefined) {
    err(`error: tenant ${options.tenant} not found`);
    return EXIT_UNUSABLE;
  }
  const { start, end } = result.header.range;
  out(
    `wrote ${options.out}: ${result.auditEvents} audit events and ${result.certificates} ` +
      `certificate leaves, ${end === start ? 'an empty range' : `leaves ${start} to ${end - 1}`} ` +
      `of the log at checkpoint size ${result.header.tree_size}`,
  );
  if (result.missingLeaves > 0) {
    err(
      `warning: ${result.missingLeaves} leaves of the range have no stored row (first: ` +
        `${result.firstMissing.join(', ')}); the export cannot include them and will fail ` +
        'the completeness check',
    );
    return EXIT_INVALID;
  }
  return EXIT_VALID;
}

/**
 * Resolves --log-key: a signed-note verifier key given inline, or a file with one key per
 * line (blank lines and lines starting with # ignored).
 */
function pinnedLogKeys(value: string | undefined): string[] | undefined {
  if (value === undefined) {
    return undefined;
  }
  try {
    parseVerifierKey(nodeCrypto, value.trim());
    return [value.trim()];
  } catch {
    // Not a key: read it as a file below.
  }
  if (!existsSync(value)) {
    throw new AuditError(
      'AUDIT_LOG_KEY_INVALID',
      '--log-key is neither a signed-note verifier key nor a readable file',
    );
  }
  const keys = readInput(value, 'log key file', 1024 * 1024)
    .toString('utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  if (keys.length === 0) {
    throw new AuditError('AUDIT_LOG_KEY_INVALID', `${value} contains no log verifier key`);
  }
  return keys;
}

/** Yields the lines of a file as bytes, without their newlines; raises on an overlong line. */
async function* readLines(path: string): AsyncGenerator<Uint8Array> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let lineNumber = 1;
  const tooLong = () =>
    new AuditError(
      'AUDIT_EXPORT_UNUSABLE',
      `line ${lineNumber} is longer than ${MAX_EXPORT_LINE_BYTES} bytes`,
    );
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    let from = 0;
    for (let newline = chunk.indexOf(0x0a); newline >= 0; newline = chunk.indexOf(0x0a, from)) {
      pendingBytes += newline - from;
      if (pendingBytes > MAX_EXPORT_LINE_BYTES) {
        throw tooLong();
      }
      pending.push(chunk.subarray(from, newline));
      yield Buffer.concat(pending);
      pending = [];
      pendingBytes = 0;
      lineNumber += 1;
      from = newline + 1;
    }
    pendingBytes += chunk.length - from;
    if (pendingBytes > MAX_EXPORT_LINE_BYTES) {
      throw tooLong();
    }
    pending.push(chunk.subarray(from));
  }
  if (pendingBytes > 0) {
    yield Buffer.concat(pending);
  }
}

const STATUS_MARKS = { pass: 'PASS', fail: 'FAIL', skipped: 'SKIP' } as const;

export function formatAuditReport(report: AuditExportReport): string {
  const { start, end } = report.range;
  const lines = [
    `${report.valid ? 'VALID' : 'INVALID'}  audit export of tenant ${report.tenant_id}, ` +
      `${end === start ? 'empty range' : `leaves ${start} to ${end - 1}`} of ${report.tree_size}`,
  ];
  for (const check of report.checks) {
    lines.push(`  ${STATUS_MARKS[check.status]}  ${check.check.padEnd(17)} ${check.detail}`);
    for (const failure of check.failures) {
      lines.push(`          ${failure}`);
    }
  }
  lines.push('', report.summary);
  return lines.map(printable).join('\n');
}

/** Verifies an export file offline and returns the exit status: 0 valid, 1 invalid, 2 unusable. */
export async function runAuditVerify(
  path: string,
  options: AuditVerifyCliOptions,
  out: Output,
  err: Output,
): Promise<number> {
  try {
    const verifier = new AuditExportVerifier(nodeCrypto, {
      trustedLogKeys: pinnedLogKeys(options.logKey),
    });
    let lineNumber = 0;
    try {
      for await (const line of readLines(path)) {
        lineNumber += 1;
        if (lineNumber === 1) {
          verifier.readHeader(line);
        } else {
          verifier.readEntry(line, lineNumber);
        }
      }
    } catch (error) {
      if (error instanceof AuditError) {
        throw error;
      }
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      throw new AuditError('AUDIT_EXPORT_UNUSABLE', `cannot read ${path}: ${code}`);
    }
    const report = verifier.finish();
    out(options.json ? JSON.stringify(report, null, 2) : formatAuditReport(report));
    return report.valid ? EXIT_VALID : EXIT_INVALID;
  } catch (error) {
    if (error instanceof AuditError || error instanceof BundleError) {
      if (options.json) {
        out(
          JSON.stringify(
            { valid: false, error: { code: error.code, message: error.message } },
            null,
            2,
          ),
        );
      }
      err(`error: ${error.message} [${error.code}]`);
      return EXIT_UNUSABLE;
    }
    throw error;
  }
}

export function registerAuditCommand(program: Command): void {
  const audit = program.command('audit').description('Export and verify tenant audit trails');
  audit
    .command('export')
    .description(
      'Write the tenant audit trail with inclusion proofs and a signed checkpoint to one file. ' +
        'Exit status: 0 written, 1 written but a leaf of the range has no stored row, ' +
        '2 unusable (unknown tenant, --from not earlier than --to; no file is written).',
    )
    .requiredOption('--tenant <id>', 'tenant whose log is exported')
    .requiredOption('--out <file>', 'file to write (JSON Lines, cdil.audit-export.v1)')
    .option(
      '--from <date-time>',
      'start at the first audit event at or after this time (ISO 8601)',
      parseInstant,
    )
    .option(
      '--to <date-time>',
      'end at the last audit event before this time (ISO 8601)',
      parseInstant,
    )
    .action(async (options: AuditExportCliOptions) => {
      process.exitCode = await runAuditExport(
        options,
        (text) => process.stdout.write(`${text}\n`),
        (text) => process.stderr.write(`${text}\n`),
      );
    });
  audit
    .command('verify')
    .description(
      'Verify an audit export offline. Exit status: 0 valid, 1 invalid, 2 unusable input.',
    )
    .argument('<file>', 'audit export written by cdil audit export')
    .option(
      '--log-key <key-or-file>',
      "pin the tenant's log verifier key (inline, or a file with one key per line) instead of the key in the file",
    )
    .option('--json', 'print the full report as JSON')
    .action(async (file: string, options: AuditVerifyCliOptions) => {
      process.exitCode = await runAuditVerify(
        file,
        options,
        (text) => process.stdout.write(`${text}\n`),
        (text) => process.stderr.write(`${text}\n`),
      );
    });
}
