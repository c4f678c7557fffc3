// Time limits of PgStore's connections, in milliseconds. The configuration validates the two
// client-side limits that operators can set against the bounds here, and PgStore uses the
// defaults when it is opened without them.

/**
 * Session limits set on every connection. A process that stops between the statements of an
 * append (a frozen VM, a debugger) holds the chain heads of every tenant in its batch, so the
 * server ends a transaction left idle this long and releases its locks. A statement that waits
 * this long for a lock fails, and an append that fails this way raises StoreBusyError.
 */
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 10_000;
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

/**
 * Client-side limits, which also work when the server or the network stops replying. A new
 * connection that is not ready after the connect timeout fails, and so does a wait for a free
 * pooled connection. A statement without a reply after the query timeout fails, and its
 * connection is closed. The query timeout must exceed the lock timeout, so that a statement
 * waiting for a lock fails with the server's lock timeout first and raises StoreBusyError.
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_QUERY_TIMEOUT_MS = 30_000;

/** Range of CDIL_DATABASE_CONNECT_TIMEOUT_MS. */
export const MIN_CONNECT_TIMEOUT_MS = 100;
export const MAX_CONNECT_TIMEOUT_MS = 300_000;

/**
 * Minimum time by which CDIL_DATABASE_QUERY_TIMEOUT_MS must exceed the lock timeout. The client
 * (pg 8.23) starts a statement's query timeout when the statement is issued, before the server
 * starts it, and the server's lock timeout error needs time to arrive. Without a margin, a statement that waited the whole lock timeout
 * could fail on the client first, as DATABASE_UNAVAILABLE with its connection closed.
 */
export const QUERY_TIMEOUT_MARGIN_MS = 1_000;
export const MIN_QUERY_TIMEOUT_MS = DEFAULT_LOCK_TIMEOUT_MS + QUERY_TIMEOUT_MARGIN_MS;
export const MAX_QUERY_TIMEOUT_MS = 600_000;
