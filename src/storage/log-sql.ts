// SQL for the Merkle log, checkpoint and audit tables, shared by both engines. Placeholders are
// `?`; the PostgreSQL engine renumbers them.
import type { SqlParam } from './shadow-sql.ts';
import type { AuditEventFilter, AuditEventRow, CheckpointRow, LogEntry } from './store.ts';

export const LOG_SQL = {
  ensureHead: `INSERT INTO log_heads (tenant_id, tree_size, frontier) VALUES (?, 0, '')
    ON CONFLICT (tenant_id) DO NOTHING`,
  getHead: 'SELECT tree_size, frontier FROM log_heads WHERE tenant_id = ?',
  setHead: 'UPDATE log_heads SET tree_size = ?, frontier = ? WHERE tenant_id = ?',
  insertNode: 'INSERT INTO log_nodes (tenant_id, level, node_index, hash) VALUES (?, ?, ?, ?)',
  getNode:
    'SELECT level, node_index, hash FROM log_nodes WHERE tenant_id = ? AND level = ? AND node_index = ?',
  getAuditEvent: 'SELECT * FROM audit_events WHERE event_id = ?',
  insertAuditEvent: `INSERT INTO audit_events (tenant_id, log_index, event_id, occurred_at, action, outcome,
      actor_hash, object_type, object_id, event_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  // Both tables hold leaves with dense indexes, so a range read per table stays bounded.
  listEntries: `SELECT log_index, 'certificate' AS kind, certificate_id AS id, signed_message AS data
      FROM certificates WHERE tenant_id = ? AND log_index >= ? AND log_index < ?
    UNION ALL
    SELECT log_index, 'audit_event' AS kind, event_id AS id, event_json AS data
      FROM audit_events WHERE tenant_id = ? AND log_index >= ? AND log_index < ?
    ORDER BY log_index`,
  // Log indexes start at 0, so only a write that bypassed the service stores a negative one.
  listEntriesBelowZero: `SELECT log_index, kind, id, data FROM (
      SELECT log_index, 'certificate' AS kind, certificate_id AS id, signed_message AS data
        FROM certificates WHERE tenant_id = ? AND log_index < 0
      UNION ALL
      SELECT log_index, 'audit_event' AS kind, event_id AS id, event_json AS data
        FROM audit_events WHERE tenant_id = ? AND log_index < 0
    ) AS below_zero ORDER BY log_index LIMIT ?`,
  unloggedCertificates: `SELECT certificate_id, signed_message FROM certificates
    WHERE tenant_id = ? AND log_index IS NULL ORDER BY chain_sequence LIMIT ?`,
  setCertificateLogIndex:
    'UPDATE certificates SET log_index = ? WHERE tenant_id = ? AND certificate_id = ?',
  tenantsWithUnlogged:
    'SELECT DISTINCT tenant_id FROM certificates WHERE log_index IS NULL ORDER BY tenant_id',
  insertKey: `INSERT INTO log_keys (tenant_id, key_name, public_key, private_key_sealed, created_at)
    VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO NOTHING`,
  getKey: 'SELECT * FROM log_keys WHERE tenant_id = ?',
  insertCheckpoint: `INSERT INTO log_checkpoints (tenant_id, tree_size, root_hash, note, published_at,
      timestamp_token, timestamp_attempts) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (tenant_id, tree_size) DO NOTHING`,
  getCheckpoint: 'SELECT * FROM log_checkpoints WHERE tenant_id = ? AND tree_size = ?',
  getLatestCheckpoint:
    'SELECT * FROM log_checkpoints WHERE tenant_id = ? ORDER BY tree_size DESC LIMIT 1',
  setTimestamp: `UPDATE log_checkpoints SET timestamp_token = ?, timestamp_attempts = timestamp_attempts + 1
    WHERE tenant_id = ? AND tree_size = ?`,
  countTimestampAttempt: `UPDATE log_checkpoints SET timestamp_attempts = timestamp_attempts + 1
    WHERE tenant_id = ? AND tree_size = ?`,
  listUntimestamped: `SELECT * FROM log_checkpoints WHERE timestamp_token IS NULL
    ORDER BY published_at, tenant_id, tree_size LIMIT ?`,
  listCheckpoints: `SELECT * FROM log_checkpoints WHERE tenant_id = ? AND tree_size > ?
    ORDER BY tree_size LIMIT ?`,
  listLogCertificates: `SELECT * FROM certificates
    WHERE tenant_id = ? AND log_index >= ? AND log_index < ? ORDER BY log_index`,
  listUnloggedCertificateRows: `SELECT * FROM certificates
    WHERE tenant_id = ? AND log_index IS NULL ORDER BY chain_sequence LIMIT ?`,
  listNodes: `SELECT level, node_index, hash FROM log_nodes
    WHERE tenant_id = ? AND level = ? AND node_index >= ? AND node_index < ? ORDER BY node_index`,
  nextIndex: `SELECT MIN(log_index) AS next_index FROM (
      SELECT MIN(log_index) AS log_index FROM certificates WHERE tenant_id = ? AND log_index >= ?
      UNION ALL
      SELECT MIN(log_index) AS log_index FROM audit_events WHERE tenant_id = ? AND log_index >= ?
    ) AS candidates`,
} as const;

export function listEntriesParams(tenantId: string, from: number, to: number): SqlParam[] {
  return [tenantId, from, to, tenantId, from, to];
}

export function checkpointParams(row: CheckpointRow): SqlParam[] {
  return [
    row.tenant_id,
    row.tree_size,
    row.root_hash,
    row.note,
    row.published_at,
    row.timestamp_token,
    row.timestamp_attempts,
  ];
}

export function auditEventParams(row: AuditEventRow): SqlParam[] {
  return [
    row.tenant_id,
    row.log_index,
    row.event_id,
    row.occurred_at,
    row.action,
    row.outcome,
    row.actor_hash,
    row.object_type,
    row.object_id,
    row.event_json,
  ];
}

export function toCheckpoint(raw: CheckpointRow | undefined): CheckpointRow | undefined {
  return raw
    ? {
        ...raw,
        tree_size: Number(raw.tree_size),
        timestamp_attempts: Number(raw.timestamp_attempts),
      }
    : undefined;
}

export function toLogEntry(raw: LogEntry): LogEntry {
  return { ...raw, log_index: Number(raw.log_index) };
}

export function toAuditEvent(raw: AuditEventRow): AuditEventRow {
  return { ...raw, log_index: Number(raw.log_index) };
}

export function auditEventQuery(
  tenantId: string,
  filter: AuditEventFilter,
  afterIndex: number,
  limit: number,
): { sql: string; params: SqlParam[] } {
  const clauses = ['tenant_id = ?', 'log_index > ?'];
  const params: SqlParam[] = [tenantId, afterIndex];
  if (filter.action !== undefined) {
    clauses.push('action = ?');
    params.push(filter.action);
  }
  if (filter.outcome !== undefined) {
    clauses.push('outcome = ?');
    params.push(filter.outcome);
  }
  if (filter.occurredFrom !== undefined) {
    clauses.push('occurred_at >= ?');
    params.push(filter.occurredFrom);
  }
  if (filter.occurredTo !== undefined) {
    clauses.push('occurred_at < ?');
    params.push(filter.occurredTo);
  }
  params.push(limit);
  return {
    sql: `SELECT * FROM audit_events WHERE ${clauses.join(' AND ')} ORDER BY log_index LIMIT ?`,
    params,
  };
}

/** How many unlogged certificates one start-up transaction adds to the log. */
export const BACKFILL_BATCH = 1000;
