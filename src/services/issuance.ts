// Issuance: screen the request, hash identifiers under the tenant secret, and append a signed
// certificate to the tenant's chain. Concurrent requests, of one tenant or of many, are batched
// into one append transaction; the chain position, chain hash and signature are computed inside it.
// The append checks that the signing key is still the tenant's active key, so a key rotated or
// revoked by another process is never used after the change, whatever this process has cached.
import { randomBytes } from 'node:crypto';
import { canonicalJson } from '../core/canonical.ts';
import {
  CERTIFICATE_FORMAT_VERSION,
  DEFAULT_ATTESTATION_MEANING,
  governancePolicyHash,
  sha256Hex,
  SIGNATURE_ALGORITHM,
  type AttestationMeaning,
  type Certificate,
  type SignedMessage,
} from '../core/certificate.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { toBase64 } from '../core/encoding.ts';
import {
  StoreBusyError,
  type AppendGroup,
  type AppendItem,
  type AppendResult,
  type CertificateRow,
  type ChainLink,
  type NewAuditEvent,
  type Store,
} from '../storage/store.ts';
import { SoftwareSigner } from '../keys/signer.ts';
import {
  AppendThreadStartError,
  type SqliteAppendThread,
  type ThreadGroup,
  type ThreadKey,
} from './append-thread.ts';
import { buildAuditEvent, INTERNAL_CONTEXT, type AuditContext } from './audit.ts';
import type { Clock } from './clock.ts';
import { AppError, fromStoreError } from './errors.ts';
import type { Keyring, TenantKeys } from './keyring.ts';
import { screenForPhi } from './phi-screen.ts';
import { certificateTimestampInput } from '../core/verify/timestamp-steps.ts';
import type { TimestampAuthority } from './tsa-client.ts';
import type { RateLimiter } from './rate-limiter.ts';
import { timeOrderedUuid } from './time-ordered-id.ts';
import { sealCertificate, type UnsealedMessage } from './seal.ts';

export interface IssueRequest {
  model_name: string;
  model_version: string;
  prompt_version: string;
  governance_policy_version: string;
  note_text: string;
  human_reviewed: boolean;
  human_reviewer_id?: string | undefined;
  /** Meaning of the reviewer's attestation; only with human_reviewed, default reviewed_and_approved. */
  attestation_meaning?: AttestationMeaning | undefined;
  encounter_id: string;
  patient_reference: string;
}

/** Free-text fields stored inside the certificate; these are always screened for PHI. */
const STORED_TEXT_FIELDS = [
  'model_name',
  'model_version',
  'prompt_version',
  'governance_policy_version',
] as const;

export interface PhiScreening {
  policy: 'flag' | 'reject';
  findings: { kind: string; count: number }[];
}

export interface IssueOutcome {
  certificate: Certificate;
  replayed: boolean;
  phiScreening: PhiScreening;
}

interface PendingItem extends AppendItem {
  message: UnsealedMessage;
  /** The certificate.issue event, which auditEvent returns. */
  event: NewAuditEvent;
  keys: TenantKeys;
  /** RFC 3161 token over certificateTimestampInput, base64 DER, when the tenant requires one. */
  timestampToken: string | null;
  /** Times the item was signed again because the key changed before its append. */
  resigned: number;
  resolve: (result: { row: CertificateRow; replayed: boolean }) => void;
  reject: (error: unknown) => void;
}

/** Maximum number of items in one append transaction, over all its tenants. */
export const MAX_BATCH = 256;

/**
 * Append transactions one process keeps in flight, besides those of locked tenants. SQLite runs
 * one write transaction at a time, so a second would only wait for the lock. PostgreSQL could run
 * a second beside the first, but the requests queued meanwhile would then split into two smaller
 * batches, and every transaction costs PostgreSQL and this process a fixed amount of CPU. With 2
 * gateway processes, 50 tenants and 64 connections, one in flight carried 11.5 certificates per
 * transaction against 8.0 with two, and more certificates per second (docs/benchmarks.md).
 */
const BATCHES_IN_FLIGHT = 1;

