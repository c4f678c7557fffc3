// SQLite engine (better-sqlite3, WAL). better-sqlite3 is synchronous, so each transaction of one
// connection runs to completion without interleaving, and BEGIN IMMEDIATE takes the database write
// lock, which serializes chain appends across connections: those of other processes, and that of
// this process's append thread (src/services/append-thread.ts).
import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { certificateQuery } from '../certificate-query.ts';
import { endedKey, newActiveKey, revokedKey, rotationInstant } from '../key-rotation.ts';
import { LOG_SQL } from '../log-sql.ts';
import { afterCommit, afterFullFailure, NO_WRITES, type WriteState } from '../write-state.ts';
import {
  assertSchemaSupported,
  LOG_SCHEMA_VERSION,
  MIGRATIONS,
  statementFor,
  type Migration,
} from '../migrations.ts';
import { lazyStatements } from './lazy-statements.ts';
import { SqliteLogTables } from './log-tables.ts';
import { SqliteShadowTables } from './shadow-tables.ts';
import {
  AuditEventExistsError,
  StoreBusyError,
  StoreFullError,
  TenantExistsError,
  checkDistinctTenants,
  type AppendGroup,
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
  type NewShadowItem,
  type NewSigningKeyRow,
  type NewTenantRow,
  type RateLimitCount,
  type RateLimitTotal,
  type Sealer,
  type ShadowAggregate,
  type ShadowAssumptionsRow,
  type ShadowItemCursor,
  type ShadowItemFilter,
  type ShadowItemOrder,
  type ShadowItemRow,
  type SigningKeyRow,
  type Store,
  type TenantRow,
} from '../store.ts';

import { toTenant, type RawTenant } from '../tenant-row.ts';
import { toCertificate, type RawCertificate } from '../certificate-row.ts';

/** Runs synchronous work and reports its result or exception as a promise. */
function settle<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => resolve(work()));
}

/** Default wait for another process's write lock before a write fails (SqliteStoreOptions). */
export const DEFAULT_BUSY_TIMEOUT_MS = 10_000;

function isBusy(error: unknown): boolean {
  return error instanceof Database.SqliteError && error.code.startsWith('SQLITE_BUSY');
}

/** Returns whether `error` is SQLite failing to grow the database or its WAL file. */
function isFull(error: unknown): boolean {
  return error instanceof Database.SqliteError && error.code === 'SQLITE_FULL';
}

/** Returns whether `error` is the unique constraint on audit_events.event_id failing. */
function isDuplicateAuditEvent(error: unknown): boolean {
  return (
    error instanceof Database.SqliteError &&
    error.code === 'SQLITE_CONSTRAINT_UNIQUE' &&
    error.message.includes('audit_events.event_id')
  );
}

/** How long a write retries the lock with the short pauses of lockRetryPause before backing off. */
const LOCK_FAST_RETRY_MS = 50;
/** Maximum pause between two tries for the write lock. */
const LOCK_MAX_PAUSE_MS = 16;

/**
 * Waits before the next try for the write lock, which `waitedMs` ago was first found taken. The
 * first two pauses last one turn of the event loop, which reads the requests already received.
 * Pauses in the first LOCK_FAST_RETRY_MS sleep 1 or 2 ms, because two processes that take turns
 * hold the lock for a few ms at a time. After that the lock is held for longer, so the pause grows
 * with the wait, to at most LOCK_MAX_PAUSE_MS, and a waiting process spends less CPU time on
 * failed tries. Pauses are random so that two waiting processes do not retry in step.
 */
function lockRetryPause(attempt: number, waitedMs: number): Promise<void> {
  if (attempt < 2) {
    return new Promise((resolve) => setImmediate(resolve));
  }
  if (waitedMs < LOCK_FAST_RETRY_MS) {
    return new Promise((resolve) => setTimeout(resolve, Math.random() < 0.5 ? 1 : 2));
  }
  const maxPauseMs = Math.min(LOCK_MAX_PAUSE_MS, waitedMs / 10);
  const pauseMs = maxPauseMs / 2 + Math.random() * (maxPauseMs / 2);
  return new Promise((resolve) => setTimeout(resolve, pauseMs));
}

