// PostgreSQL engine (node-postgres pool). Chain appends are serialized by the database: each
// append transaction locks the chain_heads rows of its tenants with SELECT ... FOR UPDATE, in
// tenant_id order, so appends from any number of processes queue on those rows and never fork a
// chain.
import pg from 'pg';
import { certificateQuery } from '../certificate-query.ts';
import { endedKey, newActiveKey, revokedKey, rotationInstant } from '../key-rotation.ts';
import { LOG_SQL } from '../log-sql.ts';
import {
  assertSchemaSupported,
  LOG_SCHEMA_VERSION,
  MIGRATIONS,
  statementFor,
  type Migration,
} from '../migrations.ts';
import {
  appendGroups,
  HeadsLockedError,
  isKeyClaimedConcurrently,
  MULTI_TENANT_LOCK_WAIT_MS,
} from './append.ts';
import {
  connectionErrorFields,
  isConnectionFailure,
  isPoolWaitTimeout,
  wrapConnectionFailure,
} from './connection-errors.ts';
import { toCertificate, type RawCertificate } from '../certificate-row.ts';
import { END_LOCK_WAIT, settleLockPhase, startLockWait } from './lock-wait.ts';
import * as log from './log-queries.ts';
import { sendTogether } from './pipeline.ts';
import { numberPlaceholders } from './placeholders.ts';
import { toStoreError } from './resource-errors.ts';
import { toTenant, type RawTenant } from '../tenant-row.ts';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_LOCK_TIMEOUT_MS,
  DEFAULT_QUERY_TIMEOUT_MS,
  IDLE_IN_TRANSACTION_TIMEOUT_MS,
} from './timeouts.ts';
import {
  INSERT_CONDITION_SQL,
  INSERT_FINDING_SQL,
  INSERT_GAP_SQL,
  INSERT_ITEM_SQL,
  aggregateQueries,
  assembleAggregate,
  conditionParams,
  itemParams,
  linkedCertificateIdsQuery,
  listItemsQuery,
  toItem,
  type AggregateRows,
  type Query,
  type RawItem,
  type SqlParam,
} from '../shadow-sql.ts';
import {
  AuditEventExistsError,
  TenantExistsError,
  type AppendGroup,
  type AppendOptions,
  type AppendItem,
  type AppendResult,
  type AuditEventFilter,
  type AuditEventRow,
  type CheckpointRow,
  type LogEntry,
  type LogHeadRow,
  type LogKeyRow,
  type LogNodeRow,
  type NewAuditEvent,
  type CertificateFilter,
  type CertificateRow,
  type KeyReplacement,
  type KeyRevocation,
  type KeyRevocationResult,
  type MigrationReport,
  type NewSigningKey,
  type NewSigningKeyRow,
  type NewTenantRow,
  type NewShadowItem,
  type RateLimitCount,
  type RateLimitTotal,
  type Sealer,
  checkDistinctTenants,
  processWarningLogger,
  StoreBusyError,
  StoreFullError,
  type ShadowAggregate,
  type ShadowAssumptionsRow,
  type ShadowItemCursor,
  type ShadowItemFilter,
  type ShadowItemOrder,
  type ShadowItemRow,
  type SigningKeyRow,
  type Store,
  type TenantRow,
  type WarningLogger,
} from '../store.ts';

export const DEFAULT_POOL_SIZE = 10;

/**
 * Idle time after which the kernel sends TCP keepalive probes, so that a connection to a host
 * that went away (a network partition, a powered-off server) fails instead of waiting forever.
 */
const KEEPALIVE_INITIAL_DELAY_MS = 10_000;

/** Key of the session advisory lock held while migrating, so concurrent starts take turns. */
const MIGRATION_LOCK_KEY = 0x4344_494c; // "CDIL" in ASCII

const UNIQUE_VIOLATION = '23505';

/** Command tags of statements that write; a successful one shows that the disk takes writes. */
const WRITE_COMMANDS = new Set(['INSERT', 'UPDATE', 'DELETE']);

/** PostgreSQL's name for the UNIQUE constraint of audit_events.event_id (migration 4). */
const AUDIT_EVENT_ID_CONSTRAINT = 'audit_events_event_id_key';
const INT8_OID = 20;
const NUMERIC_OID = 1700;

/**
 * Maximum attempts of one append whose idempotency key insert clashed with another writer. Such
 * a clash needs a writer that ignores the chain head lock, and each attempt finds at least one
 * more committed key, so a second attempt is already rare.
 */
const MAX_APPEND_ATTEMPTS = 5;

// BIGINT (int8) and NUMERIC (the type of SUM over BIGINT) arrive as strings by default. Every
// such value here is a count, sequence number or amount in cents or dollars, far below 2^53,
// so reading them as numbers is exact and matches what the SQLite engine returns.
function parseNumber(text: string): number {
  return Number(text);
}

const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary'): unknown =>
    oid === INT8_OID || oid === NUMERIC_OID
      ? parseNumber
      : (pg.types.getTypeParser(oid, format) as unknown)) as pg.CustomTypesConfig['getTypeParser'],
};

export { numberPlaceholders };

/**
 * Inserts a new key. A new key is never revoked, so the revocation columns keep their NULL
 * default and tenant creation also works on a schema older than version 3.
 */