/**
 * Batches of one locked tenant each that one process keeps in flight besides those above. A
 * multi-tenant append on PostgreSQL leaves out a tenant that another transaction holds, and
 * that tenant is then appended alone, waiting for its lock, without holding up the others.
 * Such an append waits at most the lock timeout in all, however many processes queue for the
 * same tenant (see the statement_timeout in src/storage/postgres/append.ts).
 */
const LOCKED_TENANT_BATCHES_IN_FLIGHT = 2;

/** Result of one append: the tenants whose items are being signed again, and any failure. */
interface BatchOutcome {
  resigning: Set<string>;
  /** Set when the database was busy or unreachable, so the batch's items were rejected. */
  failure?: AppError;
}

/**
 * Times one request is signed again after its key stopped being active. Each retry follows a
 * rotation or revocation committed while the request waited. A request can wait through several
 * when each re-signing waits for a slow TSA, so frequent rotations can exhaust this.
 */
const MAX_RESIGN = 3;

const NONCE_BYTES = 16;
const NONCE_POOL_BYTES = NONCE_BYTES * 256;
let noncePool = Buffer.alloc(0);
let noncePoolOffset = 0;

/** Returns 128 random bits as hex, drawing from a pooled buffer to save one syscall per call. */
function nextNonce(): string {
  if (noncePoolOffset + NONCE_BYTES > noncePool.length) {
    noncePool = randomBytes(NONCE_POOL_BYTES);
    noncePoolOffset = 0;
  }
  const nonce = noncePool.toString('hex', noncePoolOffset, noncePoolOffset + NONCE_BYTES);
  noncePoolOffset += NONCE_BYTES;
  return nonce;
}

export function certificateFromRow(row: CertificateRow): Certificate {
  const message = JSON.parse(row.signed_message) as SignedMessage;
  return { ...message, signature: row.signature, signature_algorithm: SIGNATURE_ALGORITHM };
}

export class IssuanceService {
  readonly #store: Store;
  readonly #keyring: Keyring;
  readonly #clock: Clock;
  readonly #rateLimiter: RateLimiter | undefined;
  /** Items waiting for an append, by tenant, in the order the tenants' queues were started. */
  readonly #queues = new Map<string, PendingItem[]>();
  /** Tenants with a batch in flight; a tenant has at most one, which keeps its items in order. */
  readonly #appending = new Set<string>();
  /** Batches in flight in this process, not counting those of locked tenants. */
  #batchesInFlight = 0;
  /** Tenants left out of a multi-tenant append because another transaction held them. */
  readonly #lockedTenants = new Set<string>();
  /** Batches of one locked tenant in flight. */
  #lockedBatchesInFlight = 0;
  #pumpScheduled = false;

  readonly #tsa: TimestampAuthority | undefined;
  readonly #appendThread: SqliteAppendThread | undefined;

  /**
   * With `appendThread`, appends run on that thread, which seals with its own system clock. Give
   * it only with a SQLite store on the same file and the system clock.
   */
  constructor(
    store: Store,
    keyring: Keyring,
    clock: Clock,
    rateLimiter?: RateLimiter,
    tsa?: TimestampAuthority,
    appendThread?: SqliteAppendThread,
  ) {
    this.#store = store;
    this.#keyring = keyring;
    this.#clock = clock;
    this.#rateLimiter = rateLimiter;
    this.#tsa = tsa;
    this.#appendThread = appendThread;
  }

