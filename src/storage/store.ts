// The storage interface every engine implements. Services depend on this file only, never on
// an engine, so PostgreSQL and SQLite are interchangeable.
import type { RevocationReason } from '../core/key.ts';

export type PhiPolicy = 'flag' | 'reject';
/** `required`: a timestamp the TSA cannot give fails the request. `best_effort`: it is retried later. */
export type TimestampPolicy = 'best_effort' | 'required';

export interface TenantRow {
  tenant_id: string;
  created_at: string;
  phi_policy: PhiPolicy;
  /** HMAC secret for identifier hashing, sealed under the key-encryption key. */
  hmac_secret_sealed: string;
  timestamp_policy: TimestampPolicy;
  /** Whether each certificate gets its own RFC 3161 timestamp, besides the log checkpoints. */
  timestamp_certificates: boolean;
  /** Issuance requests per minute; null takes the configured default, 0 means no limit. */
  rate_limit_per_minute: number | null;
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
  /** Set when status is revoked. */
  revoked_at: string | null;
  revocation_reason: RevocationReason | null;
}

/** A tenant as created: it starts without a rate-limit override. */
export type NewTenantRow = Omit<TenantRow, 'rate_limit_per_minute'>;

/** A key row as inserted: a new key is never revoked. */
export type NewSigningKeyRow = Omit<SigningKeyRow, 'revoked_at' | 'revocation_reason'>;

/** A generated key before the store places it in time; the store sets status and validity. */
export type NewSigningKey = Pick<
  SigningKeyRow,
  'tenant_id' | 'key_id' | 'algorithm' | 'public_key_pem' | 'private_key_sealed'
>;

/** The outcome of a rotation: the key that was active and the key that replaced it. */
export interface KeyReplacement {
  previous: SigningKeyRow;
  current: SigningKeyRow;
}

export interface KeyRevocation {
  reason: RevocationReason;
  /** Replaces the key when it is the active one; without it, revoking the active key fails. */
  replacement?: NewSigningKey | undefined;
}

export type KeyRevocationResult =
  | { kind: 'revoked'; key: SigningKeyRow; replacement: SigningKeyRow | undefined }
  | { kind: 'tenant_not_found' }
  | { kind: 'key_not_found' }
  | { kind: 'already_revoked'; key: SigningKeyRow }
  | { kind: 'active_key'; key: SigningKeyRow };

/** Requests one process admitted for a tenant since its last sync; 0 only reads the total. */
export interface RateLimitCount {
  tenantId: string;
  count: number;
}

export interface RateLimitTotal {
  tenantId: string;
  /** Requests counted by all processes in the window, including the ones just added. */
  total: number;
  /** The tenant's override, as in TenantRow.rate_limit_per_minute. */
  limitPerMinute: number | null;
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
  /** Position of the certificate's leaf in the tenant's Merkle log; set when it is appended. */
  log_index?: number | null | undefined;
  /** RFC 3161 timestamp token over the certificate's timestamp input, base64 DER. */
  timestamp_token?: string | null | undefined;
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
  /**
   * Builds the audit event recorded with the certificate, in the same transaction, as the log
   * leaf right after the certificate's leaf.
   */
  auditEvent?: ((row: CertificateRow) => NewAuditEvent) | undefined;
  /**
   * Key the item will be signed with. When set, the item is sealed only if this is the
   * tenant's active key inside the append transaction, and yields `key_inactive` otherwise.
   */
  signingKeyId?: string | undefined;
}

export type AppendResult =
  | { kind: 'created'; row: CertificateRow }
  | { kind: 'replayed'; row: CertificateRow }
  | { kind: 'conflict' }
  | { kind: 'key_inactive'; activeKeyId: string | undefined }
  | { kind: 'tenant_locked' };

export interface AppendOptions {
  /**
   * Leaves out a held tenant even when it is the only group, so that a caller whose appends run
   * one at a time is not held up by one tenant for the whole lock timeout.
   */
  leaveOutLocked?: boolean | undefined;
}

/** One tenant's items in a multi-tenant append. */
export interface AppendGroup<T extends AppendItem> {
  tenantId: string;
  items: T[];
}

/** Throws a TypeError when two groups of a multi-tenant append name the same tenant. */
export function checkDistinctTenants(groups: readonly { tenantId: string }[]): void {
  const seen = new Set<string>();
  for (const { tenantId } of groups) {
    if (seen.has(tenantId)) {
      throw new TypeError(
        `tenant ${tenantId} appears in more than one group of the append; merge its items into one group`,
      );
    }
    seen.add(tenantId);
  }
}

