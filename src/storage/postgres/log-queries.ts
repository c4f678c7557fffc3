// PostgreSQL side of the Merkle log, checkpoint and audit tables. PgStore delegates its LogStore
// methods here and issues the log writes inside its certificate transaction. The writes of an
// append take one statement each for any number of tenants and rows: arrays carry the tenant id
// of every row. The `send...` functions issue their statements without awaiting, so that an
// append can pipeline them with its own (see pipeline.ts).
import type pg from 'pg';
import { extendLog, type LogExtension } from '../log-append.ts';
import {
  BACKFILL_BATCH,
  LOG_SQL,
  auditEventQuery,
  checkpointParams,
  listEntriesParams,
  toAuditEvent,
  toCheckpoint,
  toLogEntry,
} from '../log-sql.ts';
import type { SqlParam } from '../shadow-sql.ts';
import { END_LOCK_WAIT, remainingLockWait, settleLockPhase, startLockWait } from './lock-wait.ts';
import { numberPlaceholders } from './placeholders.ts';
import { sendTogether, settleInOrder } from './pipeline.ts';
import { tenantQuery, type TenantStatement } from './tenant-sql.ts';
import {
  type AuditEventFilter,
  type AuditEventRow,
  type CheckpointRow,
  type LogEntry,
  type LogHeadRow,
  type LogKeyRow,
  type LogNodeRow,
} from '../store.ts';

type Queryable = Pick<pg.PoolClient, 'query'>;

async function rows<R>(client: Queryable, sql: string, params: SqlParam[]): Promise<R[]> {
  const result = await client.query(numberPlaceholders(sql), params);
  return result.rows as R[];
}

const INSERT_NODES = `INSERT INTO log_nodes (tenant_id, level, node_index, hash)
  SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[])`;

const INSERT_AUDIT_EVENTS = `INSERT INTO audit_events (tenant_id, log_index, event_id, occurred_at, action,
    outcome, actor_hash, object_type, object_id, event_json)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[])`;

const GET_NODES = `SELECT n.level, n.node_index, n.hash FROM log_nodes n
  JOIN unnest($2::int[], $3::bigint[]) AS r (level, node_index)
    ON n.level = r.level AND n.node_index = r.node_index
  WHERE n.tenant_id = $1`;

const ENSURE_HEAD = `INSERT INTO log_heads (tenant_id, tree_size, frontier) VALUES ($1, 0, '')
  ON CONFLICT (tenant_id) DO NOTHING`;

const LOCK_HEAD = 'SELECT tree_size, frontier FROM log_heads WHERE tenant_id = $1 FOR UPDATE';

// array_position finds a tenant's first entry, so the tenant ids of one update must differ.
const SET_HEADS: TenantStatement = {
  single: {
    name: 'cdil_set_log_head',
    text: `UPDATE log_heads SET tree_size = ($2::bigint[])[1], frontier = ($3::text[])[1]
      WHERE tenant_id = ($1::text[])[1]`,
  },
  several: {
    name: 'cdil_set_log_heads',
    text: `UPDATE log_heads SET tree_size = ($2::bigint[])[array_position($1::text[], tenant_id)],
        frontier = ($3::text[])[array_position($1::text[], tenant_id)]
      WHERE tenant_id = ANY($1::text[])`,
  },
};

/** The extension of one tenant's log within an append for several tenants. */
export interface TenantLogExtension {
  tenantId: string;
  extension: LogExtension;
}

/**
 * Reads and locks the tenant's log head, creating an empty one. Call inside a transaction.
 * Rejects, on the foreign key, when the tenant does not exist. Certificate appends lock log
 * heads together with chain heads instead (see append.ts).
 */
