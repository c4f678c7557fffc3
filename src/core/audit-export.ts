// The audit export (`cdil.audit-export.v1`) and its offline verifier. An export is JSON Lines:
// a header with the tenant's log key, a signed checkpoint and the exported leaf range, then one
// line per leaf of that range in log order, each with its inclusion proof against the
// checkpoint. An audit event line carries the event's exact leaf text. A certificate line
// carries the certificate's signed message, so a verifier can prove every index of the range
// and can tell a certificate from an audit event that was relabelled to hide it.
//
// The verifier reads one line at a time, so an export of any size is checked in constant memory.
// Runtime-neutral, like the rest of src/core.
import { parseAuditEvent } from './audit-event.ts';
import { parseVerifierKey } from './checkpoint.ts';
import type { CryptoProvider } from './crypto.ts';
import { fromBase64, fromHex, toBase64, toHex, utf8Decode, utf8Encode } from './encoding.ts';
import { AuditError, AuditErrorCode, VerificationError } from './errors.ts';
import { HASH_LENGTH, leafHash, verifyInclusion } from './merkle.ts';
import { verifyLogCheckpoint } from './verify/log-steps.ts';
import { parseSignedMessage } from './verify/message.ts';
import { unknownFields } from './json-fields.ts';

export const AUDIT_EXPORT_FORMAT = 'cdil.audit-export.v1';
export const AUDIT_EXPORT_REPORT_FORMAT = 'cdil.audit-export-report.v1';

/** The first line of an export. */
export interface AuditExportHeader {
  format: typeof AUDIT_EXPORT_FORMAT;
  tenant_id: string;
  exported_at: string;
  /** Verifier key of the tenant's log, `<name>+<key id>+<base64 key>`. */
  log_key: string;
  /** Signed checkpoint note that every inclusion proof leads to. */
  checkpoint: string;
  /** Size of the tree in the checkpoint. */
  tree_size: number;
  /** Exported leaves: indexes start to end - 1, and the time filter that chose them, if any. */
  range: {
    start: number;
    end: number;
    occurred_from: string | null;
    occurred_to: string | null;
  };
}

export type AuditExportEntryKind = 'audit_event' | 'certificate';

/** One leaf of the exported range. */
export interface AuditExportEntry {
  kind: AuditExportEntryKind;
  log_index: number;
  /** RFC 9162 leaf hash of leaf_data, lowercase hex. */
  leaf_hash: string;
  /** The leaf data as text: an audit event's JSON or a certificate's signed message. */
  leaf_data: string;
  /** Set on certificate lines only. */
  certificate_id?: string;
  /** Audit path from the leaf to the checkpoint root, base64 hashes. */
  inclusion_proof: string[];
}

/** Checks in report order. */
export const AUDIT_EXPORT_CHECKS = [
  'checkpoint',
  'entry_format',
  'index_order',
  'leaf_hash',
  'inclusion_proof',
  'event_format',
  'certificate_leaf',
  'completeness',
] as const;
export type AuditExportCheckName = (typeof AUDIT_EXPORT_CHECKS)[number];

export interface AuditExportCheck {
  check: AuditExportCheckName;
  status: 'pass' | 'fail' | 'skipped';
  detail: string;
  /** The first failures, each naming its line or leaf; `detail` gives the total. */
  failures: string[];
}

export interface AuditExportReport {
  format: typeof AUDIT_EXPORT_REPORT_FORMAT;
  valid: boolean;
  tenant_id: string;
  tree_size: number;
  range: { start: number; end: number };
  /** Whether the range is the whole log at the checkpoint, leaf 0 to tree_size - 1. */
  covers_whole_log: boolean;
  /** Whether the checkpoint was checked with a pinned key or with the key in the export. */
  log_key_source: 'pinned' | 'export';
  audit_events: number;
  certificates: number;
  checks: AuditExportCheck[];
  summary: string;
}

export interface AuditExportVerifyOptions {
  /** Pinned log verifier keys; without them the key in the export header is used. */
  trustedLogKeys?: readonly string[] | undefined;
}

/** Failures listed per check; the detail line still counts all of them. */
const MAX_LISTED_FAILURES = 10;

const TENANT_ID = /^[a-z0-9][a-z0-9-]{1,62}$/;
const HASH_HEX = /^[0-9a-f]{64}$/;

