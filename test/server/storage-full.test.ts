// How the service behaves when the database's disk is full. SQLite gets a real SQLITE_FULL from
// a store opened with a max_page_count that another connection has already filled with a
// throwaway table, and space comes back when that table is dropped. PostgreSQL gets SQLSTATE
// 53100 (disk_full) from triggers on the tables that writes insert into, which are dropped to
// free the space. In both cases the full disk must give 503 STORAGE_FULL, fail readiness, keep
// every acknowledged certificate intact and record each rejection once space is back.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, mock, test } from 'node:test';
import Database from 'better-sqlite3';
import { STORAGE_FULL_NOT_READY_MS } from '../../src/server/routes/health.ts';
import { STORAGE_FULL_RETRY_AFTER_S } from '../../src/services/errors.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { walkChain } from '../helpers/chain.ts';
import { TEST_ENGINE, runSql, type StorageLocation } from '../helpers/database.ts';

const TENANT = 'full-t1';

/** Page limit of the SQLite store; the filler table grows the file past it. */
const MAX_PAGES = 2_000;

/** Maximum requests of one kind sent while waiting for the first to fail on the full disk. */
const MAX_TRIES = 200;

interface Disk {
  /** Uses up the free space, so that the next writes fail. */
  fill(): Promise<void>;
  /** Frees space again. */
  free(): Promise<void>;
  close(): Promise<void>;
}

interface Response {
  statusCode: number;
  body: string;
  headers: Record<string, unknown>;
  json(): { error: { code: string; message: string } };
}

/** Starts an app on a SQLite file that another connection can fill past the store's page limit. */
async function startOnSqlite(): Promise<{ t: TestApp; disk: Disk }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'cdil-full-'));
  const path = join(dataDir, 'cdil.sqlite');
  const store = new SqliteStore(path, { maxPageCount: MAX_PAGES });
  const t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' }, undefined, { store });
  const other = new Database(path);
  const disk: Disk = {
    fill: () => {
      const pageSize = Number(other.pragma('page_size', { simple: true }));
      const pages = Number(other.pragma('page_count', { simple: true }));
      assert.ok(pages < MAX_PAGES, `the database already has ${pages} pages`);
      other.exec('CREATE TABLE disk_filler (b BLOB)');
      // The other connection has no page limit, so the file grows past the store's.
      other
        .prepare('INSERT INTO disk_filler VALUES (zeroblob(?))')
        .run((MAX_PAGES - pages + 16) * pageSize);
      assert.equal(Number(other.pragma('freelist_count', { simple: true })), 0);
      return Promise.resolve();
    },
    free: () => {
      other.exec('DROP TABLE disk_filler');
      return Promise.resolve();
    },
    close: () => {
      other.close();
      rmSync(dataDir, { recursive: true, force: true });
      return Promise.resolve();
    },
  };
  return { t, disk };
}

/** SQL that makes every insert into `table` fail as PostgreSQL does when a file cannot grow. */
function failingTrigger(table: string, sqlState: string): string[] {
  return [
    `CREATE OR REPLACE FUNCTION cdil_test_no_space() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       RAISE EXCEPTION 'could not extend file "base/16384/16390": No space left on device'
         USING ERRCODE = TG_ARGV[0], HINT = 'Check free disk space.';
     END $$`,
    `CREATE TRIGGER cdil_test_no_space BEFORE INSERT ON ${table}
     FOR EACH STATEMENT EXECUTE FUNCTION cdil_test_no_space('${sqlState}')`,
  ];
}

/** Tables that issuance, verification and export insert into. */
const WRITTEN_TABLES = ['certificates', 'audit_events', 'log_nodes', 'log_checkpoints'];

/** Starts an app on PostgreSQL whose inserts fail with `sqlState` while the disk is "full". */
async function startOnPostgres(sqlState = '53100'): Promise<{ t: TestApp; disk: Disk }> {
  const t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' });
  const where: StorageLocation = { dir: t.dir, database: t.database };
  const disk: Disk = {
    fill: async () => {
      for (const table of WRITTEN_TABLES) {
        for (const statement of failingTrigger(table, sqlState)) {
          await runSql(where, statement);
        }
      }
    },
    free: async () => {
      for (const table of WRITTEN_TABLES) {
        await runSql(where, `DROP TRIGGER cdil_test_no_space ON ${table}`);
      }
    },
    close: () => Promise.resolve(),
  };
  return { t, disk };
}

function startOnEngine(): Promise<{ t: TestApp; disk: Disk }> {
  return TEST_ENGINE === 'sqlite' ? startOnSqlite() : startOnPostgres();
}

function assertStorageFull(response: Response, request: string): void {
  assert.equal(response.statusCode, 503, `${request}: ${response.body}`);
  const { error } = response.json();
  assert.equal(error.code, 'STORAGE_FULL', request);
  assert.match(error.message, /cannot be written because its disk is full/, request);
  assert.match(error.message, /nothing was stored/, request);
  assert.equal(response.headers['retry-after'], String(STORAGE_FULL_RETRY_AFTER_S), request);
}

/**
 * Sends requests until the first one that fails, and returns it. Each earlier one must have
 * succeeded with `okStatus`; `onSuccess` receives them. A full SQLite file can still take rows
 * that fit into free space of its existing pages, so the first requests may succeed.
 */