/**
 * Builds and signs the certificate for one item once its place in the chain is known. An engine
 * may call it again for the same item when it retries an append, so it must have no side effects.
 */
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

/**
 * Raised when the database could not take an operation in time, and nothing was stored: a lock
 * held by another transaction (the SQLite write lock, a PostgreSQL row lock), or on PostgreSQL
 * no free connection in the pool.
 */
export class StoreBusyError extends Error {
  override readonly name = 'StoreBusyError';
}

/**
 * Raised when the database could not take a write because its storage is full, and nothing was
 * stored: SQLITE_FULL on SQLite (a full disk, or a database at its max_page_count), SQLSTATE
 * 53100 (disk_full) on PostgreSQL. A later write can succeed once space is freed.
 */
export class StoreFullError extends Error {
  override readonly name = 'StoreFullError';
}

/**
 * Raised by appendAuditEvents when the id of one of its events is already stored, which
 * happens when a retry follows a try that committed but whose reply was lost. Nothing of the
 * failed append was stored.
 */
export class AuditEventExistsError extends Error {
  override readonly name = 'AuditEventExistsError';
}

/**
 * Raised when the connection to the database failed during an operation or could not be opened.
 * The failure's own error is the `cause`. A write whose COMMIT reached the server before the
 * connection failed may have been stored, so its outcome is unknown.
 */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
}

/**
 * Logger for failures that a store or service handles itself and only reports, such as a pooled
 * connection that the database closed. pino and Fastify loggers provide it.
 */
export interface WarningLogger {
  warn(details: object, message: string): void;
}