  /**
   * Timestamps the certificate statement for tenants that ask for it, before the chain is
   * locked, so a slow TSA never holds up other appends. A failure rejects the request for a
   * `required` policy and leaves the certificate without a token for `best_effort` (the log
   * checkpoints, which are retried, still give it a trusted time).
   */
  async #certificateTimestamp(
    tenant: TenantKeys['tenant'],
    message: PendingItem['message'],
  ): Promise<string | null> {
    if (!tenant.timestamp_certificates) {
      return null;
    }
    const required = tenant.timestamp_policy === 'required';
    if (!this.#tsa) {
      if (required) {
        throw new AppError(
          'TIMESTAMP_UNAVAILABLE',
          'the tenant requires certificate timestamps but no TSA is configured (TSA_URL)',
        );
      }
      return null;
    }
    try {
      return toBase64(await this.#tsa.timestamp(certificateTimestampInput(message)));
    } catch (error) {
      if (required) {
        throw new AppError(
          'TIMESTAMP_UNAVAILABLE',
          'the time-stamping authority did not timestamp the certificate; nothing was stored, retry later',
          { cause: error },
        );
      }
      return null;
    }
  }

  /**
   * Returns the issuance time for a certificate signed with `keys`: now, or the key's
   * valid_from when this host's clock is behind the host that created the key, so that the
   * certificate always falls inside its key's validity window.
   */
  #issuedAt(keys: TenantKeys): string {
    const now = this.#clock.now().getTime();
    return new Date(Math.max(now, Date.parse(keys.activeKey.valid_from))).toISOString();
  }

  /**
   * Certifies one note. The `certificate.issue` audit event is appended in the certificate's
   * own transaction, right after its leaf, and only when a new certificate is created.
   */
  async issue(
    tenantId: string,
    request: IssueRequest,
    idempotencyKey?: string,
    audit: AuditContext = INTERNAL_CONTEXT,
  ): Promise<IssueOutcome> {
    checkReviewer(request);
    checkWellFormed(request as unknown as Record<string, unknown>);
    const keys = await this.#keyring.get(tenantId);
    if (!keys) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
    this.#rateLimiter?.admit(tenantId);
    screenStoredFields(request);
    const screening = screenForPhi(foldForScreening(request.note_text));
    const phiScreening: PhiScreening = {
      policy: keys.tenant.phi_policy,
      findings: screening.findings,
    };
    if (keys.tenant.phi_policy === 'reject' && screening.total > 0) {
      throw new AppError(
        'PHI_DETECTED',
        'note_text contains text that looks like PHI and the tenant policy is reject',
        {
          extra: { findings: screening.findings },
        },
      );
    }
    const issuedAt = this.#issuedAt(keys);
    const issuedAtDate = new Date(issuedAt);
    const reviewerHash =
      request.human_reviewed && request.human_reviewer_id !== undefined
        ? keys.hashIdentifier('human_reviewer_id', request.human_reviewer_id)
        : null;
    const message: UnsealedMessage = {
      attestation_meaning: request.human_reviewed
        ? (request.attestation_meaning ?? DEFAULT_ATTESTATION_MEANING)
        : null,
      certificate_id: timeOrderedUuid(issuedAtDate.getTime()),
      encounter_id_hash: keys.hashIdentifier('encounter_id', request.encounter_id),
      format_version: CERTIFICATE_FORMAT_VERSION,
      governance_policy_hash: governancePolicyHash(nodeCrypto, request.governance_policy_version),
      governance_policy_version: request.governance_policy_version,
      human_attested_at_utc: request.human_reviewed ? issuedAt : null,
      human_reviewed: request.human_reviewed,
      human_reviewer_id_hash: reviewerHash,
      issued_at_utc: issuedAt,
      key_id: keys.signer.keyId,
      model_name: request.model_name,
      model_version: request.model_version,
      nonce: nextNonce(),
      note_hash: sha256Hex(nodeCrypto, request.note_text),
      patient_hash: keys.hashIdentifier('patient_reference', request.patient_reference),
      prompt_version: request.prompt_version,
      tenant_id: tenantId,
    };
    const auditEvent = buildAuditEvent(
      tenantId,
      (kind, identifier) => keys.hashIdentifier(kind, identifier),
      audit,
      {
        action: 'certificate.issue',
        outcome: 'success',
        object: { type: 'certificate', id: message.certificate_id },
      },
      issuedAtDate,
    );
    const requestHash =
      idempotencyKey === undefined
        ? undefined
        : keys.hashIdentifier('idempotency_request', canonicalJson(request));
    const timestampToken = await this.#certificateTimestamp(keys.tenant, message);
    const { row, replayed } = await new Promise<{ row: CertificateRow; replayed: boolean }>(
      (resolve, reject) => {
        this.#enqueue(tenantId, {
          // Clients often build idempotency keys from encounter ids, so only a keyed hash is stored.
          idempotencyKey:
            idempotencyKey === undefined
              ? undefined
              : keys.hashIdentifier('idempotency_key', idempotencyKey),
          requestHash,
          signingKeyId: keys.signer.keyId,
          auditEvent: () => auditEvent,
          event: auditEvent,
          message,
          keys,
          timestampToken,
          resigned: 0,
          resolve,
          reject,
        });
      },
    );
    return { certificate: certificateFromRow(row), replayed, phiScreening };
  }

  #enqueue(tenantId: string, item: PendingItem): void {
    let queue = this.#queues.get(tenantId);
    if (!queue) {
      queue = [];
      this.#queues.set(tenantId, queue);
    }
    queue.push(item);
    // Waiting one turn of the event loop lets requests that arrived together share a batch.
    if (!this.#pumpScheduled) {
      this.#pumpScheduled = true;
      setImmediate(() => {
        this.#pumpScheduled = false;
        this.#pump();
      });
    }
  }

  /**
   * Starts batches while fewer than BATCHES_IN_FLIGHT are running. A batch takes the queued
   * items of every tenant without a batch in flight, up to MAX_BATCH in all, so many tenants
   * share one transaction and one commit. A tenant whose queue is not emptied moves to the back,
   * so a busy tenant cannot crowd out the others.
   */
  #pump(): void {
    this.#pumpLockedTenants();
    while (this.#batchesInFlight < BATCHES_IN_FLIGHT) {
      const groups: AppendGroup<PendingItem>[] = [];
      let size = 0;
      for (const [tenantId, queue] of this.#queues) {
        if (size >= MAX_BATCH) {
          break;
        }
        if (this.#appending.has(tenantId) || this.#lockedTenants.has(tenantId)) {
          continue;
        }
        groups.push(this.#takeGroup(tenantId, queue, MAX_BATCH - size));
        size += groups.at(-1)!.items.length;
      }
      if (groups.length === 0) {
        return;
      }
      this.#startBatch(groups, false);
    }
  }

  /** Starts a batch of its own for each locked tenant, while slots for them are free. */
  #pumpLockedTenants(): void {
    for (const tenantId of this.#lockedTenants) {
      if (this.#lockedBatchesInFlight >= LOCKED_TENANT_BATCHES_IN_FLIGHT) {
        return;
      }
      const queue = this.#queues.get(tenantId);
      if (this.#appending.has(tenantId)) {
        continue;
      }
      if (queue === undefined) {
        this.#lockedTenants.delete(tenantId);
        continue;
      }
      this.#startBatch([this.#takeGroup(tenantId, queue, MAX_BATCH)], true);
    }
  }

  /** Takes up to `limit` items off the tenant's queue, moving the rest to the back. */
  #takeGroup(tenantId: string, queue: PendingItem[], limit: number): AppendGroup<PendingItem> {
    const items = queue.splice(0, limit);
    this.#appending.add(tenantId);
    this.#queues.delete(tenantId);
    if (queue.length > 0) {
      this.#queues.set(tenantId, queue);
    }
    return { tenantId, items };
  }

  #startBatch(groups: AppendGroup<PendingItem>[], lockedTenant: boolean): void {
    if (lockedTenant) {
      this.#lockedBatchesInFlight += 1;
    } else {
      this.#batchesInFlight += 1;
    }
    void this.#append(groups, lockedTenant).then(
      ({ resigning }) => this.#finishBatch(groups, resigning, lockedTenant),
      () => this.#finishBatch(groups, new Set(), lockedTenant),
    );
  }

  /**
   * Frees the batch slot and the batch's tenants, except those whose stale items are being
   * signed again: they stay marked as appending until #resignInBackground queues the items.
   */
  #finishBatch(
    groups: AppendGroup<PendingItem>[],
    resigning: ReadonlySet<string>,
    lockedTenant: boolean,
  ): void {
    if (lockedTenant) {
      this.#lockedBatchesInFlight -= 1;
      // Appended alone, the tenant waited for its lock, so it was not left out again.
      this.#lockedTenants.delete(groups[0]!.tenantId);
    } else {
      this.#batchesInFlight -= 1;
    }
    for (const { tenantId } of groups) {
      if (!resigning.has(tenantId)) {
        this.#appending.delete(tenantId);
      }
    }
    this.#pump();
  }

  /**
   * Appends one batch and settles its items. Returns the tenants with items being signed again
   * in the background because their key is no longer active. When a batch of several tenants
   * fails, each tenant is tried again alone, so one tenant's failure (a signing key its HSM
   * cannot use, say) does not fail the others. The engines roll back a failed append, so the
   * retry starts from a clean state. A lock timeout, a full disk or a failed database connection
   * fails every item with 503 instead.
   */
  async #append(groups: AppendGroup<PendingItem>[], lockedTenant: boolean): Promise<BatchOutcome> {
    const resigning = new Set<string>();
    let results: AppendResult[][];
    try {
      results = await this.#appendGroups(groups, lockedTenant);
    } catch (error) {
      const failure = fromStoreError(error);
      if (failure !== undefined) {
        // Every tenant would wait for the same lock, or find the same full disk, again, so none
        // is retried alone. After a failed connection the COMMIT may have succeeded, and
        // appending a tenant again would store its items without an idempotency key twice, so
        // the clients decide instead.
        for (const { items } of groups) {
          items.forEach((item) => item.reject(failure));
        }
        if (error instanceof StoreBusyError) {
          // The requests queued behind this batch would each wait the full timeout again, so
          // they are rejected now as well. On SQLite the lock covers the whole database.
          const blocked =
            this.#store.engine === 'sqlite'
              ? [...this.#queues.keys()]
              : groups.map((group) => group.tenantId);
          for (const tenantId of blocked) {
            this.#queues.get(tenantId)?.forEach((item) => item.reject(failure));
            this.#queues.delete(tenantId);
          }
        }
        return { resigning, failure };
      }
      if (groups.length === 1) {
        for (const item of groups[0]!.items) {
          item.reject(error);
        }
        return { resigning };
      }
      for (const [index, group] of groups.entries()) {
        const outcome = await this.#append([group], lockedTenant);
        outcome.resigning.forEach((tenantId) => resigning.add(tenantId));
        if (outcome.failure) {
          // The database is busy or unreachable, so the tenants not yet tried would fail the
          // same way, each after a wait of its own.
          for (const rest of groups.slice(index + 1)) {
            rest.items.forEach((item) => item.reject(outcome.failure));
          }
          return { resigning, failure: outcome.failure };
        }
      }
      return { resigning };
    }
    for (const [index, { tenantId, items }] of groups.entries()) {
      const stale: PendingItem[] = [];
      const left: PendingItem[] = [];
      results[index]!.forEach((result, i) => {
        const item = items[i]!;
        if (result.kind === 'key_inactive') {
          stale.push(item);
        } else if (result.kind === 'tenant_locked') {
          left.push(item);
        } else if (result.kind === 'conflict') {
          item.reject(
            new AppError(
              'IDEMPOTENCY_KEY_REUSED',
              'Idempotency-Key was already used with a different request body',
            ),
          );
        } else {
          item.resolve({ row: result.row, replayed: result.kind === 'replayed' });
        }
      });
      if (stale.length > 0) {
        resigning.add(tenantId);
        void this.#resignInBackground(tenantId, stale);
      }
      if (left.length > 0) {
        // Another transaction has the tenant locked. Its items go back to the front of its
        // queue, and #pumpLockedTenants appends them in a batch of their own.
        this.#queues.set(tenantId, [...left, ...(this.#queues.get(tenantId) ?? [])]);
        this.#lockedTenants.add(tenantId);
      }
    }
    return { resigning };
  }

  /**
   * Signs stale items again without holding a batch slot, so the timestamps of a rotation do not
   * delay other tenants' batches. The tenant stays marked as appending meanwhile, so the items
   * go back to the front of its queue, before anything queued since.
   */
  async #resignInBackground(tenantId: string, stale: PendingItem[]): Promise<void> {
    try {
      const retry = await this.#resign(tenantId, stale);
      if (retry.length > 0) {
        this.#queues.set(tenantId, [...retry, ...(this.#queues.get(tenantId) ?? [])]);
      }
    } catch (error) {
      // #resign settles its items itself. This is for a fault outside its handled cases.
      stale.forEach((item) => item.reject(error));
    } finally {
      this.#appending.delete(tenantId);
      this.#pump();
    }
  }

  /**
   * Prepares items whose key stopped being active before their append: reloads the tenant's
   * keys and moves each item to the new key with a new issuance time, because the old time may
   * precede the new key's validity. Returns the items to append again; the others are rejected.
   */
  async #resign(tenantId: string, items: PendingItem[]): Promise<PendingItem[]> {
    this.#keyring.invalidate(tenantId);
    let keys: TenantKeys | undefined;
    try {
      keys = await this.#keyring.get(tenantId);
    } catch (error) {
      items.forEach((item) => item.reject(error));
      return [];
    }
    const retry: PendingItem[] = [];
    for (const item of items) {
      if (!keys) {
        item.reject(new AppError('TENANT_NOT_FOUND', 'tenant not found'));
      } else if (item.resigned >= MAX_RESIGN) {
        item.reject(
          new AppError(
            'SIGNING_KEY_CHANGED',
            `the signing key changed ${MAX_RESIGN + 1} times while the request waited; nothing was stored, retry later`,
            { headers: { 'Retry-After': '1' } },
          ),
        );
      } else {
        const issuedAt = this.#issuedAt(keys);
        item.keys = keys;
        item.signingKeyId = keys.signer.keyId;
        item.resigned += 1;
        item.message = {
          ...item.message,
          key_id: keys.signer.keyId,
          issued_at_utc: issuedAt,
          human_attested_at_utc: item.message.human_reviewed ? issuedAt : null,
        };
        retry.push(item);
      }
    }
    // The certificate timestamps cover the issuance times, which just changed. They are
    // requested together, so a slow TSA delays the batch by one round trip, not one per item.
    const tenant = keys?.tenant;
    const stamped = await Promise.all(
      retry.map(async (item) => {
        if (tenant === undefined) {
          return item;
        }
        try {
          item.timestampToken = await this.#certificateTimestamp(tenant, item.message);
          return item;
        } catch (error) {
          item.reject(error);
          return undefined;
        }
      }),
    );
    return stamped.filter((item) => item !== undefined);
  }

  /**
   * Appends on the append thread when it is available and every item's key is a software key,
   * which the thread can be sent. Otherwise, or when the thread could not open the database and
   * so ran none of the items, seals here, inside the store's transaction.
   */
  async #appendGroups(
    groups: AppendGroup<PendingItem>[],
    lockedTenant: boolean,
  ): Promise<AppendResult[][]> {
    const thread = this.#appendThread?.available() ? this.#appendThread : undefined;
    const keys = thread === undefined ? undefined : keysForThread(groups);
    if (thread !== undefined && keys !== undefined) {
      try {
        return await this.#appendOnThread(thread, groups, keys);
      } catch (error) {
        if (!(error instanceof AppendThreadStartError)) {
          throw error;
        }
      }
    }
    // A batch of the one shared slot leaves out a held tenant, even alone, so that the other
    // tenants' requests do not wait behind it. The tenant is then appended in a slot of its own.
    return this.#store.appendCertificateGroups(groups, (item, link) => this.#seal(item, link), {
      leaveOutLocked: !lockedTenant,
    });
  }

  #appendOnThread(
    thread: SqliteAppendThread,
    groups: AppendGroup<PendingItem>[],
    keys: ThreadKey[],
  ): Promise<AppendResult[][]> {
    const threadGroups = groups.map(({ tenantId, items }): ThreadGroup => ({
      tenantId,
      items: items.map((item) => ({
        message: item.message,
        timestampToken: item.timestampToken,
        idempotencyKey: item.idempotencyKey,
        requestHash: item.requestHash,
        signingKeyId: item.signingKeyId,
        auditEvent: item.event,
      })),
    }));
    return thread.append(threadGroups, keys);
  }

  #seal(item: PendingItem, link: ChainLink): CertificateRow {
    return {
      ...sealCertificate(item.message, link, this.#clock.now().toISOString(), item.keys.signer),
      timestamp_token: item.timestampToken,
    };
  }
}