async function sendUntilRejected(
  send: (attempt: number) => Promise<Response>,
  okStatus: number,
  onSuccess: (response: Response) => void = () => {},
): Promise<Response> {
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    const response = await send(attempt);
    if (response.statusCode !== okStatus) {
      return response;
    }
    onSuccess(response);
  }
  throw new Error(`${MAX_TRIES} requests succeeded on a full disk`);
}

describe('full database disk', () => {
  test('writes answer 503 STORAGE_FULL and recover', async () => {
    const { t, disk } = await startOnEngine();
    try {
      await t.services.tenants.create(TENANT);
      const clinician = await t.token('clinician', TENANT);
      const auditor = await t.token('auditor', TENANT);
      const acknowledged: string[] = [];
      const acknowledge = (response: Response) => {
        acknowledged.push(JSON.parse(response.body).certificate.certificate_id as string);
      };
      const issue = (key: string) =>
        t.app.inject({
          method: 'POST',
          url: '/v1/clinical/documentation',
          headers: { ...bearer(clinician), 'idempotency-key': key },
          payload: issueBody(),
        });
      for (let i = 0; i < 3; i++) {
        const created = await issue(`before-${i}`);
        assert.equal(created.statusCode, 201, created.body);
        acknowledge(created);
      }
      const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 200, ready.body);

      await disk.fill();
      let rejections = 0;
      const rejectedIssue = await sendUntilRejected(
        (attempt) => issue(`full-${attempt}`),
        201,
        acknowledge,
      );
      assertStorageFull(rejectedIssue, 'issuance');
      rejections += 1;

      const notReady = await t.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(notReady.statusCode, 503, notReady.body);
      assert.equal(notReady.json().error.code, 'NOT_READY');
      assert.match(notReady.json().error.message, /disk is full/);

      const certificateId = acknowledged[0]!;
      const rejectedVerify = await sendUntilRejected(
        () =>
          t.app.inject({
            method: 'POST',
            url: `/v1/certificates/${certificateId}/verify`,
            headers: bearer(auditor),
            payload: { note_text: issueBody().note_text },
          }),
        200,
      );
      assertStorageFull(rejectedVerify, 'verification');
      rejections += 1;
      const rejectedExport = await sendUntilRejected(
        () =>
          t.app.inject({
            method: 'GET',
            url: `/v1/certificates/${certificateId}/defense-bundle`,
            headers: bearer(auditor),
          }),
        200,
      );
      assertStorageFull(rejectedExport, 'bundle export');
      rejections += 1;

      // A process that gets no writes, as one taken out of rotation, reports ready again once the
      // Retry-After sent to clients has passed, although the disk is still full.
      mock.timers.enable({ apis: ['Date'], now: Date.now() });
      try {
        mock.timers.tick(STORAGE_FULL_NOT_READY_MS);
        const readyLater = await t.app.inject({ method: 'GET', url: '/readyz' });
        assert.equal(readyLater.statusCode, 200, readyLater.body);
      } finally {
        mock.timers.reset();
      }
      assertStorageFull(await issue('full-again'), 'issuance after the wait');
      rejections += 1;
      const notReadyAgain = await t.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(notReadyAgain.statusCode, 503, notReadyAgain.body);

      await disk.free();
      const recovered = await issue('after');
      assert.equal(recovered.statusCode, 201, recovered.body);
      acknowledge(recovered);
      const readyAgain = await t.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(readyAgain.statusCode, 200, readyAgain.body);

      // Every acknowledged certificate is stored and verifies, and nothing else is in the chain.
      assert.deepEqual(await walkChain(t.services, TENANT), acknowledged);
      const ledger = await t.services.ledger.verify(TENANT);
      assert.equal(ledger.ok, true, JSON.stringify(ledger.findings));

      // Each rejection's audit event is written in the background once space is back.
      let failed: unknown[] = [];
      for (let attempt = 0; attempt < 300 && failed.length < rejections; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        failed = await t.services.store.listAuditEvents(
          TENANT,
          { action: 'request.failed' },
          -1,
          100,
        );
      }
      assert.equal(failed.length, rejections, t.logs.join(''));
    } finally {
      await t.close();
      await disk.close();
    }
  });
});

describe(
  'PostgreSQL resource errors',
  { skip: TEST_ENGINE !== 'postgres' && 'needs DATABASE_URL' },
  () => {
    test('out of memory answers 503 busy', async () => {
      const { t, disk } = await startOnPostgres('53200');
      try {
        await t.services.tenants.create(TENANT);
        const clinician = await t.token('clinician', TENANT);
        await disk.fill();
        const response = await t.app.inject({
          method: 'POST',
          url: '/v1/clinical/documentation',
          headers: bearer(clinician),
          payload: issueBody(),
        });
        assert.equal(response.statusCode, 503, response.body);
        assert.equal(response.json().error.code, 'DATABASE_BUSY');
        assert.equal(response.headers['retry-after'], '1');
        assert.match(response.json().error.message, /ran out of memory/);
        // Memory is no disk: readiness stays as it was.
        const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
        assert.equal(ready.statusCode, 200, ready.body);
        await disk.free();
        const created = await t.app.inject({
          method: 'POST',
          url: '/v1/clinical/documentation',
          headers: bearer(clinician),
          payload: issueBody(),
        });
        assert.equal(created.statusCode, 201, created.body);
        assert.equal((await walkChain(t.services, TENANT)).length, 1);
      } finally {
        await t.close();
        await disk.close();
      }
    });
  },
);
