// Whole-ledger verification walks a tenant's Merkle log from index 0 in pages. It checks every
// leaf against the bytes it was made from, every certificate against its signature and chain,
// and every stored node against its children. Then it compares the tree rebuilt from the leaves
// with the stored head and with every signed checkpoint. Given TSA roots, it also verifies each
// stored RFC 3161 token of a certificate or checkpoint when it reads that row.
//
// Memory stays bounded at any log size: the walk holds one page of rows and nodes, the
// rebuilt frontier (one hash per set bit of the size), the stored frontier nodes, one buffered
// page of checkpoints and at most `maxFindings` findings.
//
// The log may grow while the walk runs. The walk covers the leaves below the head size read at
// the start. Rows found above it count as appended during the run when a head read after them
// covers them, and as inserted otherwise. A checkpoint larger than the start size counts as
// published during the run when a head read after it is at least as large, because the service
// signs only sizes its head has reached.
import { openCheckpoint, createVerifierKey, type NoteVerifierKey } from '../core/checkpoint.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { fromBase64, fromHex, toHex, utf8Encode } from '../core/encoding.ts';
import { NoteError } from '../core/errors.ts';
import {
  appendLeaves,
  emptyRoot,
  frontierRefs,
  HASH_LENGTH,
  leafHash,
  nodeHash,
  nodeKey,
  rootFromFrontier,
} from '../core/merkle.ts';
import { decodeTrustedRoots, type TrustedRoots } from '../core/timestamp/certificates.ts';
import type {
  AuditEventRow,
  CertificateRow,
  CheckpointRow,
  LogEntry,
  Store,
} from '../storage/store.ts';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import { CertificateChecks } from './ledger-certificates.ts';
import { FindingList, type LedgerReport } from './ledger-report.ts';
import { TimestampChecks, type TimestampedCertificate } from './ledger-timestamps.ts';

export type { LedgerFinding, LedgerFindingKind, LedgerReport } from './ledger-report.ts';
export { LEDGER_FINDING_KINDS, LEDGER_SUBJECTS } from './ledger-report.ts';

/** Leaves read per page by default. */
export const DEFAULT_LEDGER_PAGE_SIZE = 1000;
/** Findings kept in a report by default. The totals count every finding. */
export const DEFAULT_MAX_FINDINGS = 1000;
const CHECKPOINT_PAGE_SIZE = 100;

export interface LedgerProgress {
  leaves_checked: number;
  leaves_total: number;
  findings: number;
}

export interface LedgerVerifyOptions {
  /** Leaves per page, from 1 to 100,000. */
  pageSize?: number | undefined;
  /** Findings kept in the report, from 1 to 100,000. */
  maxFindings?: number | undefined;
  /** Called after each page of the walk. */
  onProgress?: ((progress: LedgerProgress) => void) | undefined;
}

function requireOption(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 100_000) {
    throw new AppError('VALIDATION_FAILED', `${name} must be an integer from 1 to 100000`);
  }
  return value;
}

/** Streams a tenant's checkpoints in size order, one page at a time. */
class CheckpointCursor {
  readonly #store: Store;
  readonly #tenantId: string;
  #buffer: CheckpointRow[] = [];
  #afterSize = -1;
  #exhausted = false;

  constructor(store: Store, tenantId: string) {
    this.#store = store;
    this.#tenantId = tenantId;
  }

  async peek(): Promise<CheckpointRow | undefined> {
    if (this.#buffer.length === 0 && !this.#exhausted) {
      this.#buffer = await this.#store.listCheckpoints(
        this.#tenantId,
        this.#afterSize,
        CHECKPOINT_PAGE_SIZE,
      );
      this.#exhausted = this.#buffer.length < CHECKPOINT_PAGE_SIZE;
      const last = this.#buffer[this.#buffer.length - 1];
      if (last) {
        this.#afterSize = last.tree_size;
      }
    }
    return this.#buffer[0];
  }

  shift(): void {
    this.#buffer.shift();
  }

  /** Makes the next peek on an empty buffer read again, to find checkpoints published since. */
  refresh(): void {
    this.#exhausted = false;
  }

  /** Removes and returns the buffered checkpoints. Call peek() first to fill the buffer. */
  takeBuffered(): CheckpointRow[] {
    const buffered = this.#buffer;
    this.#buffer = [];
    return buffered;
  }
}