/**
 * Returns each signing key the items use, once, or undefined when one of them is not a software
 * key and so cannot be handed to another thread.
 */
function keysForThread(groups: readonly AppendGroup<PendingItem>[]): ThreadKey[] | undefined {
  const keys = new Map<TenantKeys['signer'], ThreadKey>();
  for (const { tenantId, items } of groups) {
    for (const { keys: tenantKeys } of items) {
      const signer = tenantKeys.signer;
      if (keys.has(signer)) {
        continue;
      }
      const key = SoftwareSigner.keyForThread(signer);
      if (key === undefined) {
        return undefined;
      }
      keys.set(signer, { tenantId, keyId: signer.keyId, key });
    }
  }
  return [...keys.values()];
}

// A lone UTF-16 surrogate has no UTF-8 encoding: it would be hashed as U+FFFD, so two
// different texts would certify to one hash, and other languages could not rebuild the bytes.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Rejects text fields holding a lone surrogate, naming each field. */
export function checkWellFormed(fields: Readonly<Record<string, unknown>>): void {
  const broken = Object.entries(fields)
    .filter(([, value]) => typeof value === 'string' && LONE_SURROGATE.test(value))
    .map(([field]) => field);
  if (broken.length > 0) {
    throw new AppError(
      'VALIDATION_FAILED',
      `${broken.join(', ')} must be well-formed Unicode text`,
      {
        details: broken.map((field) => ({
          field,
          rule: 'unicode',
          message: 'contains a lone UTF-16 surrogate',
        })),
      },
    );
  }
}

