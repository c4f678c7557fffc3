// PostgreSQL engine (node-postgres pool). Chain appends are serialized by the database: each
// append transaction locks the tenant's chain_heads row with SELECT ... FOR UPDATE, so appends
// from any number of processes queue on that row and never fork a chain.
import pg from 'pg';
import { certificateQuery } from '../certificate-query.ts';
import { MIGRATIONS, statementFor, type Migration } from '../migrations.ts';
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
  TenantExistsError,
  type AppendItem,
  type AppendResult,
  type CertificateFilter,
  type CertificateRow,
  type MigrationReport,
  type NewShadowItem,
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

export const DEFAULT_POOL_SIZE = 10;

/** Key of the session advisory lock held while migrating, so concurrent starts take turns. */
const MIGRATION_LOCK_KEY = 0x4344_494c; // "CDIL" in ASCII

const UNIQUE_VIOLATION = '23505';
const INT8_OID = 20;
const NUMERIC_OID = 1700;

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

/** Rewrites `?` placeholders as PostgreSQL's `$1`, `$2`, ... The SQL must contain no other `?`. */
export function numberPlaceholders(sql: string): string {
  let index = 0;
  return sql.replace(/\?/g, () => `$${++index}`);
}

interface RawCertificate extends Omit<CertificateRow, 'human_reviewed'> {
  human_reviewed: number;
}

function toCertificate(raw: RawCertificate | undefined): CertificateRow | undefined {
  return raw
    ? {
        ...raw,
        chain_sequence: Number(raw.chain_sequence),
        human_reviewed: raw.human_reviewed === 1,
      }
    : undefined;
}

function isUniqueViolation(error: unknown): boolean {
  return error instanceof Error && (error as { code?: unknown }).code === UNIQUE_VIOLATION;
}

function isKeyClaimedElsewhere(error: unknown): boolean {
  return isUniqueViolation(error) && (error as pg.DatabaseError).table === 'idempotency_keys';
}

/**
 * Maximum attempts of one append whose idempotency key insert clashed with another writer. Each
 * retry finds at least one more committed key, and a clash needs a writer that ignores the chain
 * head lock, so a second attempt is already rare.
 */
const MAX_APPEND_ATTEMPTS = 5;

const LOCK_CHAIN_HEAD_SQL =
  'SELECT chain_sequence, chain_hash FROM chain_heads WHERE tenant_id = $1 FOR UPDATE';

const SELECT_IDEMPOTENCY_KEYS_SQL = `SELECT k.idempotency_key AS key, k.request_hash, c.*
  FROM idempotency_keys k
  LEFT JOIN certificates c ON c.tenant_id = k.tenant_id AND c.certificate_id = k.certificate_id
  WHERE k.tenant_id = $1 AND k.idempotency_key = ANY($2::text[])`;

// One parameter per column, each an array with one element per certificate, so a batch of any
// size is one statement with one prepared plan.
const INSERT_CERTIFICATES_SQL = `INSERT INTO certificates (tenant_id, chain_sequence, certificate_id, issued_at_utc, model_version,
    governance_policy_version, human_reviewed, chain_hash, previous_hash, key_id, signed_message, signature)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[],
    $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])`;

const INSERT_IDEMPOTENCY_KEYS_SQL = `INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, certificate_id, created_at)
  SELECT $1::text, claim.key, claim.request_hash, claim.certificate_id, $5::text
  FROM unnest($2::text[], $3::text[], $4::text[]) AS claim (key, request_hash, certificate_id)`;

const UPDATE_CHAIN_HEAD_SQL =
  'UPDATE chain_heads SET chain_sequence = $1, chain_hash = $2 WHERE tenant_id = $3';

