// The storage interface every engine implements. Services depend on this file only, never on
// an engine, so PostgreSQL and SQLite are interchangeable.

export type PhiPolicy = 'flag' | 'reject';

export interface TenantRow {
  tenant_id: string;
  created_at: string;
  phi_policy: PhiPolicy;
  /** HMAC secret for identifier hashing, sealed under the key-encryption key. */
  hmac_secret_sealed: string;
}

export interface SigningKeyRow {
  tenant_id: string;
  key_id: string;
  algorithm: 'ES256';
  status: 'active' | 'retired' | 'revoked';
  valid_from: string;
  valid_until: string | null;
  public_key_pem: string;
  /** PKCS#8 private key sealed under the key-encryption key. */
  private_key_sealed: string;
  created_at: string;
}

export interface CertificateRow {
  tenant_id: string;
  chain_sequence: number;
  certificate_id: string;
  issued_at_utc: string;
  model_version: string;
  governance_policy_version: string;
  human_reviewed: boolean;
  chain_hash: string;
  previous_hash: string | null;
  key_id: string;
  /** The exact canonical JSON text that was signed. */
  signed_message: string;
  signature: string;
}

export interface ChainLink {
  /** Sequence number the new entry gets (1 for the first). */
  sequence: number;
  /** Chain hash of the entry before it, or null for the first. */
  previousHash: string | null;
}

export interface AppendItem {
  /** Idempotency key scoped to the tenant; absent when the client sent none. */
  idempotencyKey?: string | undefined;
  /** Keyed hash of the request body, compared when the key was seen before. */
  requestHash?: string | undefined;
}

export type AppendResult =
  | { kind: 'created'; row: CertificateRow }
  | { kind: 'replayed'; row: CertificateRow }
  | { kind: 'conflict' };

/** Builds and signs the certificate for one item once its place in the chain is known. */
export type Sealer<T extends AppendItem> = (item: T, link: ChainLink) => CertificateRow;

export interface CertificateFilter {
  issuedFrom?: string | undefined;
  issuedTo?: string | undefined;
  modelVersion?: string | undefined;
  governancePolicyVersion?: string | undefined;
  humanReviewed?: boolean | undefined;
}

export interface MigrationReport {
  applied: string[];
  current: number;
}

export class TenantExistsError extends Error {
  override readonly name = 'TenantExistsError';
}

export interface Store {
  readonly engine: 'sqlite' | 'postgres';
  migrate(): Promise<MigrationReport>;
  ping(): Promise<void>;
  close(): Promise<void>;

  /** Creates a tenant with its first signing key in one transaction; throws TenantExistsError. */
  createTenant(tenant: TenantRow, key: SigningKeyRow): Promise<void>;
  getTenant(tenantId: string): Promise<TenantRow | undefined>;
  listTenants(): Promise<TenantRow[]>;
  listKeys(tenantId: string): Promise<SigningKeyRow[]>;

  /**
   * Appends certificates to the tenant's chain in one transaction, in item order. An item whose
   * idempotency key exists yields the stored certificate (same request hash) or a conflict.
   * Implementations MUST serialize appends per tenant through the database, so that concurrent
   * writers, in this process or others, never fork the chain, and MUST NOT return before commit.
   */
  appendCertificates<T extends AppendItem>(
    tenantId: string,
    items: T[],
    seal: Sealer<T>,
  ): Promise<AppendResult[]>;

  getCertificate(tenantId: string, certificateId: string): Promise<CertificateRow | undefined>;
  getCertificateBySequence(tenantId: string, sequence: number): Promise<CertificateRow | undefined>;
  /** Lists certificates in chain order after `afterSequence`, at most `limit` rows. */
  queryCertificates(
    tenantId: string,
    filter: CertificateFilter,
    afterSequence: number,
    limit: number,
  ): Promise<CertificateRow[]>;
}