async function insertKey(client: Queryable, key: NewSigningKeyRow): Promise<void> {
  await client.query(
    `INSERT INTO signing_keys (tenant_id, key_id, algorithm, status, valid_from, valid_until, public_key_pem, private_key_sealed, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [
      key.tenant_id,
      key.key_id,
      key.algorithm,
      key.status,
      key.valid_from,
      key.valid_until,
      key.public_key_pem,
      key.private_key_sealed,
      key.created_at,
    ],
  );
}

async function updateKeyStatus(client: Queryable, key: SigningKeyRow): Promise<void> {
  await client.query(
    `UPDATE signing_keys SET status = $1, valid_until = $2, revoked_at = $3, revocation_reason = $4
     WHERE tenant_id = $5 AND key_id = $6`,
    [key.status, key.valid_until, key.revoked_at, key.revocation_reason, key.tenant_id, key.key_id],
  );
}

/**
 * Adds positive counts and reads every total in one statement. The data-modifying CTE runs on
 * the statement's snapshot, so a tenant's new total comes from RETURNING and a read-only
 * tenant's total from the table. The INSERT takes its rows in tenant order, so concurrent
 * syncs lock the rows they share in the same order and do not deadlock each other.
 */
const SYNC_RATE_LIMITS_SQL = `
  WITH input AS (
    SELECT i.tenant_id, i.added, t.rate_limit_per_minute
    FROM unnest($2::text[], $3::bigint[]) AS i (tenant_id, added)
    JOIN tenants t ON t.tenant_id = i.tenant_id
  ),
  upserted AS (
    INSERT INTO rate_limit_counters (window_start, tenant_id, request_count)
    SELECT $1, tenant_id, added FROM input WHERE added > 0 ORDER BY tenant_id
    ON CONFLICT (window_start, tenant_id) DO UPDATE
      SET request_count = rate_limit_counters.request_count + excluded.request_count
    RETURNING tenant_id, request_count
  )
  SELECT i.tenant_id, i.rate_limit_per_minute,
    COALESCE(u.request_count, c.request_count, 0) AS request_count
  FROM input i
  LEFT JOIN upserted u ON u.tenant_id = i.tenant_id
  LEFT JOIN rate_limit_counters c ON c.window_start = $1 AND c.tenant_id = i.tenant_id`;

function isUniqueViolation(error: unknown): boolean {
  return error instanceof Error && (error as { code?: unknown }).code === UNIQUE_VIOLATION;
}

type Queryable = Pick<pg.PoolClient, 'query'>;

export interface PgStoreOptions {
  /** Migrations to apply; defaults to all. Tests pass a prefix to build an older schema. */
  migrations?: readonly Migration[];
  /** Maximum number of pooled connections. */
  poolSize?: number;
  /**
   * Opens every connection with `default_transaction_read_only = on`, so the server rejects
   * any write. For read-only commands such as `cdil ledger verify`.
   */
  readOnly?: boolean;
  /** How long a statement waits for a row lock; DEFAULT_LOCK_TIMEOUT_MS. */
  lockTimeoutMs?: number;
  /**
   * How long a statement may go without a reply before it fails and its connection is closed;
   * DEFAULT_QUERY_TIMEOUT_MS. Must exceed lockTimeoutMs. Migrations have no such limit.
   */
  queryTimeoutMs?: number;
  /** How long opening a connection, or waiting for a free pooled one, may take; DEFAULT_CONNECT_TIMEOUT_MS. */
  connectTimeoutMs?: number;
  /**
   * Receives a line for each failed connection and each retried append, instead of process
   * warnings. Lines carry error codes and messages, never the connection string.
   */
  logger?: WarningLogger;
}

/**
 * Every method except close() raises StoreUnavailableError when its connection fails or cannot
 * be opened (see connection-errors.ts), and any other error unchanged.
 */
export class PgStore implements Store {
  readonly engine = 'postgres';
  readonly #pool: pg.Pool;
  /** Settings of every connection, without the query timeout, which only pooled ones have. */
  readonly #clientConfig: pg.ClientConfig;
  /** The pool, with connection failures of its queries raised as StoreUnavailableError. */
  readonly #queryable: Queryable;
  readonly #migrations: readonly Migration[];
  readonly #lockTimeoutMs: number;
  readonly #logger: WarningLogger;
  /** Clients checked out of the pool, whose failure fails an operation in progress. */
  readonly #checkedOut = new WeakSet<pg.Client>();
  /** Clients whose failure was logged, because a failed client can emit 'error' twice. */
  readonly #reported = new WeakSet<pg.Client>();
  #closed = false;
  /** See lastStorageFullFailure. */
  #storageFullAt: number | undefined;

  constructor(connectionString: string, options: PgStoreOptions = {}) {
    this.#migrations = options.migrations ?? MIGRATIONS;
    this.#lockTimeoutMs = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    this.#logger = options.logger ?? processWarningLogger;
    const queryTimeoutMs = options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
    if (queryTimeoutMs <= this.#lockTimeoutMs) {
      throw new RangeError(
        `queryTimeoutMs (${queryTimeoutMs}) must exceed lockTimeoutMs (${this.#lockTimeoutMs})`,
      );
    }
    this.#clientConfig = {
      connectionString,
      types: typeParsers,
      application_name: 'cdil',
      options: [
        `-c idle_in_transaction_session_timeout=${IDLE_IN_TRANSACTION_TIMEOUT_MS}`,
        `-c lock_timeout=${this.#lockTimeoutMs}`,
        ...(options.readOnly ? ['-c default_transaction_read_only=on'] : []),
      ].join(' '),
      connectionTimeoutMillis: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_INITIAL_DELAY_MS,
      // Writes each query to the socket when it is issued instead of after the previous reply.
      // Code that awaits each query behaves as before, and appendCertificates sends groups.
      // A pipelined query that times out makes node-postgres 8.23 destroy the connection, because
      // the replies of the queries behind it can no longer be matched to their queries.
      pipeline: true,
    };
    this.#pool = new pg.Pool({
      ...this.#clientConfig,
      max: options.poolSize ?? DEFAULT_POOL_SIZE,
      query_timeout: queryTimeoutMs,
    });
    const pool = this.#pool;
    this.#queryable = {
      query: (async (...args: unknown[]) => {
        let result: pg.QueryResult;
        try {
          result = await (pool.query as (...queryArgs: unknown[]) => Promise<pg.QueryResult>).apply(
            pool,
            args,
          );
        } catch (error) {
          throw this.#poolError(error);
        }
        if (WRITE_COMMANDS.has(result.command)) {
          this.#storageFullAt = undefined;
        }
        return result;
      }) as Queryable['query'],
    };
    this.#watchConnections();
  }

  /**
   * Logs each failed connection once. Without these listeners a client's 'error' event would end
   * the process.
   */
  #watchConnections(): void {
    this.#pool.on('acquire', (client) => this.#checkedOut.add(client));
    this.#pool.on('release', (_error, client) => this.#checkedOut.delete(client));
    // An idle pooled connection can fail, for example when the server restarts. The pool drops
    // it and opens a new one on demand.
    this.#pool.on('error', (error, client) => {
      this.#reportFailure(
        client,
        error,
        'idle PostgreSQL connection failed; the pool dropped it and opens a new one when needed',
      );
    });
    // A connection in use can fail too, for example when the server terminates its session. Its
    // operation then raises StoreUnavailableError, and the connection is not returned to the pool.
    this.#pool.on('connect', (client) => {
      client.on('error', (error) => {
        if (this.#checkedOut.has(client)) {
          this.#reportFailure(
            client,
            error,
            'PostgreSQL connection failed while in use; its operation failed and the connection is discarded',
          );
        }
      });
    });
  }

  #reportFailure(client: pg.Client, error: Error, message: string): void {
    if (!this.#reported.has(client)) {
      this.#reported.add(client);
      this.#logger.warn(connectionErrorFields(error), message);
    }
  }

  async #rows<R>(sql: string, params: SqlParam[] = [], client: Queryable = this.#queryable) {
    const result = await client.query(numberPlaceholders(sql), params);
    return result.rows as R[];
  }

  /**
   * Runs `work` in one transaction on one pooled connection and commits before returning. A
   * connection whose rollback failed is closed instead of returned to the pool.
   */
  async #transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const result = await this.#withClient(async (client) => {
      await client.query('BEGIN');
      const committed = await work(client);
      await client.query('COMMIT');
      return committed;
    });
    this.#storageFullAt = undefined;
    return result;
  }

  /** Runs `work` in one read-only transaction, whose statements all read one snapshot. */
  async #snapshot<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.#withClient(async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    });
  }

  /**
   * Runs `work`, which begins and commits its own transaction, on one pooled connection. After an
   * error it rolls back whatever transaction is still open. A connection that failed, timed out
   * or whose rollback failed is closed instead of returned to the pool, because its protocol
   * state is unknown.
   */
  async #withClient<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#connect();
    let broken = false;
    try {
      return await work(client);
    } catch (error) {
      if (isConnectionFailure(error)) {
        broken = true;
      } else {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = true;
        }
      }
      throw this.#storeError(error);
    } finally {
      client.release(broken);
    }
  }

  /**
   * Converts a failed statement's error to a store error (see toStoreError) and records a full
   * disk for lastStorageFullFailure.
   */
  #storeError(error: unknown): unknown {
    const converted = toStoreError(error, this.#lockTimeoutMs);
    if (converted instanceof StoreFullError) {
      this.#storageFullAt = Date.now();
    }
    return converted;
  }

  async #connect(): Promise<pg.PoolClient> {
    try {
      return await this.#pool.connect();
    } catch (error) {
      throw this.#poolError(error);
    }
  }

  /**
   * Converts the failure of a pool operation to a store error. A wait for a free connection that
   * timed out becomes StoreBusyError, because every connection is in use (by appends waiting for
   * a held chain head, say) and nothing was sent. Any other error is converted as #storeError
   * does.
   */
  #poolError(error: unknown): unknown {
    if (isPoolWaitTimeout(error)) {
      return new StoreBusyError(
        `all ${this.#pool.options.max} PostgreSQL connections of the pool stayed in use for ` +
          `${this.#pool.options.connectionTimeoutMillis} ms`,
        { cause: error },
      );
    }
    return this.#storeError(error);
  }

  /**
   * Applies the pending migrations on a connection of its own, outside the pool, which has no
   * query timeout: a migration, the backfill, or the wait for another process's migrations can
   * take longer than any fixed limit.
   */
  async migrate(): Promise<MigrationReport> {
    const client = new pg.Client(this.#clientConfig);
    client.on('error', (error) => {
      this.#reportFailure(
        client,
        error,
        'PostgreSQL connection failed while in use; its operation failed and the connection is discarded',
      );
    });
    try {
      await client.connect();
    } catch (error) {
      throw wrapConnectionFailure(error);
    }
    try {
      // Another process may hold the lock below for as long as its migrations take.
      await client.query('SET lock_timeout = 0');
      // A session lock, held across the per-migration transactions below. If this process dies
      // while it holds the lock, the server releases it with the connection.
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      try {
        return await this.#migrateLocked(client);
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
        await client.query('RESET lock_timeout');
      }
    } catch (error) {
      throw wrapConnectionFailure(error);
    } finally {
      await client.end();
    }
  }

  async #migrateLocked(client: pg.ClientBase): Promise<MigrationReport> {
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
    const [before] = await this.#rows<{ version: number | null }>(
      'SELECT MAX(version) AS version FROM schema_migrations',
      [],
      client,
    );
    assertSchemaSupported(before?.version ?? 0);
    const applied: string[] = [];
    for (const migration of this.#migrations) {
      await client.query('BEGIN');
      try {
        const done = await client.query('SELECT 1 FROM schema_migrations WHERE version = $1', [
          migration.version,
        ]);
        if (done.rowCount === 0) {
          for (const statement of migration.statements) {
            await client.query(statementFor(statement, 'postgres'));
          }
          await client.query(
            'INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)',
            [migration.version, migration.name, new Date().toISOString()],
          );
          applied.push(`${migration.version} ${migration.name}`);
        }
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      }
    }
    const [row] = await this.#rows<{ version: number | null }>(
      'SELECT MAX(version) AS version FROM schema_migrations',
      [],
      client,
    );
    if ((row?.version ?? 0) >= LOG_SCHEMA_VERSION) {
      await this.#backfillLog(client);
    }
    return { applied, current: row?.version ?? 0 };
  }

  async schemaVersion(): Promise<number> {
    const [table] = await this.#rows<{ name: string | null }>(
      "SELECT to_regclass('schema_migrations')::text AS name",
    );
    if (table === undefined || table.name === null) {
      return 0;
    }
    const [row] = await this.#rows<{ version: number | null }>(
      'SELECT MAX(version) AS version FROM schema_migrations',
    );
    return row?.version ?? 0;
  }

  async ping(): Promise<void> {
    await this.#queryable.query('SELECT 1');
  }

  lastStorageFullFailure(): number | undefined {
    return this.#storageFullAt;
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#pool.end();
    }
  }

  async createTenant(
    tenant: NewTenantRow,
    key: NewSigningKeyRow,
    auditEvent?: NewAuditEvent,
  ): Promise<void> {
    try {
      await this.#transaction(async (client) => {
        const existing = await client.query('SELECT 1 FROM tenants WHERE tenant_id = $1', [
          tenant.tenant_id,
        ]);
        if (existing.rowCount !== 0) {
          throw new TenantExistsError(`tenant ${tenant.tenant_id} already exists`);
        }
        await client.query(
          `INSERT INTO tenants (tenant_id, created_at, phi_policy, hmac_secret_sealed, timestamp_policy, timestamp_certificates)
           VALUES ($1, $2, $3, $4, $5, $6)`,
          [
            tenant.tenant_id,
            tenant.created_at,
            tenant.phi_policy,
            tenant.hmac_secret_sealed,
            tenant.timestamp_policy,
            tenant.timestamp_certificates ? 1 : 0,
          ],
        );
        await insertKey(client, key);
        await client.query(
          'INSERT INTO chain_heads (tenant_id, chain_sequence, chain_hash) VALUES ($1, 0, NULL)',
          [tenant.tenant_id],
        );
        if (auditEvent) {
          const logHead = await log.lockLogHead(client, tenant.tenant_id);
          await log.insertAuditEvents(client, [
            { ...auditEvent, tenant_id: tenant.tenant_id, log_index: logHead.tree_size },
          ]);
          await log.extendLogIn(client, tenant.tenant_id, logHead, [auditEvent.event_json]);
        }
      });
    } catch (error) {
      // Another process created the same tenant between the check and the insert.
      if (isUniqueViolation(error) && (error as pg.DatabaseError).table === 'tenants') {
        throw new TenantExistsError(`tenant ${tenant.tenant_id} already exists`);
      }
      throw error;
    }
  }

  async getTenant(tenantId: string): Promise<TenantRow | undefined> {
    const [row] = await this.#rows<RawTenant>('SELECT * FROM tenants WHERE tenant_id = ?', [
      tenantId,
    ]);
    return toTenant(row);
  }

  async listTenants(): Promise<TenantRow[]> {
    const rows = await this.#rows<RawTenant>('SELECT * FROM tenants ORDER BY tenant_id');
    return rows.map((row) => toTenant(row)!);
  }

  listKeys(tenantId: string): Promise<SigningKeyRow[]> {
    return this.#rows<SigningKeyRow>(
      'SELECT * FROM signing_keys WHERE tenant_id = ? ORDER BY valid_from, key_id',
      [tenantId],
    );
  }

  /**
   * Locks the tenant's chain head row, as appends do, and returns whether the tenant exists.
   * Under READ COMMITTED every later statement of the transaction reads data committed before
   * the lock was granted, including a concurrent rotation that held it. The whole wait for the
   * lock is bounded by the lock timeout (see lock-wait.ts) and raises StoreBusyError after it.
   */
  async #lockChainHead(client: pg.PoolClient, tenantId: string): Promise<boolean> {
    const waitMs = this.#lockTimeoutMs;
    const sent = sendTogether(client, () => [
      client.query(startLockWait(waitMs)),
      client.query('SELECT 1 FROM chain_heads WHERE tenant_id = $1 FOR UPDATE', [tenantId]),
      client.query(END_LOCK_WAIT),
    ]);
    await settleLockPhase(sent, `the chain head of tenant ${tenantId}`, waitMs);
    const locked = (await sent[1]) as pg.QueryResult;
    return locked.rowCount !== 0;
  }

  async #activeKey(client: Queryable, tenantId: string): Promise<SigningKeyRow | undefined> {
    const [active] = await this.#rows<SigningKeyRow>(
      "SELECT * FROM signing_keys WHERE tenant_id = ? AND status = 'active'",
      [tenantId],
      client,
    );
    return active;
  }

  /** Ends the active key at the rotation instant and inserts its replacement; needs the lock. */
  async #replaceActiveKey(
    client: Queryable,
    tenantId: string,
    key: NewSigningKey,
    now: () => Date,
    revocationReason?: KeyRevocation['reason'],
  ): Promise<KeyReplacement> {
    const active = await this.#activeKey(client, tenantId);
    if (!active) {
      throw new Error(`tenant ${tenantId} has no active signing key`);
    }
    const [{ latest } = { latest: null }] = await this.#rows<{ latest: string | null }>(
      'SELECT MAX(issued_at_utc) AS latest FROM certificates WHERE tenant_id = ?',
      [tenantId],
      client,
    );
    const instant = rotationInstant(now(), active, latest);
    const previous = endedKey(active, instant, revocationReason);
    const current = newActiveKey(key, instant);
    // The old key leaves the active state first: the unique index on active keys is checked
    // per statement.
    await updateKeyStatus(client, previous);
    await insertKey(client, current);
    return { previous, current };
  }

  /**
   * Appends `event` to the tenant's log inside the caller's transaction, after the change it
   * records. The wait for the log head is bounded together with every earlier lock wait of the
   * transaction, so the whole transaction waits at most the lock timeout for locks.
   */
  async #appendEventAfterChange(
    client: pg.PoolClient,
    tenantId: string,
    event: NewAuditEvent | undefined,
  ): Promise<void> {
    if (event === undefined) {
      return;
    }
    const head = await log.lockLogHeadWithin(client, tenantId, this.#lockTimeoutMs, {
      sinceBegin: true,
    });
    await log.insertAuditEvents(client, [
      { ...event, tenant_id: tenantId, log_index: head.tree_size },
    ]);
    await log.extendLogIn(client, tenantId, head, [event.event_json]);
  }

  async rotateSigningKey(
    tenantId: string,
    key: NewSigningKey,
    now: () => Date,
    auditEvent?: NewAuditEvent,
  ): Promise<KeyReplacement | undefined> {
    return this.#withAuditEventErrors(() =>
      this.#transaction(async (client) => {
        if (!(await this.#lockChainHead(client, tenantId))) {
          return undefined;
        }
        const replacement = await this.#replaceActiveKey(client, tenantId, key, now);
        await this.#appendEventAfterChange(client, tenantId, auditEvent);
        return replacement;
      }),
    );
  }

  revokeSigningKey(
    tenantId: string,
    keyId: string,
    revocation: KeyRevocation,
    now: () => Date,
    auditEvent?: NewAuditEvent,
  ): Promise<KeyRevocationResult> {
    return this.#withAuditEventErrors(() =>
      this.#transaction(async (client): Promise<KeyRevocationResult> => {
        const result = await this.#revokeIn(client, tenantId, keyId, revocation, now);
        if (result.kind === 'revoked') {
          await this.#appendEventAfterChange(client, tenantId, auditEvent);
        }
        return result;
      }),
    );
  }

  /** Revokes the key inside the caller's transaction, as revokeSigningKey describes. */
  async #revokeIn(
    client: pg.PoolClient,
    tenantId: string,
    keyId: string,
    revocation: KeyRevocation,
    now: () => Date,
  ): Promise<KeyRevocationResult> {
    if (!(await this.#lockChainHead(client, tenantId))) {
      return { kind: 'tenant_not_found' };
    }
    const [key] = await this.#rows<SigningKeyRow>(
      'SELECT * FROM signing_keys WHERE tenant_id = ? AND key_id = ?',
      [tenantId, keyId],
      client,
    );
    if (!key) {
      return { kind: 'key_not_found' };
    }
    if (key.status === 'revoked') {
      return { kind: 'already_revoked', key };
    }
    if (key.status === 'active') {
      if (!revocation.replacement) {
        return { kind: 'active_key', key };
      }
      const { previous, current } = await this.#replaceActiveKey(
        client,
        tenantId,
        revocation.replacement,
        now,
        revocation.reason,
      );
      return { kind: 'revoked', key: previous, replacement: current };
    }
    const revoked = revokedKey(key, now().toISOString(), revocation.reason);
    await updateKeyStatus(client, revoked);
    return { kind: 'revoked', key: revoked, replacement: undefined };
  }

  async setTenantRateLimit(
    tenantId: string,
    perMinute: number | null,
    auditEvent?: NewAuditEvent,
  ): Promise<boolean> {
    const sql = 'UPDATE tenants SET rate_limit_per_minute = $1 WHERE tenant_id = $2';
    if (auditEvent === undefined) {
      return (await this.#queryable.query(sql, [perMinute, tenantId])).rowCount !== 0;
    }
    return this.#withAuditEventErrors(() =>
      this.#transaction(async (client) => {
        // The tenant row lock and the log head lock share one bound, as a chain head lock and
        // the log head lock do in a key change.
        const waitMs = this.#lockTimeoutMs;
        const sent = sendTogether(client, () => [
          client.query(startLockWait(waitMs)),
          client.query(sql, [perMinute, tenantId]),
          client.query(END_LOCK_WAIT),
        ]);
        await settleLockPhase(sent, `the row of tenant ${tenantId}`, waitMs);
        if (((await sent[1]) as pg.QueryResult).rowCount === 0) {
          return false;
        }
        await this.#appendEventAfterChange(client, tenantId, auditEvent);
        return true;
      }),
    );
  }

  async syncRateLimitCounters(
    windowStart: string,
    counts: RateLimitCount[],
  ): Promise<RateLimitTotal[]> {
    const result = await this.#queryable.query<{
      tenant_id: string;
      rate_limit_per_minute: number | null;
      request_count: number;
    }>(SYNC_RATE_LIMITS_SQL, [
      windowStart,
      counts.map((count) => count.tenantId),
      counts.map((count) => count.count),
    ]);
    return result.rows.map((row) => ({
      tenantId: row.tenant_id,
      total: row.request_count,
      limitPerMinute: row.rate_limit_per_minute,
    }));
  }

  async pruneRateLimitCounters(windowStart: string): Promise<number> {
    const deleted = await this.#queryable.query(
      'DELETE FROM rate_limit_counters WHERE window_start < $1',
      [windowStart],
    );
    return deleted.rowCount ?? 0;
  }

  /** Appends the batch as the one group of appendCertificateGroups. */
  async appendCertificates<T extends AppendItem>(
    tenantId: string,
    items: T[],
    seal: Sealer<T>,
  ): Promise<AppendResult[]> {
    const [results] = await this.appendCertificateGroups([{ tenantId, items }], seal);
    return results!;
  }

  /**
   * Appends every group in one transaction with a fixed number of statements (see append.ts).
   * When a writer that bypassed the chain head locks inserted one of the idempotency keys
   * meanwhile, nothing is stored and all groups are sealed and appended again, so `seal` can run
   * more than once for an item. The next attempt finds that key stored.
   */
  async appendCertificateGroups<T extends AppendItem>(
    groups: readonly AppendGroup<T>[],
    seal: Sealer<T>,
    options: AppendOptions = {},
  ): Promise<AppendResult[][]> {
    checkDistinctTenants(groups);
    if (groups.length === 0) {
      return [];
    }
    const mayLeaveOut = groups.length > 1 || options.leaveOutLocked === true;
    let skipLocked = false;
    for (let attempt = 1; ; attempt++) {
      try {
        const results = await this.#withClient((client) =>
          appendGroups(client, groups, seal, {
            skipLocked,
            lockWaitMs:
              mayLeaveOut && !skipLocked ? MULTI_TENANT_LOCK_WAIT_MS : this.#lockTimeoutMs,
          }),
        );
        this.#storageFullAt = undefined;
        return results;
      } catch (error) {
        if (error instanceof HeadsLockedError) {
          if (mayLeaveOut && !skipLocked) {
            // A tenant is held for long. Started again, the append leaves out the held
            // tenants, whose items yield tenant_locked, and stores the others.
            skipLocked = true;
            continue;
          }
          throw new StoreBusyError(error.message, { cause: error });
        }
        // A write that waited for a row that a writer bypassing the chain head lock holds has
        // already become StoreBusyError in #withClient.
        if (attempt >= MAX_APPEND_ATTEMPTS || !isKeyClaimedConcurrently(error)) {
          throw error;
        }
        this.#logger.warn(
          {
            tenantIds: groups.map((group) => group.tenantId),
            attempt: attempt + 1,
            maxAttempts: MAX_APPEND_ATTEMPTS,
            error: (error as Error).message,
          },
          'append retried because another writer inserted one of its idempotency keys',
        );
      }
    }
  }

  async getCertificate(
    tenantId: string,
    certificateId: string,
  ): Promise<CertificateRow | undefined> {
    const [raw] = await this.#rows<RawCertificate>(
      'SELECT * FROM certificates WHERE tenant_id = ? AND certificate_id = ?',
      [tenantId, certificateId],
    );
    return toCertificate(raw);
  }

  async getChainHead(
    tenantId: string,
  ): Promise<{ chain_sequence: number; chain_hash: string | null } | undefined> {
    const [head] = await this.#rows<{ chain_sequence: number; chain_hash: string | null }>(
      'SELECT chain_sequence, chain_hash FROM chain_heads WHERE tenant_id = ?',
      [tenantId],
    );
    return head;
  }

  async getCertificateBySequence(
    tenantId: string,
    sequence: number,
  ): Promise<CertificateRow | undefined> {
    const [raw] = await this.#rows<RawCertificate>(
      'SELECT * FROM certificates WHERE tenant_id = ? AND chain_sequence = ?',
      [tenantId, sequence],
    );
    return toCertificate(raw);
  }

  async queryCertificates(
    tenantId: string,
    filter: CertificateFilter,
    afterSequence: number,
    limit: number,
  ): Promise<CertificateRow[]> {
    const { sql, params } = certificateQuery(tenantId, filter, afterSequence, limit);
    const rows = await this.#rows<RawCertificate>(sql, params);
    return rows.map((row) => toCertificate(row)!);
  }

  insertShadowItems(items: NewShadowItem[]): Promise<void> {
    const insertItem = numberPlaceholders(INSERT_ITEM_SQL);
    const insertCondition = numberPlaceholders(INSERT_CONDITION_SQL);
    const insertGap = numberPlaceholders(INSERT_GAP_SQL);
    const insertFinding = numberPlaceholders(INSERT_FINDING_SQL);
    return this.#transaction(async (client) => {
      for (const { item, conditions, gaps, findings } of items) {
        await client.query(insertItem, itemParams(item));
        for (const condition of conditions) {
          await client.query(
            insertCondition,
            conditionParams(item.tenant_id, item.item_id, condition),
          );
        }
        for (const gap of gaps) {
          await client.query(insertGap, [
            item.tenant_id,
            item.item_id,
            gap.condition_id,
            gap.element,
            gap.attributed_cents,
          ]);
        }
        for (const [position, finding] of findings.entries()) {
          await client.query(insertFinding, [
            item.tenant_id,
            item.item_id,
            position,
            finding.rule_id,
            finding.kind,
          ]);
        }
      }
    });
  }

  async getShadowItem(tenantId: string, itemId: string): Promise<ShadowItemRow | undefined> {
    const [raw] = await this.#rows<RawItem>(
      'SELECT * FROM shadow_items WHERE tenant_id = ? AND item_id = ?',
      [tenantId, itemId],
    );
    return raw ? toItem(raw) : undefined;
  }

  async listShadowItems(
    tenantId: string,
    filter: ShadowItemFilter,
    order: ShadowItemOrder,
    cursor: ShadowItemCursor | undefined,
    limit: number,
  ): Promise<ShadowItemRow[]> {
    const { sql, params } = listItemsQuery(tenantId, filter, order, cursor, limit);
    const rows = await this.#rows<RawItem>(sql, params);
    return rows.map(toItem);
  }

  aggregateShadowItems(tenantId: string, filter: ShadowItemFilter): Promise<ShadowAggregate> {
    const queries = aggregateQueries(tenantId, filter);
    // One snapshot for all six queries, so the totals and breakdowns count the same items.
    return this.#snapshot(async (client) => {
      const all = (query: Query) => this.#rows(query.sql, query.params, client);
      const rows = {
        totals: (await all(queries.totals))[0],
        sources: await all(queries.sources),
        conditions: await all(queries.conditions),
        gaps: await all(queries.gaps),
        findings: await all(queries.findings),
        revisions: await all(queries.revisions),
      } as AggregateRows;
      return assembleAggregate(rows);
    });
  }

  async listLinkedCertificateIds(
    tenantId: string,
    filter: ShadowItemFilter,
    limit: number,
  ): Promise<string[]> {
    const { sql, params } = linkedCertificateIdsQuery(tenantId, filter, limit);
    const rows = await this.#rows<{ certificate_id: string }>(sql, params);
    return rows.map((row) => row.certificate_id);
  }

  async getShadowAssumptions(tenantId: string): Promise<ShadowAssumptionsRow | undefined> {
    const [row] = await this.#rows<ShadowAssumptionsRow>(
      'SELECT * FROM shadow_assumptions WHERE tenant_id = ?',
      [tenantId],
    );
    return row;
  }

  async putShadowAssumptions(
    tenantId: string,
    assumptionsJson: string,
    updatedAt: string,
  ): Promise<ShadowAssumptionsRow> {
    // One statement, so concurrent writers each get their own next revision.
    const [row] = await this.#rows<ShadowAssumptionsRow>(
      `INSERT INTO shadow_assumptions (tenant_id, revision, assumptions_json, updated_at) VALUES (?, 1, ?, ?)
       ON CONFLICT (tenant_id) DO UPDATE SET revision = shadow_assumptions.revision + 1,
         assumptions_json = excluded.assumptions_json, updated_at = excluded.updated_at
       RETURNING tenant_id, revision, assumptions_json, updated_at`,
      [tenantId, assumptionsJson, updatedAt],
    );
    return row!;
  }

  getLogHead(tenantId: string): Promise<LogHeadRow | undefined> {
    return log.getLogHead(this.#queryable, tenantId);
  }

  getLogNodes(
    tenantId: string,
    refs: readonly { level: number; index: number }[],
  ): Promise<LogNodeRow[]> {
    return log.getLogNodes(this.#queryable, tenantId, refs);
  }

  listLogEntries(tenantId: string, fromIndex: number, toIndex: number): Promise<LogEntry[]> {
    return log.listLogEntries(this.#queryable, tenantId, fromIndex, toIndex);
  }

  listLogEntriesBelowZero(tenantId: string, limit: number): Promise<LogEntry[]> {
    return log.listLogEntriesBelowZero(this.#queryable, tenantId, limit);
  }

  appendAuditEvents(tenantId: string, events: NewAuditEvent[]): Promise<AuditEventRow[]> {
    return this.#withAuditEventErrors(() => this.#appendAuditEventsOnce(tenantId, events));
  }

  /** Runs `write` and raises AuditEventExistsError when it failed on a stored event id. */
  async #withAuditEventErrors<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      if (
        isUniqueViolation(error) &&
        (error as pg.DatabaseError).constraint === AUDIT_EVENT_ID_CONSTRAINT
      ) {
        throw new AuditEventExistsError(
          `an audit event id of the write is already stored: ${(error as pg.DatabaseError).detail}`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  #appendAuditEventsOnce(tenantId: string, events: NewAuditEvent[]): Promise<AuditEventRow[]> {
    return this.#transaction(async (client) => {
      const head = await log.lockLogHeadWithin(client, tenantId, this.#lockTimeoutMs);
      const rows = events.map((event, offset) => ({
        ...event,
        tenant_id: tenantId,
        log_index: head.tree_size + offset,
      }));
      await log.insertAuditEvents(client, rows);
      await log.extendLogIn(
        client,
        tenantId,
        head,
        rows.map((row) => row.event_json),
      );
      return rows;
    });
  }

  getAuditEvent(eventId: string): Promise<AuditEventRow | undefined> {
    return log.getAuditEvent(this.#queryable, eventId);
  }

  listAuditEvents(
    tenantId: string,
    filter: AuditEventFilter,
    afterIndex: number,
    limit: number,
  ): Promise<AuditEventRow[]> {
    return log.listAuditEvents(this.#queryable, tenantId, filter, afterIndex, limit);
  }

  putLogKey(row: LogKeyRow): Promise<LogKeyRow> {
    return log.putLogKey(this.#queryable, row);
  }

  getLogKey(tenantId: string): Promise<LogKeyRow | undefined> {
    return log.getLogKey(this.#queryable, tenantId);
  }

  putCheckpoint(row: CheckpointRow): Promise<CheckpointRow> {
    return log.putCheckpoint(this.#queryable, row);
  }

  getLatestCheckpoint(tenantId: string): Promise<CheckpointRow | undefined> {
    return log.getLatestCheckpoint(this.#queryable, tenantId);
  }

  getCheckpoint(tenantId: string, treeSize: number): Promise<CheckpointRow | undefined> {
    return log.getCheckpoint(this.#queryable, tenantId, treeSize);
  }

  setCheckpointTimestamp(tenantId: string, treeSize: number, token: string | null): Promise<void> {
    return log.setCheckpointTimestamp(this.#queryable, tenantId, treeSize, token);
  }

  listUntimestampedCheckpoints(limit: number): Promise<CheckpointRow[]> {
    return log.listUntimestampedCheckpoints(this.#queryable, limit);
  }

  /** Adds certificates stored before the log existed to their logs, one batch per transaction. */
  async listLogCertificates(
    tenantId: string,
    fromIndex: number,
    toIndex: number,
  ): Promise<CertificateRow[]> {
    const rows = await this.#rows<RawCertificate>(LOG_SQL.listLogCertificates, [
      tenantId,
      fromIndex,
      toIndex,
    ]);
    return rows.map((row) => toCertificate(row)!);
  }

  async listUnloggedCertificates(tenantId: string, limit: number): Promise<CertificateRow[]> {
    const rows = await this.#rows<RawCertificate>(LOG_SQL.listUnloggedCertificateRows, [
      tenantId,
      limit,
    ]);
    return rows.map((row) => toCertificate(row)!);
  }

  listLogNodes(
    tenantId: string,
    level: number,
    fromIndex: number,
    toIndex: number,
  ): Promise<LogNodeRow[]> {
    return log.listLogNodes(this.#queryable, tenantId, level, fromIndex, toIndex);
  }

  nextLogIndex(tenantId: string, fromIndex: number): Promise<number | undefined> {
    return log.nextLogIndex(this.#queryable, tenantId, fromIndex);
  }

  listCheckpoints(tenantId: string, afterSize: number, limit: number): Promise<CheckpointRow[]> {
    return log.listCheckpoints(this.#queryable, tenantId, afterSize, limit);
  }

  async #backfillLog(client: pg.ClientBase): Promise<void> {
    for (const tenantId of await log.tenantsWithUnloggedCertificates(client)) {
      for (;;) {
        await client.query('BEGIN');
        try {
          await client.query('SELECT 1 FROM chain_heads WHERE tenant_id = $1 FOR UPDATE', [
            tenantId,
          ]);
          const added = await log.backfillStep(client, tenantId);
          await client.query('COMMIT');
          if (added === 0) {
            break;
          }
        } catch (error) {
          await client.query('ROLLBACK');
          throw error;
        }
      }
    }
  }
}
