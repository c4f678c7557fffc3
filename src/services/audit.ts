// The audit trail: builds `cdil.audit-event.v1` events and appends them to the tenant's Merkle
// log. The events of issuance, tenant creation, key changes and rate-limit changes are appended
// by the store in the same transaction as the change (see IssuanceService and TenantService),
// whichever edge called it. The HTTP routes and the CLI record the other events through
// AuditTrail. Events that arrive for one tenant while an append runs go into the next
// transaction together.
import { userInfo } from 'node:os';
import {
  AUDIT_EVENT_FORMAT,
  auditEventJson,
  requestIdForAudit,
  type AuditAction,
  type AuditChannel,
  type AuditEvent,
  type AuditObjectType,
  type AuditOutcome,
  type AuditReason,
} from '../core/audit-event.ts';
import {
  AuditEventExistsError,
  StoreBusyError,
  type AuditEventFilter,
  type AuditEventRow,
  type NewAuditEvent,
  type Store,
} from '../storage/store.ts';
import type { Clock } from './clock.ts';
import { AppError, type ErrorCode } from './errors.ts';
import { timeOrderedUuid } from './time-ordered-id.ts';
import type { Keyring } from './keyring.ts';

/** Kind of identifier that names an actor. It domain-separates the actor's keyed hash. */
export type ActorIdentifierKind = 'token_subject' | 'os_user';

/** The actor of an event: a verified token's subject and roles, or a command's local user. */
export interface AuditActor {
  /** Token `sub` for `token_subject`, operating system user name for `os_user`. */
  subject: string;
  /** Defaults to `token_subject`. */
  kind?: ActorIdentifierKind | undefined;
  /** Roles of the verified token, empty for a command. */
  roles: readonly string[];
}

/** The caller of an action and the channel the call came through. */
export interface AuditContext {
  channel: AuditChannel;
  /** Absent for internal calls, and for HTTP requests without a verified token. */
  actor?: AuditActor | undefined;
  /** Method and route pattern of the HTTP request. */
  route?: string | undefined;
  requestId?: string | undefined;
  /** Receives the ids of the events recorded with this context, after they are committed. */
  onRecorded?: ((eventIds: readonly string[]) => void) | undefined;
}

/** The action taken, its outcome and the object it acted on. */
export interface AuditRecord {
  action: AuditAction;
  outcome: AuditOutcome;
  reason?: AuditReason | undefined;
  object?: { type: AuditObjectType; id: string } | undefined;
}

export const INTERNAL_CONTEXT: AuditContext = { channel: 'internal' };

/**
 * Returns the context of a `cdil` command: channel `cli`, and as actor the operating system
 * user running it, which the event stores only as a keyed hash (kind `os_user`). A process
 * whose user id has no user name, as in some containers, is named `uid:<id>`.
 */
export function cliAuditContext(): AuditContext {
  let userName: string;
  try {
    userName = userInfo().username;
  } catch {
    userName = `uid:${process.getuid?.() ?? 'unknown'}`;
  }
  return { channel: 'cli', actor: { subject: userName, kind: 'os_user', roles: [] } };
}

/** The audit reason of each error code, so a new code cannot be added without one. */
const REASON_OF_ERROR: Record<ErrorCode, AuditReason> = {
  VALIDATION_FAILED: 'validation_failed',
  BODY_NOT_JSON: 'validation_failed',
  PAYLOAD_TOO_LARGE: 'validation_failed',
  UNSUPPORTED_MEDIA_TYPE: 'validation_failed',
  UNAUTHENTICATED: 'auth_failed',
  FORBIDDEN: 'forbidden',
  NOT_FOUND: 'cross_tenant_or_missing',
  TENANT_NOT_FOUND: 'cross_tenant_or_missing',
  CERTIFICATE_NOT_FOUND: 'cross_tenant_or_missing',
  SHADOW_ITEM_NOT_FOUND: 'cross_tenant_or_missing',
  CHECKPOINT_NOT_FOUND: 'cross_tenant_or_missing',
  LEAF_NOT_FOUND: 'cross_tenant_or_missing',
  KEY_NOT_FOUND: 'cross_tenant_or_missing',
  TENANT_EXISTS: 'conflict',
  KEY_ACTIVE: 'conflict',
  KEY_ALREADY_REVOKED: 'conflict',
  RATE_LIMITED: 'rate_limited',
  TIMESTAMP_UNAVAILABLE: 'unavailable',
  IDEMPOTENCY_KEY_REUSED: 'idempotency_key_reused',
  PHI_DETECTED: 'phi_detected',
  NOT_READY: 'unavailable',
  DATABASE_BUSY: 'unavailable',
  DATABASE_UNAVAILABLE: 'unavailable',
  STORAGE_FULL: 'unavailable',
  SIGNING_KEY_CHANGED: 'unavailable',
  INTERNAL: 'internal_error',
};

