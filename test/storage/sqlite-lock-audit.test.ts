// Audit events of rejections made while another connection holds the SQLite write lock. The
// response does not wait for the lock, and the event is stored once the lock is free. A
// shutdown while the lock stays held ends within its bound and logs the events not written.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULT_AUDIT_WRITE_POLICY } from '../../src/server/audit-writer.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { TEST_ENGINE } from '../helpers/database.ts';

const TENANT = 'lock-audit-t1';

interface LockableApp {
  testApp: TestApp;
  /** A second connection to the database file, as another process would have. */
  other: Database.Database;
  dir: string;
}

async function openLockableApp(busyTimeoutMs: number): Promise<LockableApp> {
  const dir = mkdtempSync(join(tmpdir(), 'cdil-sqlite-audit-'));
  const testApp = await startTestApp({ CDIL_DATA_DIR: dir }, undefined, {
    store: new SqliteStore(join(dir, 'cdil.sqlite'), { busyTimeoutMs }),
  });
  await testApp.services.tenants.create(TENANT);
  return { testApp, other: new Database(join(dir, 'cdil.sqlite')), dir };
}

function releaseAndRemove(lockable: LockableApp): void {
  if (lockable.other.inTransaction) {
    lockable.other.exec('ROLLBACK');
  }
  lockable.other.close();
  rmSync(lockable.dir, { recursive: true, force: true });
}

function eventsOf(other: Database.Database, action: string): { occurred_at: string }[] {
  return other
    .prepare('SELECT occurred_at FROM audit_events WHERE action = ? ORDER BY log_index')
    .all(action) as { occurred_at: string }[];
}

/** Polls until `count` events of `action` are stored, for up to `timeoutMs`. */
async function waitForEvents(
  other: Database.Database,
  action: string,
  count: number,
  timeoutMs: number,
): Promise<{ occurred_at: string }[]> {
  const deadline = Date.now() + timeoutMs;
  let rows = eventsOf(other, action);
  while (rows.length < count && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    rows = eventsOf(other, action);
  }
  return rows;
}

function issue(testApp: TestApp, token: string, payload: Record<string, unknown>) {
  return testApp.app.inject({
    method: 'POST',
    url: '/v1/clinical/documentation',
    headers: bearer(token),
    payload,
  });
}

describe(
  'rejection audit events while the SQLite write lock is held',
  { skip: TEST_ENGINE !== 'sqlite' && 'the write lock is a SQLite file lock' },
  () => {
    test('busy rejections are stored after release', async () => {
      const lockable = await openLockableApp(300);
      const { testApp, other } = lockable;
      try {
        const token = await testApp.token('clinician', TENANT);
        other.exec('BEGIN IMMEDIATE');
        const responses = await Promise.all(
          [0, 1, 2].map(() => issue(testApp, token, issueBody())),
        );
        for (const response of responses) {
          assert.equal(response.statusCode, 503, response.body);
        }
        // Longer than the busy timeout, so the first tries of the audit writes fail too.
        await new Promise((resolve) => setTimeout(resolve, 1_200));
        assert.equal(eventsOf(other, 'request.failed').length, 0);
        const released = new Date();
        other.exec('ROLLBACK');
        const failed = await waitForEvents(other, 'request.failed', 3, 20_000);
        assert.equal(failed.length, 3, 'every 503 rejection was recorded after the release');
        for (const event of failed) {
          assert.ok(
            new Date(event.occurred_at) < released,
            `event time ${event.occurred_at} is the retry's, not the rejection's`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(eventsOf(other, 'request.failed').length, 3, 'no event is stored twice');
      } finally {
        await testApp.close();
        releaseAndRemove(lockable);
      }
    });

    test('400 rejection does not wait for the lock', async () => {
      // The lock wait of the audit write is far longer than the rejection's wait for it.
      const lockable = await openLockableApp(8_000);
      const { testApp, other } = lockable;
      try {
        const token = await testApp.token('clinician', TENANT);
        other.exec('BEGIN IMMEDIATE');
        const started = Date.now();
        const response = await issue(testApp, token, issueBody({ human_reviewed: 'yes' }));
        const elapsed = Date.now() - started;
        assert.equal(response.statusCode, 400, response.body);
        assert.ok(
          elapsed >= DEFAULT_AUDIT_WRITE_POLICY.rejectionWaitMs - 50,
          `answered after ${elapsed} ms, before the audit wait ended`,
        );
        assert.ok(elapsed < 4_000, `answered after ${elapsed} ms`);
        assert.equal(eventsOf(other, 'request.rejected').length, 0);
        other.exec('ROLLBACK');
        const rejected = await waitForEvents(other, 'request.rejected', 1, 10_000);
        assert.equal(rejected.length, 1, 'the rejection was recorded after the release');
      } finally {
        await testApp.close();
        releaseAndRemove(lockable);
      }
    });

    test('shutdown with the lock held is bounded', async () => {
      const lockable = await openLockableApp(300);
      const { testApp, other } = lockable;
      try {
        const token = await testApp.token('clinician', TENANT);
        other.exec('BEGIN IMMEDIATE');
        const responses = await Promise.all([0, 1].map(() => issue(testApp, token, issueBody())));
        for (const response of responses) {
          assert.equal(response.statusCode, 503, response.body);
        }
        const started = Date.now();
        await testApp.app.close();
        const elapsed = Date.now() - started;
        const bound = DEFAULT_AUDIT_WRITE_POLICY.shutdownWaitMs;
        assert.ok(elapsed < bound + 3_000, `close() took ${elapsed} ms`);
        const lines = testApp.logs.map(
          (line) => JSON.parse(line) as { level: number; msg: string; [field: string]: unknown },
        );
        const summary = lines.find((line) => /audit events .* were not written/.test(line.msg));
        assert.ok(summary, 'the shutdown logs how many events were not written');
        assert.equal(summary.level, 50);
        assert.equal(summary.notWritten, 2);
        const givenUp = lines.filter((line) => line.failure === 'shutdown');
        assert.equal(givenUp.length, 2);
        const requestIds = responses.map((response) => response.headers['x-request-id']);
        for (const line of givenUp) {
          assert.equal(line.level, 50);
          assert.equal(line.tenantId, TENANT);
          assert.equal(line.action, 'request.failed');
          assert.equal(line.reason, 'unavailable');
          assert.ok(requestIds.includes(line.requestId as string), String(line.requestId));
        }
        assert.ok(
          !testApp.logs.some((line) => line.includes('Patient reports')),
          'a log line contains the note text',
        );
      } finally {
        await testApp.close();
        releaseAndRemove(lockable);
      }
    });
  },
);
