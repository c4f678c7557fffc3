// SQLite engine (better-sqlite3, WAL). better-sqlite3 is synchronous, so each transaction
// runs to completion without interleaving inside this process, and BEGIN IMMEDIATE takes
// the database write lock, which serializes chain appends across processes too.
import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { certificateQuery } from '../certificate-query.ts';
import { MIGRATIONS, statementFor, type Migration } from '../migrations.ts';
import { SqliteShadowTables } from './shadow-tables.ts';
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

/** Runs synchronous work and reports its result or exception as a promise. */
function settle<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => resolve(work()));
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
}

export class SqliteStore implements Store {
  readonly engine = 'sqlite';
  readonly #db: Database.Database;
  readonly #migrations: readonly Migration[];
  readonly #shadow: SqliteShadowTables;
  #prepared: ReturnType<SqliteStore['prepareStatements']> | undefined;
  #appendedSinceOptimize = 0;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    if (path !== ':memory:') {
      // The database contains sealed keys and keyed hashes, so only its owner may read it. SQLite
      // gives its -wal and -shm files the permissions of the database file.
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      closeSync(openSync(path, 'a', 0o600));
    }
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('busy_timeout = 10000');
    this.#db.pragma('foreign_keys = ON');
    // Analyzes every table whose statistics are missing or out of date. Since SQLite 3.46 the
    // pragma samples a limited number of rows, so it stays fast on a large database.
    this.#db.pragma('optimize=0x10002');
    this.#migrations = options.migrations ?? MIGRATIONS;
    this.#shadow = new SqliteShadowTables(this.#db);
  }

  private get sql(): ReturnType<SqliteStore['prepareStatements']> {
    this.#prepared ??= this.prepareStatements();
    return this.#prepared;
  }

  private prepareStatements() {
    const db = this.#db;
    return {
      insertTenant: db.prepare(
        'INSERT INTO tenants (tenant_id, created_at, phi_policy, hmac_secret_sealed) VALUES (@tenant_id, @created_at, @phi_policy, @hmac_secret_sealed)',
      ),
      insertKey: db.prepare(
        `INSERT INTO signing_keys (tenant_id, key_id, algorithm, status, valid_from, valid_until, public_key_pem, private_key_sealed, created_at)
         VALUES (@tenant_id, @key_id, @algorithm, @status, @valid_from, @valid_until, @public_key_pem, @private_key_sealed, @created_at)`,
      ),
      insertHead: db.prepare(
        'INSERT INTO chain_heads (tenant_id, chain_sequence, chain_hash) VALUES (?, 0, NULL)',
      ),
      getTenant: db.prepare('SELECT * FROM tenants WHERE tenant_id = ?'),
      listTenants: db.prepare('SELECT * FROM tenants ORDER BY tenant_id'),
      listKeys: db.prepare(
        'SELECT * FROM signing_keys WHERE tenant_id = ? ORDER BY valid_from, key_id',
      ),
      getHead: db.prepare('SELECT chain_sequence, chain_hash FROM chain_heads WHERE tenant_id = ?'),
      setHead: db.prepare(
        'UPDATE chain_heads SET chain_sequence = ?, chain_hash = ? WHERE tenant_id = ?',
      ),
      insertCertificate: db.prepare(
        `INSERT INTO certificates (tenant_id, chain_sequence, certificate_id, issued_at_utc, model_version, governance_policy_version,
           human_reviewed, chain_hash, previous_hash, key_id, signed_message, signature)
         VALUES (@tenant_id, @chain_sequence, @certificate_id, @issued_at_utc, @model_version, @governance_policy_version,
           @human_reviewed, @chain_hash, @previous_hash, @key_id, @signed_message, @signature)`,
      ),
      getIdempotency: db.prepare(
        'SELECT request_hash, certificate_id FROM idempotency_keys WHERE tenant_id = ? AND idempotency_key = ?',
      ),
      insertIdempotency: db.prepare(
        'INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, certificate_id, created_at) VALUES (?, ?, ?, ?, ?)',
      ),
      getCertificate: db.prepare(
        'SELECT * FROM certificates WHERE tenant_id = ? AND certificate_id = ?',
      ),
      getBySequence: db.prepare(
        'SELECT * FROM certificates WHERE tenant_id = ? AND chain_sequence = ?',
      ),
    };
  }

  migrate(): Promise<MigrationReport> {
    const db = this.#db;
    db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
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
    const row = db.prepare('SELECT MAX(version) AS version FROM schema_migrations').get() as {
      version: number | null;
    };
    return Promise.resolve({ applied, current: row.version ?? 0 });
  }

  ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.#db.open) {
      this.#db.close();
    }
    return Promise.resolve();
  }

  createTenant(tenant: TenantRow, key: SigningKeyRow): Promise<void> {
    const sql = this.sql;
    const create = this.#db.transaction(() => {
      if (sql.getTenant.get(tenant.tenant_id)) {
        throw new TenantExistsError(`tenant ${tenant.tenant_id} already exists`);
      }
      sql.insertTenant.run(tenant);
      sql.insertKey.run(key);
      sql.insertHead.run(tenant.tenant_id);
    });
    return settle(() => create.immediate());
  }

  getTenant(tenantId: string): Promise<TenantRow | undefined> {
    return Promise.resolve(this.sql.getTenant.get(tenantId) as TenantRow | undefined);
  }

  listTenants(): Promise<TenantRow[]> {
    return Promise.resolve(this.sql.listTenants.all() as TenantRow[]);
  }

  listKeys(tenantId: string): Promise<SigningKeyRow[]> {
    return Promise.resolve(this.sql.listKeys.all(tenantId) as SigningKeyRow[]);
  }

  appendCertificates<T extends AppendItem>(
    tenantId: string,
    items: T[],
    seal: Sealer<T>,
  ): Promise<AppendResult[]> {
    const sql = this.sql;
    const append = this.#db.transaction((): AppendResult[] => {
      const head = sql.getHead.get(tenantId) as
        { chain_sequence: number; chain_hash: string | null } | undefined;
      if (!head) {
        throw new Error(`tenant ${tenantId} has no chain head`);
      }
      let sequence = Number(head.chain_sequence);
      let previousHash = head.chain_hash;
      const results: AppendResult[] = [];
      const now = new Date().toISOString();
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
        const row = seal(item, { sequence: sequence + 1, previousHash });
        sql.insertCertificate.run({ ...row, human_reviewed: row.human_reviewed ? 1 : 0 });
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
      return results;
    });
    return settle(() => {
      const results = append.immediate();
      this.#appendedSinceOptimize += results.filter((result) => result.kind === 'created').length;
      if (this.#appendedSinceOptimize >= OPTIMIZE_EVERY_APPENDS) {
        this.#appendedSinceOptimize = 0;
        this.#db.pragma('optimize');
      }
      return results;
    });
  }

  getCertificate(tenantId: string, certificateId: string): Promise<CertificateRow | undefined> {
    return Promise.resolve(
      toCertificate(this.sql.getCertificate.get(tenantId, certificateId) as RawCertificate),
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
    return settle(() => this.#shadow.insert(items));
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
    return settle(() => this.#shadow.putAssumptions(tenantId, assumptionsJson, updatedAt));
  }
}