/**
 * Rejects review fields that contradict human_reviewed. A reviewer id or meaning sent with
 * human_reviewed false would otherwise be dropped, and the client would get a certificate that
 * states that no clinician reviewed the note.
 */
function checkReviewer(request: IssueRequest): void {
  if (!request.human_reviewed) {
    for (const field of ['human_reviewer_id', 'attestation_meaning'] as const) {
      if (request[field] !== undefined) {
        throw new AppError(
          'VALIDATION_FAILED',
          `${field} is allowed only when human_reviewed is true`,
          {
            details: [
              { field, rule: 'dependency', message: 'allowed only when human_reviewed is true' },
            ],
          },
        );
      }
    }
  }
  if (
    request.human_reviewed &&
    (request.human_reviewer_id === undefined || request.human_reviewer_id === '')
  ) {
    throw new AppError(
      'VALIDATION_FAILED',
      'human_reviewer_id is required when human_reviewed is true',
      {
        details: [
          {
            field: 'human_reviewer_id',
            rule: 'required',
            message: 'required when human_reviewed is true',
          },
        ],
      },
    );
  }
}

/**
 * Stored-field values that passed the PHI screen. Model and policy versions repeat on almost
 * every request, and screening a short string still costs about 9 µs (measured on a 2-core
 * AMD EPYC, Node 20), which the four fields paid on every request. Flagged values are not kept.
 */