export async function lockLogHead(client: Queryable, tenantId: string): Promise<LogHeadRow> {
  const ensured = client.query({
    name: 'cdil_ensure_log_head_alone',
    text: ENSURE_HEAD,
    values: [tenantId],
  });
  const locked = client.query<LogHeadRow>({
    name: 'cdil_lock_log_head',
    text: LOCK_HEAD,
    values: [tenantId],
  });
  await settleInOrder([ensured, locked]);
  const [raw] = (await locked).rows;
  return { tree_size: Number(raw!.tree_size), frontier: raw!.frontier };
}

/**
 * Locks the tenant's log head as lockLogHead does, inside a transaction begun on `client`, but
 * waits at most `waitMs` in all for the insert of a missing head and for the lock (see
 * lock-wait.ts). With `sinceBegin`, for a transaction that already waited for another lock,
 * `waitMs` counts from the transaction's BEGIN, so both waits together stay within it. Raises
 * StoreBusyError after that wait, and rejects on the foreign key when the tenant does not
 * exist.
 */
export async function lockLogHeadWithin(
  client: pg.PoolClient,
  tenantId: string,
  waitMs: number,
  { sinceBegin = false }: { sinceBegin?: boolean } = {},
): Promise<LogHeadRow> {
  const sent = sendTogether(client, () => {
    const bounded = sinceBegin
      ? client.query(remainingLockWait(waitMs))
      : client.query(startLockWait(waitMs));
    const ensured = client.query({
      name: 'cdil_ensure_log_head_alone',
      text: ENSURE_HEAD,
      values: [tenantId],
    });
    const shortened = client.query(remainingLockWait(waitMs));
    const locked = client.query<LogHeadRow>({
      name: 'cdil_lock_log_head',
      text: LOCK_HEAD,
      values: [tenantId],
    });
    const restored = client.query(END_LOCK_WAIT);
    return { statements: [bounded, ensured, shortened, locked, restored], locked };
  });
  await settleLockPhase(sent.statements, `the log head of tenant ${tenantId}`, waitMs);
  const [raw] = (await sent.locked).rows;
  return { tree_size: Number(raw!.tree_size), frontier: raw!.frontier };
}

/**
 * Issues the inserts of the extensions' new nodes and the update of their log heads, one
 * statement each for all tenants, without awaiting them, and returns their promises. Call inside
 * the transaction that locked the heads. The tenant ids of `extensions` must differ.
 */
export function sendLogExtensions(
  client: Queryable,
  extensions: readonly TenantLogExtension[],
): Promise<unknown>[] {
  const sent: Promise<unknown>[] = [];
  const nodes = extensions.flatMap(({ tenantId, extension }) =>
    extension.nodes.map((node) => ({ tenantId, node })),
  );
  if (nodes.length > 0) {
    sent.push(
      client.query({
        name: 'cdil_insert_log_nodes',
        text: INSERT_NODES,
        values: [
          nodes.map(({ tenantId }) => tenantId),
          nodes.map(({ node }) => node.level),
          nodes.map(({ node }) => node.node_index),
          nodes.map(({ node }) => node.hash),
        ],
      }),
    );
  }
  if (extensions.length > 0) {
    sent.push(
      client.query(
        tenantQuery(SET_HEADS, extensions.length, [
          extensions.map(({ tenantId }) => tenantId),
          extensions.map(({ extension }) => extension.head.tree_size),
          extensions.map(({ extension }) => extension.head.frontier),
        ]),
      ),
    );
  }
  return sent;
}

/** Appends leaves after `head` and stores the new nodes and head. Call inside a transaction. */
export async function extendLogIn(
  client: Queryable,
  tenantId: string,
  head: LogHeadRow,
  leafTexts: readonly string[],
): Promise<LogExtension> {
  const extension = extendLog(head, leafTexts);
  await settleInOrder(sendLogExtensions(client, [{ tenantId, extension }]));
  return extension;
}

/**
 * Issues the insert of audit events whose leaves the caller appends, one statement for all of
 * them whatever their tenants, without awaiting it. Returns no promise when there are no events.
 */