function unusable(message: string): AuditError {
  return new AuditError(AuditErrorCode.EXPORT_UNUSABLE, message);
}

function isIndex(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const HEADER_KEYS = new Set([
  'format',
  'tenant_id',
  'exported_at',
  'log_key',
  'checkpoint',
  'tree_size',
  'range',
]);
const RANGE_KEYS = new Set(['start', 'end', 'occurred_from', 'occurred_to']);
const ENTRY_KEYS = new Set([
  'kind',
  'log_index',
  'leaf_hash',
  'leaf_data',
  'certificate_id',
  'inclusion_proof',
]);

/** Decodes a proof hash in canonical base64 of exactly 32 bytes, or returns undefined. */
function decodeProofHash(text: unknown): Uint8Array | undefined {
  if (typeof text !== 'string') {
    return undefined;
  }
  const bytes = fromBase64(text);
  return bytes && bytes.length === HASH_LENGTH && toBase64(bytes) === text ? bytes : undefined;
}

/** Parses and checks the header line. Raises AuditError EXPORT_UNUSABLE naming the problem. */
export function parseAuditExportHeader(line: string | Uint8Array): AuditExportHeader {
  let value: unknown;
  try {
    value = JSON.parse(typeof line === 'string' ? line : utf8Decode(line));
  } catch {
    throw unusable('line 1 is not UTF-8 JSON; an audit export starts with its header line');
  }
  if (!isRecord(value) || value.format !== AUDIT_EXPORT_FORMAT) {
    throw unusable(`line 1 is not a ${AUDIT_EXPORT_FORMAT} header`);
  }
  const range = value.range;
  const problems: string[] = [];
  if (typeof value.tenant_id !== 'string' || !TENANT_ID.test(value.tenant_id)) {
    problems.push('tenant_id must be a tenant id');
  }
  for (const field of ['exported_at', 'log_key', 'checkpoint'] as const) {
    if (typeof value[field] !== 'string') {
      problems.push(`${field} must be a string`);
    }
  }
  if (!isIndex(value.tree_size)) {
    problems.push('tree_size must be a non-negative integer');
  }
  if (
    !isRecord(range) ||
    !isIndex(range.start) ||
    !isIndex(range.end) ||
    range.start > range.end ||
    !(range.occurred_from === null || typeof range.occurred_from === 'string') ||
    !(range.occurred_to === null || typeof range.occurred_to === 'string')
  ) {
    problems.push('range must have integers start <= end and occurred_from, occurred_to');
  }
  const extra = [
    ...unknownFields(value, HEADER_KEYS),
    ...(isRecord(range) ? unknownFields(range, RANGE_KEYS).map((key) => `range.${key}`) : []),
  ];
  if (extra.length > 0) {
    problems.push(`unknown fields ${extra.join(', ')}`);
  }
  if (problems.length > 0) {
    throw unusable(`header is invalid: ${problems.join('; ')}`);
  }
  return value as unknown as AuditExportHeader;
}

/** Failure counter of one check, keeping the first few messages. */
class CheckTally {
  count = 0;
  readonly listed: string[] = [];

  fail(message: string): void {
    this.count += 1;
    if (this.listed.length < MAX_LISTED_FAILURES) {
      this.listed.push(message);
    }
  }
}

/** Formats missing index ranges, such as `5, 9-11`. */
function describeGaps(gaps: readonly (readonly [number, number])[]): string {
  return gaps.map(([first, last]) => (first === last ? `${first}` : `${first}-${last}`)).join(', ');
}

/**
 * Verifies an audit export line by line: call readHeader with the first line, readEntry with
 * each later line, then finish. No check stops the others, so the report lists every problem.
 */
export class AuditExportVerifier {
  readonly #crypto: CryptoProvider;
  readonly #trustedLogKeys: readonly string[] | undefined;
  #header: AuditExportHeader | undefined;
  #checkpointResult: { root: Uint8Array; size: number } | undefined;
  #checkpointDetail = '';
  readonly #tallies = new Map<AuditExportCheckName, CheckTally>(
    AUDIT_EXPORT_CHECKS.map((name) => [name, new CheckTally()]),
  );
  #lastIndex = -1;
  #nextExpected = 0;
  readonly #gaps: [number, number][] = [];
  #gapCount = 0;
  #missing = 0;
  #auditEvents = 0;
  #certificates = 0;

  /** Raises AuditError LOG_KEY_INVALID when a pinned key is not a verifier key. */
  constructor(crypto: CryptoProvider, options: AuditExportVerifyOptions = {}) {
    this.#crypto = crypto;
    this.#trustedLogKeys = options.trustedLogKeys;
    for (const key of options.trustedLogKeys ?? []) {
      try {
        parseVerifierKey(crypto, key);
      } catch (error) {
        throw new AuditError(
          AuditErrorCode.LOG_KEY_INVALID,
          `pinned log key is not a signed-note verifier key: ${(error as Error).message}`,
        );
      }
    }
  }

  #tally(check: AuditExportCheckName): CheckTally {
    return this.#tallies.get(check)!;
  }

  /** Reads the header line and checks the checkpoint. Raises AuditError EXPORT_UNUSABLE. */
  readHeader(line: string | Uint8Array): AuditExportHeader {
    const header = parseAuditExportHeader(line);
    this.#header = header;
    this.#nextExpected = header.range.start;
    try {
      const verified = verifyLogCheckpoint(
        this.#crypto,
        {
          logIndex: 0,
          treeSize: header.tree_size,
          proof: [],
          checkpoint: header.checkpoint,
          logKey: header.log_key,
        },
        header.tenant_id,
        this.#trustedLogKeys,
      );
      if (header.range.end > verified.checkpoint.size) {
        throw new VerificationError(
          'CHECKPOINT_INVALID',
          `range ends at leaf ${header.range.end - 1}, beyond the checkpoint of size ${verified.checkpoint.size}`,
        );
      }
      this.#checkpointResult = {
        root: verified.checkpoint.rootHash,
        size: verified.checkpoint.size,
      };
      const signer = this.#trustedLogKeys ? 'a pinned log key' : 'the log key in the export';
      this.#checkpointDetail =
        `checkpoint of ${verified.checkpoint.origin} at size ${verified.checkpoint.size} ` +
        `is signed by ${signer}`;
    } catch (error) {
      if (!(error instanceof VerificationError)) {
        throw error;
      }
      this.#tally('checkpoint').fail(error.message);
    }
    return header;
  }

  /** Checks one entry line; `lineNumber` counts from 1, the header being line 1. */
  readEntry(line: string | Uint8Array, lineNumber: number): void {
    const header = this.#header;
    if (!header) {
      throw new Error('readHeader must be called before readEntry');
    }
    const entry = this.#parseEntry(line, lineNumber);
    if (!entry) {
      return;
    }
    const where = `line ${lineNumber} (leaf ${entry.log_index})`;
    if (!this.#checkOrder(entry.log_index, where)) {
      return;
    }
    if (entry.kind === 'audit_event') {
      this.#auditEvents += 1;
    } else {
      this.#certificates += 1;
    }

    const computed = toHex(leafHash(this.#crypto, utf8Encode(entry.leaf_data)));
    if (computed !== entry.leaf_hash) {
      this.#tally('leaf_hash').fail(`${where}: leaf_hash is not the hash of leaf_data`);
    }
    this.#checkProof(entry, where);
    if (entry.kind === 'audit_event') {
      this.#checkEvent(entry, header.tenant_id, where);
    } else {
      this.#checkCertificate(entry, header.tenant_id, where);
    }
  }

  /** Returns the entry, or records an entry_format failure and returns undefined. */
  #parseEntry(line: string | Uint8Array, lineNumber: number): AuditExportEntry | undefined {
    const fail = (problem: string) => {
      this.#tally('entry_format').fail(`line ${lineNumber}: ${problem}`);
      return undefined;
    };
    let text: string;
    try {
      text = typeof line === 'string' ? line : utf8Decode(line);
    } catch {
      return fail('not UTF-8');
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return fail('not JSON');
    }
    if (!isRecord(value)) {
      return fail('not a JSON object');
    }
    if (value.kind !== 'audit_event' && value.kind !== 'certificate') {
      return fail('kind must be audit_event or certificate');
    }
    if (!isIndex(value.log_index)) {
      return fail('log_index must be a non-negative integer');
    }
    if (typeof value.leaf_hash !== 'string' || !HASH_HEX.test(value.leaf_hash)) {
      return fail('leaf_hash must be 64 lowercase hex digits');
    }
    if (typeof value.leaf_data !== 'string') {
      return fail('leaf_data must be a string');
    }
    if (!Array.isArray(value.inclusion_proof)) {
      return fail('inclusion_proof must be a list');
    }
    const isCertificate = value.kind === 'certificate';
    if (isCertificate !== (typeof value.certificate_id === 'string')) {
      return fail('certificate_id must be set on certificate lines and only there');
    }
    const extra = unknownFields(value, ENTRY_KEYS);
    if (extra.length > 0) {
      return fail(`unknown fields ${extra.join(', ')}`);
    }
    return value as unknown as AuditExportEntry;
  }

  /** Checks index order and range, and notes gaps; returns false for an entry to skip. */
  #checkOrder(index: number, where: string): boolean {
    const { start, end } = this.#header!.range;
    if (index <= this.#lastIndex) {
      this.#tally('index_order').fail(
        `${where}: follows leaf ${this.#lastIndex}, so it is a duplicate or out of order`,
      );
      return false;
    }
    if (index < start || index >= end) {
      this.#tally('index_order').fail(`${where}: outside the exported range ${start}-${end - 1}`);
      return false;
    }
    this.#lastIndex = index;
    if (index > this.#nextExpected) {
      this.#noteGap(this.#nextExpected, index - 1);
    }
    this.#nextExpected = index + 1;
    return true;
  }

  #noteGap(first: number, last: number): void {
    this.#missing += last - first + 1;
    this.#gapCount += 1;
    if (this.#gaps.length < MAX_LISTED_FAILURES) {
      this.#gaps.push([first, last]);
    }
  }

  #checkProof(entry: AuditExportEntry, where: string): void {
    const checkpoint = this.#checkpointResult;
    if (!checkpoint) {
      return;
    }
    const proof = entry.inclusion_proof.map(decodeProofHash);
    const hashes = proof.filter((hash): hash is Uint8Array => hash !== undefined);
    const proven =
      hashes.length === proof.length &&
      verifyInclusion(
        this.#crypto,
        fromHex(entry.leaf_hash),
        entry.log_index,
        checkpoint.size,
        hashes,
        checkpoint.root,
      );
    if (!proven) {
      this.#tally('inclusion_proof').fail(
        `${where}: the proof does not lead from leaf_hash to the checkpoint root`,
      );
    }
  }

  #checkEvent(entry: AuditExportEntry, tenantId: string, where: string): void {
    try {
      const event = parseAuditEvent(entry.leaf_data);
      if (event.tenant_id !== tenantId) {
        this.#tally('event_format').fail(`${where}: event of tenant ${event.tenant_id}`);
      }
    } catch (error) {
      if (!(error instanceof AuditError)) {
        throw error;
      }
      this.#tally('event_format').fail(`${where}: ${error.message}`);
    }
  }

  #checkCertificate(entry: AuditExportEntry, tenantId: string, where: string): void {
    try {
      const message = parseSignedMessage(utf8Encode(entry.leaf_data));
      if (message.tenant_id !== tenantId) {
        this.#tally('certificate_leaf').fail(
          `${where}: certificate of tenant ${message.tenant_id}`,
        );
      } else if (message.certificate_id !== entry.certificate_id) {
        this.#tally('certificate_leaf').fail(
          `${where}: signed message is certificate ${message.certificate_id}, not ${entry.certificate_id}`,
        );
      }
    } catch (error) {
      if (!(error instanceof VerificationError)) {
        throw error;
      }
      this.#tally('certificate_leaf').fail(`${where}: ${error.message}`);
    }
  }

  /** Closes the range and returns the report. */
  finish(): AuditExportReport {
    const header = this.#header;
    if (!header) {
      throw unusable('the export is empty; it has no header line');
    }
    const { start, end } = header.range;
    if (this.#nextExpected < end) {
      this.#noteGap(this.#nextExpected, end - 1);
      this.#nextExpected = end;
    }
    const checks = AUDIT_EXPORT_CHECKS.map((name) => this.#result(name, start, end));
    const valid = checks.every((check) => check.status !== 'fail');
    const report: AuditExportReport = {
      format: AUDIT_EXPORT_REPORT_FORMAT,
      valid,
      tenant_id: header.tenant_id,
      tree_size: header.tree_size,
      range: { start, end },
      covers_whole_log: start === 0 && end === header.tree_size,
      log_key_source: this.#trustedLogKeys ? 'pinned' : 'export',
      audit_events: this.#auditEvents,
      certificates: this.#certificates,
      checks,
      summary: '',
    };
    report.summary = summarizeAuditExport(report);
    return report;
  }

  #result(check: AuditExportCheckName, start: number, end: number): AuditExportCheck {
    const tally = this.#tally(check);
    const entries = this.#auditEvents + this.#certificates;
    if (check === 'inclusion_proof' && !this.#checkpointResult) {
      return {
        check,
        status: 'skipped',
        detail: 'not run because the checkpoint did not verify',
        failures: [],
      };
    }
    if (check === 'completeness') {
      return this.#missing === 0
        ? { check, status: 'pass', detail: completeDetail(start, end), failures: [] }
        : {
            check,
            status: 'fail',
            detail:
              `${this.#missing} leaves of the range are missing: ${describeGaps(this.#gaps)}` +
              (this.#gapCount > this.#gaps.length
                ? ` (the first ${this.#gaps.length} of ${this.#gapCount} gaps)`
                : ''),
            failures: [],
          };
    }
    if (tally.count > 0) {
      return {
        check,
        status: 'fail',
        detail: `${tally.count} ${tally.count === 1 ? 'failure' : 'failures'}`,
        failures: tally.listed,
      };
    }
    return { check, status: 'pass', detail: this.#passDetail(check, entries), failures: [] };
  }

  #passDetail(check: AuditExportCheckName, entries: number): string {
    switch (check) {
      case 'checkpoint':
        return this.#trustedLogKeys
          ? this.#checkpointDetail
          : `${this.#checkpointDetail}; pin the tenant's published log key for a check that does not rely on the export`;
      case 'entry_format':
        return `${entries} entry lines are well formed`;
      case 'index_order':
        return 'entries are in strictly increasing log order inside the range';
      case 'leaf_hash':
        return 'every leaf_hash is the RFC 9162 leaf hash of its leaf_data';
      case 'inclusion_proof':
        return `every leaf is proven in the checkpoint's tree (${entries} proofs)`;
      case 'event_format':
        return `${this.#auditEvents} audit events are canonical cdil.audit-event.v1 events of the tenant`;
      case 'certificate_leaf':
        return `${this.#certificates} certificate leaves are signed messages of the tenant`;
      case 'completeness':
        return '';
    }
  }
}

