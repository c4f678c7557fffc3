// Converts the PostgreSQL errors after which nothing was stored and a later try can succeed
// into the store's errors, which the HTTP server maps to 503 with Retry-After. The server
// rolls back the transaction of a statement that fails with one of these codes.
import { StoreBusyError, StoreFullError, StoreUnavailableError } from '../store.ts';
import { wrapConnectionFailure } from './connection-errors.ts';
import { isLockTimeout } from './lock-wait.ts';

/**
 * SQLSTATE 53100 disk_full: a data file or a temporary file could not grow (PostgreSQL 15,
 * Appendix A). A full WAL disk is different: the server stops (PANIC), and the store then gets
 * connection failures.
 */
const DISK_FULL = '53100';

/** SQLSTATE 53200 out_of_memory, which also covers "out of shared memory" for locks. */
const OUT_OF_MEMORY = '53200';

function codeOf(error: unknown): unknown {
  return error instanceof Error ? (error as { code?: unknown }).code : undefined;
}

/**
 * Returns the store error for a failed statement:
 * - 53100 disk_full becomes StoreFullError;
 * - 53200 out_of_memory and 55P03 lock_not_available (a lock wait that reached `lockTimeoutMs`)
 *   become StoreBusyError;
 * - a connection failure, including 53300 too_many_connections, becomes StoreUnavailableError
 *   (see connection-errors.ts).
 * Every other error is returned unchanged, so a bug in a statement still fails as an internal
 * error. The message ends with the SQLSTATE for the operator's log.
 */
export function toStoreError(error: unknown, lockTimeoutMs: number): unknown {
  if (
    error instanceof StoreBusyError ||
    error instanceof StoreFullError ||
    error instanceof StoreUnavailableError
  ) {
    return error;
  }
  const code = codeOf(error);
  if (code === DISK_FULL) {
    return new StoreFullError(`PostgreSQL could not write: ${(error as Error).message} (53100)`, {
      cause: error,
    });
  }
  if (code === OUT_OF_MEMORY) {
    return new StoreBusyError(`PostgreSQL ran out of memory: ${(error as Error).message} (53200)`, {
      cause: error,
    });
  }
  if (isLockTimeout(error)) {
    return new StoreBusyError(
      `a row or table stayed locked by another transaction for ${lockTimeoutMs} ms (55P03)`,
      { cause: error },
    );
  }
  return wrapConnectionFailure(error);
}
