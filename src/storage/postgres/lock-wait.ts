// One time limit for all lock waits of a transaction's lock phase. PostgreSQL applies
// lock_timeout to each lock a statement waits for, not to the statement. A session queued
// behind another waiter for the same row first waits for the row's tuple lock, which that
// waiter holds until it gives up, and then for the holder, with a new timeout. So a lock phase
// runs under a statement_timeout instead (SET LOCAL, then back to the default). When the phase
// has several statements that can wait, each one after the first gets only what is left of the
// limit (REMAINING_LOCK_WAIT), so the phase as a whole waits at most the limit.
import type pg from 'pg';
import { StoreBusyError } from '../store.ts';
import { settleInOrder } from './pipeline.ts';

const LOCK_NOT_AVAILABLE = '55P03';
const QUERY_CANCELED = '57014';

/** Returns whether `error` is PostgreSQL giving up on a lock after lock_timeout. */
export function isLockTimeout(error: unknown): boolean {
  return error instanceof Error && (error as { code?: unknown }).code === LOCK_NOT_AVAILABLE;
}

/**
 * Returns whether a statement of a bounded lock phase ended its wait: by lock_timeout (55P03),
 * or by the phase's statement_timeout or a cancel request (both 57014).
 */
export function isLockWaitEnded(error: unknown): boolean {
  return isLockTimeout(error) || (error as { code?: unknown } | undefined)?.code === QUERY_CANCELED;
}

/** Returns the statement that starts a lock phase limited to `waitMs` milliseconds. */
export function startLockWait(waitMs: number): string {
  if (!Number.isSafeInteger(waitMs) || waitMs <= 0) {
    throw new RangeError(`a lock wait limit must be a positive integer of ms, got ${waitMs}`);
  }
  return `SET LOCAL statement_timeout = ${waitMs}`;
}

/**
 * Returns the statement that sets statement_timeout to what is left of `waitMs` since the
 * transaction began, and to at least 1 ms, because 0 would turn the limit off. now() is the time
 * of BEGIN, so a phase that follows BEGIN in the same round trip is measured from its start.
 */
export function remainingLockWait(waitMs: number): pg.QueryConfig {
  return {
    name: 'cdil_remaining_lock_wait',
    text: `SELECT set_config('statement_timeout',
      greatest(1, $1::integer - (extract(epoch FROM clock_timestamp() - now()) * 1000)::integer)::text,
      true)`,
    values: [waitMs],
  };
}

/** Ends a lock phase: later statements of the transaction have the session's limit again. */
export const END_LOCK_WAIT = 'SET LOCAL statement_timeout TO DEFAULT';

/**
 * Waits for the statements of a bounded lock phase in order. Raises StoreBusyError, saying that
 * `locked` (such as "the log head of tenant t") stayed locked, when the phase's wait ended
 * before the lock was free, and re-raises any other error.
 */
export async function settleLockPhase(
  statements: readonly Promise<unknown>[],
  locked: string,
  waitMs: number,
): Promise<void> {
  try {
    await settleInOrder(statements);
  } catch (error) {
    if (isLockWaitEnded(error)) {
      throw new StoreBusyError(`${locked} stayed locked by another transaction for ${waitMs} ms`, {
        cause: error,
      });
    }
    throw error;
  }
}