const screenedCleanValues = new Set<string>();
const MAX_SCREENED_CLEAN_VALUES = 1_000;

/**
 * Folds compatibility characters (full-width digits, ligatures) to their plain forms, so a
 * value such as an SSN written in full-width digits is screened like its ASCII spelling.
 */
function foldForScreening(text: string): string {
  return text.normalize('NFKC');
}

function looksLikePhi(value: string): boolean {
  if (screenedCleanValues.has(value)) {
    return false;
  }
  if (screenForPhi(foldForScreening(value)).total > 0) {
    return true;
  }
  if (screenedCleanValues.size >= MAX_SCREENED_CLEAN_VALUES) {
    screenedCleanValues.clear();
  }
  screenedCleanValues.add(value);
  return false;
}

function screenStoredFields(request: IssueRequest): void {
  const flagged = STORED_TEXT_FIELDS.filter((field) => looksLikePhi(request[field]));
  if (flagged.length > 0) {
    throw new AppError(
      'PHI_DETECTED',
      flagged.length === 1
        ? `${flagged[0]} contains text that looks like PHI; this field is stored in the certificate`
        : `${flagged.join(', ')} contain text that looks like PHI; these fields are stored in the certificate`,
      {
        details: flagged.map((field) => ({ field, rule: 'phi', message: 'looks like PHI' })),
      },
    );
  }
}