export function sendAuditEvents(
  client: Queryable,
  events: readonly AuditEventRow[],
): Promise<unknown>[] {
  if (events.length === 0) {
    return [];
  }
  const column = <K extends keyof AuditEventRow>(key: K) => events.map((event) => event[key]);
  return [
    client.query({
      name: 'cdil_insert_audit_events',
      text: INSERT_AUDIT_EVENTS,
      values: [
        column('tenant_id'),
        column('log_index'),
        column('event_id'),
        column('occurred_at'),
        column('action'),
        column('outcome'),
        column('actor_hash'),
        column('object_type'),
        column('object_id'),
        column('event_json'),
      ],
    }),
  ];
}

/** Stores audit events whose leaves the caller appends, in one statement. */
export async function insertAuditEvents(
  client: Queryable,
  events: readonly AuditEventRow[],
): Promise<void> {
  await settleInOrder(sendAuditEvents(client, events));
}

export async function getLogHead(
  client: Queryable,
  tenantId: string,
): Promise<LogHeadRow | undefined> {
  const [raw] = await rows<LogHeadRow>(client, LOG_SQL.getHead, [tenantId]);
  return raw ? { tree_size: Number(raw.tree_size), frontier: raw.frontier } : undefined;
}

export async function getLogNodes(
  client: Queryable,
  tenantId: string,
  refs: readonly { level: number; index: number }[],
): Promise<LogNodeRow[]> {
  if (refs.length === 0) {
    return [];
  }
  const result = await client.query(GET_NODES, [
    tenantId,
    refs.map((ref) => ref.level),
    refs.map((ref) => ref.index),
  ]);
  return (result.rows as LogNodeRow[]).map((raw) => ({
    level: raw.level,
    node_index: Number(raw.node_index),
    hash: raw.hash,
  }));
}

export async function listLogEntries(
  client: Queryable,
  tenantId: string,
  fromIndex: number,
  toIndex: number,
): Promise<LogEntry[]> {
  const found = await rows<LogEntry>(
    client,
    LOG_SQL.listEntries,
    listEntriesParams(tenantId, fromIndex, toIndex),
  );
  return found.map(toLogEntry);
}

export async function listLogEntriesBelowZero(
  client: Queryable,
  tenantId: string,
  limit: number,
): Promise<LogEntry[]> {
  const found = await rows<LogEntry>(client, LOG_SQL.listEntriesBelowZero, [
    tenantId,
    tenantId,
    limit,
  ]);
  return found.map(toLogEntry);
}

export async function getAuditEvent(
  client: Queryable,
  eventId: string,
): Promise<AuditEventRow | undefined> {
  const [raw] = await rows<AuditEventRow>(client, LOG_SQL.getAuditEvent, [eventId]);
  return raw ? toAuditEvent(raw) : undefined;
}

export async function listAuditEvents(
  client: Queryable,
  tenantId: string,
  filter: AuditEventFilter,
  afterIndex: number,
  limit: number,
): Promise<AuditEventRow[]> {
  const { sql, params } = auditEventQuery(tenantId, filter, afterIndex, limit);
  return (await rows<AuditEventRow>(client, sql, params)).map(toAuditEvent);
}

export async function putLogKey(client: Queryable, row: LogKeyRow): Promise<LogKeyRow> {
  await rows(client, LOG_SQL.insertKey, [
    row.tenant_id,
    row.key_name,
    row.public_key,
    row.private_key_sealed,
    row.created_at,
  ]);
  const [stored] = await rows<LogKeyRow>(client, LOG_SQL.getKey, [row.tenant_id]);
  return stored!;
}

export async function getLogKey(
  client: Queryable,
  tenantId: string,
): Promise<LogKeyRow | undefined> {
  const [stored] = await rows<LogKeyRow>(client, LOG_SQL.getKey, [tenantId]);
  return stored;
}

