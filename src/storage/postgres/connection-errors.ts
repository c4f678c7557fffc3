// Tells a failed connection to PostgreSQL apart from a failed statement and from a wait for a
// free pooled connection. PgStore raises StoreUnavailableError for the first kind and
// StoreBusyError for the last, which the HTTP server maps to 503, and lets every other error
// through unchanged, so a bug in a statement still fails as an internal error.
import { StoreUnavailableError } from '../store.ts';

/**
 * SQLSTATE codes, besides classes 08 (connection exception) and 28 (invalid authorization
 * specification), with which the server ends a session or rejects a new one (PostgreSQL 15,
 * Appendix A). Class 28 and 3D000 are configuration errors, such as a wrong password or role
 * name in DATABASE_URL. They too mean that no connection can be opened until an operator fixes
 * them, so a request gets 503 with Retry-After, and its log line shows the code.
 */
const SESSION_ENDED_CODES = new Set([
  '57P01', // admin_shutdown: pg_terminate_backend, or a smart or fast server shutdown
  '57P02', // crash_shutdown: another server process crashed
  '57P03', // cannot_connect_now: the server is starting up or shutting down
  '57P05', // idle_session_timeout
  '25P03', // idle_in_transaction_session_timeout
  '53300', // too_many_connections: max_connections is reached
  '3D000', // invalid_catalog_name: the database in the connection string does not exist
]);

/** Node.js socket and DNS error codes of a connection that failed or could not be opened. */
const SOCKET_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
]);

/**
 * Messages of the errors without a code that node-postgres raises for a failed connection. From
 * pg 8.23.1 (lib/client.js): the socket closed, a query on a client whose connection already
 * failed, a query without a reply within query_timeout, and a client's own connect timeout. From
 * pg-pool 3.14.0 (index.js, newClient): a new connection that exceeded connectionTimeoutMillis.
 * "Connection terminated" without "unexpectedly" is absent because it follows a deliberate
 * client.end().
 */
const CLIENT_CONNECTION_MESSAGES = new Set([
  'Connection terminated unexpectedly',
  'Client has encountered a connection error and is not queryable',
  'Query read timeout',
  'timeout expired',
  'Connection terminated due to connection timeout',
]);

/**
 * Message of pg-pool 3.14.0 (index.js, connect) when no pooled connection became free within
 * connectionTimeoutMillis. The pool raises it only while every connection is checked out, and
 * without opening a connection, so it does not show whether the server is reachable.
 */
const POOL_WAIT_TIMEOUT_MESSAGE = 'timeout exceeded when trying to connect';

/** SQLSTATE classes 08 (connection exception) and 28 (invalid authorization specification). */
const CONNECTION_CLASS_PATTERN = /^(08|28)[0-9A-Z]{3}$/;

/** Returns whether `error` means that the connection failed rather than its statement. */
export function isConnectionFailure(error: unknown): boolean {
  // Node.js reports a refused connection to each address of a host name as one AggregateError.
  if (error instanceof AggregateError && error.errors.length > 0) {
    return error.errors.every(isConnectionFailure);
  }
  if (!(error instanceof Error)) {
    return false;
  }
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    return (
      SOCKET_ERROR_CODES.has(code) ||
      SESSION_ENDED_CODES.has(code) ||
      CONNECTION_CLASS_PATTERN.test(code)
    );
  }
  return CLIENT_CONNECTION_MESSAGES.has(error.message);
}

/** Returns whether `error` is the pool giving up on waiting for a free connection. */
export function isPoolWaitTimeout(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error as { code?: unknown }).code === undefined &&
    error.message === POOL_WAIT_TIMEOUT_MESSAGE
  );
}

/**
 * Returns `error` wrapped in StoreUnavailableError when it is a connection failure, else `error`.
 * The message ends with the error's code, when it has one, so that the request's log line shows
 * the SQLSTATE of a rejected login.
 */
export function wrapConnectionFailure(error: unknown): unknown {
  if (error instanceof StoreUnavailableError || !isConnectionFailure(error)) {
    return error;
  }
  const { code, error: message } = connectionErrorFields(error as Error);
  const suffix = code === undefined ? '' : ` (${code})`;
  return new StoreUnavailableError(`PostgreSQL connection failed: ${message}${suffix}`, {
    cause: error,
  });
}

/**
 * Returns the log fields of a connection error: its code, when it has one, and its message.
 * The error object itself is never logged, because pg-pool attaches the failed client to it,
 * and the client contains the connection string and password.
 */
export function connectionErrorFields(error: Error): { code?: string; error: string } {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? { code, error: error.message } : { error: error.message };
}
