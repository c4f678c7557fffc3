// Appends on SQLite when another connection, as another process would, holds the write lock:
// the append waits without blocking the event loop and completes once the lock is free.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { createServices, type Services } from '../../src/services/container.ts';
import { issueRequest } from '../helpers/bundle.ts';
import { walkChain } from '../helpers/chain.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { StoreBusyError } from '../../src/storage/store.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { TEST_ENGINE } from '../helpers/database.ts';

const TENANT = 'lock-t1';
/** Time the lock is held; long enough for 5 ticks of a 10 ms timer on a loaded machine. */
const HOLD_MS = 300;

/**
 * Runs `body` against a test app on a new SQLite file with the given busy timeout, and a second
 * connection to that file, as another process would have. Removes both afterwards.
 */
async function withLockableApp(
  busyTimeoutMs: number,
  body: (testApp: TestApp, other: Database.Database) => Promise<void>,
): Promise<void> {
  const lockedDir = mkdtempSync(join(tmpdir(), 'cdil-sqlite-busy-'));
  const testApp = await startTestApp({ CDIL_DATA_DIR: lockedDir }, undefined, {
    store: new SqliteStore(join(lockedDir, 'cdil.sqlite'), { busyTimeoutMs }),
  });
  const other = new Database(join(lockedDir, 'cdil.sqlite'));
  try {
    await body(testApp, other);
  } finally {
    if (other.inTransaction) {
      other.exec('ROLLBACK');
    }
    other.close();
    await testApp.close();
    rmSync(lockedDir, { recursive: true, force: true });
  }
}