export async function putCheckpoint(client: Queryable, row: CheckpointRow): Promise<CheckpointRow> {
  await rows(client, LOG_SQL.insertCheckpoint, checkpointParams(row));
  return (await getCheckpoint(client, row.tenant_id, row.tree_size))!;
}

export async function getCheckpoint(
  client: Queryable,
  tenantId: string,
  treeSize: number,
): Promise<CheckpointRow | undefined> {
  const [raw] = await rows<CheckpointRow>(client, LOG_SQL.getCheckpoint, [tenantId, treeSize]);
  return toCheckpoint(raw);
}

export async function getLatestCheckpoint(
  client: Queryable,
  tenantId: string,
): Promise<CheckpointRow | undefined> {
  const [raw] = await rows<CheckpointRow>(client, LOG_SQL.getLatestCheckpoint, [tenantId]);
  return toCheckpoint(raw);
}

export async function setCheckpointTimestamp(
  client: Queryable,
  tenantId: string,
  treeSize: number,
  token: string | null,
): Promise<void> {
  if (token === null) {
    await rows(client, LOG_SQL.countTimestampAttempt, [tenantId, treeSize]);
  } else {
    await rows(client, LOG_SQL.setTimestamp, [token, tenantId, treeSize]);
  }
}

export async function listUntimestampedCheckpoints(
  client: Queryable,
  limit: number,
): Promise<CheckpointRow[]> {
  const found = await rows<CheckpointRow>(client, LOG_SQL.listUntimestamped, [limit]);
  return found.map((row) => toCheckpoint(row)!);
}

export async function listCheckpoints(
  client: Queryable,
  tenantId: string,
  afterSize: number,
  limit: number,
): Promise<CheckpointRow[]> {
  const found = await rows<CheckpointRow>(client, LOG_SQL.listCheckpoints, [
    tenantId,
    afterSize,
    limit,
  ]);
  return found.map((row) => toCheckpoint(row)!);
}

export async function listLogNodes(
  client: Queryable,
  tenantId: string,
  level: number,
  fromIndex: number,
  toIndex: number,
): Promise<LogNodeRow[]> {
  const found = await rows<LogNodeRow>(client, LOG_SQL.listNodes, [
    tenantId,
    level,
    fromIndex,
    toIndex,
  ]);
  return found.map((raw) => ({
    level: raw.level,
    node_index: Number(raw.node_index),
    hash: raw.hash,
  }));
}

export async function nextLogIndex(
  client: Queryable,
  tenantId: string,
  fromIndex: number,
): Promise<number | undefined> {
  const [row] = await rows<{ next_index: number | string | null }>(client, LOG_SQL.nextIndex, [
    tenantId,
    fromIndex,
    tenantId,
    fromIndex,
  ]);
  return row?.next_index === null || row?.next_index === undefined
    ? undefined
    : Number(row.next_index);
}

/**
 * Adds up to BACKFILL_BATCH certificates of one tenant stored before the log existed to its log,
 * in chain order. Call inside a transaction that holds the tenant's chain head lock.
 */
export async function backfillStep(client: Queryable, tenantId: string): Promise<number> {
  const found = await rows<{ certificate_id: string; signed_message: string }>(
    client,
    LOG_SQL.unloggedCertificates,
    [tenantId, BACKFILL_BATCH],
  );
  if (found.length === 0) {
    return 0;
  }
  const head = await lockLogHead(client, tenantId);
  for (const [offset, row] of found.entries()) {
    await rows(client, LOG_SQL.setCertificateLogIndex, [
      head.tree_size + offset,
      tenantId,
      row.certificate_id,
    ]);
  }
  await extendLogIn(
    client,
    tenantId,
    head,
    found.map((row) => row.signed_message),
  );
  return found.length;
}

export async function tenantsWithUnloggedCertificates(client: Queryable): Promise<string[]> {
  const found = await rows<{ tenant_id: string }>(client, LOG_SQL.tenantsWithUnlogged, []);
  return found.map((row) => row.tenant_id);
}