/** Builds the column arrays of INSERT_CERTIFICATES_SQL for `rows`, in column order. */
function certificateColumns(rows: CertificateRow[]): unknown[][] {
  return [
    rows.map((row) => row.tenant_id),
    rows.map((row) => row.chain_sequence),
    rows.map((row) => row.certificate_id),
    rows.map((row) => row.issued_at_utc),
    rows.map((row) => row.model_version),
    rows.map((row) => row.governance_policy_version),
    rows.map((row) => (row.human_reviewed ? 1 : 0)),
    rows.map((row) => row.chain_hash),
    rows.map((row) => row.previous_hash),
    rows.map((row) => row.key_id),
    rows.map((row) => row.signed_message),
    rows.map((row) => row.signature),
  ];
}

/** An idempotency key to insert for a new certificate. */
interface KeyClaim {
  key: string;
  requestHash: string;
  certificateId: string;
}

/** The stored request hash and certificate of an idempotency key. The row is undefined if missing. */
interface StoredKey {
  requestHash: string;
  row: CertificateRow | undefined;
}

/**
 * Decides each item's outcome in order and seals the new certificates from `head` on. An item
 * whose key is stored, or repeats a key earlier in the batch, is replayed or a conflict.
 */
function sealBatch<T extends AppendItem>(
  items: T[],
  head: ChainHead,
  known: Map<string, StoredKey>,
  seal: Sealer<T>,
): { results: AppendResult[]; created: CertificateRow[]; claims: KeyClaim[] } {
  let sequence = head.chain_sequence;
  let previousHash = head.chain_hash;
  const results: AppendResult[] = [];
  const created: CertificateRow[] = [];
  const claims: KeyClaim[] = [];
  for (const item of items) {
    const key = item.idempotencyKey;
    const stored = key === undefined ? undefined : known.get(key);
    if (stored) {
      results.push(replayOutcome(stored, item));
      continue;
    }
    const row = seal(item, { sequence: sequence + 1, previousHash });
    created.push(row);
    results.push({ kind: 'created', row });
    if (key !== undefined) {
      const requestHash = item.requestHash ?? '';
      known.set(key, { requestHash, row });
      claims.push({ key, requestHash, certificateId: row.certificate_id });
    }
    sequence = row.chain_sequence;
    previousHash = row.chain_hash;
  }
  return { results, created, claims };
}

/**
 * Calls `send`, which issues queries on a pipelining connection, and returns its result. The
 * socket is corked meanwhile: node-postgres writes each query as soon as it is issued, and the
 * cork turns those writes into one system call and one wake-up of the server process.
 */
function sendTogether<T>(client: pg.PoolClient, send: () => T): T {
  const socket = client.connection.stream;
  socket.cork();
  try {
    return send();
  } finally {
    socket.uncork();
  }
}

interface ChainHead {
  chain_sequence: number;
  chain_hash: string | null;
}

type StoredKeyRow = RawCertificate & { key: string; request_hash: string };

/** Indexes the rows of SELECT_IDEMPOTENCY_KEYS_SQL by key. */
function storedKeys(rows: StoredKeyRow[]): Map<string, StoredKey> {
  const known = new Map<string, StoredKey>();
  for (const { key, request_hash: requestHash, ...certificate } of rows) {
    // The LEFT JOIN yields NULL columns when the key's certificate is missing.
    const row = certificate.certificate_id === null ? undefined : toCertificate(certificate);
    known.set(key, { requestHash, row });
  }
  return known;
}

/** Returns the outcome for an item whose idempotency key is stored: a replay or a conflict. */
function replayOutcome(stored: StoredKey, item: AppendItem): AppendResult {
  if (stored.requestHash !== item.requestHash) {
    return { kind: 'conflict' };
  }
  return stored.row ? { kind: 'replayed', row: stored.row } : { kind: 'conflict' };
}

type Queryable = Pick<pg.PoolClient, 'query'>;

export interface PgStoreOptions {
  /** Migrations to apply; defaults to all. Tests pass a prefix to build an older schema. */
  migrations?: readonly Migration[];
  /** Maximum number of pooled connections. */
  poolSize?: number;
}

export class PgStore implements Store {
  readonly engine = 'postgres';
  readonly #pool: pg.Pool;
  readonly #migrations: readonly Migration[];
  #closed = false;