/** Renders an Error as its code and message, because JSON.stringify turns it into `{}`. */
function describeValue(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${value.message}` : value.message;
  }
  return value;
}

/**
 * Writes each line as a process warning on stderr. It is the default for commands, which keep no
 * JSON log, until a server attaches its own logger.
 */
export const processWarningLogger: WarningLogger = {
  warn: (details, message) =>
    process.emitWarning(`${message}: ${JSON.stringify(details, describeValue)}`),
};

/** The tenant's Merkle log: its size and the hashes of its maximal complete subtrees. */
export interface LogHeadRow {
  tree_size: number;
  /** Subtree hashes, largest (leftmost) first, as concatenated lowercase hex. */
  frontier: string;
}

/** A complete aligned subtree: level L, index i covers leaves [i * 2^L, (i + 1) * 2^L). */
export interface LogNodeRow {
  level: number;
  node_index: number;
  /** Lowercase hex SHA-256. */
  hash: string;
}

/** The tenant's checkpoint signing key (Ed25519). */
export interface LogKeyRow {
  tenant_id: string;
  /** Key name in signed notes; also the log origin. */
  key_name: string;
  /** Raw 32-byte public key, base64. */
  public_key: string;
  /** PKCS#8 private key sealed under the key-encryption key. */
  private_key_sealed: string;
  created_at: string;
}

export interface CheckpointRow {
  tenant_id: string;
  tree_size: number;
  /** Lowercase hex root hash. */
  root_hash: string;
  /** The signed note text. */
  note: string;
  published_at: string;
  /** RFC 3161 timestamp token over the note bytes, base64 DER; null until obtained. */
  timestamp_token: string | null;
  timestamp_attempts: number;
}

/** An audit event before it has a place in the log. Holds no PHI: identifiers are keyed hashes. */
export interface NewAuditEvent {
  event_id: string;
  occurred_at: string;
  action: string;
  outcome: string;
  actor_hash: string | null;
  object_type: string | null;
  object_id: string | null;
  /** Canonical JSON of the event: the exact bytes of its log leaf. */
  event_json: string;
}

export interface AuditEventRow extends NewAuditEvent {
  tenant_id: string;
  log_index: number;
}

/** One log leaf with the stored bytes it was made from. */
export interface LogEntry {
  log_index: number;
  kind: 'certificate' | 'audit_event';
  /** certificate_id or event_id. */
  id: string;
  /** The leaf bytes as text: a certificate's signed message, or an audit event's JSON. */
  data: string;
}

export interface AuditEventFilter {
  action?: string | undefined;
  outcome?: string | undefined;
  /** Inclusive lower bound of occurred_at. */
  occurredFrom?: string | undefined;
  /** Exclusive upper bound of occurred_at. */
  occurredTo?: string | undefined;
}

export interface LogStore {
  getLogHead(tenantId: string): Promise<LogHeadRow | undefined>;
  /** Returns the stored nodes among `refs`; missing ones are absent from the result. */
  getLogNodes(
    tenantId: string,
    refs: readonly { level: number; index: number }[],
  ): Promise<LogNodeRow[]>;
  /** Lists the stored leaves with index in [fromIndex, toIndex), in log order. */
  listLogEntries(tenantId: string, fromIndex: number, toIndex: number): Promise<LogEntry[]>;
  /**
   * Appends audit events as log leaves in one transaction and returns them with their indexes.
   * Raises AuditEventExistsError, storing nothing, when an event's id is already stored.
   */
  appendAuditEvents(tenantId: string, events: NewAuditEvent[]): Promise<AuditEventRow[]>;
  /** Returns the stored audit event with this id, of whichever tenant, or undefined. */
  getAuditEvent(eventId: string): Promise<AuditEventRow | undefined>;
  listAuditEvents(
    tenantId: string,
    filter: AuditEventFilter,
    afterIndex: number,
    limit: number,
  ): Promise<AuditEventRow[]>;
  /** Stores the key unless the tenant has one, and returns the stored key. */
  putLogKey(row: LogKeyRow): Promise<LogKeyRow>;
  getLogKey(tenantId: string): Promise<LogKeyRow | undefined>;
  /** Stores a checkpoint unless one exists at that size, and returns the stored one. */
  putCheckpoint(row: CheckpointRow): Promise<CheckpointRow>;
  getLatestCheckpoint(tenantId: string): Promise<CheckpointRow | undefined>;
  getCheckpoint(tenantId: string, treeSize: number): Promise<CheckpointRow | undefined>;
  /** Records a timestamp token, or a failed attempt when `token` is null. */
  setCheckpointTimestamp(tenantId: string, treeSize: number, token: string | null): Promise<void>;
  /** Checkpoints still waiting for a timestamp, oldest first. */
  listUntimestampedCheckpoints(limit: number): Promise<CheckpointRow[]>;

  // Reads for whole-ledger verification, which walks the log in pages and trusts no stored
  // count or head to tell it where the rows are.

  /** Lists the certificates with log index in [fromIndex, toIndex), in log order. */
  listLogCertificates(
    tenantId: string,
    fromIndex: number,
    toIndex: number,
  ): Promise<CertificateRow[]>;
  /** Lists at most `limit` certificates and audit events with a negative log index, lowest first. */
  listLogEntriesBelowZero(tenantId: string, limit: number): Promise<LogEntry[]>;
  /** Lists at most `limit` certificates without a log index, in chain order. */
  listUnloggedCertificates(tenantId: string, limit: number): Promise<CertificateRow[]>;
  /** Lists the stored nodes of one level with node index in [fromIndex, toIndex), in order. */
  listLogNodes(
    tenantId: string,
    level: number,
    fromIndex: number,
    toIndex: number,
  ): Promise<LogNodeRow[]>;
  /** Returns the smallest log index at or after `fromIndex` of any certificate or audit event. */
  nextLogIndex(tenantId: string, fromIndex: number): Promise<number | undefined>;
  /** Lists at most `limit` checkpoints larger than `afterSize`, smallest first. */
  listCheckpoints(tenantId: string, afterSize: number, limit: number): Promise<CheckpointRow[]>;
}

export interface Store extends ShadowStore, LogStore {
  readonly engine: 'sqlite' | 'postgres';
  migrate(): Promise<MigrationReport>;
  /** Returns the highest applied migration version, or 0 when none has been applied. */
  schemaVersion(): Promise<number>;
  ping(): Promise<void>;
  /**
   * Returns the time, in ms since the epoch, of the last write that failed with StoreFullError.
   * Returns undefined when no write failed that way, or when a write committed after the failure.
   * Only this process's writes count.
   */
  lastStorageFullFailure(): number | undefined;
  close(): Promise<void>;

  /**
   * Creates a tenant with its first signing key in one transaction; throws TenantExistsError.
   * `auditEvent`, when given, becomes the first leaf of the tenant's log in that transaction.
   */
  createTenant(
    tenant: NewTenantRow,
    key: NewSigningKeyRow,
    auditEvent?: NewAuditEvent,
  ): Promise<void>;
  getTenant(tenantId: string): Promise<TenantRow | undefined>;
  listTenants(): Promise<TenantRow[]>;
  listKeys(tenantId: string): Promise<SigningKeyRow[]>;

  /**
   * Retires the tenant's active key and inserts `key` as the new active key, in one
   * transaction that holds the tenant's chain head lock, so it is ordered with every append.
   * The old key is valid until, and the new key valid from, one instant read under that lock
   * (see rotationInstant). Returns undefined when the tenant does not exist.
   * `auditEvent`, when given, is appended to the tenant's log in the same transaction, so the
   * rotation and its event are stored together or not at all.
   */
  rotateSigningKey(
    tenantId: string,
    key: NewSigningKey,
    now: () => Date,
    auditEvent?: NewAuditEvent,
  ): Promise<KeyReplacement | undefined>;
  /**
   * Marks a key revoked, in one transaction under the chain head lock. An active key is
   * revoked only together with its replacement, which becomes active as in rotateSigningKey.
   * `auditEvent`, when given, is appended to the tenant's log in the same transaction, and only
   * when the result is `revoked`.
   */
  revokeSigningKey(
    tenantId: string,
    keyId: string,
    revocation: KeyRevocation,
    now: () => Date,
    auditEvent?: NewAuditEvent,
  ): Promise<KeyRevocationResult>;
  /**
   * Sets the tenant's rate-limit override; returns false when the tenant does not exist.
   * `auditEvent`, when given, is appended to the tenant's log in the same transaction as the
   * change, and is not stored when the tenant does not exist.
   */
  setTenantRateLimit(
    tenantId: string,
    perMinute: number | null,
    auditEvent?: NewAuditEvent,
  ): Promise<boolean>;
  /**
   * Adds each positive count to the tenant's counter row for the window, creating the row, and
   * returns each existing tenant's total for the window with its override. One call is one
   * transaction, and each tenant may appear in `counts` only once.
   */
  syncRateLimitCounters(windowStart: string, counts: RateLimitCount[]): Promise<RateLimitTotal[]>;
  /** Deletes counter rows of windows that started before `windowStart`; returns how many. */
  pruneRateLimitCounters(windowStart: string): Promise<number>;

  /**
   * Appends certificates to the tenant's chain in one transaction, in item order. An item whose
   * idempotency key exists yields the stored certificate (same request hash) or a conflict. An
   * item with a signingKeyId that is not the active key at that point yields key_inactive.
   * Implementations MUST serialize appends per tenant through the database, so that concurrent
   * writers, in this process or others, never fork the chain, and MUST NOT return before commit.
   */
  appendCertificates<T extends AppendItem>(
    tenantId: string,
    items: T[],
    seal: Sealer<T>,
  ): Promise<AppendResult[]>;
  /**
   * Appends several tenants' items in one transaction, as appendCertificates does for each
   * group, and returns each group's results in group order. The tenant ids of `groups` MUST
   * differ. Either every group is stored or none is. One commit for many tenants is what makes
   * issuance for many tenants at once cost about as much per certificate as for one tenant.
   * With more than one group, or with `options.leaveOutLocked`, an engine with per-tenant locks
   * may leave out a tenant whose chain another transaction holds for long, instead of waiting for
   * it. Each of that group's items then yields `tenant_locked` and nothing of it is stored, so
   * the caller appends it again alone, without the option.
   */
  appendCertificateGroups<T extends AppendItem>(
    groups: readonly AppendGroup<T>[],
    seal: Sealer<T>,
    options?: AppendOptions,
  ): Promise<AppendResult[][]>;

  getCertificate(tenantId: string, certificateId: string): Promise<CertificateRow | undefined>;
  /** The tenant's chain head: the sequence and chain hash the next append links to. */
  getChainHead(
    tenantId: string,
  ): Promise<{ chain_sequence: number; chain_hash: string | null } | undefined>;
  getCertificateBySequence(tenantId: string, sequence: number): Promise<CertificateRow | undefined>;
  /** Lists certificates in chain order after `afterSequence`, at most `limit` rows. */
  queryCertificates(
    tenantId: string,
    filter: CertificateFilter,
    afterSequence: number,
    limit: number,
  ): Promise<CertificateRow[]>;
}

export type ShadowSource = 'intake' | 'analyze';
export type ShadowElement = 'monitor' | 'evaluate' | 'assess' | 'treat';

/** One scored note. Holds hashes and offsets only, never note text or a client reference. */
export interface ShadowItemRow {
  tenant_id: string;
  item_id: string;
  created_at: string;
  source: ShadowSource;
  batch_id: string | null;
  /** SHA-256 of the note text, hex. */
  note_hash: string;
  /** Keyed hash of the client's note reference under the tenant secret. */
  note_ref_hash: string | null;
  certificate_id: string | null;
  /** Whether the linked certificate's note_hash equals note_hash; null without a link. */
  certificate_note_match: boolean | null;
  ruleset_version: string;
  context_rules_version: string;
  assumptions_revision: number;
  conditions_counted: number;
  mean_completeness: number | null;
  estimated_value_at_risk_usd: number;
  has_deficit: boolean;
  /** The scoring result without note text, as JSON. */
  result_json: string;
}

export interface ShadowConditionRow {
  condition_id: string;
  counted: boolean;
  /** Whether the note mentions the condition at all, counted or not. */
  mentioned: boolean;
  completeness: number;
  met: Record<ShadowElement, boolean>;
  estimated_value_at_risk_usd: number;
}

export interface ShadowGapRow {
  condition_id: string;
  element: ShadowElement;
  /** The share of the condition's value at risk attributed to this missing element, in cents. */
  attributed_cents: number;
}

export interface ShadowFindingRow {
  rule_id: string;
  kind: string;
}

export interface NewShadowItem {
  item: ShadowItemRow;
  conditions: ShadowConditionRow[];
  gaps: ShadowGapRow[];
  findings: ShadowFindingRow[];
}

export interface ShadowItemFilter {
  /** Only items where this condition is counted. */
  conditionId?: string | undefined;
  hasDeficit?: boolean | undefined;
  /** Inclusive lower bound of created_at (ISO 8601 UTC). */
  createdFrom?: string | undefined;
  /** Exclusive upper bound of created_at (ISO 8601 UTC). */
  createdTo?: string | undefined;
  source?: ShadowSource | undefined;
  batchId?: string | undefined;
  certificateId?: string | undefined;
}

/** Position after which a page starts, in the page's sort order. */
export interface ShadowItemCursor {
  createdAt: string;
  itemId: string;
  /** Set for the risk order only. */
  valueAtRisk?: number | undefined;
}

/**
 * `recent`: newest first (created_at, then item_id, descending). `risk`: largest estimated
 * value at risk first, then newest first; items with no value at risk are left out.
 */
export type ShadowItemOrder = 'recent' | 'risk';

export interface ShadowConditionAggregate {
  condition_id: string;
  items_mentioned: number;
  items_counted: number;
  completeness_sum: number;
  met: Record<ShadowElement, number>;
  fully_supported: number;
  estimated_value_at_risk_usd: number;
}

export interface ShadowGapAggregate {
  condition_id: string;
  element: ShadowElement;
  items: number;
  attributed_cents: number;
}

export interface ShadowAggregate {
  items: number;
  items_by_source: Record<ShadowSource, number>;
  items_with_counted_condition: number;
  items_with_deficit: number;
  counted_condition_instances: number;
  completeness_sum: number;
  met: Record<ShadowElement, number>;
  estimated_value_at_risk_usd: number;
  linked_items: number;
  linked_certificates: number;
  /** Linked items whose note hash equals the certificate's note hash. */
  linked_note_matches: number;
  conditions: ShadowConditionAggregate[];
  gaps: ShadowGapAggregate[];
  findings: { rule_id: string; kind: string; items: number }[];
  /** Items per assumptions revision, to show which assumptions the stored values used. */
  assumptions_revisions: { revision: number; items: number }[];
}

export interface ShadowAssumptionsRow {
  tenant_id: string;
  revision: number;
  assumptions_json: string;
  updated_at: string;
}

/** Shadow-mode storage; part of Store, listed separately for readability. */
export interface ShadowStore {
  /** Inserts items with their condition, gap and finding rows in one transaction. */
  insertShadowItems(items: NewShadowItem[]): Promise<void>;
  getShadowItem(tenantId: string, itemId: string): Promise<ShadowItemRow | undefined>;
  /** Lists at most `limit` items in `order`, after `cursor` when given. */
  listShadowItems(
    tenantId: string,
    filter: ShadowItemFilter,
    order: ShadowItemOrder,
    cursor: ShadowItemCursor | undefined,
    limit: number,
  ): Promise<ShadowItemRow[]>;
  /** Counts and sums over the tenant's items in the created_at range of `filter`. */
  aggregateShadowItems(tenantId: string, filter: ShadowItemFilter): Promise<ShadowAggregate>;
  /**
   * Lists distinct linked certificate ids, most recently linked first, at most `limit`, in the
   * created_at range of `filter`.
   */
  listLinkedCertificateIds(
    tenantId: string,
    filter: ShadowItemFilter,
    limit: number,
  ): Promise<string[]>;
  getShadowAssumptions(tenantId: string): Promise<ShadowAssumptionsRow | undefined>;
  /** Stores new assumptions with the next revision number, in one transaction, and returns them. */
  putShadowAssumptions(
    tenantId: string,
    assumptionsJson: string,
    updatedAt: string,
  ): Promise<ShadowAssumptionsRow>;
}
