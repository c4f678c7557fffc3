// Tells a failed connection to PostgreSQL apart from a failed statement. PgStore raises
// StoreUnavailableError for the first kind, which the HTTP server maps to 503, and lets every
// other error through unchanged, so a bug in a statement still fails as an internal error.
import { StoreUnavailableError } from '../store.ts';

/**
 * SQLSTATE codes, besides class 08 (connection exception), with which the server ends a session
 * or rejects a new one (PostgreSQL 15, Appendix A).
 */
const SESSION_ENDED_CODES = new Set([
  '57P01', // admin_shutdown: pg_terminate_backend, or a smart or fast server shutdown
  '57P02', // crash_shutdown: another server process crashed
  '57P03', // cannot_connect_now: the server is starting up or shutting down
  '57P05', // idle_session_timeout
  '25P03', // idle_in_transaction_session_timeout
  '53300', // too_many_connections: max_connections is reached
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
 * Messages of the errors without a code that node-postgres raises for a failed connection: the
 * socket closed (pg 8.23.1, lib/client.js), a query on a client whose connection already failed,
 * and a connection attempt that timed out (pg-pool 3.14.0). "Connection terminated" without
 * "unexpectedly" is absent because it follows a deliberate client.end().
 */
const CLIENT_CONNECTION_MESSAGES = new Set([
  'Connection terminated unexpectedly',
  'Client has encountered a connection error and is not queryable',
  'Connection terminated due to connection timeout',
]);

const CLASS_08_PATTERN = /^08[0-9A-Z]{3}$/;

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
      SOCKET_ERROR_CODES.has(code) || SESSION_ENDED_CODES.has(code) || CLASS_08_PATTERN.test(code)
    );
  }
  return CLIENT_CONNECTION_MESSAGES.has(error.message);
}

/** Returns `error` wrapped in StoreUnavailableError when it is a connection failure, else `error`. */
export function wrapConnectionFailure(error: unknown): unknown {
  if (error instanceof StoreUnavailableError || !isConnectionFailure(error)) {
    return error;
  }
  return new StoreUnavailableError(`PostgreSQL connection failed: ${(error as Error).message}`, {
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
