// Forward-only schema migrations, one numbered sequence for both engines. Most SQL runs
// unchanged on SQLite and PostgreSQL: booleans are INTEGER 0/1 on both, and text is TEXT. A
// statement that cannot be portable gives one text per engine. Never edit a released
// migration: add a new one.

export type StorageEngine = 'sqlite' | 'postgres';

/** One SQL statement, or one text per engine where the dialects differ. */
export type MigrationStatement = string | Readonly<Record<StorageEngine, string>>;

export interface Migration {
  version: number;
  name: string;
  statements: MigrationStatement[];
}

/** Returns the text of a migration statement for one engine. */
export function statementFor(statement: MigrationStatement, engine: StorageEngine): string {
  return typeof statement === 'string' ? statement : statement[engine];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial certificates, tenants and keys',
    statements: [
      `CREATE TABLE tenants (
        tenant_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        phi_policy TEXT NOT NULL CHECK (phi_policy IN ('flag', 'reject')),
        hmac_secret_sealed TEXT NOT NULL
      )`,
      `CREATE TABLE signing_keys (
        tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
        key_id TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'retired', 'revoked')),
        valid_from TEXT NOT NULL,
        valid_until TEXT,
        public_key_pem TEXT NOT NULL,
        private_key_sealed TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (tenant_id, key_id)
      )`,
      `CREATE TABLE chain_heads (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants (tenant_id),
        chain_sequence BIGINT NOT NULL,
        chain_hash TEXT
      )`,
      `CREATE TABLE certificates (
        tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
        chain_sequence BIGINT NOT NULL,
        certificate_id TEXT NOT NULL UNIQUE,
        issued_at_utc TEXT NOT NULL,
        model_version TEXT NOT NULL,
        governance_policy_version TEXT NOT NULL,
        human_reviewed INTEGER NOT NULL,
        chain_hash TEXT NOT NULL,
        previous_hash TEXT,
        key_id TEXT NOT NULL,
        signed_message TEXT NOT NULL,
        signature TEXT NOT NULL,
        PRIMARY KEY (tenant_id, chain_sequence)
      )`,
      `CREATE INDEX certificates_issued ON certificates (tenant_id, issued_at_utc)`,
      `CREATE TABLE idempotency_keys (
        tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        certificate_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (tenant_id, idempotency_key)
      )`,
    ],
  },
  {
    version: 2,
    name: 'shadow-mode items and revenue assumptions',
    statements: [
      `CREATE TABLE shadow_assumptions (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants (tenant_id),
        revision INTEGER NOT NULL,
        assumptions_json TEXT NOT NULL,
        updated_at TEXT NOT NULL
      )`,
      // PostgreSQL REAL is a 4-byte float and SQLite REAL an 8-byte one, so PostgreSQL gets
      // DOUBLE PRECISION for the same values. The SQLite text is the released one.
      {
        sqlite: `CREATE TABLE shadow_items (
        tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
        item_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('intake', 'analyze')),
        batch_id TEXT,
        note_hash TEXT NOT NULL,
        note_ref_hash TEXT,
        certificate_id TEXT,
        certificate_note_match INTEGER,
        ruleset_version TEXT NOT NULL,
        context_rules_version TEXT NOT NULL,
        assumptions_revision INTEGER NOT NULL,
        conditions_counted INTEGER NOT NULL,
        mean_completeness REAL,
        estimated_value_at_risk_usd BIGINT NOT NULL,
        has_deficit INTEGER NOT NULL,
        result_json TEXT NOT NULL,
        PRIMARY KEY (tenant_id, item_id)
      )`,
        postgres: `CREATE TABLE shadow_items (
        tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
        item_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('intake', 'analyze')),
        batch_id TEXT,
        note_hash TEXT NOT NULL,
        note_ref_hash TEXT,
        certificate_id TEXT,
        certificate_note_match INTEGER,
        ruleset_version TEXT NOT NULL,
        context_rules_version TEXT NOT NULL,
        assumptions_revision INTEGER NOT NULL,
        conditions_counted INTEGER NOT NULL,
        mean_completeness DOUBLE PRECISION,
        estimated_value_at_risk_usd BIGINT NOT NULL,
        has_deficit INTEGER NOT NULL,
        result_json TEXT NOT NULL,
        PRIMARY KEY (tenant_id, item_id)
      )`,
      },
      `CREATE INDEX shadow_items_created ON shadow_items (tenant_id, created_at, item_id)`,
      `CREATE INDEX shadow_items_risk ON shadow_items (tenant_id, estimated_value_at_risk_usd, created_at, item_id)`,
      `CREATE INDEX shadow_items_certificate ON shadow_items (tenant_id, certificate_id)`,
      {
        sqlite: `CREATE TABLE shadow_item_conditions (
        tenant_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        condition_id TEXT NOT NULL,
        counted INTEGER NOT NULL,
        mentioned INTEGER NOT NULL,
        completeness REAL NOT NULL,
        monitor_met INTEGER NOT NULL,
        evaluate_met INTEGER NOT NULL,
        assess_met INTEGER NOT NULL,
        treat_met INTEGER NOT NULL,
        estimated_value_at_risk_usd BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, item_id, condition_id),
        FOREIGN KEY (tenant_id, item_id) REFERENCES shadow_items (tenant_id, item_id)
      )`,
        postgres: `CREATE TABLE shadow_item_conditions (
        tenant_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        condition_id TEXT NOT NULL,
        counted INTEGER NOT NULL,
        mentioned INTEGER NOT NULL,
        completeness DOUBLE PRECISION NOT NULL,
        monitor_met INTEGER NOT NULL,
        evaluate_met INTEGER NOT NULL,
        assess_met INTEGER NOT NULL,
        treat_met INTEGER NOT NULL,
        estimated_value_at_risk_usd BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, item_id, condition_id),
        FOREIGN KEY (tenant_id, item_id) REFERENCES shadow_items (tenant_id, item_id)
      )`,
      },
      `CREATE INDEX shadow_item_conditions_condition ON shadow_item_conditions (tenant_id, condition_id)`,
      `CREATE TABLE shadow_item_gaps (
        tenant_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        condition_id TEXT NOT NULL,
        element TEXT NOT NULL CHECK (element IN ('monitor', 'evaluate', 'assess', 'treat')),
        attributed_cents BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, item_id, condition_id, element),
        FOREIGN KEY (tenant_id, item_id) REFERENCES shadow_items (tenant_id, item_id)
      )`,
      `CREATE TABLE shadow_item_findings (
        tenant_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        rule_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        PRIMARY KEY (tenant_id, item_id, position),
        FOREIGN KEY (tenant_id, item_id) REFERENCES shadow_items (tenant_id, item_id)
      )`,
    ],
  },
  {
    version: 3,
    name: 'key revocation, one active key per tenant and shared rate-limit counters',
    statements: [
      `ALTER TABLE signing_keys ADD COLUMN revoked_at TEXT`,
      `ALTER TABLE signing_keys ADD COLUMN revocation_reason TEXT CHECK (revocation_reason IN ('unspecified', 'key_compromise', 'affiliation_changed', 'superseded', 'cessation_of_operation'))`,
      // At most one active key per tenant, whatever process writes. Rotation retires the old key
      // before it inserts the new one, in one transaction, so a tenant never has none either.
      `CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (tenant_id) WHERE status = 'active'`,
      // NULL takes CDIL_RATE_LIMIT_PER_MINUTE; 0 means no limit for this tenant.
      `ALTER TABLE tenants ADD COLUMN rate_limit_per_minute INTEGER CHECK (rate_limit_per_minute >= 0)`,
      // One row per tenant and one-minute window. The window comes first in the key so that
      // pruning old windows is a range scan of the primary key.
      `CREATE TABLE rate_limit_counters (
        window_start TEXT NOT NULL,
        tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
        request_count BIGINT NOT NULL,
        PRIMARY KEY (window_start, tenant_id)
      )`,
    ],
  },
  {
    version: 4,
    name: 'per-tenant Merkle log, checkpoints and audit events',
    statements: [
      // One row per tenant: the log size and the hashes of its maximal complete subtrees,
      // left to right, as concatenated hex. Appends lock this row after the chain head.
      `CREATE TABLE log_heads (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants (tenant_id),
        tree_size BIGINT NOT NULL,
        frontier TEXT NOT NULL
      )`,
      // Every complete aligned subtree: level L, index i covers leaves [i * 2^L, (i + 1) * 2^L).
      {
        sqlite: `CREATE TABLE log_nodes (
        tenant_id TEXT NOT NULL,
        level INTEGER NOT NULL,
        node_index BIGINT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (tenant_id, level, node_index)
      ) WITHOUT ROWID`,
        postgres: `CREATE TABLE log_nodes (
        tenant_id TEXT NOT NULL,
        level INTEGER NOT NULL,
        node_index BIGINT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (tenant_id, level, node_index)
      )`,
      },
      // Null for certificates issued before the log existed until start-up adds them.
      `ALTER TABLE certificates ADD COLUMN log_index BIGINT`,
      `CREATE UNIQUE INDEX certificates_log_index ON certificates (tenant_id, log_index)`,
      `CREATE TABLE log_keys (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants (tenant_id),
        key_name TEXT NOT NULL,
        public_key TEXT NOT NULL,
        private_key_sealed TEXT NOT NULL,
        created_at TEXT NOT NULL
      )`,
      `CREATE TABLE log_checkpoints (
        tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
        tree_size BIGINT NOT NULL,
        root_hash TEXT NOT NULL,
        note TEXT NOT NULL,
        published_at TEXT NOT NULL,
        timestamp_token TEXT,
        timestamp_attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, tree_size)
      )`,
      `CREATE TABLE audit_events (
        tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
        log_index BIGINT NOT NULL,
        event_id TEXT NOT NULL UNIQUE,
        occurred_at TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        actor_hash TEXT,
        object_type TEXT,
        object_id TEXT,
        event_json TEXT NOT NULL,
        PRIMARY KEY (tenant_id, log_index)
      )`,
      `CREATE INDEX audit_events_time ON audit_events (tenant_id, occurred_at, log_index)`,
      // RFC 3161 timestamps: whether a failed timestamp fails the request, and whether each
      // certificate gets its own timestamp besides the log checkpoints.
      `ALTER TABLE tenants ADD COLUMN timestamp_policy TEXT NOT NULL DEFAULT 'best_effort'
        CHECK (timestamp_policy IN ('best_effort', 'required'))`,
      `ALTER TABLE tenants ADD COLUMN timestamp_certificates INTEGER NOT NULL DEFAULT 0`,
      `ALTER TABLE certificates ADD COLUMN timestamp_token TEXT`,
    ],
  },
];

/** The schema version that added the Merkle log; certificates from before it are backfilled. */
export const LOG_SCHEMA_VERSION = 4;

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/**
 * Raised when the database schema is newer than this release's migrations, for example after a
 * rollback to an older release. Running older code on a newer schema could misread or damage
 * rows, and migrations only go forward, so the fix is to run the newer release again.
 */
export class SchemaTooNewError extends Error {
  override readonly name = 'SchemaTooNewError';
  readonly databaseVersion: number;

  constructor(databaseVersion: number) {
    super(
      `database schema version ${databaseVersion} is newer than version ${LATEST_SCHEMA_VERSION}, ` +
        `the latest this release of cdil supports; upgrade cdil to a release that supports schema ` +
        `version ${databaseVersion} (schema migrations cannot be undone)`,
    );
    this.databaseVersion = databaseVersion;
  }
}

/** Throws SchemaTooNewError when `version` is above LATEST_SCHEMA_VERSION. */
export function assertSchemaSupported(version: number): void {
  if (version > LATEST_SCHEMA_VERSION) {
    throw new SchemaTooNewError(version);
  }
}