function completeDetail(start: number, end: number): string {
  return end === start
    ? 'the range is empty'
    : `every leaf from ${start} to ${end - 1} is exported`;
}

/** Plain-language summary of a report, for a compliance officer rather than a cryptographer. */
export function summarizeAuditExport(report: AuditExportReport): string {
  const subject = `Audit export of tenant ${report.tenant_id}`;
  if (!report.valid) {
    const failed = report.checks.filter((check) => check.status === 'fail');
    return (
      `${subject} is NOT valid: ${failed.length} of ${report.checks.length} checks failed ` +
      `(${failed.map((check) => check.check).join(', ')}). Events may have been altered, ` +
      'removed or added after export, or the checkpoint is not signed by the key you trust.'
    );
  }
  const { start, end } = report.range;
  const parts = [
    `${subject} is valid.`,
    `It holds ${report.audit_events} audit events and ${report.certificates} certificate leaves, ` +
      (end === start
        ? 'an empty range.'
        : `every leaf from ${start} to ${end - 1} of the log at size ${report.tree_size}, ` +
          'each proven against the signed checkpoint.'),
  ];
  if (!report.covers_whole_log) {
    parts.push('Leaves outside that range were not exported, and the range itself is not signed.');
  }
  if (report.log_key_source === 'export') {
    parts.push(
      'The log key was taken from the export itself; pin the tenant key for independent proof.',
    );
  }
  return parts.join(' ');
}

/**
 * Verifies a whole export held in memory. Raises AuditError when the text has no usable header
 * or a pinned key is invalid.
 */
export function verifyAuditExport(
  crypto: CryptoProvider,
  text: string,
  options: AuditExportVerifyOptions = {},
): AuditExportReport {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') {
    lines.pop();
  }
  if (lines.length === 0) {
    throw unusable('the export is empty; it has no header line');
  }
  const verifier = new AuditExportVerifier(crypto, options);
  verifier.readHeader(lines[0]!);
  for (let i = 1; i < lines.length; i++) {
    verifier.readEntry(lines[i]!, i + 1);
  }
  return verifier.finish();
}
