// SQLite statements for the Merkle log, checkpoint and audit tables. SqliteStore delegates its
// LogStore methods here and calls `reserve`/`extend` inside its certificate transaction.
import type Database from 'better-sqlite3';
import { extendLog, type LogExtension } from '../log-append.ts';
import {
  BACKFILL_BATCH,
  LOG_SQL,
  auditEventParams,
  auditEventQuery,
  checkpointParams,
  listEntriesParams,
  toAuditEvent,
  toCheckpoint,
  toLogEntry,
} from '../log-sql.ts';
import type {
  AuditEventFilter,
  AuditEventRow,
  CheckpointRow,
  LogEntry,
  LogHeadRow,
  LogKeyRow,
  LogNodeRow,
  NewAuditEvent,
} from '../store.ts';
import { lazyStatements } from './lazy-statements.ts';

export class SqliteLogTables {
  readonly #db: Database.Database;
  #prepared: ReturnType<SqliteLogTables['prepare']> | undefined;

  constructor(db: Database.Database) {
    this.#db = db;
  }

  private get sql(): ReturnType<SqliteLogTables['prepare']> {
    this.#prepared ??= this.prepare();
    return this.#prepared;
  }

  /** Prepares each statement on first use (see lazyStatements). */
  private prepare() {
    return lazyStatements(this.#db, LOG_SQL);
  }

  /** Marks the next rows of a reset schema for re-preparation. */
  reset(): void {
    this.#prepared = undefined;
  }

  /** Reads the tenant's log head, creating an empty one. Call inside a write transaction. */
  head(tenantId: string): LogHeadRow {
    this.sql.ensureHead.run(tenantId);
    const raw = this.sql.getHead.get(tenantId) as LogHeadRow;
    return { tree_size: Number(raw.tree_size), frontier: raw.frontier };
  }

  /** Appends leaves after `head` and stores the new nodes and head. Call inside a transaction. */
  extend(tenantId: string, head: LogHeadRow, leafTexts: readonly string[]): LogExtension {
    const extension = extendLog(head, leafTexts);
    for (const node of extension.nodes) {
      this.sql.insertNode.run(tenantId, node.level, node.node_index, node.hash);
    }
    this.sql.setHead.run(extension.head.tree_size, extension.head.frontier, tenantId);
    return extension;
  }

  getHead(tenantId: string): LogHeadRow | undefined {
    const raw = this.sql.getHead.get(tenantId) as LogHeadRow | undefined;
    return raw ? { tree_size: Number(raw.tree_size), frontier: raw.frontier } : undefined;
  }

  getNodes(tenantId: string, refs: readonly { level: number; index: number }[]): LogNodeRow[] {
    const found: LogNodeRow[] = [];
    for (const ref of refs) {
      const raw = this.sql.getNode.get(tenantId, ref.level, ref.index) as LogNodeRow | undefined;
      if (raw) {
        found.push({ level: raw.level, node_index: Number(raw.node_index), hash: raw.hash });
      }
    }
    return found;
  }

  listEntries(tenantId: string, fromIndex: number, toIndex: number): LogEntry[] {
    const rows = this.sql.listEntries.all(
      ...listEntriesParams(tenantId, fromIndex, toIndex),
    ) as LogEntry[];
    return rows.map(toLogEntry);
  }

  listEntriesBelowZero(tenantId: string, limit: number): LogEntry[] {
    const rows = this.sql.listEntriesBelowZero.all(tenantId, tenantId, limit) as LogEntry[];
    return rows.map(toLogEntry);
  }

  /** Stores an audit event whose leaf the caller appends. Call inside a transaction. */
  insertAuditEvent(row: AuditEventRow): void {
    this.sql.insertAuditEvent.run(...auditEventParams(row));
  }

  appendAuditEvents(tenantId: string, events: NewAuditEvent[]): AuditEventRow[] {
    const run = this.#db.transaction(() => {
      const head = this.head(tenantId);
      const rows = events.map((event, offset) => ({
        ...event,
        tenant_id: tenantId,
        log_index: head.tree_size + offset,
      }));
      for (const row of rows) {
        this.insertAuditEvent(row);
      }
      this.extend(
        tenantId,
        head,
        rows.map((row) => row.event_json),
      );
      return rows;
    });
    return run.immediate();
  }

  getAuditEvent(eventId: string): AuditEventRow | undefined {
    const raw = this.sql.getAuditEvent.get(eventId) as AuditEventRow | undefined;
    return raw ? toAuditEvent(raw) : undefined;
  }

  listAuditEvents(
    tenantId: string,
    filter: AuditEventFilter,
    afterIndex: number,
    limit: number,
  ): AuditEventRow[] {
    const { sql, params } = auditEventQuery(tenantId, filter, afterIndex, limit);
    return (this.#db.prepare(sql).all(...params) as AuditEventRow[]).map(toAuditEvent);
  }

  putKey(row: LogKeyRow): LogKeyRow {
    this.sql.insertKey.run(
      row.tenant_id,
      row.key_name,
      row.public_key,
      row.private_key_sealed,
      row.created_at,
    );
    return this.sql.getKey.get(row.tenant_id) as LogKeyRow;
  }

  getKey(tenantId: string): LogKeyRow | undefined {
    return this.sql.getKey.get(tenantId) as LogKeyRow | undefined;
  }

  putCheckpoint(row: CheckpointRow): CheckpointRow {
    this.sql.insertCheckpoint.run(...checkpointParams(row));
    return toCheckpoint(this.sql.getCheckpoint.get(row.tenant_id, row.tree_size) as CheckpointRow)!;
  }

  getLatestCheckpoint(tenantId: string): CheckpointRow | undefined {
    return toCheckpoint(this.sql.getLatestCheckpoint.get(tenantId) as CheckpointRow | undefined);
  }

  getCheckpoint(tenantId: string, treeSize: number): CheckpointRow | undefined {
    return toCheckpoint(
      this.sql.getCheckpoint.get(tenantId, treeSize) as CheckpointRow | undefined,
    );
  }

  setTimestamp(tenantId: string, treeSize: number, token: string | null): void {
    if (token === null) {
      this.sql.countTimestampAttempt.run(tenantId, treeSize);
    } else {
      this.sql.setTimestamp.run(token, tenantId, treeSize);
    }
  }

  listCheckpoints(tenantId: string, afterSize: number, limit: number): CheckpointRow[] {
    return (this.sql.listCheckpoints.all(tenantId, afterSize, limit) as CheckpointRow[]).map(
      (row) => toCheckpoint(row)!,
    );
  }

  listNodes(tenantId: string, level: number, fromIndex: number, toIndex: number): LogNodeRow[] {
    const rows = this.sql.listNodes.all(tenantId, level, fromIndex, toIndex) as LogNodeRow[];
    return rows.map((raw) => ({
      level: raw.level,
      node_index: Number(raw.node_index),
      hash: raw.hash,
    }));
  }

  nextIndex(tenantId: string, fromIndex: number): number | undefined {
    const row = this.sql.nextIndex.get(tenantId, fromIndex, tenantId, fromIndex) as {
      next_index: number | bigint | null;
    };
    return row.next_index === null ? undefined : Number(row.next_index);
  }

  listUntimestamped(limit: number): CheckpointRow[] {
    return (this.sql.listUntimestamped.all(limit) as CheckpointRow[]).map((row) =>
      toCheckpoint(row)!,
    );
  }

  /**
   * Adds certificates stored before the log existed to their tenants' logs, in chain order. Runs
   * at start-up, after the migrations and before any append.
   */
  backfill(): number {
    let added = 0;
    const tenants = this.sql.tenantsWithUnlogged.all() as { tenant_id: string }[];
    const step = this.#db.transaction((tenantId: string): number => {
      const rows = this.sql.unloggedCertificates.all(tenantId, BACKFILL_BATCH) as {
        certificate_id: string;
        signed_message: string;
      }[];
      const head = this.head(tenantId);
      rows.forEach((row, offset) => {
        this.sql.setCertificateLogIndex.run(head.tree_size + offset, tenantId, row.certificate_id);
      });
      this.extend(
        tenantId,
        head,
        rows.map((row) => row.signed_message),
      );
      return rows.length;
    });
    for (const { tenant_id } of tenants) {
      for (let count = step.immediate(tenant_id); count > 0; count = step.immediate(tenant_id)) {
        added += count;
      }
    }
    return added;
  }
}