export function auditReasonOf(code: ErrorCode): AuditReason {
  return REASON_OF_ERROR[code];
}

/** Hashes an actor's identifier under the tenant secret; see Keyring.hashIdentifier. */
export type ActorHasher = (kind: ActorIdentifierKind, identifier: string) => string;

/** Builds the stored form of one event: its columns and its canonical JSON leaf text. */
export function buildAuditEvent(
  tenantId: string,
  hashActor: ActorHasher,
  context: AuditContext,
  record: AuditRecord,
  occurredAt: Date,
): NewAuditEvent {
  const event: AuditEvent = {
    format: AUDIT_EVENT_FORMAT,
    event_id: timeOrderedUuid(occurredAt.getTime()),
    tenant_id: tenantId,
    occurred_at: occurredAt.toISOString(),
    action: record.action,
    outcome: record.outcome,
    reason: record.reason ?? null,
    actor_hash: context.actor
      ? hashActor(context.actor.kind ?? 'token_subject', context.actor.subject)
      : null,
    actor_roles: context.actor ? [...context.actor.roles] : [],
    channel: context.channel,
    route: context.route ?? null,
    object_type: record.object?.type ?? null,
    object_id: record.object?.id ?? null,
    request_id: requestIdForAudit(context.requestId),
  };
  return {
    event_id: event.event_id,
    occurred_at: event.occurred_at,
    action: event.action,
    outcome: event.outcome,
    actor_hash: event.actor_hash,
    object_type: event.object_type,
    object_id: event.object_id,
    event_json: auditEventJson(event),
  };
}

export interface AuditPageItem {
  log_index: number;
  /** The event, parsed from event_json. */
  event: AuditEvent;
  /** The exact leaf data: hash it as an RFC 9162 leaf to check an inclusion proof. */
  event_json: string;
}

export interface AuditPage {
  items: AuditPageItem[];
  next_cursor: string | null;
}

export const MAX_AUDIT_PAGE = 500;
export const DEFAULT_AUDIT_PAGE = 50;

/** Most events appended in one transaction; later ones wait for the next. */
export const MAX_AUDIT_BATCH = 256;

function encodeCursor(logIndex: number, filter: AuditEventFilter): string {
  return Buffer.from(JSON.stringify({ i: logIndex, f: filter })).toString('base64url');
}

function decodeCursor(cursor: string, filter: AuditEventFilter): number {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as {
      i?: unknown;
      f?: unknown;
    };
    if (
      typeof parsed.i === 'number' &&
      Number.isSafeInteger(parsed.i) &&
      parsed.i >= 0 &&
      JSON.stringify(parsed.f) === JSON.stringify(filter)
    ) {
      return parsed.i;
    }
  } catch {
    // Fall through to the validation error below.
  }
  throw new AppError('VALIDATION_FAILED', 'cursor is invalid or was issued for different filters', {
    details: [
      {
        field: 'cursor',
        rule: 'format',
        message: 'use next_cursor from the previous page with the same filters',
      },
    ],
  });
}

interface PendingAppend {
  events: NewAuditEvent[];
  resolve: (rows: AuditEventRow[]) => void;
  reject: (error: unknown) => void;
}

export class AuditTrail {
  readonly #store: Store;
  readonly #keyring: Keyring;
  readonly #clock: Clock;
  readonly #queues = new Map<string, PendingAppend[]>();

  constructor(store: Store, keyring: Keyring, clock: Clock) {
    this.#store = store;
    this.#keyring = keyring;
    this.#clock = clock;
  }

  /** Returns the time of the trail's clock, the time that record() gives its events. */
  now(): Date {
    return this.#clock.now();
  }

