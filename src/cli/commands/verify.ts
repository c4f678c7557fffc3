// `cdil verify`: offline verification of a defense bundle. Reads files, never writes any.
import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { parseTrustedKeys, verifyBundle, verifyBundleWithTimestamps } from '../../core/bundle.ts';
import { nodeCrypto } from '../../core/crypto-node.ts';
import { BundleError } from '../../core/errors.ts';
import type { VerificationReport } from '../../core/verify/verify.ts';
import { DEFAULT_ZIP_LIMITS } from '../../core/zip.ts';

export const EXIT_VALID = 0;
export const EXIT_INVALID = 1;
export const EXIT_UNUSABLE = 2;

export interface VerifyCliOptions {
  trustedKeys?: string;
  trustedLogKeys?: string;
  tsaRoots?: string;
  requireTimestamps?: boolean;
  note?: string;
  json?: boolean;
}

export function readInput(path: string, what: string, maxBytes: number): Buffer {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) {
      throw new BundleError('INPUT_UNREADABLE', `${what} ${path} is not a regular file`);
    }
    size = stat.size;
  } catch (error) {
    if (error instanceof BundleError) {
      throw error;
    }
    throw new BundleError(
      'INPUT_UNREADABLE',
      `cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  if (size > maxBytes) {
    throw new BundleError(
      'BUNDLE_TOO_LARGE',
      `${what} ${path} is ${size} bytes; the limit is ${maxBytes}`,
    );
  }
  return readFileSync(path);
}

// C0 and C1 controls and bidirectional formatting characters from a bundle could clear the
// terminal or reorder the verdict on screen, so text output shows them as \u escapes.
// eslint-disable-next-line no-control-regex -- control characters are what this escapes
const UNSAFE_FOR_TERMINAL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function printable(text: string): string {
  return text.replace(
    UNSAFE_FOR_TERMINAL,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Reads pinned log verifier keys: one signed-note verifier key per line, blank lines and lines
 * starting with # ignored.
 */
function readTrustedLogKeys(path: string | undefined): string[] | undefined {
  if (path === undefined) {
    return undefined;
  }
  const lines = readInput(path, 'trusted log key file', 1024 * 1024)
    .toString('utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  if (lines.length === 0) {
    throw new BundleError(
      'BUNDLE_MALFORMED_TRUSTED_KEYS',
      `${path} contains no log verifier key; put one signed-note verifier key per line`,
    );
  }
  return lines;
}

const STATUS_MARKS = { pass: 'PASS', fail: 'FAIL', skipped: 'SKIP' } as const;

export function formatReport(report: VerificationReport): string {
  const lines = [
    `${report.valid ? 'VALID' : 'INVALID'}  certificate ${report.certificate_id ?? '(unknown)'}`,
  ];
  for (const check of report.checks) {
    const mark = STATUS_MARKS[check.status];
    lines.push(
      `  ${mark}  ${check.check.padEnd(18)} ${check.detail}${check.code ? ` [${check.code}]` : ''}`,
    );
  }
  lines.push('', report.summary);
  return lines.map(printable).join('\n');
}

/** Reads the TSA root certificates (PEM) that timestamp tokens must chain to. */
function readTsaRoots(path: string | undefined): string | undefined {
  return path === undefined
    ? undefined
    : readInput(path, 'TSA root file', 1024 * 1024).toString('utf8');
}

function readVerifyInputs(bundlePath: string, options: VerifyCliOptions) {
  const zip = readInput(bundlePath, 'bundle', DEFAULT_ZIP_LIMITS.maxArchiveBytes);
  const trustedKeys = options.trustedKeys
    ? parseTrustedKeys(
        readInput(options.trustedKeys, 'trusted key set', 1024 * 1024).toString('utf8'),
      )
    : undefined;
  return {
    zip,
    options: {
      trustedKeys,
      trustedLogKeys: readTrustedLogKeys(options.trustedLogKeys),
      noteText: options.note ? readInput(options.note, 'note', 16 * 1024 * 1024) : undefined,
    },
  };
}

function printReport(
  report: VerificationReport,
  options: VerifyCliOptions,
  out: (text: string) => void,
): number {
  out(options.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.valid ? EXIT_VALID : EXIT_INVALID;
}

function reportUnusable(
  error: unknown,
  options: VerifyCliOptions,
  out: (text: string) => void,
  err: (text: string) => void,
): number {
  if (!(error instanceof BundleError)) {
    throw error;
  }
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

/**
 * Runs the verification without timestamp tokens and returns the exit status; output goes to
 * the given writers. runVerifyWithTimestamps also checks the tokens.
 */
export function runVerify(
  bundlePath: string,
  options: VerifyCliOptions,
  out: (text: string) => void,
  err: (text: string) => void,
): number {
  try {
    const inputs = readVerifyInputs(bundlePath, options);
    return printReport(verifyBundle(nodeCrypto, inputs.zip, inputs.options), options, out);
  } catch (error) {
    return reportUnusable(error, options, out, err);
  }
}

/** Runs the whole verification, RFC 3161 timestamp tokens included, and returns the exit status. */
export async function runVerifyWithTimestamps(
  bundlePath: string,
  options: VerifyCliOptions,
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  try {
    const inputs = readVerifyInputs(bundlePath, options);
    const report = await verifyBundleWithTimestamps(nodeCrypto, inputs.zip, {
      ...inputs.options,
      tsaRoots: readTsaRoots(options.tsaRoots),
      requireTimestamps: options.requireTimestamps,
    });
    return printReport(report, options, out);
  } catch (error) {
    return reportUnusable(error, options, out, err);
  }
}

export interface VerifyManyCliOptions {
  trustedKeys?: string;
  trustedLogKeys?: string;
  tsaRoots?: string;
  requireTimestamps?: boolean;
  json?: boolean;
  jobs?: string;
}

/**
 * Verifies several bundles on worker threads and prints one verdict line per bundle (or a JSON
 * array). The exit status is 2 when any input is unusable, else 1 when any bundle is invalid.
 */
export async function runVerifyMany(
  paths: string[],
  options: VerifyManyCliOptions,
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  const { BundleVerifierPool, defaultThreadCount } = await import('../../services/verify-pool.ts');
  const jobs =
    options.jobs === undefined
      ? Math.min(defaultThreadCount(), paths.length)
      : Number(options.jobs);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64) {
    err('error: --jobs must be an integer from 1 to 64');
    return EXIT_UNUSABLE;
  }
  let trustedKeys;
  let trustedLogKeys;
  let tsaRoots;
  try {
    trustedLogKeys = readTrustedLogKeys(options.trustedLogKeys);
    tsaRoots = readTsaRoots(options.tsaRoots);
    trustedKeys = options.trustedKeys
      ? parseTrustedKeys(
          readInput(options.trustedKeys, 'trusted key set', 1024 * 1024).toString('utf8'),
        )
      : undefined;
  } catch (error) {
    if (error instanceof BundleError) {
      err(`error: ${error.message} [${error.code}]`);
      return EXIT_UNUSABLE;
    }
    throw error;
  }
  const inputs = paths.map((path) => {
    try {
      return { path, zip: readInput(path, 'bundle', DEFAULT_ZIP_LIMITS.maxArchiveBytes) };
    } catch (error) {
      if (error instanceof BundleError) {
        return { path, error: { code: error.code, message: error.message } };
      }
      throw error;
    }
  });
  const readable = inputs.filter((input) => input.zip !== undefined);
  const pool = new BundleVerifierPool(jobs);
  let outcomes;
  try {
    outcomes = await pool.verifyMany(
      readable.map((input) => new Uint8Array(input.zip)),
      { trustedKeys, trustedLogKeys, tsaRoots, requireTimestamps: options.requireTimestamps },
    );
  } finally {
    await pool.close();
  }
  const byPath = new Map(readable.map((input, i) => [input.path, outcomes[i]!]));
  const results = inputs.map((input) => ({
    path: input.path,
    ...(byPath.get(input.path) ?? { error: input.error! }),
  }));
  let status = EXIT_VALID;
  for (const result of results) {
    if (result.error) {
      status = EXIT_UNUSABLE;
    } else if (!result.report.valid && status !== EXIT_UNUSABLE) {
      status = EXIT_INVALID;
    }
  }
  if (options.json) {
    out(JSON.stringify(results, null, 2));
  } else {
    for (const result of results) {
      const failed = result.report?.checks
        .filter((check) => check.status === 'fail')
        .map((check) => check.check);
      const verdict = result.error
        ? `ERROR    ${result.path}: ${result.error.message} [${result.error.code}]`
        : `${result.report.valid ? 'VALID  ' : 'INVALID'}  ${result.path}${failed && failed.length > 0 ? `: failed ${failed.join(', ')}` : ''}`;
      out(printable(verdict));
    }
    const valid = results.filter((result) => result.report?.valid).length;
    out(`${valid} of ${results.length} bundles valid (${jobs} worker threads)`);
  }
  return status;
}

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description(
      'Verify a defense bundle offline. Exit status: 0 valid, 1 invalid, 2 unusable input.',
    )
    .argument('<bundles...>', 'path of one or more defense bundle ZIPs')
    .option(
      '--trusted-keys <file>',
      "pin the tenant's JWKS instead of trusting the key inside the bundle",
    )
    .option(
      '--trusted-log-keys <file>',
      "pin the tenant's log key (one signed-note verifier key per line) instead of the bundled one",
    )
    .option(
      '--tsa-roots <file>',
      'PEM file of the RFC 3161 TSA root certificates you trust; checks the timestamp tokens',
    )
    .option(
      '--require-timestamps',
      'fail a bundle without a checkpoint timestamp token (use with --tsa-roots)',
    )
    .option('--note <file>', 'also check that this file holds exactly the certified note text')
    .option('--json', 'print the full report as JSON')
    .option('--jobs <n>', 'worker threads when several bundles are given (default: CPU count)')
    .action(async (bundles: string[], options: VerifyCliOptions & VerifyManyCliOptions) => {
      const out = (text: string) => process.stdout.write(text + '\n');
      const err = (text: string) => process.stderr.write(text + '\n');
      if (bundles.length === 1) {
        process.exitCode = await runVerifyWithTimestamps(bundles[0]!, options, out, err);
        return;
      }
      if (options.note) {
        err('error: --note checks one bundle; give a single bundle with it');
        process.exitCode = EXIT_UNUSABLE;
        return;
      }
      process.exitCode = await runVerifyMany(bundles, options, out, err);
    });
}