/**
 * Certificates appended between two runs of PRAGMA optimize, which refreshes the planner
 * statistics of tables that grew. Without statistics, SQLite reads a page in a narrow issued_at
 * range by scanning the tenant's chain from its start in sequence order. That took a median of
 * 56 ms per page at 100,000 certificates per tenant in bench/storage-size.ts.
 */
export const OPTIMIZE_EVERY_APPENDS = 10_000;

export interface SqliteStoreOptions {
  /** Migrations to apply; defaults to all. Tests pass a prefix to build an older schema. */
  migrations?: readonly Migration[];
  /**
   * Opens an existing database file without changing it: no file or folder is created, no
   * pragma that writes is run, and every write statement fails. For read-only commands such
   * as `cdil ledger verify`.
   */
  readOnly?: boolean;
  /** How long a write waits for another connection's write lock; DEFAULT_BUSY_TIMEOUT_MS. */
  busyTimeoutMs?: number;
  /**
   * Maximum size of the database file in pages (PRAGMA max_page_count) for this connection. A
   * write that needs more pages fails with StoreFullError, as on a full disk. Tests use it to
   * fill a database without filling a disk. Without it SQLite's own limit applies.
   */
  maxPageCount?: number;
}

const SQLITE_STORE_SQL = {
  insertTenant: `INSERT INTO tenants (tenant_id, created_at, phi_policy, hmac_secret_sealed, timestamp_policy, timestamp_certificates)
     VALUES (@tenant_id, @created_at, @phi_policy, @hmac_secret_sealed, @timestamp_policy, @timestamp_certificates)`,
  insertKey: `INSERT INTO signing_keys (tenant_id, key_id, algorithm, status, valid_from, valid_until, public_key_pem, private_key_sealed, created_at)
         VALUES (@tenant_id, @key_id, @algorithm, @status, @valid_from, @valid_until, @public_key_pem, @private_key_sealed, @created_at)`,
  getKey: 'SELECT * FROM signing_keys WHERE tenant_id = ? AND key_id = ?',
  getActiveKey: "SELECT * FROM signing_keys WHERE tenant_id = ? AND status = 'active'",
  insertHead: 'INSERT INTO chain_heads (tenant_id, chain_sequence, chain_hash) VALUES (?, 0, NULL)',
  getTenant: 'SELECT * FROM tenants WHERE tenant_id = ?',
  listTenants: 'SELECT * FROM tenants ORDER BY tenant_id',
  listKeys: 'SELECT * FROM signing_keys WHERE tenant_id = ? ORDER BY valid_from, key_id',
  getHead: 'SELECT chain_sequence, chain_hash FROM chain_heads WHERE tenant_id = ?',
  setHead: 'UPDATE chain_heads SET chain_sequence = ?, chain_hash = ? WHERE tenant_id = ?',
  insertCertificate: `INSERT INTO certificates (tenant_id, chain_sequence, certificate_id, issued_at_utc, model_version, governance_policy_version,
           human_reviewed, chain_hash, previous_hash, key_id, signed_message, signature, log_index, timestamp_token)
         VALUES (@tenant_id, @chain_sequence, @certificate_id, @issued_at_utc, @model_version, @governance_policy_version,
           @human_reviewed, @chain_hash, @previous_hash, @key_id, @signed_message, @signature, @log_index, @timestamp_token)`,
  getIdempotency:
    'SELECT request_hash, certificate_id FROM idempotency_keys WHERE tenant_id = ? AND idempotency_key = ?',
  insertIdempotency:
    'INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, certificate_id, created_at) VALUES (?, ?, ?, ?, ?)',
  getCertificate: 'SELECT * FROM certificates WHERE tenant_id = ? AND certificate_id = ?',
  getBySequence: 'SELECT * FROM certificates WHERE tenant_id = ? AND chain_sequence = ?',
} as const;

function openWritable(
  path: string,
  busyTimeoutMs: number,
  maxPageCount: number | undefined,
): Database.Database {
  if (path !== ':memory:') {
    // The database contains sealed keys and keyed hashes, so only its owner may read it. SQLite
    // gives its -wal and -shm files the permissions of the database file.
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    closeSync(openSync(path, 'a', 0o600));
  }
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  db.pragma('foreign_keys = ON');
  if (maxPageCount !== undefined) {
    db.pragma(`max_page_count = ${maxPageCount}`);
  }
  // Analyzes every table whose statistics are missing or out of date. Since SQLite 3.46 the
  // pragma samples a limited number of rows, so it stays fast on a large database. ANALYZE
  // writes, so while another connection holds the write lock it is skipped without waiting:
  // statistics only guide the planner, and a write that follows reports the lock properly.
  db.pragma('busy_timeout = 0');
  try {
    db.pragma('optimize=0x10002');
  } catch (error) {
    if (!isBusy(error)) {
      throw error;
    }
  } finally {
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  }
  return db;
}