/** Decodes a stored hex node hash, or returns undefined when it is not 32 bytes of hex. */
function decodeHash(hex: string): Uint8Array | undefined {
  try {
    const hash = fromHex(hex);
    return hash.length === HASH_LENGTH ? hash : undefined;
  } catch {
    return undefined;
  }
}

/** Consecutive log indexes sharing one finding. */
interface IndexRun {
  start: number;
  end: number;
  /** Kind and id of the leaf at `start`, when known. */
  first?: { kind: LogEntry['kind']; id: string };
}

export class LedgerVerifier {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #tsaRoots: readonly Uint8Array[] | undefined;

  /**
   * `tsaRoots`: the TSA root certificates that stored RFC 3161 tokens must chain to. Without
   * them the tokens are counted as not checked. Raises TimestampError when they contain no
   * certificate.
   */
  constructor(store: Store, clock: Clock, tsaRoots?: TrustedRoots) {
    this.#store = store;
    this.#clock = clock;
    this.#tsaRoots = tsaRoots === undefined ? undefined : decodeTrustedRoots(tsaRoots);
  }

  /** Verifies the tenant's whole ledger and returns the report. Raises TENANT_NOT_FOUND. */
  async verify(tenantId: string, options: LedgerVerifyOptions = {}): Promise<LedgerReport> {
    const pageSize = requireOption('pageSize', options.pageSize ?? DEFAULT_LEDGER_PAGE_SIZE);
    const maxFindings = requireOption('maxFindings', options.maxFindings ?? DEFAULT_MAX_FINDINGS);
    if (!(await this.#store.getTenant(tenantId))) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
    const findings = new FindingList(maxFindings);
    const run = new LedgerRun(this.#store, tenantId, {
      pageSize,
      findings,
      timestamps: new TimestampChecks(this.#tsaRoots, findings, this.#clock),
      onProgress: options.onProgress,
    });
    return run.execute(this.#clock.now());
  }
}

/** The state of one verification run. */
class LedgerRun {
  readonly #store: Store;
  readonly #tenantId: string;
  readonly #pageSize: number;
  readonly #onProgress: LedgerVerifyOptions['onProgress'];
  readonly #findings: FindingList;
  readonly #maxTracked: number;
  readonly #checkpoints: CheckpointCursor;
  readonly #timestamps: TimestampChecks;
  #certificates!: CertificateChecks;
  #logKey: NoteVerifierKey | undefined;
  #logKeyProblem: string | undefined;

  // The tree rebuilt from the stored leaves.
  #frontier: Uint8Array[] = [];
  #size = 0;
  #pending: Uint8Array[] = [];
  /** First leaf index with neither stored bytes nor a stored node, where the rebuild stops. */
  #brokenAt: number | undefined;
  /** Stored hashes (hex) of the frontier nodes of the walked prefix, by nodeKey. */
  #storedFrontier = new Map<string, string>();
  #missing: IndexRun | undefined;

  readonly #checked = { leaves: 0, certificates: 0, audit_events: 0, nodes: 0, checkpoints: 0 };
  /** Audit event rows of the page being walked, by log index. */
  #auditRows = new Map<number, AuditEventRow>();
  /** Certificates of the page being walked whose signed message parsed. */
  #pageCertificates: TimestampedCertificate[] = [];
  readonly #notChecked = { leaves_appended_during_run: 0, checkpoints_published_during_run: 0 };

  constructor(
    store: Store,
    tenantId: string,
    parts: {
      pageSize: number;
      findings: FindingList;
      timestamps: TimestampChecks;
      onProgress: LedgerVerifyOptions['onProgress'];
    },
  ) {
    this.#store = store;
    this.#tenantId = tenantId;
    this.#pageSize = parts.pageSize;
    this.#onProgress = parts.onProgress;
    this.#findings = parts.findings;
    this.#maxTracked = parts.findings.max;
    this.#timestamps = parts.timestamps;
    this.#checkpoints = new CheckpointCursor(store, tenantId);
  }

  async execute(startedAt: Date): Promise<LedgerReport> {
    const started = performance.now();
    this.#certificates = new CertificateChecks(
      this.#tenantId,
      await this.#store.listKeys(this.#tenantId),
      this.#findings,
      this.#maxTracked,
    );
    await this.#loadLogKey();
    const head = (await this.#store.getLogHead(this.#tenantId)) ?? { tree_size: 0, frontier: '' };
    const treeSize = head.tree_size;

    await this.#compareCheckpointsAtSize();
    for (let from = 0; from < treeSize; from += this.#pageSize) {
      const to = Math.min(from + this.#pageSize, treeSize);
      await this.#walkPage(from, to);
      this.#onProgress?.({
        leaves_checked: to,
        leaves_total: treeSize,
        findings: this.#findings.total,
      });
    }
    this.#flushMissing();
    this.#flushPending();
    this.#compareHead(head.frontier, treeSize);
    const chain = this.#certificates.finish();

    this.#checkpoints.refresh();
    await this.#compareCheckpointsAtSize();
    await this.#scanAboveHead(treeSize);
    await this.#reportBelowZero();
    await this.#checkLaterCheckpoints();
    await this.#reportUnloggedCertificates();
    await this.#checkChainHead(treeSize);

    return {
      tenant_id: this.#tenantId,
      ok: this.#findings.total === 0,
      tree_size: treeSize,
      checked: { ...this.#checked, timestamp_tokens: this.#timestamps.checked },
      not_checked: {
        ...this.#notChecked,
        timestamp_tokens_without_roots: this.#timestamps.notChecked,
      },
      totals: { ...this.#findings.totals },
      findings: this.#findings.items,
      findings_truncated: this.#findings.truncated || chain.truncated,
      started_at: startedAt.toISOString(),
      duration_ms: Math.round(performance.now() - started),
    };
  }

  async #loadLogKey(): Promise<void> {
    const row = await this.#store.getLogKey(this.#tenantId);
    if (!row) {
      this.#logKeyProblem = `tenant ${this.#tenantId} has no log key`;
      return;
    }
    const publicKey = fromBase64(row.public_key);
    try {
      this.#logKey = createVerifierKey(nodeCrypto, row.key_name, publicKey ?? new Uint8Array(0));
    } catch (error) {
      if (!(error instanceof NoteError)) {
        throw error;
      }
      this.#logKeyProblem = `stored log key is invalid: ${error.message}`;
    }
  }

  // -------------------------------------------------------------------------------------------
  // The walk over [0, head size).

  async #walkPage(from: number, to: number): Promise<void> {
    const [entries, rows, nodes, events] = await Promise.all([
      this.#store.listLogEntries(this.#tenantId, from, to),
      this.#store.listLogCertificates(this.#tenantId, from, to),
      this.#readPageNodes(from, to),
      this.#store.listAuditEvents(this.#tenantId, {}, from - 1, to - from),
    ]);
    this.#auditRows = new Map(events.map((event) => [event.log_index, event]));
    const certificates = new Map<number, CertificateRow>();
    for (const row of rows) {
      certificates.set(row.log_index!, row);
    }
    this.#pageCertificates = [];
    let next = 0;
    for (let index = from; index < to; index++) {
      const atIndex: LogEntry[] = [];
      while (next < entries.length && entries[next]!.log_index === index) {
        atIndex.push(entries[next]!);
        next += 1;
      }
      const leaf = this.#checkLeaf(
        index,
        atIndex,
        nodes.get(nodeKey({ level: 0, index })),
        certificates,
      );
      await this.#appendRebuilt(index, leaf);
    }
    this.#checkInternalNodes(from, to, nodes);
    await this.#timestamps.checkCertificates(this.#pageCertificates);
    this.#pageCertificates = [];
  }

  /**
   * Reads every stored node that the leaves [from, to) complete: at level L, the nodes with
   * index from floor(from / 2^L) to floor(to / 2^L) - 1. The count per level never grows with
   * L, so the first empty level ends the read.
   */
  async #readPageNodes(from: number, to: number): Promise<Map<string, string>> {
    const nodes = new Map<string, string>();
    for (let level = 0; ; level++) {
      const low = Math.floor(from / 2 ** level);
      const high = Math.floor(to / 2 ** level);
      if (high === low) {
        break;
      }
      for (const row of await this.#store.listLogNodes(this.#tenantId, level, low, high)) {
        nodes.set(nodeKey({ level, index: row.node_index }), row.hash);
      }
    }
    return nodes;
  }