describe(
  'SQLite append while another connection holds the write lock',
  {
    skip: TEST_ENGINE !== 'sqlite' && 'the write lock is a SQLite file lock',
  },
  () => {
    let dir: string;
    let services: Services;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'cdil-sqlite-lock-'));
      const config = loadConfig({
        CDIL_ENV: 'development',
        CDIL_DATA_DIR: dir,
        CDIL_LOG_LEVEL: 'warn',
      });
      const first = await createServices(config);
      await first.tenants.create(TENANT);
      await first.close();
      // A process that opens an existing database changes no schema, so none of its statements
      // is compiled again before the first append, as happens after a restart.
      services = await createServices(config);
    });

    after(async () => {
      await services.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('waits with the event loop running and appends once the lock is released', async () => {
      const other = new Database(join(dir, 'cdil.sqlite'));
      let ticks = 0;
      const ticker = setInterval(() => {
        ticks += 1;
      }, 10);
      try {
        other.exec('BEGIN IMMEDIATE');
        let settled = false;
        const issued = Promise.all(
          [0, 1, 2].map((i) =>
            services.issuance.issue(TENANT, issueRequest({ encounter_id: `lock-enc-${i}` })),
          ),
        ).finally(() => {
          settled = true;
        });
        await new Promise((resolve) => setTimeout(resolve, HOLD_MS));
        assert.equal(settled, false, 'an append finished while another connection held the lock');
        assert.ok(ticks >= 5, `the event loop ran only ${ticks} timer ticks while waiting`);
        other.exec('COMMIT');
        const outcomes = await issued;
        assert.equal(outcomes.length, 3);
        assert.equal((await walkChain(services, TENANT)).length, 3);
      } finally {
        clearInterval(ticker);
        if (other.inTransaction) {
          other.exec('ROLLBACK');
        }
        other.close();
      }
    });

    test('long lock wait ends promptly after release', async () => {
      const path = join(dir, 'long-wait.sqlite');
      const store = new SqliteStore(path, { busyTimeoutMs: 10_000 });
      await store.migrate();
      const other = new Database(path);
      try {
        other.exec('BEGIN IMMEDIATE');
        let settled = false;
        const write = store.setTenantRateLimit('no-such-tenant', 10).finally(() => {
          settled = true;
        });
        // Long enough that the pauses between tries have grown to their maximum.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        assert.equal(settled, false, 'the write finished while another connection held the lock');
        other.exec('COMMIT');
        const released = Date.now();
        assert.equal(await write, false);
        const delay = Date.now() - released;
        // The longest pause is 16 ms; the rest is margin for a loaded machine.
        assert.ok(delay < 500, `the write finished ${delay} ms after the lock was released`);
      } finally {
        if (other.inTransaction) {
          other.exec('ROLLBACK');
        }
        other.close();
        await store.close();
      }
    });

    test('answers 503 DATABASE_BUSY when the lock outlasts the timeout', async () => {
      await withLockableApp(300, async (testApp, other) => {
        await testApp.services.tenants.create(TENANT);
        await testApp.services.tenants.create('lock-t2');
        const token = await testApp.token('clinician', TENANT);
        const otherToken = await testApp.token('clinician', 'lock-t2');
        other.exec('BEGIN IMMEDIATE');
        const started = Date.now();
        // Both tenants share one batch, which fails once for both instead of each in turn.
        const [response, otherResponse] = await Promise.all(
          [token, otherToken].map((bearerToken) =>
            testApp.app.inject({
              method: 'POST',
              url: '/v1/clinical/documentation',
              headers: bearer(bearerToken),
              payload: issueBody(),
            }),
          ),
        );
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 300, `the append gave up after ${elapsed} ms`);
        assert.ok(elapsed < 750, `the tenants waited ${elapsed} ms, so they were retried in turn`);
        for (const answer of [response!, otherResponse!]) {
          assert.equal(answer.statusCode, 503, answer.body);
          assert.equal(answer.headers['retry-after'], '1');
          assert.equal(answer.json<{ error: { code: string } }>().error.code, 'DATABASE_BUSY');
        }
        // An admin write waits the same way, with the event loop running, and fails the same.
        let ticks = 0;
        const ticker = setInterval(() => {
          ticks += 1;
        }, 10);
        const adminToken = await testApp.token('admin');
        const rateLimit = await testApp.app.inject({
          method: 'PUT',
          url: `/v1/admin/tenants/${TENANT}/rate-limit`,
          headers: bearer(adminToken),
          payload: { requests_per_minute: 100 },
        });
        clearInterval(ticker);
        assert.equal(rateLimit.statusCode, 503, rateLimit.body);
        assert.equal(rateLimit.json<{ error: { code: string } }>().error.code, 'DATABASE_BUSY');
        assert.ok(ticks >= 10, `the event loop ran only ${ticks} timer ticks while waiting`);
        other.exec('ROLLBACK');
        const retried = await testApp.app.inject({
          method: 'POST',
          url: '/v1/clinical/documentation',
          headers: bearer(token),
          payload: issueBody(),
        });
        assert.equal(retried.statusCode, 201, retried.body);
      });
    });

    test('busy rejection skips audit wait', async () => {
      await withLockableApp(400, async (testApp, other) => {
        await testApp.services.tenants.create(TENANT);
        const token = await testApp.token('clinician', TENANT);
        const post = () =>
          testApp.app
            .inject({
              method: 'POST',
              url: '/v1/clinical/documentation',
              headers: bearer(token),
              payload: issueBody(),
            })
            .then((response) => ({ response, at: Date.now() }));
        other.exec('BEGIN IMMEDIATE');
        const started = Date.now();
        const first = post();
        // Sent while the first batch waits for the lock, so it queues behind that batch.
        await new Promise((resolve) => setTimeout(resolve, 150));
        const queued = post();
        const [firstOutcome, queuedOutcome] = await Promise.all([first, queued]);
        for (const { response } of [firstOutcome, queuedOutcome]) {
          assert.equal(response.statusCode, 503, response.body);
          assert.equal(response.json<{ error: { code: string } }>().error.code, 'DATABASE_BUSY');
        }
        // The reply does not wait for the rejection's audit event, which needs the same lock.
        const firstElapsed = firstOutcome.at - started;
        assert.ok(firstElapsed < 700, `the first request was answered after ${firstElapsed} ms`);
        // The queued request is rejected with the batch, not after a wait of its own.
        const gap = queuedOutcome.at - firstOutcome.at;
        assert.ok(gap < 150, `the queued request was answered ${gap} ms after the batch`);
        assert.equal(
          (other.prepare('SELECT COUNT(*) AS n FROM audit_events').get() as { n: number }).n,
          1,
          'only the tenant creation is recorded while the lock is held',
        );
        other.exec('ROLLBACK');
        // Each rejection is recorded once the lock is free.
        let failed: unknown[] = [];
        for (let attempt = 0; attempt < 100 && failed.length < 2; attempt++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          failed = other
            .prepare("SELECT event_json FROM audit_events WHERE action = 'request.failed'")
            .all();
        }
        assert.equal(failed.length, 2, 'both rejections were recorded');
      });
    });
  },
);

describe(
  'SQLite store opened while another connection holds the write lock',
  {
    skip: TEST_ENGINE !== 'sqlite' && 'the write lock is a SQLite file lock',
  },
  () => {
    test('opens at once and reports a busy write', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'cdil-sqlite-open-locked-'));
      const path = join(dir, 'cdil.sqlite');
      const busyTimeoutMs = 3_000;
      const first = new SqliteStore(path, { busyTimeoutMs });
      await first.migrate();
      await first.close();
      const other = new Database(path);
      other.exec('BEGIN IMMEDIATE');
      let store: SqliteStore | undefined;
      try {
        const started = Date.now();
        // Opening runs PRAGMA optimize, which writes the statistics of the new tables.
        store = new SqliteStore(path, { busyTimeoutMs });
        const openMs = Date.now() - started;
        assert.ok(openMs < busyTimeoutMs / 2, `opening took ${openMs} ms`);
        const write = store.setTenantRateLimit('nobody', 5).then(
          () => undefined,
          (error: unknown) => error,
        );
        assert.ok((await write) instanceof StoreBusyError, String(await write));
      } finally {
        other.exec('ROLLBACK');
        other.close();
        await store?.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
