// Forward-only schema migrations. The SQL is written to run unchanged on SQLite and
// PostgreSQL. Never edit a released migration: add a new one.

export interface Migration {
  version: number;
  name: string;
  statements: string[];
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
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
