// Application errors shared by services and edges. Each code maps to one HTTP status in the
// registry below; messages name the field and the rule and never carry note text or
// identifiers from a request.
import { StoreBusyError, StoreFullError, StoreUnavailableError } from '../storage/store.ts';

export const ErrorRegistry = {
  VALIDATION_FAILED: { status: 400, title: 'The request is invalid' },
  BODY_NOT_JSON: { status: 400, title: 'The request body is not valid JSON' },
  UNAUTHENTICATED: { status: 401, title: 'A valid bearer token is required' },
  FORBIDDEN: { status: 403, title: 'The token role may not call this endpoint' },
  NOT_FOUND: { status: 404, title: 'No such resource' },
  TENANT_NOT_FOUND: { status: 404, title: 'No such tenant' },
  CERTIFICATE_NOT_FOUND: { status: 404, title: 'No such certificate' },
  SHADOW_ITEM_NOT_FOUND: { status: 404, title: 'No such shadow item' },
  CHECKPOINT_NOT_FOUND: { status: 404, title: 'No checkpoint of that size' },
  LEAF_NOT_FOUND: { status: 404, title: 'No log leaf at that index' },
  KEY_NOT_FOUND: { status: 404, title: 'No such signing key' },
  TENANT_EXISTS: { status: 409, title: 'The tenant already exists' },
  KEY_ACTIVE: {
    status: 409,
    title: 'The key is the active signing key and can be revoked only with a rotation',
  },
  KEY_ALREADY_REVOKED: { status: 409, title: 'The key is already revoked' },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    title: 'The idempotency key was used with a different request',
  },
  PHI_DETECTED: { status: 422, title: 'The request contains text that looks like PHI' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'The request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The request content type is not supported' },
  RATE_LIMITED: { status: 429, title: "The tenant's request limit for this minute is reached" },
  NOT_READY: { status: 503, title: 'The service is not ready' },
  TIMESTAMP_UNAVAILABLE: {
    status: 503,
    title: 'The time-stamping authority did not answer, and the tenant requires a timestamp',
  },
  DATABASE_BUSY: {
    status: 503,
    title: 'The database stayed busy for too long; nothing was stored',
  },
  STORAGE_FULL: {
    status: 503,
    title: "The database's disk is full; nothing was stored",
  },
  SIGNING_KEY_CHANGED: {
    status: 503,
    title: "The tenant's signing key kept changing while the request waited; nothing was stored",
  },
  DATABASE_UNAVAILABLE: {
    status: 503,
    title: 'The database connection failed; a write in progress may have been stored',
  },
  INTERNAL: { status: 500, title: 'Internal error' },
} as const;

export type ErrorCode = keyof typeof ErrorRegistry;

export interface FieldProblem {
  field: string;
  rule: string;
  message: string;
}

export class AppError extends Error {
  override readonly name = 'AppError';
  readonly code: ErrorCode;
  readonly details: readonly FieldProblem[] | undefined;
  readonly extra: Readonly<Record<string, unknown>> | undefined;
  /** Response headers the HTTP edge sends with the error, such as Retry-After. */
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: {
      details?: FieldProblem[];
      extra?: Record<string, unknown>;
      headers?: Record<string, string>;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.code = code;
    this.details = options.details;
    this.extra = options.extra;
    this.headers = options.headers;
  }

  get status(): number {
    return ErrorRegistry[this.code].status;
  }
}

/** Returns the 503 error for a write that gave up on the database lock; nothing was stored. */
export function databaseBusy(cause: unknown): AppError {
  return new AppError(
    'DATABASE_BUSY',
    'the database stayed busy for too long: another transaction held a lock the request needed, ' +
      'every pooled connection was in use, or the database server ran out of memory. Nothing ' +
      'was stored; retry later',
    { headers: { 'Retry-After': '1' }, cause },
  );
}

/**
 * Seconds a client should wait before it retries after a write failed on a full disk. NOTE: a
 * fixed value; freeing space takes an operator, which can take longer.
 */
export const STORAGE_FULL_RETRY_AFTER_S = 30;

/** Returns the 503 error for a write that failed because the database's disk is full. */
export function storageFull(cause: unknown): AppError {
  return new AppError(
    'STORAGE_FULL',
    'the database cannot be written because its disk is full, so nothing was stored. Retry after ' +
      `${STORAGE_FULL_RETRY_AFTER_S} s; the service accepts writes again once an operator frees space`,
    { headers: { 'Retry-After': String(STORAGE_FULL_RETRY_AFTER_S) }, cause },
  );
}

/**
 * Seconds a client should wait before it retries after a failed database connection. NOTE: a
 * fixed value, independent of how long the database stays unreachable.
 */
export const DATABASE_UNAVAILABLE_RETRY_AFTER_S = 5;

/**
 * Returns the 503 error for a request whose database connection failed or could not be opened.
 * A connection lost while a COMMIT was in flight may have stored the write, so the message tells
 * the client to repeat an issuance with the same Idempotency-Key. The stored certificate is then
 * returned instead of a second one.
 */
export function databaseUnavailable(cause: unknown): AppError {
  return new AppError(
    'DATABASE_UNAVAILABLE',
    'the database connection failed before the request finished, and a write it made may have been stored. ' +
      `Retry after ${DATABASE_UNAVAILABLE_RETRY_AFTER_S} s. Repeat an issuance with the same Idempotency-Key, ` +
      'which returns the stored certificate instead of issuing a second one',
    { headers: { 'Retry-After': String(DATABASE_UNAVAILABLE_RETRY_AFTER_S) }, cause },
  );
}

/**
 * Converts a store error after which a later try can succeed (a busy database, a full disk, a
 * failed connection) to its 503 error: DATABASE_BUSY, STORAGE_FULL or DATABASE_UNAVAILABLE.
 * Returns undefined for any other error.
 */
export function fromStoreError(error: unknown): AppError | undefined {
  if (error instanceof StoreBusyError) {
    return databaseBusy(error);
  }
  if (error instanceof StoreFullError) {
    return storageFull(error);
  }
  if (error instanceof StoreUnavailableError) {
    return databaseUnavailable(error);
  }
  return undefined;
}
