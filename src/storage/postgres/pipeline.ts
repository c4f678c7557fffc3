// Helpers for sending several statements on one connection before reading any reply. PgStore
// opens its pool with the `pipeline` client option of node-postgres (pg 8.23.1 has it): a query
// is written to the socket as soon as it is issued, so statements issued without awaiting in
// between share one round trip. The server still runs them one after another, in issue order.
// Each ends with its own Sync, so a failed statement does not discard the ones after it, but
// inside a transaction those fail as well ("current transaction is aborted"), and a COMMIT after
// a failure rolls back.
import type pg from 'pg';

/**
 * Calls `issue`, which issues queries on `client` without awaiting them, and returns its result.
 * The socket is corked meanwhile, so the group goes out in one write and wakes the server once.
 */
export function sendTogether<T>(client: pg.PoolClient, issue: () => T): T {
  const socket = client.connection.stream;
  socket.cork();
  try {
    return issue();
  } finally {
    socket.uncork();
  }
}

/**
 * Waits for every statement of a group. If any failed, throws the error of the first one in issue
 * order, which is the cause: the later statements of a transaction only report that it was
 * aborted. Waiting for all of them keeps each rejection handled and leaves no reply outstanding
 * when the caller sends ROLLBACK. Await a statement's own promise afterwards to read its result.
 */
export async function settleInOrder(statements: readonly Promise<unknown>[]): Promise<void> {
  const settled = await Promise.allSettled(statements);
  const failed = settled.find((outcome) => outcome.status === 'rejected');
  if (failed) {
    throw failed.reason;
  }
}