/**
 * Opens an existing file read-only. The journal mode is stored in the file, so a database the
 * service created stays in WAL mode. `pragma optimize` is skipped because ANALYZE writes.
 */
function openReadOnly(path: string, busyTimeoutMs: number): Database.Database {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  return db;
}

export class SqliteStore implements Store {
  readonly engine = 'sqlite';
  readonly #db: Database.Database;
  readonly #migrations: readonly Migration[];
  readonly #shadow: SqliteShadowTables;
  readonly #log: SqliteLogTables;
  #prepared: ReturnType<SqliteStore['prepareStatements']> | undefined;
  #preparedV3: ReturnType<SqliteStore['prepareVersion3Statements']> | undefined;
  #appendedSinceOptimize = 0;
  readonly #busyTimeoutMs: number;
  readonly #path: string;
  /** See lastStorageFullFailure and writeState. */
  #writes: WriteState = NO_WRITES;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.#path = path;
    this.#busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    if (
      options.maxPageCount !== undefined &&
      !(Number.isSafeInteger(options.maxPageCount) && options.maxPageCount > 0)
    ) {
      throw new RangeError(`maxPageCount must be a positive integer, got ${options.maxPageCount}`);
    }
    this.#db = options.readOnly
      ? openReadOnly(path, this.#busyTimeoutMs)
      : openWritable(path, this.#busyTimeoutMs, options.maxPageCount);
    this.#migrations = options.migrations ?? MIGRATIONS;
    this.#shadow = new SqliteShadowTables(this.#db);
    this.#log = new SqliteLogTables(this.#db);
  }

  private get sql(): ReturnType<SqliteStore['prepareStatements']> {
    this.#prepared ??= this.prepareStatements();
    return this.#prepared;
  }

  /** Prepares each statement on first use (see lazyStatements). */
  private prepareStatements() {
    return lazyStatements(this.#db, SQLITE_STORE_SQL);
  }

  /** Statements on columns and tables of schema version 3, prepared on first use. */
  private get v3Sql(): ReturnType<SqliteStore['prepareVersion3Statements']> {
    this.#preparedV3 ??= this.prepareVersion3Statements();
    return this.#preparedV3;
  }

  private prepareVersion3Statements() {
    const db = this.#db;
    return {
      updateKeyStatus: db.prepare(
        `UPDATE signing_keys SET status = @status, valid_until = @valid_until, revoked_at = @revoked_at,
           revocation_reason = @revocation_reason
         WHERE tenant_id = @tenant_id AND key_id = @key_id`,
      ),
      latestIssuedAt: db.prepare(
        'SELECT MAX(issued_at_utc) AS latest FROM certificates WHERE tenant_id = ?',
      ),
      setRateLimit: db.prepare('UPDATE tenants SET rate_limit_per_minute = ? WHERE tenant_id = ?'),
      getRateLimitCount: db.prepare(
        `SELECT t.rate_limit_per_minute, c.request_count FROM tenants t
         LEFT JOIN rate_limit_counters c ON c.window_start = ? AND c.tenant_id = t.tenant_id
         WHERE t.tenant_id = ?`,
      ),
      addRateLimitCount: db.prepare(
        `INSERT INTO rate_limit_counters (window_start, tenant_id, request_count) VALUES (?, ?, ?)
         ON CONFLICT (window_start, tenant_id) DO UPDATE
           SET request_count = rate_limit_counters.request_count + excluded.request_count
         RETURNING request_count`,
      ),
      pruneRateLimitCounts: db.prepare('DELETE FROM rate_limit_counters WHERE window_start < ?'),
    };
  }

  migrate(): Promise<MigrationReport> {
    const db = this.#db;
    db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
    const before = db.prepare('SELECT MAX(version) AS version FROM schema_migrations').get() as {
      version: number | null;
    };
    assertSchemaSupported(before.version ?? 0);
    const applied: string[] = [];
    const run = db.transaction((migration: Migration) => {
      const done = db
        .prepare('SELECT 1 FROM schema_migrations WHERE version = ?')
        .get(migration.version);
      if (done) {
        return;
      }
      for (const statement of migration.statements) {
        db.exec(statementFor(statement, 'sqlite'));
      }
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        migration.version,
        migration.name,
        new Date().toISOString(),
      );
      applied.push(`${migration.version} ${migration.name}`);
    });
    for (const migration of this.#migrations) {
      run.immediate(migration);
    }
    this.#prepared = undefined;
    this.#log.reset();
    this.#preparedV3 = undefined;
    const row = db.prepare('SELECT MAX(version) AS version FROM schema_migrations').get() as {
      version: number | null;
    };
    if ((row.version ?? 0) >= LOG_SCHEMA_VERSION) {
      this.#log.backfill();
    }
    return Promise.resolve({ applied, current: row.version ?? 0 });
  }

  schemaVersion(): Promise<number> {
    const table = this.#db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
      .get();
    if (!table) {
      return Promise.resolve(0);
    }
    const row = this.#db.prepare('SELECT MAX(version) AS version FROM schema_migrations').get() as {
      version: number | null;
    };
    return Promise.resolve(row.version ?? 0);
  }

  ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
    return Promise.resolve();
  }

  lastStorageFullFailure(): number | undefined {
    return this.#writes.failedAt;
  }

  /** Returns the last full-disk failure and the last commit of this connection. */
  writeState(): WriteState {
    return this.#writes;
  }

  close(): Promise<void> {
    if (this.#db.open) {
      this.#db.close();
    }
    return Promise.resolve();
  }

  createTenant(
    tenant: NewTenantRow,
    key: NewSigningKeyRow,
    auditEvent?: NewAuditEvent,
  ): Promise<void> {
    const sql = this.sql;
    const create = this.#db.transaction(() => {
      if (sql.getTenant.get(tenant.tenant_id)) {
        throw new TenantExistsError(`tenant ${tenant.tenant_id} already exists`);
      }
      sql.insertTenant.run({
        ...tenant,
        timestamp_certificates: tenant.timestamp_certificates ? 1 : 0,
      });
      sql.insertKey.run(key);
      sql.insertHead.run(tenant.tenant_id);
      this.#appendEventIn(tenant.tenant_id, auditEvent);
    });
    return this.#writeWithoutBlocking(() => create.immediate());
  }

  /** Appends `event`, when given, to the tenant's log inside the caller's transaction. */
  #appendEventIn(tenantId: string, event: NewAuditEvent | undefined): void {
    if (event === undefined) {
      return;
    }
    const logHead = this.#log.head(tenantId);
    this.#log.insertAuditEvent({ ...event, tenant_id: tenantId, log_index: logHead.tree_size });
    this.#log.extend(tenantId, logHead, [event.event_json]);
  }

  getTenant(tenantId: string): Promise<TenantRow | undefined> {
    return Promise.resolve(toTenant(this.sql.getTenant.get(tenantId) as RawTenant | undefined));
  }

  listTenants(): Promise<TenantRow[]> {
    return Promise.resolve(
      (this.sql.listTenants.all() as RawTenant[]).map((raw) => toTenant(raw)!),
    );
  }

  listKeys(tenantId: string): Promise<SigningKeyRow[]> {
    return Promise.resolve(this.sql.listKeys.all(tenantId) as SigningKeyRow[]);
  }

  /**
   * Ends the active key at the rotation instant and inserts its replacement. Runs inside a
   * BEGIN IMMEDIATE transaction, which orders it with every chain append.
   */
  #replaceActiveKey(
    tenantId: string,
    key: NewSigningKey,
    now: () => Date,
    revocationReason?: KeyRevocation['reason'],
  ): KeyReplacement {
    const sql = this.sql;
    const active = sql.getActiveKey.get(tenantId) as SigningKeyRow | undefined;
    if (!active) {
      throw new Error(`tenant ${tenantId} has no active signing key`);
    }
    const { latest } = this.v3Sql.latestIssuedAt.get(tenantId) as { latest: string | null };
    const instant = rotationInstant(now(), active, latest);
    const previous = endedKey(active, instant, revocationReason);
    const current = newActiveKey(key, instant);
    // The old key leaves the active state first: the unique index on active keys is checked
    // per statement.
    this.v3Sql.updateKeyStatus.run(previous);
    sql.insertKey.run(current);
    return { previous, current };
  }

  rotateSigningKey(
    tenantId: string,
    key: NewSigningKey,
    now: () => Date,
    auditEvent?: NewAuditEvent,
  ): Promise<KeyReplacement | undefined> {
    const rotate = this.#db.transaction((): KeyReplacement | undefined => {
      if (!this.sql.getHead.get(tenantId)) {
        return undefined;
      }
      const replacement = this.#replaceActiveKey(tenantId, key, now);
      this.#appendEventIn(tenantId, auditEvent);
      return replacement;
    });
    return this.#writeAuditedChange(() => rotate.immediate());
  }

  revokeSigningKey(
    tenantId: string,
    keyId: string,
    revocation: KeyRevocation,
    now: () => Date,
    auditEvent?: NewAuditEvent,
  ): Promise<KeyRevocationResult> {
    const revoke = this.#db.transaction((): KeyRevocationResult => {
      const result = this.#revokeIn(tenantId, keyId, revocation, now);
      if (result.kind === 'revoked') {
        this.#appendEventIn(tenantId, auditEvent);
      }
      return result;
    });
    return this.#writeAuditedChange(() => revoke.immediate());
  }

  /** Revokes the key inside the caller's transaction, as revokeSigningKey describes. */
  #revokeIn(
    tenantId: string,
    keyId: string,
    revocation: KeyRevocation,
    now: () => Date,
  ): KeyRevocationResult {
    const sql = this.sql;
    if (!sql.getHead.get(tenantId)) {
      return { kind: 'tenant_not_found' };
    }
    const key = sql.getKey.get(tenantId, keyId) as SigningKeyRow | undefined;
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
      const { previous, current } = this.#replaceActiveKey(
        tenantId,
        revocation.replacement,
        now,
        revocation.reason,
      );
      return { kind: 'revoked', key: previous, replacement: current };
    }
    const revoked = revokedKey(key, now().toISOString(), revocation.reason);
    this.v3Sql.updateKeyStatus.run(revoked);
    return { kind: 'revoked', key: revoked, replacement: undefined };
  }

  setTenantRateLimit(
    tenantId: string,
    perMinute: number | null,
    auditEvent?: NewAuditEvent,
  ): Promise<boolean> {
    const set = this.#db.transaction((): boolean => {
      if (this.v3Sql.setRateLimit.run(perMinute, tenantId).changes === 0) {
        return false;
      }
      this.#appendEventIn(tenantId, auditEvent);
      return true;
    });
    return this.#writeAuditedChange(() => set.immediate());
  }

  /**
   * Runs `write` as #writeWithoutBlocking does. Raises AuditEventExistsError when the write
   * failed because one of its audit event ids is already stored.
   */
  async #writeAuditedChange<T>(write: () => T): Promise<T> {
    try {
      return await this.#writeWithoutBlocking(write);
    } catch (error) {
      if (isDuplicateAuditEvent(error)) {
        throw new AuditEventExistsError('an audit event id of the write is already stored', {
          cause: error,
        });
      }
      throw error;
    }
  }

  syncRateLimitCounters(windowStart: string, counts: RateLimitCount[]): Promise<RateLimitTotal[]> {
    const sql = this.v3Sql;
    const sync = this.#db.transaction((): RateLimitTotal[] => {
      const totals: RateLimitTotal[] = [];
      for (const { tenantId, count } of counts) {
        const stored = sql.getRateLimitCount.get(windowStart, tenantId) as
          { rate_limit_per_minute: number | null; request_count: number | null } | undefined;
        if (!stored) {
          continue;
        }
        let total = Number(stored.request_count ?? 0);
        if (count > 0) {
          const added = sql.addRateLimitCount.get(windowStart, tenantId, count) as {
            request_count: number;
          };
          total = Number(added.request_count);
        }
        totals.push({ tenantId, total, limitPerMinute: stored.rate_limit_per_minute });
      }
      return totals;
    });
    return this.#writeWithoutBlocking(() => sync.immediate());
  }

  pruneRateLimitCounters(windowStart: string): Promise<number> {
    return this.#writeWithoutBlocking(
      () => this.v3Sql.pruneRateLimitCounts.run(windowStart).changes,
    );
  }

  appendCertificates<T extends AppendItem>(
    tenantId: string,
    items: T[],
    seal: Sealer<T>,
  ): Promise<AppendResult[]> {
    return this.appendCertificateGroups([{ tenantId, items }], seal).then(([results]) => results!);
  }

  /** Appends every group in one BEGIN IMMEDIATE transaction (see #writeWithoutBlocking). */
  async appendCertificateGroups<T extends AppendItem>(
    groups: readonly AppendGroup<T>[],
    seal: Sealer<T>,
  ): Promise<AppendResult[][]> {
    checkDistinctTenants(groups);
    const append = this.#db.transaction((): AppendResult[][] =>
      groups.map(({ tenantId, items }) => this.#appendGroup(tenantId, items, seal)),
    );
    const results = await this.#writeWithoutBlocking(() => append.immediate());
    for (const group of results) {
      this.#appendedSinceOptimize += group.filter((result) => result.kind === 'created').length;
    }
    if (this.#appendedSinceOptimize >= OPTIMIZE_EVERY_APPENDS) {
      this.#appendedSinceOptimize = 0;
      try {
        this.#db.pragma('optimize');
      } catch (error) {
        // The append has committed, so it must not fail. Busy or full, the statistics are
        // refreshed after the next OPTIMIZE_EVERY_APPENDS appends instead.
        if (!isBusy(error) && !isFull(error)) {
          throw error;
        }
      }
    }
    return results;
  }

  /**
   * Runs `write`, one transaction or one statement. Every write of this store goes through it,
   * except migrations and the backfill at start-up. When another connection holds the write
   * lock, the try fails at once and is repeated after a short pause. SQLite's busy handler would
   * sleep on the thread instead, so this process could not serve requests meanwhile. Raises
   * StoreBusyError after the busy timeout, and StoreFullError when the disk is full. Each write
   * sets or clears the state that lastStorageFullFailure returns.
   */
  async #writeWithoutBlocking<T>(write: () => T): Promise<T> {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      // SQLite applies PRAGMA busy_timeout when the statement is compiled, so a prepared copy
      // run again would change nothing: each switch compiles the pragma anew.
      this.#db.pragma('busy_timeout = 0');
      try {
        const result = write();
        this.#writes = afterCommit();
        return result;
      } catch (error) {
        if (isFull(error)) {
          // SQLite rolled the failed statement back, and better-sqlite3 the transaction around
          // it, so nothing of the write is stored.
          this.#writes = afterFullFailure(this.#writes);
          throw new StoreFullError(
            `SQLite could not write to ${this.#path}: the disk is full or the database reached its maximum page count`,
            { cause: error },
          );
        }
        if (!isBusy(error)) {
          throw error;
        }
        if (Date.now() - started >= this.#busyTimeoutMs) {
          throw new StoreBusyError(
            `another connection held the SQLite write lock for ${this.#busyTimeoutMs} ms`,
            { cause: error },
          );
        }
      } finally {
        this.#db.pragma(`busy_timeout = ${this.#busyTimeoutMs}`);
      }
      await lockRetryPause(attempt, Date.now() - started);
    }
  }

  /** Appends one tenant's items inside the caller's transaction. */
  #appendGroup<T extends AppendItem>(
    tenantId: string,
    items: readonly T[],
    seal: Sealer<T>,
  ): AppendResult[] {
    const sql = this.sql;
    const head = sql.getHead.get(tenantId) as
      { chain_sequence: number; chain_hash: string | null } | undefined;
    if (!head) {
      throw new Error(`tenant ${tenantId} has no chain head`);
    }
    let sequence = Number(head.chain_sequence);
    let previousHash = head.chain_hash;
    const results: AppendResult[] = [];
    const now = new Date().toISOString();
    const logHead = this.#log.head(tenantId);
    const leaves: string[] = [];
    const audit: AuditEventRow[] = [];
    const activeKeyId = items.some((item) => item.signingKeyId !== undefined)
      ? (sql.getActiveKey.get(tenantId) as SigningKeyRow | undefined)?.key_id
      : undefined;
    for (const item of items) {
      if (item.idempotencyKey !== undefined) {
        const seen = sql.getIdempotency.get(tenantId, item.idempotencyKey) as
          { request_hash: string; certificate_id: string } | undefined;
        if (seen) {
          if (seen.request_hash !== item.requestHash) {
            results.push({ kind: 'conflict' });
          } else {
            const row = toCertificate(
              sql.getCertificate.get(tenantId, seen.certificate_id) as RawCertificate,
            );
            results.push(row ? { kind: 'replayed', row } : { kind: 'conflict' });
          }
          continue;
        }
      }
      if (item.signingKeyId !== undefined && item.signingKeyId !== activeKeyId) {
        results.push({ kind: 'key_inactive', activeKeyId });
        continue;
      }
      const row = seal(item, { sequence: sequence + 1, previousHash });
      if (row.tenant_id !== tenantId) {
        throw new Error(
          `sealer returned a certificate for tenant ${row.tenant_id} in the group of tenant ${tenantId}`,
        );
      }
      row.log_index = logHead.tree_size + leaves.length;
      row.timestamp_token ??= null;
      leaves.push(row.signed_message);
      sql.insertCertificate.run({
        ...row,
        human_reviewed: row.human_reviewed ? 1 : 0,
        timestamp_token: row.timestamp_token ?? null,
      });
      if (item.auditEvent) {
        const event = item.auditEvent(row);
        audit.push({
          ...event,
          tenant_id: tenantId,
          log_index: logHead.tree_size + leaves.length,
        });
        leaves.push(event.event_json);
      }
      if (item.idempotencyKey !== undefined) {
        sql.insertIdempotency.run(
          tenantId,
          item.idempotencyKey,
          item.requestHash ?? '',
          row.certificate_id,
          now,
        );
      }
      sequence = row.chain_sequence;
      previousHash = row.chain_hash;
      results.push({ kind: 'created', row });
    }
    sql.setHead.run(sequence, previousHash, tenantId);
    for (const event of audit) {
      this.#log.insertAuditEvent(event);
    }
    this.#log.extend(tenantId, logHead, leaves);
    return results;
  }

  getCertificate(tenantId: string, certificateId: string): Promise<CertificateRow | undefined> {
    return Promise.resolve(
      toCertificate(this.sql.getCertificate.get(tenantId, certificateId) as RawCertificate),
    );
  }

  getChainHead(
    tenantId: string,
  ): Promise<{ chain_sequence: number; chain_hash: string | null } | undefined> {
    const head = this.sql.getHead.get(tenantId) as
      { chain_sequence: number; chain_hash: string | null } | undefined;
    return Promise.resolve(
      head
        ? { chain_sequence: Number(head.chain_sequence), chain_hash: head.chain_hash }
        : undefined,
    );
  }

  getCertificateBySequence(
    tenantId: string,
    sequence: number,
  ): Promise<CertificateRow | undefined> {
    return Promise.resolve(
      toCertificate(this.sql.getBySequence.get(tenantId, sequence) as RawCertificate),
    );
  }

  queryCertificates(
    tenantId: string,
    filter: CertificateFilter,
    afterSequence: number,
    limit: number,
  ): Promise<CertificateRow[]> {
    const { sql, params } = certificateQuery(tenantId, filter, afterSequence, limit);
    const rows = this.#db.prepare(sql).all(...params) as RawCertificate[];
    return Promise.resolve(rows.map((row) => toCertificate(row)!));
  }

  insertShadowItems(items: NewShadowItem[]): Promise<void> {
    return this.#writeWithoutBlocking(() => this.#shadow.insert(items));
  }

  getShadowItem(tenantId: string, itemId: string): Promise<ShadowItemRow | undefined> {
    return settle(() => this.#shadow.get(tenantId, itemId));
  }

  listShadowItems(
    tenantId: string,
    filter: ShadowItemFilter,
    order: ShadowItemOrder,
    cursor: ShadowItemCursor | undefined,
    limit: number,
  ): Promise<ShadowItemRow[]> {
    return settle(() => this.#shadow.list(tenantId, filter, order, cursor, limit));
  }

  aggregateShadowItems(tenantId: string, filter: ShadowItemFilter): Promise<ShadowAggregate> {
    return settle(() => this.#shadow.aggregate(tenantId, filter));
  }

  listLinkedCertificateIds(
    tenantId: string,
    filter: ShadowItemFilter,
    limit: number,
  ): Promise<string[]> {
    return settle(() => this.#shadow.linkedCertificateIds(tenantId, filter, limit));
  }

  getShadowAssumptions(tenantId: string): Promise<ShadowAssumptionsRow | undefined> {
    return settle(() => this.#shadow.getAssumptions(tenantId));
  }

  putShadowAssumptions(
    tenantId: string,
    assumptionsJson: string,
    updatedAt: string,
  ): Promise<ShadowAssumptionsRow> {
    return this.#writeWithoutBlocking(() =>
      this.#shadow.putAssumptions(tenantId, assumptionsJson, updatedAt),
    );
  }

  getLogHead(tenantId: string): Promise<LogHeadRow | undefined> {
    return settle(() => this.#log.getHead(tenantId));
  }

  getLogNodes(
    tenantId: string,
    refs: readonly { level: number; index: number }[],
  ): Promise<LogNodeRow[]> {
    return settle(() => this.#log.getNodes(tenantId, refs));
  }

  listLogEntries(tenantId: string, fromIndex: number, toIndex: number): Promise<LogEntry[]> {
    return settle(() => this.#log.listEntries(tenantId, fromIndex, toIndex));
  }

  listLogEntriesBelowZero(tenantId: string, limit: number): Promise<LogEntry[]> {
    return settle(() => this.#log.listEntriesBelowZero(tenantId, limit));
  }

  appendAuditEvents(tenantId: string, events: NewAuditEvent[]): Promise<AuditEventRow[]> {
    return this.#writeAuditedChange(() => this.#log.appendAuditEvents(tenantId, events));
  }

  getAuditEvent(eventId: string): Promise<AuditEventRow | undefined> {
    return settle(() => this.#log.getAuditEvent(eventId));
  }

  listAuditEvents(
    tenantId: string,
    filter: AuditEventFilter,
    afterIndex: number,
    limit: number,
  ): Promise<AuditEventRow[]> {
    return settle(() => this.#log.listAuditEvents(tenantId, filter, afterIndex, limit));
  }

  putLogKey(row: LogKeyRow): Promise<LogKeyRow> {
    return this.#writeWithoutBlocking(() => this.#log.putKey(row));
  }

  getLogKey(tenantId: string): Promise<LogKeyRow | undefined> {
    return settle(() => this.#log.getKey(tenantId));
  }

  putCheckpoint(row: CheckpointRow): Promise<CheckpointRow> {
    return this.#writeWithoutBlocking(() => this.#log.putCheckpoint(row));
  }

  getLatestCheckpoint(tenantId: string): Promise<CheckpointRow | undefined> {
    return settle(() => this.#log.getLatestCheckpoint(tenantId));
  }

  getCheckpoint(tenantId: string, treeSize: number): Promise<CheckpointRow | undefined> {
    return settle(() => this.#log.getCheckpoint(tenantId, treeSize));
  }

  setCheckpointTimestamp(tenantId: string, treeSize: number, token: string | null): Promise<void> {
    return this.#writeWithoutBlocking(() => this.#log.setTimestamp(tenantId, treeSize, token));
  }

  listUntimestampedCheckpoints(limit: number): Promise<CheckpointRow[]> {
    return settle(() => this.#log.listUntimestamped(limit));
  }

  listLogCertificates(
    tenantId: string,
    fromIndex: number,
    toIndex: number,
  ): Promise<CertificateRow[]> {
    return settle(() => {
      const rows = this.#db
        .prepare(LOG_SQL.listLogCertificates)
        .all(tenantId, fromIndex, toIndex) as RawCertificate[];
      return rows.map((row) => toCertificate(row)!);
    });
  }

  listUnloggedCertificates(tenantId: string, limit: number): Promise<CertificateRow[]> {
    return settle(() => {
      const rows = this.#db
        .prepare(LOG_SQL.listUnloggedCertificateRows)
        .all(tenantId, limit) as RawCertificate[];
      return rows.map((row) => toCertificate(row)!);
    });
  }

  listLogNodes(
    tenantId: string,
    level: number,
    fromIndex: number,
    toIndex: number,
  ): Promise<LogNodeRow[]> {
    return settle(() => this.#log.listNodes(tenantId, level, fromIndex, toIndex));
  }

  nextLogIndex(tenantId: string, fromIndex: number): Promise<number | undefined> {
    return settle(() => this.#log.nextIndex(tenantId, fromIndex));
  }

  listCheckpoints(tenantId: string, afterSize: number, limit: number): Promise<CheckpointRow[]> {
    return settle(() => this.#log.listCheckpoints(tenantId, afterSize, limit));
  }
}
