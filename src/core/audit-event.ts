// The audit event format. An event's canonical JSON (RFC 8785) is the exact data of its leaf
// in the tenant's Merkle log, so the same bytes are stored, served, exported and verified.
// Events hold no PHI: the actor is a keyed hash, and object ids are ids CDIL generated.
// Runtime-neutral, like the rest of src/core.
import { canonicalJson } from './canonical.ts';
import { AuditError, AuditErrorCode } from './errors.ts';

export const AUDIT_EVENT_FORMAT = 'cdil.audit-event.v1';

/** Actions CDIL records. The parser accepts any name of the same shape, for later versions. */
export const AUDIT_ACTIONS = [
  'certificate.issue',
  'certificate.verify',
  'certificate.export_defense_bundle',
  'certificate.export_evidence',
  'tenant.create',
  'tenant.set_rate_limit',
  'key.rotate',
  'key.revoke',
  'log.checkpoint_publish',
  'audit.export',
  'request.rejected',
  'request.failed',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export const AUDIT_OUTCOMES = ['success', 'failure', 'rejected'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/** Reasons an action failed or a request was rejected. */
export const AUDIT_REASONS = [
  'auth_failed',
  'forbidden',
  'cross_tenant_or_missing',
  'validation_failed',
  'phi_detected',
  'idempotency_key_reused',
  'conflict',
  'verification_failed',
  'internal_error',
  'unavailable',
  'rate_limited',
] as const;
export type AuditReason = (typeof AUDIT_REASONS)[number];

/**
 * Channels an action reaches CDIL through: an HTTP request, a `cdil` command, or a direct
 * call inside the process without a request. The periodic checkpoint publisher records nothing.
 */
export const AUDIT_CHANNELS = ['http', 'cli', 'internal'] as const;
export type AuditChannel = (typeof AUDIT_CHANNELS)[number];

export const AUDIT_OBJECT_TYPES = ['certificate', 'tenant', 'checkpoint', 'signing_key'] as const;
export type AuditObjectType = (typeof AUDIT_OBJECT_TYPES)[number];

/** One audit event, as signed into the log. Every field is present; absent values are null. */
export interface AuditEvent {
  format: typeof AUDIT_EVENT_FORMAT;
  /** Random UUID. */
  event_id: string;
  tenant_id: string;
  /** ISO 8601 UTC with milliseconds, as Date.prototype.toISOString writes it. */
  occurred_at: string;
  action: string;
  outcome: AuditOutcome;
  reason: string | null;
  /** Keyed hash (HMAC-SHA-256, hex) of the token subject under the tenant secret. */
  actor_hash: string | null;
  /** Roles of the caller's token, in token order; empty without a token. */
  actor_roles: string[];
  channel: AuditChannel;
  /** Method and route pattern, such as `POST /v1/certificates/:certificate_id/verify`. */
  route: string | null;
  object_type: string | null;
  object_id: string | null;
  /** Request id, kept only when it is a UUID (see requestIdForAudit). */
  request_id: string | null;
}

const EVENT_FIELDS = [
  'action',
  'actor_hash',
  'actor_roles',
  'channel',
  'event_id',
  'format',
  'object_id',
  'object_type',
  'occurred_at',
  'outcome',
  'reason',
  'request_id',
  'route',
  'tenant_id',
] as const satisfies readonly (keyof AuditEvent)[];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_UTC_MILLIS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ACTION_NAME = /^[a-z][a-z_]*(?:\.[a-z][a-z_]*)+$/;
const LOWER_NAME = /^[a-z][a-z_]{0,63}$/;
const HASH_HEX = /^[0-9a-f]{64}$/;
const ROUTE = /^(?:GET|POST|PUT|DELETE|PATCH) \/[!-~]{0,255}$/;
const TENANT_ID = /^[a-z0-9][a-z0-9-]{1,62}$/;
const MAX_OBJECT_ID_LENGTH = 128;

/**
 * Returns the request id to record, or null. A client may choose its own x-request-id, and a
 * log leaf can never be erased, so only a UUID (the form the server generates) is kept: a
 * free-form id could carry a patient or encounter identifier.
 */
export function requestIdForAudit(requestId: string | undefined): string | null {
  return requestId !== undefined && UUID.test(requestId) ? requestId : null;
}

function malformed(message: string): AuditError {
  return new AuditError(AuditErrorCode.EVENT_MALFORMED, message);
}

function isNullableMatch(value: unknown, pattern: RegExp): boolean {
  return value === null || (typeof value === 'string' && pattern.test(value));
}

/** Lists the fields of `event` that break the format, with the rule each breaks. */
function fieldProblems(event: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const check = (field: keyof AuditEvent, ok: boolean, rule: string) => {
    if (!ok) {
      problems.push(`${field} ${rule}`);
    }
  };
  check('format', event.format === AUDIT_EVENT_FORMAT, `must be ${AUDIT_EVENT_FORMAT}`);
  check(
    'event_id',
    typeof event.event_id === 'string' && UUID.test(event.event_id),
    'must be a lowercase UUID',
  );
  check(
    'tenant_id',
    typeof event.tenant_id === 'string' && TENANT_ID.test(event.tenant_id),
    'must be a tenant id',
  );
  check(
    'occurred_at',
    typeof event.occurred_at === 'string' &&
      ISO_UTC_MILLIS.test(event.occurred_at) &&
      !Number.isNaN(Date.parse(event.occurred_at)),
    'must be an ISO 8601 UTC time with milliseconds',
  );
  check(
    'action',
    typeof event.action === 'string' && ACTION_NAME.test(event.action),
    'must be a dotted lowercase name',
  );
  check(
    'outcome',
    (AUDIT_OUTCOMES as readonly unknown[]).includes(event.outcome),
    `must be one of ${AUDIT_OUTCOMES.join(', ')}`,
  );
  check('reason', isNullableMatch(event.reason, LOWER_NAME), 'must be a lowercase name or null');
  check(
    'actor_hash',
    isNullableMatch(event.actor_hash, HASH_HEX),
    'must be 64 lowercase hex digits or null',
  );
  check(
    'actor_roles',
    Array.isArray(event.actor_roles) &&
      event.actor_roles.every((role) => typeof role === 'string' && LOWER_NAME.test(role)),
    'must be a list of lowercase role names',
  );
  check(
    'channel',
    (AUDIT_CHANNELS as readonly unknown[]).includes(event.channel),
    `must be one of ${AUDIT_CHANNELS.join(', ')}`,
  );
  check('route', isNullableMatch(event.route, ROUTE), 'must be a method and path or null');
  check(
    'object_type',
    isNullableMatch(event.object_type, LOWER_NAME),
    'must be a lowercase name or null',
  );
  check(
    'object_id',
    event.object_id === null ||
      (typeof event.object_id === 'string' &&
        event.object_id.length > 0 &&
        event.object_id.length <= MAX_OBJECT_ID_LENGTH),
    `must be a string of 1 to ${MAX_OBJECT_ID_LENGTH} characters or null`,
  );
  check('request_id', isNullableMatch(event.request_id, UUID), 'must be a lowercase UUID or null');
  if ((event.object_type === null) !== (event.object_id === null)) {
    problems.push('object_type and object_id must both be set or both be null');
  }
  return problems;
}

/** Returns the canonical JSON of an event, the exact data of its log leaf. Raises AuditError. */
export function auditEventJson(event: AuditEvent): string {
  const problems = fieldProblems(event as unknown as Record<string, unknown>);
  if (problems.length > 0) {
    throw malformed(`audit event is invalid: ${problems.join('; ')}`);
  }
  const record: Record<string, unknown> = {};
  for (const field of EVENT_FIELDS) {
    record[field] = event[field];
  }
  // EVENT_FIELDS is in RFC 8785 key order, and the checks above leave only strings, null and
  // one array of strings, which JSON.stringify writes exactly as RFC 8785 does. This is several
  // times faster than the general serializer, and every certificate issued builds one event.
  return JSON.stringify(record);
}

/**
 * Parses an event's leaf text and checks it: a JSON object with exactly the v1 fields, each of
 * the right form, written in canonical JSON, so one event has one byte string. Raises
 * AuditError EVENT_MALFORMED naming what is wrong.
 */
export function parseAuditEvent(text: string): AuditEvent {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw malformed('audit event is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw malformed('audit event is not a JSON object');
  }

  const record = parsed as Record<string, unknown>;
  const known = new Set<string>(EVENT_FIELDS);
  const extra = Object.keys(record).filter((key) => !known.has(key));
  const missing = EVENT_FIELDS.filter((field) => !Object.hasOwn(record, field));
  if (extra.length > 0 || missing.length > 0) {
    const parts = [];
    if (missing.length > 0) {
      parts.push(`missing ${missing.join(', ')}`);
    }
    if (extra.length > 0) {
      parts.push(`unexpected ${extra.join(', ')}`);
    }
    throw malformed(`audit event fields differ from ${AUDIT_EVENT_FORMAT}: ${parts.join('; ')}`);
  }

  const problems = fieldProblems(record);
  if (problems.length > 0) {
    throw malformed(`audit event is invalid: ${problems.join('; ')}`);
  }
  if (canonicalJson(record) !== text) {
    throw malformed('audit event is not in canonical JSON form (RFC 8785)');
  }
  return record as unknown as AuditEvent;
}
