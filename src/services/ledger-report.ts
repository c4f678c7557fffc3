// The report of a whole-ledger verification and the bounded list that collects its findings.
// Findings name log indexes, chain sequences, certificate and event ids, node positions and
// field names, never stored values, so a report contains no note text and no PHI.

export const LEDGER_FINDING_KINDS = [
  'deleted',
  'inserted',
  'reordered',
  'edited',
  'checkpoint_mismatch',
  'signature_invalid',
  'timestamp_invalid',
] as const;

/**
 * Kind of a finding:
 * - `deleted`: a log index, chain sequence or node row that should exist is missing.
 * - `inserted`: a leaf or row exists that no log head covers (above the head, at a negative
 *   log index or without one), or a second leaf shares an index.
 * - `reordered`: a certificate is at another place in the log than its chain position, or its
 *   stored chain position or link differs from the signed one.
 * - `edited`: stored bytes or columns differ from what was signed or hashed into the log.
 * - `checkpoint_mismatch`: a signed checkpoint, or the stored log head, does not match the tree
 *   rebuilt from the stored leaves.
 * - `signature_invalid`: a certificate or checkpoint signature does not verify with the
 *   tenant's key.
 * - `timestamp_invalid`: a stored RFC 3161 token of a certificate or checkpoint is unreadable,
 *   does not verify or chain to the TSA roots given, or covers other data.
 */
export type LedgerFindingKind = (typeof LEDGER_FINDING_KINDS)[number];

/** Kind of record a finding is about. */
export const LEDGER_SUBJECTS = [
  'leaf',
  'certificate',
  'audit_event',
  'node',
  'head',
  'checkpoint',
] as const;
export type LedgerSubject = (typeof LEDGER_SUBJECTS)[number];

export interface LedgerFinding {
  kind: LedgerFindingKind;
  subject: LedgerSubject;
  log_index?: number;
  /**
   * Number of consecutive log indexes (subject `leaf`) or chain sequences (subject
   * `certificate`) the finding covers, from `log_index` or `chain_sequence`. Absent for one.
   */
  count?: number;
  certificate_id?: string;
  event_id?: string;
  chain_sequence?: number;
  /** Tree size of a checkpoint or of the log head. */
  tree_size?: number;
  node?: { level: number; index: number };
  /** Stored columns that differ from the signed values. */
  fields?: string[];
  detail: string;
}

export interface LedgerReport {
  tenant_id: string;
  /** True when there is no finding. */
  ok: boolean;
  /** Size of the log head when verification started. The walk checked the leaves below it. */
  tree_size: number;
  checked: {
    leaves: number;
    certificates: number;
    audit_events: number;
    nodes: number;
    checkpoints: number;
    /** Stored RFC 3161 tokens of certificates and checkpoints verified against the TSA roots. */
    timestamp_tokens: number;
  };
  /**
   * Leaves and checkpoints added by the service while verification ran, left for a later run,
   * and stored timestamp tokens left unverified because no TSA roots were given.
   */
  not_checked: {
    leaves_appended_during_run: number;
    checkpoints_published_during_run: number;
    timestamp_tokens_without_roots: number;
  };
  /** Number of findings of each kind, including those beyond `findings`. */
  totals: Record<LedgerFindingKind, number>;
  /** The findings in the order found, at most the run's maximum. */
  findings: LedgerFinding[];
  /**
   * Whether findings were left out of `findings`, or so many anomalies occurred that the
   * deleted-versus-moved analysis of the chain stopped tracking them.
   */
  findings_truncated: boolean;
  started_at: string;
  duration_ms: number;
}

/** Collects findings, keeping at most `max` of them in memory and counting all. */
export class FindingList {
  /** Findings kept in `items`. */
  readonly max: number;
  readonly items: LedgerFinding[] = [];
  readonly totals: Record<LedgerFindingKind, number> = {
    deleted: 0,
    inserted: 0,
    reordered: 0,
    edited: 0,
    checkpoint_mismatch: 0,
    signature_invalid: 0,
    timestamp_invalid: 0,
  };
  truncated = false;

  constructor(max: number) {
    this.max = max;
  }

  add(finding: LedgerFinding): void {
    this.totals[finding.kind] += 1;
    if (this.items.length < this.max) {
      this.items.push(finding);
    } else {
      this.truncated = true;
    }
  }

  get total(): number {
    return LEDGER_FINDING_KINDS.reduce((sum, kind) => sum + this.totals[kind], 0);
  }
}