  /**
   * Checks the rows stored at one log index and returns the leaf hash the rebuild uses: the
   * hash of the stored bytes, or the stored node when the leaf's row is missing.
   */
  #checkLeaf(
    index: number,
    atIndex: readonly LogEntry[],
    node: string | undefined,
    certificates: ReadonlyMap<number, CertificateRow>,
  ): Uint8Array | undefined {
    if (atIndex.length === 0) {
      this.#recordMissing(index);
      return node === undefined ? undefined : decodeHash(node);
    }
    this.#flushMissing();
    this.#checked.leaves += 1;
    const hashes = atIndex.map((entry) => leafHash(nodeCrypto, utf8Encode(entry.data)));
    // Of two rows sharing an index, the one whose bytes hash to the stored node is the leaf.
    const matching = node === undefined ? -1 : hashes.findIndex((hash) => toHex(hash) === node);
    const chosen = Math.max(matching, 0);
    atIndex.forEach((entry, position) => {
      if (position !== chosen) {
        this.#findings.add({
          kind: 'inserted',
          subject: entry.kind,
          log_index: index,
          ...(entry.kind === 'certificate' ? { certificate_id: entry.id } : { event_id: entry.id }),
          detail: 'a second row is stored at this log index',
        });
      }
    });
    const entry = atIndex[chosen]!;
    const leafMatchesNode = matching === chosen;
    if (node === undefined) {
      this.#findings.add({
        kind: 'deleted',
        subject: 'node',
        log_index: index,
        node: { level: 0, index },
        detail: 'the level-0 node of this leaf is missing',
      });
    }
    if (entry.kind === 'certificate') {
      this.#checked.certificates += 1;
      const row = certificates.get(index);
      if (!row) {
        throw new Error(`certificate at log index ${index} changed while the ledger was read`);
      }
      const message = this.#certificates.check({
        row,
        nodeStored: node !== undefined,
        leafMatchesNode,
      });
      // NOTE: The token of a certificate whose signed message is malformed is not verified,
      // because the timestamped fields come from that message. It already has an edited finding.
      if (message !== undefined) {
        this.#pageCertificates.push({ row, message });
      }
    } else {
      this.#checked.audit_events += 1;
      if (leafMatchesNode) {
        // Only authentic event JSON is a reference for the columns.
        this.#checkAuditColumns(index, entry);
      }
      if (node !== undefined && !leafMatchesNode) {
        this.#findings.add({
          kind: 'edited',
          subject: 'audit_event',
          log_index: index,
          event_id: entry.id,
          detail: 'leaf hash of the stored event JSON differs from the stored level-0 node',
        });
      }
    }
    return hashes[chosen]!;
  }

  /**
   * Checks that the columns the audit API filters on equal the event JSON, which is the leaf:
   * an edited column would hide an event from a filtered query without touching the log.
   */
  #checkAuditColumns(index: number, entry: LogEntry): void {
    const row = this.#auditRows.get(index);
    if (!row || row.event_id !== entry.id) {
      return;
    }
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(entry.data) as Record<string, unknown>;
    } catch {
      return;
    }
    const columns = [
      'action',
      'outcome',
      'actor_hash',
      'object_type',
      'object_id',
      'occurred_at',
    ] as const;
    const differing = columns.filter((column) => (event[column] ?? null) !== row[column]);
    if (differing.length > 0) {
      this.#findings.add({
        kind: 'edited',
        subject: 'audit_event',
        log_index: index,
        event_id: entry.id,
        detail: `stored columns differ from the event JSON: ${differing.join(', ')}`,
      });
    }
  }

  /**
   * Checks that the chain head row, which the next append links to, names the last stored
   * certificate: an edited head would make appends fail or link to the wrong predecessor.
   */
  async #checkChainHead(treeSize: number): Promise<void> {
    const head = await this.#store.getChainHead(this.#tenantId);
    if (!head) {
      return;
    }
    const last =
      head.chain_sequence === 0
        ? undefined
        : await this.#store.getCertificateBySequence(this.#tenantId, head.chain_sequence);
    const next = await this.#store.getCertificateBySequence(
      this.#tenantId,
      head.chain_sequence + 1,
    );
    // A certificate after the head that the walk covered was there before the head was read.
    const nextWasWalked =
      next?.log_index !== undefined && next.log_index !== null && next.log_index < treeSize;
    const headMatches =
      head.chain_sequence === 0 ? head.chain_hash === null : last?.chain_hash === head.chain_hash;
    if (!headMatches || nextWasWalked) {
      this.#findings.add({
        kind: 'edited',
        subject: 'head',
        chain_sequence: head.chain_sequence,
        detail: nextWasWalked
          ? `the chain head names sequence ${head.chain_sequence}, but a later certificate is stored`
          : `the chain head's hash is not that of the certificate at sequence ${head.chain_sequence}`,
      });
    }
  }

  #recordMissing(index: number): void {
    if (this.#missing && this.#missing.end === index) {
      this.#missing.end = index + 1;
    } else {
      this.#flushMissing();
      this.#missing = { start: index, end: index + 1 };
    }
  }

  #flushMissing(): void {
    const run = this.#missing;
    if (!run) {
      return;
    }
    this.#missing = undefined;
    const count = run.end - run.start;
    this.#findings.add({
      kind: 'deleted',
      subject: 'leaf',
      log_index: run.start,
      ...(count > 1 ? { count } : {}),
      detail:
        count > 1
          ? `no certificate or audit event is stored at log indexes ${run.start} to ${run.end - 1}`
          : 'no certificate or audit event is stored at this log index',
    });
  }

  /**
   * Checks that each stored internal node completed by the leaves [from, to) is the hash of
   * its two stored children. A changed leaf leaves the stored nodes above it consistent with
   * each other, so a mismatch here points at the node row itself.
   */
  #checkInternalNodes(from: number, to: number, nodes: ReadonlyMap<string, string>): void {
    const stored = (key: string) => nodes.get(key) ?? this.#storedFrontier.get(key);
    for (let level = 1; ; level++) {
      const low = Math.floor(from / 2 ** level);
      const high = Math.floor(to / 2 ** level);
      if (high === low) {
        break;
      }
      for (let index = low; index < high; index++) {
        const node = nodes.get(nodeKey({ level, index }));
        const left = stored(nodeKey({ level: level - 1, index: 2 * index }));
        const right = stored(nodeKey({ level: level - 1, index: 2 * index + 1 }));
        const firstLeaf = index * 2 ** level;
        if (node === undefined) {
          this.#findings.add({
            kind: 'deleted',
            subject: 'node',
            log_index: firstLeaf,
            node: { level, index },
            detail: `the node over leaves ${firstLeaf} to ${firstLeaf + 2 ** level - 1} is missing`,
          });
          continue;
        }
        if (left === undefined || right === undefined) {
          continue;
        }
        const expected = nodeHash(nodeCrypto, Buffer.from(left, 'hex'), Buffer.from(right, 'hex'));
        if (toHex(expected) !== node) {
          this.#findings.add({
            kind: 'edited',
            subject: 'node',
            log_index: firstLeaf,
            node: { level, index },
            detail: 'stored node is not the hash of its two stored children',
          });
        }
      }
    }
    this.#checked.nodes += nodes.size;
    const frontier = new Map<string, string>();
    for (const ref of frontierRefs(to)) {
      const key = nodeKey(ref);
      const hash = stored(key);
      if (hash !== undefined) {
        frontier.set(key, hash);
      }
    }
    this.#storedFrontier = frontier;
  }

  // -------------------------------------------------------------------------------------------
  // The rebuilt tree, the head and the checkpoints.

  /** Adds one leaf hash to the rebuilt tree, then compares checkpoints of the new size. */
  async #appendRebuilt(index: number, leaf: Uint8Array | undefined): Promise<void> {
    if (leaf === undefined) {
      this.#brokenAt ??= index;
    } else if (this.#brokenAt === undefined) {
      this.#pending.push(leaf);
    }
    this.#size = index + 1;
    const next = await this.#checkpoints.peek();
    if (next !== undefined && next.tree_size <= this.#size) {
      await this.#compareCheckpointsAtSize();
    }
  }

  #flushPending(): void {
    if (this.#pending.length === 0 || this.#brokenAt !== undefined) {
      this.#pending = [];
      return;
    }
    const sizeBefore = this.#size - this.#pending.length;
    this.#frontier = appendLeaves(nodeCrypto, this.#frontier, sizeBefore, this.#pending).frontier;
    this.#pending = [];
  }

  /** The rebuilt root at the current size, or undefined when the rebuild has stopped. */
  #rebuiltRoot(): Uint8Array | undefined {
    if (this.#brokenAt !== undefined) {
      return undefined;
    }
    this.#flushPending();
    return this.#size === 0 ? emptyRoot(nodeCrypto) : rootFromFrontier(nodeCrypto, this.#frontier);
  }

  /** Compares every stored checkpoint of the current size, skipping smaller ones already met. */
  async #compareCheckpointsAtSize(): Promise<void> {
    for (let row = await this.#checkpoints.peek(); row; row = await this.#checkpoints.peek()) {
      if (row.tree_size > this.#size) {
        return;
      }
      this.#checkpoints.shift();
      this.#checked.checkpoints += 1;
      await this.#timestamps.checkCheckpoint(row);
      const signedRoot = this.#openCheckpoint(row);
      if (signedRoot === undefined) {
        continue;
      }
      const rebuilt = this.#rebuiltRoot();
      if (rebuilt === undefined) {
        this.#findings.add({
          kind: 'checkpoint_mismatch',
          subject: 'checkpoint',
          tree_size: row.tree_size,
          detail: `the root cannot be rebuilt, because leaf ${this.#brokenAt} has neither stored bytes nor a stored node`,
        });
      } else if (toHex(rebuilt) !== toHex(signedRoot)) {
        this.#findings.add({
          kind: 'checkpoint_mismatch',
          subject: 'checkpoint',
          tree_size: row.tree_size,
          detail: 'the signed root differs from the root rebuilt from the stored leaves',
        });
      }
    }
  }

  /**
   * Verifies a checkpoint's signature with the tenant's log key and that its stored columns
   * equal the signed body. Returns the signed root, or undefined after reporting a problem.
   */
  #openCheckpoint(row: CheckpointRow): Uint8Array | undefined {
    const where = { subject: 'checkpoint' as const, tree_size: row.tree_size };
    if (this.#logKey === undefined) {
      this.#findings.add({
        kind: 'signature_invalid',
        ...where,
        detail: `checkpoint cannot be verified: ${this.#logKeyProblem}`,
      });
      return undefined;
    }
    let opened;
    try {
      opened = openCheckpoint(nodeCrypto, row.note, [this.#logKey], this.#logKey.name);
    } catch (error) {
      if (!(error instanceof NoteError)) {
        throw error;
      }
      this.#findings.add({
        kind: 'signature_invalid',
        ...where,
        detail: `checkpoint does not verify with the tenant's log key: ${error.message} [${error.code}]`,
      });
      return undefined;
    }
    const fields = [];
    if (opened.checkpoint.size !== row.tree_size) {
      fields.push('tree_size');
    }
    if (toHex(opened.checkpoint.rootHash) !== row.root_hash) {
      fields.push('root_hash');
    }
    if (fields.length > 0) {
      this.#findings.add({
        kind: 'edited',
        ...where,
        fields,
        detail: `stored checkpoint columns differ from the signed note: ${fields.join(', ')}`,
      });
      return undefined;
    }
    return opened.checkpoint.rootHash;
  }

  #compareHead(storedFrontier: string, treeSize: number): void {
    const where = { subject: 'head' as const, tree_size: treeSize };
    if (this.#brokenAt !== undefined) {
      this.#findings.add({
        kind: 'checkpoint_mismatch',
        ...where,
        detail: `the head cannot be compared, because leaf ${this.#brokenAt} has neither stored bytes nor a stored node`,
      });
      return;
    }
    this.#flushPending();
    if (this.#frontier.map(toHex).join('') !== storedFrontier) {
      this.#findings.add({
        kind: 'checkpoint_mismatch',
        ...where,
        detail: 'the stored head frontier differs from the tree rebuilt from the stored leaves',
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Rows and checkpoints above the head.

  /**
   * Finds rows at or above the head size and reports those no later head covers.
   * NOTE: Node rows above the head or at negative indexes are not read, so extra node rows
   * there go unreported.
   */
  async #scanAboveHead(treeSize: number): Promise<void> {
    const runs: IndexRun[] = [];
    let tracking = true;
    let next = await this.#store.nextLogIndex(this.#tenantId, treeSize);
    while (next !== undefined && tracking) {
      const entries = await this.#store.listLogEntries(this.#tenantId, next, next + this.#pageSize);
      tracking = this.#addToRuns(runs, entries);
      next = await this.#store.nextLogIndex(this.#tenantId, next + this.#pageSize);
    }
    // Read the head after the rows: an append commits its rows and the head that covers them
    // together, so this head covers every row the service appended.
    const covered = (await this.#store.getLogHead(this.#tenantId))?.tree_size ?? 0;
    for (const run of runs) {
      this.#notChecked.leaves_appended_during_run += Math.max(
        0,
        Math.min(run.end, covered) - run.start,
      );
      const start = Math.max(run.start, covered);
      if (start < run.end) {
        this.#reportAboveHead(run, start, covered);
      }
    }
  }

  /**
   * Adds entries, in log order, to runs of consecutive indexes. Returns false, and marks the
   * findings truncated, once `maxFindings` runs are tracked and an entry starts another.
   */
  #addToRuns(runs: IndexRun[], entries: readonly LogEntry[]): boolean {
    for (const entry of entries) {
      const last = runs[runs.length - 1];
      if (last && last.end === entry.log_index) {
        last.end += 1;
      } else if (!last || last.end < entry.log_index) {
        if (runs.length >= this.#maxTracked) {
          this.#findings.truncated = true;
          return false;
        }
        runs.push({
          start: entry.log_index,
          end: entry.log_index + 1,
          first: { kind: entry.kind, id: entry.id },
        });
      }
    }
    return true;
  }

  #reportAboveHead(run: IndexRun, start: number, covered: number): void {
    const count = run.end - start;
    this.#reportInserted(run, start, {
      tree_size: covered,
      detail:
        count > 1
          ? `log indexes ${start} to ${run.end - 1} are stored above the log head`
          : 'this log index is stored above the log head',
    });
  }

  /**
   * Reports rows at negative log indexes. Log indexes start at 0, so no head covers them and
   * only a write that bypassed the service stores them.
   */
  async #reportBelowZero(): Promise<void> {
    const limit = this.#maxTracked;
    const entries = await this.#store.listLogEntriesBelowZero(this.#tenantId, limit + 1);
    if (entries.length > limit) {
      this.#findings.truncated = true;
    }
    const runs: IndexRun[] = [];
    this.#addToRuns(runs, entries.slice(0, limit));
    for (const run of runs) {
      this.#reportInserted(run, run.start, {
        detail:
          run.end - run.start > 1
            ? `log indexes ${run.start} to ${run.end - 1} are negative, and log indexes start at 0`
            : 'this log index is negative, and log indexes start at 0',
      });
    }
  }

  /** Reports the indexes from `start` to the end of `run` as one `inserted` finding. */
  #reportInserted(
    run: IndexRun,
    start: number,
    finding: { detail: string; tree_size?: number },
  ): void {
    const count = run.end - start;
    const first = start === run.start && count === 1 ? run.first : undefined;
    this.#findings.add({
      kind: 'inserted',
      subject: first?.kind ?? 'leaf',
      log_index: start,
      ...(count > 1 ? { count } : {}),
      ...(first?.kind === 'certificate' ? { certificate_id: first.id } : {}),
      ...(first?.kind === 'audit_event' ? { event_id: first.id } : {}),
      ...finding,
    });
  }

  /** Verifies the checkpoints larger than the walked size and reports those above the head. */
  async #checkLaterCheckpoints(): Promise<void> {
    while (await this.#checkpoints.peek()) {
      const page = this.#checkpoints.takeBuffered();
      // Read the head after the page: the service signs only sizes its head has reached, so
      // this head is at least as large as every checkpoint the service published.
      const head = (await this.#store.getLogHead(this.#tenantId))?.tree_size ?? 0;
      for (const row of page) {
        await this.#timestamps.checkCheckpoint(row);
        if (this.#openCheckpoint(row) === undefined) {
          this.#checked.checkpoints += 1;
        } else if (row.tree_size <= head) {
          this.#notChecked.checkpoints_published_during_run += 1;
        } else {
          this.#checked.checkpoints += 1;
          this.#findings.add({
            kind: 'checkpoint_mismatch',
            subject: 'checkpoint',
            tree_size: row.tree_size,
            detail: `the signed checkpoint is larger than the log head (${head} leaves): leaves were removed or the head was rolled back`,
          });
        }
      }
    }
  }

  async #reportUnloggedCertificates(): Promise<void> {
    const rows = await this.#store.listUnloggedCertificates(this.#tenantId, this.#maxTracked + 1);
    if (rows.length > this.#maxTracked) {
      this.#findings.truncated = true;
    }
    for (const row of rows.slice(0, this.#maxTracked)) {
      this.#findings.add({
        kind: 'inserted',
        subject: 'certificate',
        certificate_id: row.certificate_id,
        chain_sequence: row.chain_sequence,
        detail: 'certificate row has no log index, so no log leaf covers it',
      });
    }
  }
}
