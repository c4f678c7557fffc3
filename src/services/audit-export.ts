// Writes a tenant's audit export (`cdil.audit-export.v1`, see src/core/audit-export.ts). It
// contains the log key, a checkpoint (published first when the log grew) and every leaf of the
// range with its inclusion proof. Leaves are streamed in chunks, so memory use is bounded.
import {
  AUDIT_EXPORT_FORMAT,
  type AuditExportEntry,
  type AuditExportHeader,
} from '../core/audit-export.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { toBase64, toHex, utf8Encode } from '../core/encoding.ts';
import { leafHash } from '../core/merkle.ts';
import type { AuditEventFilter, Store } from '../storage/store.ts';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import type { TransparencyLog } from './transparency-log.ts';

/** Optional time filter: export the leaf range from the first to the last matching event. */
export interface AuditExportRange {
  /** Inclusive lower bound of occurred_at, ISO 8601 UTC. */
  occurredFrom?: string | undefined;
  /** Exclusive upper bound of occurred_at, ISO 8601 UTC. */
  occurredTo?: string | undefined;
}

export interface AuditExportResult {
  header: AuditExportHeader;
  auditEvents: number;
  certificates: number;
  /** Leaves of the range with no stored row: the export cannot include them. */
  missingLeaves: number;
  /** The first missing leaf indexes, at most MAX_REPORTED_MISSING. */
  firstMissing: number[];
}

/** Leaves read, proven and written per round trip. */
const CHUNK_LEAVES = 256;
/** Audit events read per page while finding the bounds of a time range. */
const RANGE_PAGE = 1000;
const MAX_REPORTED_MISSING = 20;

export class AuditExporter {
  readonly #store: Store;
  readonly #log: TransparencyLog;
  readonly #clock: Clock;

  constructor(store: Store, log: TransparencyLog, clock: Clock) {
    this.#store = store;
    this.#log = log;
    this.#clock = clock;
  }

  /**
   * Writes the export line by line through `writeLine` (each line without its newline). With a
   * time filter the range runs from the first to the last matching audit event, and every leaf
   * in between is exported too, so the verifier can prove that none was left out.
   */
  async export(
    tenantId: string,
    range: AuditExportRange,
    writeLine: (line: string) => Promise<void>,
  ): Promise<AuditExportResult> {
    if (!(await this.#store.getTenant(tenantId))) {
      throw new AppError('TENANT_NOT_FOUND', `tenant ${tenantId} not found`);
    }
    const checkpoint = await this.#log.publish(tenantId);
    const key = await this.#log.keyInfo(tenantId);
    const size = checkpoint.tree_size;
    const filtered = range.occurredFrom !== undefined || range.occurredTo !== undefined;
    const { start, end } = filtered
      ? await this.#boundsOf(tenantId, range, size)
      : { start: 0, end: size };
    const header: AuditExportHeader = {
      format: AUDIT_EXPORT_FORMAT,
      tenant_id: tenantId,
      exported_at: this.#clock.now().toISOString(),
      log_key: key.verifier_key,
      checkpoint: checkpoint.note,
      tree_size: size,
      range: {
        start,
        end,
        occurred_from: range.occurredFrom ?? null,
        occurred_to: range.occurredTo ?? null,
      },
    };
    await writeLine(JSON.stringify(header));

    const result: AuditExportResult = {
      header,
      auditEvents: 0,
      certificates: 0,
      missingLeaves: 0,
      firstMissing: [],
    };
    for (let chunkStart = start; chunkStart < end; chunkStart += CHUNK_LEAVES) {
      const chunkEnd = Math.min(end, chunkStart + CHUNK_LEAVES);
      const stored = await this.#store.listLogEntries(tenantId, chunkStart, chunkEnd);
      const found = new Set(stored.map((entry) => entry.log_index));
      for (let index = chunkStart; index < chunkEnd; index++) {
        if (!found.has(index)) {
          result.missingLeaves += 1;
          if (result.firstMissing.length < MAX_REPORTED_MISSING) {
            result.firstMissing.push(index);
          }
        }
      }
      const paths = await this.#log.inclusionPaths(
        tenantId,
        size,
        stored.map((entry) => entry.log_index),
      );
      for (const [position, entry] of stored.entries()) {
        const line: AuditExportEntry = {
          kind: entry.kind,
          log_index: entry.log_index,
          leaf_hash: toHex(leafHash(nodeCrypto, utf8Encode(entry.data))),
          leaf_data: entry.data,
          ...(entry.kind === 'certificate' ? { certificate_id: entry.id } : {}),
          inclusion_proof: paths[position]!.map(toBase64),
        };
        if (entry.kind === 'audit_event') {
          result.auditEvents += 1;
        } else {
          result.certificates += 1;
        }
        await writeLine(JSON.stringify(line));
      }
    }
    return result;
  }

  /**
   * Returns the leaf range from the first to the last audit event in the time range, among the
   * first `size` leaves, or an empty range when no event matches.
   */
  async #boundsOf(
    tenantId: string,
    range: AuditExportRange,
    size: number,
  ): Promise<{ start: number; end: number }> {
    const filter: AuditEventFilter = {
      occurredFrom: range.occurredFrom,
      occurredTo: range.occurredTo,
    };
    let first: number | undefined;
    let last: number | undefined;
    let after = -1;
    for (;;) {
      const page = await this.#store.listAuditEvents(tenantId, filter, after, RANGE_PAGE);
      const inTree = page.filter((row) => row.log_index < size);
      if (inTree.length > 0) {
        first ??= inTree[0]!.log_index;
        last = inTree[inTree.length - 1]!.log_index;
      }
      if (page.length < RANGE_PAGE || inTree.length < page.length) {
        break;
      }
      after = page[page.length - 1]!.log_index;
    }
    return first === undefined || last === undefined
      ? { start: 0, end: 0 }
      : { start: first, end: last + 1 };
  }
}
