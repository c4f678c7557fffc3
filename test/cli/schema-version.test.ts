// A database whose schema is newer than this release's migrations: every command that opens it,
// and the server, must stop with an error that names both versions.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LATEST_SCHEMA_VERSION } from '../../src/storage/migrations.ts';
import { CLI, runCli } from '../helpers/cli.ts';
import {
  createTestDatabase,
  runSql,
  TEST_ENGINE,
  type StorageLocation,
} from '../helpers/database.ts';

const FUTURE_VERSION = LATEST_SCHEMA_VERSION + 1;
const TOO_NEW = new RegExp(
  `schema version ${FUTURE_VERSION} is newer than version ${LATEST_SCHEMA_VERSION}.*upgrade cdil`,
);

describe(`database schema newer than cdil on ${TEST_ENGINE}`, () => {
  let location: StorageLocation;
  let env: Record<string, string>;

  before(async () => {
    location = {
      dir: mkdtempSync(join(tmpdir(), 'cdil-schema-')),
      database: await createTestDatabase(),
    };
    env = {
      CDIL_DATA_DIR: location.dir,
      CDIL_ENV: 'development',
      CDIL_LOG_LEVEL: 'warn',
      ...location.database.env,
    };
    const created = runCli(['tenant', 'create', 'future-tenant'], env);
    assert.equal(created.status, 0, created.stderr);
    await runSql(
      location,
      'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)',
      [FUTURE_VERSION, `${FUTURE_VERSION} from a later release`, '2030-01-01T00:00:00Z'],
    );
  });
  after(async () => {
    await location.database.drop();
    rmSync(location.dir, { recursive: true, force: true });
  });

  test('migrate exits 78 naming both versions', () => {
    const result = runCli(['migrate'], env);
    assert.equal(result.status, 78, result.stdout);
    assert.match(result.stderr, TOO_NEW);
    assert.doesNotMatch(result.stdout, /up to date/);
  });

  test('tenant list exits 78 with and without migration', () => {
    const migrating = runCli(['tenant', 'list'], env);
    assert.equal(migrating.status, 78);
    assert.match(migrating.stderr, TOO_NEW);
    const notMigrating = runCli(['tenant', 'list'], { ...env, CDIL_MIGRATE_ON_START: 'false' });
    assert.equal(notMigrating.status, 78);
    assert.match(notMigrating.stderr, TOO_NEW);
  });

  test('ledger verify reports it as unusable', () => {
    const result = runCli(['ledger', 'verify', '--tenant', 'future-tenant'], env);
    assert.equal(result.status, 2);
    assert.match(result.stderr, TOO_NEW);
  });

  test('server exits 78 before listening', () => {
    const result = spawnSync(process.execPath, [CLI, 'serve'], {
      env: { ...process.env, ...env, CDIL_PORT: '0', CDIL_HOST: '127.0.0.1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(result.status, 78, result.stdout);
    assert.match(result.stderr, TOO_NEW);
    assert.doesNotMatch(result.stdout, /Server listening/);
  });
});
