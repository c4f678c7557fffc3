// `cdil verify`: offline verification of a defense bundle. Reads files, never writes any.
import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { parseTrustedKeys, verifyBundle, verifyBundleWithTimestamps } from '../../core/bundle.ts';
import { parseVerifierKey } from '../../core/checkpoint.ts';
import { nodeCrypto } from '../../core/crypto-node.ts';
import { BundleError, TimestampError } from '../../core/errors.ts';
import { README_V1_CONCERN, type VerificationReport } from '../../core/verify/verify.ts';
import { DEFAULT_ZIP_LIMITS } from '../../core/zip.ts';

export const EXIT_VALID = 0;
export const EXIT_INVALID = 1;
export const EXIT_UNUSABLE = 2;

export interface VerifyCliOptions {
  trustedKeys?: string;
  trustedLogKeys?: string;
  requireTrustedKeys?: boolean;
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

/** Largest trust file (key set, log keys, TSA roots) read, in bytes. */
const MAX_TRUST_FILE_BYTES = 1024 * 1024;

function malformedTrustFile(option: string, path: string, problem: string): BundleError {
  return new BundleError('BUNDLE_MALFORMED_TRUSTED_KEYS', `${option} ${path} ${problem}`);
}

/** Reads the tenant key set (JWKS) that the signing key must belong to. */
function readTrustedKeys(path: string | undefined) {
  if (path === undefined) {
    return undefined;
  }
  const text = readInput(path, 'trusted key set', MAX_TRUST_FILE_BYTES).toString('utf8');
  try {
    return parseTrustedKeys(text);
  } catch (error) {
    if (!(error instanceof BundleError)) {
      throw error;
    }
    throw malformedTrustFile(
      '--trusted-keys',
      path,
      `is not usable: ${error.message}; expected the tenant's JWKS from /v1/tenants/{tenant_id}/jwks.json`,
    );
  }
}

/**
 * Reads pinned log verifier keys: one signed-note verifier key per line, blank lines and lines
 * starting with # ignored. Every other line must parse as an Ed25519 verifier key, so a typo
 * cannot silently drop a pinned key and a wrong file is reported as such, not as a forged log.
 */
function readTrustedLogKeys(path: string | undefined): string[] | undefined {
  if (path === undefined) {
    return undefined;
  }
  const expected = 'expected one Ed25519 signed-note verifier key per line';
  const text = readInput(path, 'trusted log key file', MAX_TRUST_FILE_BYTES).toString('utf8');
  if (verifierKeyInJson(text)) {
    throw malformedTrustFile(
      '--trusted-log-keys',
      path,
      'is the JSON of GET /v1/tenants/{tenant_id}/log-key; write its verifier_key value to the file instead',
    );
  }
  const lines = text
    .split('\n')
    .map((line, index) => ({ number: index + 1, text: line.trim() }))
    .filter((line) => line.text !== '' && !line.text.startsWith('#'));
  if (lines.length === 0) {
    throw malformedTrustFile('--trusted-log-keys', path, `contains no log key; ${expected}`);
  }
  for (const line of lines) {
    try {
      parseVerifierKey(nodeCrypto, line.text);
    } catch (error) {
      throw malformedTrustFile(
        '--trusted-log-keys',
        `${path} line ${line.number}`,
        `is not a signed-note verifier key: ${(error as Error).message}; ${expected}`,
      );
    }
  }
  return lines.map((line) => line.text);
}

/** Returns whether `text` is a JSON object with a string `verifier_key`, as the log-key route serves. */
function verifierKeyInJson(text: string): boolean {
  try {
    const value = JSON.parse(text) as unknown;
    return (
      typeof value === 'object' &&
      value !== null &&
      typeof (value as { verifier_key?: unknown }).verifier_key === 'string'
    );
  } catch {
    return false;
  }
}

// Matches the PEM labels of PKCS #8, encrypted PKCS #8, PKCS #1 and SEC 1 private keys.
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/**
 * Reads the TSA root certificates (PEM) that timestamp tokens must chain to. The file must
 * contain at least one certificate, and each must parse and be a CA certificate. A private key
 * anywhere in the file is rejected, because it means the wrong file was given.
 */
export async function readTsaRoots(path: string | undefined): Promise<string | undefined> {
  if (path === undefined) {
    return undefined;
  }
  const text = readInput(path, 'TSA root file', MAX_TRUST_FILE_BYTES).toString('utf8');
  if (PEM_PRIVATE_KEY.test(text)) {
    throw malformedTrustFile(
      '--tsa-roots',
      path,
      'contains a private key; expected only the PEM certificates of the TSA root CAs',
    );
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) {
    throw malformedTrustFile(
      '--tsa-roots',
      path,
      'contains no PEM certificate; expected the PEM certificates of the TSA root CAs',
    );
  }
  // Loaded here, not at start-up, because PKI.js takes longer to load than a bundle check.
  const { decodeTrustedRoots, parseTrustedRoots } =
    await import('../../core/timestamp/certificates.ts');
  try {
    parseTrustedRoots(decodeTrustedRoots(text));
  } catch (error) {
    if (!(error instanceof TimestampError)) {
      throw error;
    }
    throw malformedTrustFile('--tsa-roots', path, `is not usable: ${error.message}`);
  }
  return text;
}

const STATUS_MARKS = { pass: 'PASS', fail: 'FAIL', skipped: 'SKIP' } as const;

/**
 * Returns whether a valid report rests only on keys that came with the evidence. Anyone can
 * build a bundle that passes every other check with a key pair of their own.
 */
export function validWithoutPinnedKey(report: VerificationReport): boolean {
  return (
    report.valid &&
    report.checks.some((check) => check.check === 'trusted_key' && check.status !== 'pass')
  );
}

const UNPINNED_NOTE =
  'The signing key came with the bundle and was not checked against a key set you trust, so ' +
  'this shows the bundle is intact, not who made it: anyone can build a bundle that passes ' +
  "with a key of their own. Pass --trusted-keys with the tenant's key set " +
  "(GET /v1/tenants/{tenant_id}/jwks.json) to prove it is the tenant's.";

export function formatReport(report: VerificationReport): string {
  const unpinned = validWithoutPinnedKey(report);
  let verdict = report.valid ? 'VALID' : 'INVALID';
  if (unpinned) {
    verdict = 'VALID (key not pinned)';
  }
  const lines = [`${verdict}  certificate ${report.certificate_id ?? '(unknown)'}`];
  const nameWidth = Math.max(0, ...report.checks.map((check) => check.check.length));
  for (const check of report.checks) {
    const mark = STATUS_MARKS[check.status];
    const code = check.code ? ` [${check.code}]` : '';
    lines.push(`  ${mark}  ${check.check.padEnd(nameWidth)} ${check.detail}${code}`);
  }
  lines.push('', report.summary);
  if (unpinned) {
    lines.push('', `NOTE: ${UNPINNED_NOTE}`);
  }
  for (const note of report.notes ?? []) {
    lines.push('', `NOTE: ${note}`);
  }
  return lines.map(printable).join('\n');
}

function readVerifyInputs(bundlePath: string, options: VerifyCliOptions) {
  const trustedKeys = readTrustedKeys(options.trustedKeys);
  const trustedLogKeys = readTrustedLogKeys(options.trustedLogKeys);
  const zip = readInput(bundlePath, 'bundle', DEFAULT_ZIP_LIMITS.maxArchiveBytes);
  return {
    zip,
    options: {
      trustedKeys,
      trustedLogKeys,
      requireTrustedKeys: options.requireTrustedKeys,
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
  options: { json?: boolean | undefined },
  out: (text: string) => void,
  err: (text: string) => void,
): number {
  if (!(error instanceof BundleError)) {
    throw error;
  }
  return reportUsageError(error.message, error.code, options, out, err);
}

/**
 * Writes an error that makes the input or the options unusable and returns EXIT_UNUSABLE. With
 * --json the same error also goes to stdout as `{ valid: false, error }`, so a script that
 * parses stdout receives these errors too.
 */
function reportUsageError(
  message: string,
  code: string,
  options: { json?: boolean | undefined },
  out: (text: string) => void,
  err: (text: string) => void,
): number {
  if (options.json) {
    out(JSON.stringify({ valid: false, error: { code, message } }, null, 2));
  }
  err(`error: ${message} [${code}]`);
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

/**
 * Returns the usage error for --require-timestamps without --tsa-roots, or undefined. Without
 * roots the tokens are not checked, so the option would pass tokens that are garbage.
 */
function timestampOptionsProblem(options: {
  tsaRoots?: string | undefined;
  requireTimestamps?: boolean | undefined;
}): string | undefined {
  if (options.requireTimestamps === true && options.tsaRoots === undefined) {
    return (
      '--require-timestamps needs --tsa-roots <file>, the TSA root certificates that ' +
      'the timestamp tokens are checked against'
    );
  }
  return undefined;
}

const USAGE_ERROR = 'USAGE_ERROR';

/**
 * Returns the usage error for a --jobs value that is not a decimal integer from 1 to 64, or
 * undefined. Only ASCII digits are accepted, because Number() would also read "0x2", "1e1" and
 * " 2" as integers.
 */
function jobsProblem(jobs: string | undefined): string | undefined {
  if (jobs === undefined) {
    return undefined;
  }
  const count = /^[0-9]+$/.test(jobs) ? Number(jobs) : NaN;
  if (count >= 1 && count <= 64) {
    return undefined;
  }
  return `--jobs must be an integer from 1 to 64, got ${JSON.stringify(jobs)}`;
}

/** Runs the whole verification, RFC 3161 timestamp tokens included, and returns the exit status. */
export async function runVerifyWithTimestamps(
  bundlePath: string,
  options: VerifyCliOptions,
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  const problem = timestampOptionsProblem(options);
  if (problem !== undefined) {
    return reportUsageError(problem, USAGE_ERROR, options, out, err);
  }
  try {
    const tsaRoots = await readTsaRoots(options.tsaRoots);
    const inputs = readVerifyInputs(bundlePath, options);
    const report = await verifyBundleWithTimestamps(nodeCrypto, inputs.zip, {
      ...inputs.options,
      tsaRoots,
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
  requireTrustedKeys?: boolean;
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
  const jobsError = jobsProblem(options.jobs);
  if (jobsError !== undefined) {
    return reportUsageError(jobsError, USAGE_ERROR, options, out, err);
  }
  const { BundleVerifierPool, defaultThreadCount } = await import('../../services/verify-pool.ts');
  // More threads than bundles would only cost start-up time and memory.
  const jobs = Math.min(
    options.jobs === undefined ? defaultThreadCount() : Number(options.jobs),
    paths.length,
  );
  const problem = timestampOptionsProblem(options);
  if (problem !== undefined) {
    return reportUsageError(problem, USAGE_ERROR, options, out, err);
  }
  let trustedKeys;
  let trustedLogKeys;
  let tsaRoots;
  try {
    trustedKeys = readTrustedKeys(options.trustedKeys);
    trustedLogKeys = readTrustedLogKeys(options.trustedLogKeys);
    tsaRoots = await readTsaRoots(options.tsaRoots);
  } catch (error) {
    return reportUnusable(error, options, out, err);
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
      {
        trustedKeys,
        trustedLogKeys,
        requireTrustedKeys: options.requireTrustedKeys,
        tsaRoots,
        requireTimestamps: options.requireTimestamps,
      },
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
      const pinNote =
        result.report && validWithoutPinnedKey(result.report) ? ' (key not pinned)' : '';
      const readmeNote = result.report?.readme_version === 1 ? ' (README.txt version 1)' : '';
      const verdict = result.error
        ? `ERROR    ${result.path}: ${result.error.message} [${result.error.code}]`
        : `${result.report.valid ? 'VALID  ' : 'INVALID'}  ${result.path}${pinNote}${readmeNote}${failed && failed.length > 0 ? `: failed ${failed.join(', ')}` : ''}`;
      out(printable(verdict));
    }
    const valid = results.filter((result) => result.report?.valid).length;
    out(
      `${valid} of ${results.length} bundles valid (${jobs} worker ${jobs === 1 ? 'thread' : 'threads'})`,
    );
    const unpinned = results.filter(
      (result) => result.report && validWithoutPinnedKey(result.report),
    ).length;
    if (unpinned > 0) {
      out(`NOTE: ${unpinned} of them valid only with the key they carry. ${UNPINNED_NOTE}`);
    }
    const oldReadme = results.filter((result) => result.report?.readme_version === 1).length;
    if (oldReadme > 0) {
      out(`NOTE: ${oldReadme} of them carry README.txt text version 1. ${README_V1_CONCERN}`);
    }
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
      '--require-trusted-keys',
      'fail a bundle unless its signing key is checked with --trusted-keys and, when it has a log checkpoint, its log key with --trusted-log-keys',
    )
    .option(
      '--tsa-roots <file>',
      'PEM file of the RFC 3161 TSA root certificates you trust; checks the timestamp tokens',
    )
    .option(
      '--require-timestamps',
      'fail a bundle without a checkpoint timestamp token (requires --tsa-roots)',
    )
    .option('--note <file>', 'also check that this file holds exactly the certified note text')
    .option('--json', 'print the full report as JSON')
    .option(
      '--jobs <n>',
      'worker threads when several bundles are given, at most one per bundle (default: CPU count)',
    )
    .action(async (bundles: string[], options: VerifyCliOptions & VerifyManyCliOptions) => {
      const out = (text: string) => process.stdout.write(text + '\n');
      const err = (text: string) => process.stderr.write(text + '\n');
      if (bundles.length === 1) {
        // One bundle runs on this thread, but an invalid --jobs is still a usage error, so a
        // script's mistake shows before it passes several bundles.
        const jobsError = jobsProblem(options.jobs);
        process.exitCode =
          jobsError === undefined
            ? await runVerifyWithTimestamps(bundles[0]!, options, out, err)
            : reportUsageError(jobsError, USAGE_ERROR, options, out, err);
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