  /**
   * Appends one event per record to the tenant's log and returns them with their log indexes,
   * after commit. Returns an empty list, recording nothing, when the tenant does not exist:
   * without the tenant there is no secret to hash the actor with and no log to append to.
   */
  async record(
    tenantId: string,
    context: AuditContext,
    records: readonly AuditRecord[],
  ): Promise<AuditEventRow[]> {
    const events = await this.build(tenantId, context, records, this.#clock.now());
    return events === null ? [] : this.append(tenantId, context, events);
  }

  /**
   * Builds one event per record, with `occurredAt` as their time, without storing them. Returns
   * null when the tenant does not exist. Reads the tenant's keys, so it can raise the store's
   * errors. A caller that retries a failed append passes the same events to append() again:
   * their event ids are unique in the log, so an append that was stored cannot be stored twice.
   */
  async build(
    tenantId: string,
    context: AuditContext,
    records: readonly AuditRecord[],
    occurredAt: Date,
  ): Promise<NewAuditEvent[] | null> {
    if (records.length === 0) {
      return [];
    }
    const keys = await this.#keyring.get(tenantId);
    if (!keys) {
      return null;
    }
    const hashActor: ActorHasher = (kind, identifier) => keys.hashIdentifier(kind, identifier);
    return records.map((record) =>
      buildAuditEvent(tenantId, hashActor, context, record, occurredAt),
    );
  }

  /** Appends events made by build() to the tenant's log and returns them after commit. */
  async append(
    tenantId: string,
    context: AuditContext,
    events: NewAuditEvent[],
  ): Promise<AuditEventRow[]> {
    if (events.length === 0) {
      return [];
    }
    const rows = await new Promise<AuditEventRow[]>((resolve, reject) => {
      let queue = this.#queues.get(tenantId);
      if (queue) {
        queue.push({ events, resolve, reject });
        return;
      }
      queue = [{ events, resolve, reject }];
      this.#queues.set(tenantId, queue);
      setImmediate(() => void this.#drain(tenantId, queue));
    });
    context.onRecorded?.(rows.map((row) => row.event_id));
    return rows;
  }

  /**
   * Appends queued events in transactions of up to MAX_AUDIT_BATCH until the queue is empty. When
   * a transaction fails because one of its events is already stored, as a retry after a lost
   * reply is, each of its appends is tried alone, so that only that append fails. When it fails
   * with StoreBusyError, the appends queued behind it fail with the same error at once, because
   * they wait for the same lock and each would otherwise wait the whole lock timeout again.
   */
  async #drain(tenantId: string, queue: PendingAppend[]): Promise<void> {
    while (queue.length > 0) {
      const batch: PendingAppend[] = [queue.shift()!];
      let size = batch[0]!.events.length;
      while (queue.length > 0 && size + queue[0]!.events.length <= MAX_AUDIT_BATCH) {
        const next = queue.shift()!;
        size += next.events.length;
        batch.push(next);
      }
      try {
        await this.#appendBatch(tenantId, batch);
      } catch (error) {
        if (error instanceof AuditEventExistsError && batch.length > 1) {
          for (const pending of batch) {
            await this.#appendBatch(tenantId, [pending]).catch((alone: unknown) =>
              pending.reject(alone),
            );
          }
          continue;
        }
        for (const pending of batch) {
          pending.reject(error);
        }
        if (error instanceof StoreBusyError) {
          for (const pending of queue.splice(0)) {
            pending.reject(error);
          }
        }
      }
    }
    this.#queues.delete(tenantId);
  }

  /** Appends the events of `batch` in one transaction and resolves each append with its rows. */
  async #appendBatch(tenantId: string, batch: readonly PendingAppend[]): Promise<void> {
    const rows = await this.#store.appendAuditEvents(
      tenantId,
      batch.flatMap((pending) => pending.events),
    );
    let offset = 0;
    for (const pending of batch) {
      pending.resolve(rows.slice(offset, offset + pending.events.length));
      offset += pending.events.length;
    }
  }

  /**
   * Returns whether each of `events` is stored in the tenant's log with the same content. An
   * append whose COMMIT succeeded but whose reply was lost stored them although it failed.
   */
  async isStored(tenantId: string, events: readonly NewAuditEvent[]): Promise<boolean> {
    for (const event of events) {
      const stored = await this.#store.getAuditEvent(event.event_id);
      if (stored?.tenant_id !== tenantId || stored.event_json !== event.event_json) {
        return false;
      }
    }
    return true;
  }

  /** Lists the tenant's audit events in log order, with filters and cursor pagination. */
  async list(
    tenantId: string,
    filter: AuditEventFilter,
    options: { cursor?: string | undefined; limit?: number | undefined },
  ): Promise<AuditPage> {
    const limit = options.limit ?? DEFAULT_AUDIT_PAGE;
    const after = options.cursor === undefined ? -1 : decodeCursor(options.cursor, filter);
    const rows = await this.#store.listAuditEvents(tenantId, filter, after, limit + 1);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      items: page.map((row) => ({
        log_index: row.log_index,
        event: JSON.parse(row.event_json) as AuditEvent,
        event_json: row.event_json,
      })),
      next_cursor: rows.length > limit && last ? encodeCursor(last.log_index, filter) : null,
    };
  }
}
