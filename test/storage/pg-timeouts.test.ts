// PgStore's client-side query timeout against a real PostgreSQL server whose backend process is
// stopped with SIGSTOP, as a frozen server or VM would be. The statement fails as
// StoreUnavailableError, and the connection is closed instead of returned to the pool. The next
// call then works on a new connection.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PgStore } from '../../src/storage/postgres/pg-store.ts';
import { StoreUnavailableError, type WarningLogger } from '../../src/storage/store.ts';
import {
  TEST_ENGINE,
  createTestDatabase,
  runSql,
  type StorageLocation,
} from '../helpers/database.ts';

const QUERY_TIMEOUT_MS = 1_000;

/** Returns the process ids of the service's sessions on the test database. */
async function servicePids(location: StorageLocation): Promise<number[]> {
  const rows = await runSql(
    location,
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cdil'",
  );
  return rows.map((row) => Number(row.pid));
}

async function waitUntilGone(location: StorageLocation, pid: number): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (!(await servicePids(location)).includes(pid)) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`backend ${pid} still has a session 5 s after it was resumed`);
}

describe(
  'PostgreSQL query timeout',
  { skip: TEST_ENGINE !== 'postgres' && 'needs DATABASE_URL' },
  () => {
    test('stopped backend fails and is discarded', async () => {
      const database = await createTestDatabase();
      const location: StorageLocation = { dir: '', database };
      const warnings: string[] = [];
      const logger: WarningLogger = { warn: (_details, message) => warnings.push(message) };
      // One pooled connection, so each operation runs on the backend stopped before it.
      const store = new PgStore(database.url!, {
        poolSize: 1,
        lockTimeoutMs: 200,
        queryTimeoutMs: QUERY_TIMEOUT_MS,
        logger,
      });
      const discarded: number[] = [];
      try {
        const operations: [string, () => Promise<unknown>][] = [
          ['ping', () => store.ping()],
          ['appendCertificates', () => store.appendCertificates('any', [{}], () => assert.fail())],
        ];
        for (const [name, operation] of operations) {
          await store.ping();
          const pids = (await servicePids(location)).filter((pid) => !discarded.includes(pid));
          assert.equal(pids.length, 1, `${name}: sessions ${JSON.stringify(pids)}`);
          const pid = pids[0]!;
          discarded.push(pid);
          process.kill(pid, 'SIGSTOP');
          try {
            const started = Date.now();
            await assert.rejects(operation(), (error: unknown) => {
              assert.ok(error instanceof StoreUnavailableError, `${name}: ${String(error)}`);
              assert.equal((error.cause as Error).message, 'Query read timeout', name);
              return true;
            });
            const elapsed = Date.now() - started;
            assert.ok(elapsed >= QUERY_TIMEOUT_MS - 50, `${name} failed after ${elapsed} ms`);
            // The margin covers a loaded machine; without a query timeout the call would wait
            // for the backend to be resumed.
            assert.ok(elapsed < QUERY_TIMEOUT_MS + 4_000, `${name} failed after ${elapsed} ms`);
          } finally {
            process.kill(pid, 'SIGCONT');
          }
          // The next call opens a new connection, and the server ends the old session.
          await store.ping();
          await waitUntilGone(location, pid);
        }
      } finally {
        for (const pid of discarded) {
          try {
            process.kill(pid, 'SIGCONT');
          } catch {
            // The backend has exited.
          }
        }
        await store.close();
        await database.drop();
      }
      // A connection closed after a timeout inside a transaction can report its closing as a
      // failure of a connection in use. It is never reported as an idle connection.
      for (const message of warnings) {
        assert.match(message, /^PostgreSQL connection failed while in use/);
      }
    });
  },
);