  constructor(connectionString: string, options: PgStoreOptions = {}) {
    this.#migrations = options.migrations ?? MIGRATIONS;
    this.#pool = new pg.Pool({
      connectionString,
      max: options.poolSize ?? DEFAULT_POOL_SIZE,
      types: typeParsers,
      application_name: 'cdil',
      // Sends a query without waiting for the results of earlier ones on the connection. Code
      // that awaits each query behaves as without it, and appendCertificates sends groups.
      pipeline: true,
    });
    // An idle pooled connection can fail, for example when the server restarts. The pool drops
    // it and opens a new one on demand. Without a listener the error would end the process.
    this.#pool.on('error', (error) => {
      process.emitWarning(`idle PostgreSQL connection failed and was dropped: ${error.message}`);
    });
  }

  async #rows<R>(sql: string, params: SqlParam[] = [], client: Queryable = this.#pool) {
    const result = await client.query(numberPlaceholders(sql), params);
    return result.rows as R[];
  }

  /**
   * Runs `work` on one pooled connection. When `work` fails, a transaction it left open is rolled
   * back, and a connection whose rollback failed is closed instead of returned to the pool.
   */
  async #withConnection<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken = false;
    try {
      return await work(client);
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }

  /** Runs `work` in one transaction on one pooled connection and commits before returning. */
  #transaction<T>(work: (client: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    return this.#withConnection(async (client) => {
      await client.query(begin);
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    });
  }

  async migrate(): Promise<MigrationReport> {
    const client = await this.#pool.connect();
    let broken = false;
    try {
      // A session lock, held across the per-migration transactions below. If this process dies
      // while it holds the lock, the server releases it with the connection.
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      try {
        return await this.#migrateLocked(client);
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
      }
    } catch (error) {
      broken = true;
      throw error;
    } finally {
      client.release(broken);
    }
  }

  async #migrateLocked(client: pg.PoolClient): Promise<MigrationReport> {
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
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
    return { applied, current: row?.version ?? 0 };
  }

  async ping(): Promise<void> {
    await this.#pool.query('SELECT 1');
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#pool.end();
    }
  }

  async createTenant(tenant: TenantRow, key: SigningKeyRow): Promise<void> {
    try {
      await this.#transaction(async (client) => {
        const existing = await client.query('SELECT 1 FROM tenants WHERE tenant_id = $1', [
          tenant.tenant_id,
        ]);
        if (existing.rowCount !== 0) {
          throw new TenantExistsError(`tenant ${tenant.tenant_id} already exists`);
        }
        await client.query(
          'INSERT INTO tenants (tenant_id, created_at, phi_policy, hmac_secret_sealed) VALUES ($1, $2, $3, $4)',
          [tenant.tenant_id, tenant.created_at, tenant.phi_policy, tenant.hmac_secret_sealed],
        );
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
        await client.query(
          'INSERT INTO chain_heads (tenant_id, chain_sequence, chain_hash) VALUES ($1, 0, NULL)',
          [tenant.tenant_id],
        );
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
    const [row] = await this.#rows<TenantRow>('SELECT * FROM tenants WHERE tenant_id = ?', [
      tenantId,
    ]);
    return row;
  }

  listTenants(): Promise<TenantRow[]> {
    return this.#rows<TenantRow>('SELECT * FROM tenants ORDER BY tenant_id');
  }

  listKeys(tenantId: string): Promise<SigningKeyRow[]> {
    return this.#rows<SigningKeyRow>(
      'SELECT * FROM signing_keys WHERE tenant_id = ? ORDER BY valid_from, key_id',
      [tenantId],
    );
  }

  async appendCertificates<T extends AppendItem>(
    tenantId: string,
    items: T[],
    seal: Sealer<T>,
  ): Promise<AppendResult[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#withConnection((client) => this.#append(client, tenantId, items, seal));
      } catch (error) {
        // Only a writer that bypasses the chain head lock can claim a key between the lookup and
        // the insert. The retry finds that key and returns its item as a replay or conflict.
        if (attempt < MAX_APPEND_ATTEMPTS && isKeyClaimedElsewhere(error)) {
          continue;
        }
        throw error;
      }
    }
  }

  /**
   * Appends one batch in one transaction: locks the chain head, looks up the batch's idempotency
   * keys, seals every new certificate in item order, inserts all certificates and all keys with
   * one statement each, moves the chain head and commits. Rows and results are the same as
   * appending the items one at a time.
   *
   * The connection pipelines, so each group of statements is sent at once and costs one round
   * trip: BEGIN, the lock and the key lookup, then the inserts, the head update and COMMIT. The
   * server runs them in order, and after a failed statement it rejects the rest of the
   * transaction, including COMMIT, which then rolls back.
   */
  async #append<T extends AppendItem>(
    client: pg.PoolClient,
    tenantId: string,
    items: T[],
    seal: Sealer<T>,
  ): Promise<AppendResult[]> {
    const { head, known } = await this.#lockHead(client, tenantId, items);
    const batch = sealBatch(items, head, known, seal);
    const writes = sendTogether(client, () =>
      this.#sendWrites(client, tenantId, batch.created, batch.claims),
    );
    // Promise.all rejects with the error of the first statement that failed, because every
    // statement after it in the transaction fails as well.
    await Promise.all(writes);
    return batch.results;
  }

  /** Begins the transaction, locks the tenant's chain head and reads the items' stored keys. */
  async #lockHead(
    client: pg.PoolClient,
    tenantId: string,
    items: AppendItem[],
  ): Promise<{ head: ChainHead; known: Map<string, StoredKey> }> {
    const keys = items.flatMap((item) =>
      item.idempotencyKey === undefined ? [] : [item.idempotencyKey],
    );
    // The key lookup runs after the lock is granted, so it reads every key committed by earlier
    // holders of the lock.
    const [, locked, stored] = await Promise.all(
      sendTogether(client, () => [
        client.query('BEGIN'),
        client.query<ChainHead>({
          name: 'cdil_lock_chain_head',
          text: LOCK_CHAIN_HEAD_SQL,
          values: [tenantId],
        }),
        keys.length === 0
          ? Promise.resolve(undefined)
          : client.query<StoredKeyRow>({
              name: 'cdil_select_idempotency_keys',
              text: SELECT_IDEMPOTENCY_KEYS_SQL,
              values: [tenantId, keys],
            }),
      ]),
    );
    const [head] = locked.rows;
    if (!head) {
      throw new Error(`tenant ${tenantId} has no chain head`);
    }
    return { head, known: storedKeys(stored?.rows ?? []) };
  }

  /** Issues the inserts, the chain head update and COMMIT of one append without awaiting them. */
  #sendWrites(
    client: pg.PoolClient,
    tenantId: string,
    created: CertificateRow[],
    claims: KeyClaim[],
  ): Promise<unknown>[] {
    const writes: Promise<unknown>[] = [];
    const last = created.at(-1);
    if (last) {
      writes.push(
        client.query({
          name: 'cdil_insert_certificates',
          text: INSERT_CERTIFICATES_SQL,
          values: certificateColumns(created),
        }),
      );
    }
    if (claims.length > 0) {
      // No ON CONFLICT: a key that another writer committed since the lookup fails the whole
      // transaction with a unique violation, and appendCertificates retries the batch.
      writes.push(
        client.query({
          name: 'cdil_insert_idempotency_keys',
          text: INSERT_IDEMPOTENCY_KEYS_SQL,
          values: [
            tenantId,
            claims.map((claim) => claim.key),
            claims.map((claim) => claim.requestHash),
            claims.map((claim) => claim.certificateId),
            new Date().toISOString(),
          ],
        }),
      );
    }
    if (last) {
      writes.push(
        client.query({
          name: 'cdil_update_chain_head',
          text: UPDATE_CHAIN_HEAD_SQL,
          values: [last.chain_sequence, last.chain_hash, tenantId],
        }),
      );
    }
    writes.push(client.query('COMMIT'));
    return writes;
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
    return this.#transaction(async (client) => {
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
    }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
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
}
