// The SQLite append thread, on which a server on SQLite appends by default. It reports a held
// write lock, a full database, a thread that stopped after its commit and a closed thread as the
// store itself would, so clients get the same 503s, and nothing is half-written.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { SqliteAppendThread } from '../../src/services/append-thread.ts';
import { systemClock } from '../../src/services/clock.ts';
import { createServices, type Services } from '../../src/services/container.ts';
import { AppError } from '../../src/services/errors.ts';
import { IssuanceService } from '../../src/services/issuance.ts';
import { StoreUnavailableError } from '../../src/storage/store.ts';
import { lastFullFailure, nextWriteOrder, NO_WRITES } from '../../src/storage/write-state.ts';
import { issueRequest } from '../helpers/bundle.ts';
import { walkChain } from '../helpers/chain.ts';
import { TEST_ENGINE } from '../helpers/database.ts';

const LOSES_REPLY = new URL('../fixtures/append-thread-loses-reply.mjs', import.meta.url);

function sqliteConfig(dir: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    CDIL_ENV: 'development',
    CDIL_DATA_DIR: dir,
    CDIL_LOG_LEVEL: 'warn',
    ...env,
  });
}

/** Expects `promise` to reject with an AppError of `code`. */
async function rejectsWith(promise: Promise<unknown>, code: string): Promise<AppError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}, but the call succeeded`),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof AppError, String(error));
  assert.equal(error.code, code, error.message);
  return error;
}

describe('SQLite append thread', { skip: TEST_ENGINE !== 'sqlite' && 'SQLite only' }, () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-append-thread-'));
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  test('server appends on the thread', async () => {
    const services = await createServices(sqliteConfig(join(dir, 'default')));
    try {
      // Any append made in this thread fails, so each certificate below came from the thread.
      services.store.appendCertificateGroups = () =>
        Promise.reject(new Error('appended in the issuing thread'));
      const tenants = ['thread-a', 'thread-b', 'thread-c'];
      for (const tenant of tenants) {
        await services.tenants.create(tenant);
      }
      const outcomes = await Promise.all(
        Array.from({ length: 150 }, (_, i) =>
          services.issuance.issue(
            tenants[i % tenants.length]!,
            issueRequest({ note_text: `Note ${i}: patient seen for follow-up.` }),
            `key-${i}`,
          ),
        ),
      );
      for (const tenant of tenants) {
        const chain = await walkChain(services, tenant);
        assert.equal(chain.length, 50);
        const issued = outcomes
          .map((outcome) => outcome.certificate)
          .filter((certificate) => certificate.tenant_id === tenant)
          .map((certificate) => certificate.certificate_id);
        assert.deepEqual([...chain].sort(), [...issued].sort());
      }
      const replay = await services.issuance.issue(
        'thread-a',
        issueRequest({ note_text: 'Note 0: patient seen for follow-up.' }),
        'key-0',
      );
      assert.equal(replay.replayed, true);
      assert.equal(replay.certificate.certificate_id, outcomes[0]!.certificate.certificate_id);
      await rejectsWith(
        services.issuance.issue('thread-a', issueRequest({ note_text: 'other' }), 'key-0'),
        'IDEMPOTENCY_KEY_REUSED',
      );
    } finally {
      await services.close();
    }
  });

  describe('with a thread of its own', () => {
    let services: Services;
    let config: Config;
    const threads: SqliteAppendThread[] = [];

    /** Returns an issuance service on the shared database whose appends run on `thread`. */
    function issuanceOn(thread: SqliteAppendThread): IssuanceService {
      threads.push(thread);
      return new IssuanceService(
        services.store,
        services.keyring,
        systemClock,
        undefined,
        undefined,
        thread,
      );
    }

    before(async () => {
      config = sqliteConfig(join(dir, 'own'), { CDIL_SQLITE_APPEND_THREAD: 'false' });
      services = await createServices(config);
    });

    after(async () => {
      await Promise.all(threads.map((thread) => thread.close()));
      await services.close();
    });

    test('lost reply replays on retry', async () => {
      await services.tenants.create('lost-reply');
      const issuance = issuanceOn(new SqliteAppendThread(config.sqlitePath, {}, LOSES_REPLY));
      const request = issueRequest();
      const error = await rejectsWith(
        issuance.issue('lost-reply', request, 'retry-me'),
        'DATABASE_UNAVAILABLE',
      );
      assert.match(error.message, /same Idempotency-Key/);
      const retried = await issuance.issue('lost-reply', request, 'retry-me');
      assert.equal(retried.replayed, true);
      assert.deepEqual(await walkChain(services, 'lost-reply'), [
        retried.certificate.certificate_id,
      ]);
    });

    test('held write lock gives DATABASE_BUSY', async () => {
      await services.tenants.create('held-lock');
      const issuance = issuanceOn(
        new SqliteAppendThread(config.sqlitePath, { busyTimeoutMs: 300 }),
      );
      const holder = new Database(config.sqlitePath);
      try {
        holder.exec('BEGIN IMMEDIATE');
        await rejectsWith(issuance.issue('held-lock', issueRequest()), 'DATABASE_BUSY');
        holder.exec('ROLLBACK');
        const outcome = await issuance.issue('held-lock', issueRequest());
        assert.deepEqual(await walkChain(services, 'held-lock'), [
          outcome.certificate.certificate_id,
        ]);
      } finally {
        holder.close();
      }
    });

    test('full database gives STORAGE_FULL', async () => {
      await services.tenants.create('full-db');
      const reader = new Database(config.sqlitePath, { readonly: true });
      const pages = (reader.pragma('page_count', { simple: true }) as number) + 4;
      reader.close();
      const thread = new SqliteAppendThread(config.sqlitePath, { maxPageCount: pages });
      const issuance = issuanceOn(thread);

      const issued: string[] = [];
      let full: AppError | undefined;
      for (let i = 0; i < 500 && full === undefined; i++) {
        try {
          const outcome = await issuance.issue(
            'full-db',
            issueRequest({ note_text: `Note ${i} ${'x'.repeat(2000)}` }),
          );
          issued.push(outcome.certificate.certificate_id);
        } catch (error) {
          assert.ok(error instanceof AppError);
          full = error;
        }
      }
      assert.equal(full?.code, 'STORAGE_FULL', full?.message);

      const failedAt = lastFullFailure([thread.writeState(), NO_WRITES]);
      assert.notEqual(failedAt, undefined);
      assert.ok(Date.now() - failedAt! < 60_000);
      // A write that commits on the process's other connection afterwards ends the failure, even
      // within the same millisecond.
      const committedLater = { ...NO_WRITES, committedOrder: nextWriteOrder() };
      assert.equal(lastFullFailure([thread.writeState(), committedLater]), undefined);

      assert.deepEqual(await walkChain(services, 'full-db'), issued);
    });

    test('closed thread rejects appends', async () => {
      await services.tenants.create('closed-thread');
      const thread = new SqliteAppendThread(config.sqlitePath);
      const issuance = issuanceOn(thread);
      await issuance.issue('closed-thread', issueRequest());
      // A failure on the other connection before this commit no longer counts; a later one does.
      const earlier = { ...NO_WRITES, failedAt: Date.now(), failedOrder: 1 };
      assert.equal(lastFullFailure([thread.writeState(), earlier]), undefined);
      const later = { ...NO_WRITES, failedAt: Date.now(), failedOrder: nextWriteOrder() };
      assert.equal(lastFullFailure([thread.writeState(), later]), later.failedAt);
      await thread.close();
      assert.equal(thread.available(), false);
      await assert.rejects(thread.append([], []), StoreUnavailableError);
    });

    test('thread whose code is missing falls back', async () => {
      await services.tenants.create('no-code');
      const warnings: string[] = [];
      const thread = new SqliteAppendThread(
        config.sqlitePath,
        { logger: { warn: (_details, message) => warnings.push(message) } },
        new URL('../fixtures/no-such-append-thread.mjs', import.meta.url),
      );
      const issuance = issuanceOn(thread);
      const outcome = await issuance.issue('no-code', issueRequest(), 'missing-code-1');
      assert.equal(outcome.replayed, false);
      assert.deepEqual(warnings, [
        'the SQLite append thread could not load its code; appending on the main thread meanwhile',
      ]);
      assert.deepEqual(await walkChain(services, 'no-code'), [outcome.certificate.certificate_id]);
    });

    test('thread that cannot open the database falls back', async () => {
      await services.tenants.create('no-thread');
      // The thread's database path runs through a regular file, so its connection cannot open.
      const blocker = join(dir, 'not-a-folder');
      writeFileSync(blocker, '');
      const warnings: { details: object; message: string }[] = [];
      const thread = new SqliteAppendThread(join(blocker, 'cdil.sqlite'), {
        logger: { warn: (details, message) => warnings.push({ details, message }) },
      });
      const issuance = issuanceOn(thread);
      const first = await issuance.issue('no-thread', issueRequest(), 'fallback-1');
      assert.equal(first.replayed, false);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!.message, /could not open the database/);
      assert.equal(thread.available(), false);
      const second = await issuance.issue('no-thread', issueRequest({ note_text: 'second' }));
      assert.equal(warnings.length, 1, 'a second thread was started within the retry delay');
      assert.deepEqual(await walkChain(services, 'no-thread'), [
        first.certificate.certificate_id,
        second.certificate.certificate_id,
      ]);
    });
  });
});
