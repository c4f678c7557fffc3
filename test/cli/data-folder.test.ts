// Development data folders: a lost secrets.json next to an existing database, and read-only
// commands pointed at a folder that contains no database.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, runCli } from '../helpers/cli.ts';
import { createTestDatabase, TEST_ENGINE, type TestDatabase } from '../helpers/database.ts';

/** Runs cdil in `cwd` with `env` on top of the test process's environment minus CDIL_*. */
function runCliIn(cwd: string, args: string[], env: Record<string, string>) {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('CDIL_')),
  );
  return spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    env: { ...base, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe(`lost secrets.json on ${TEST_ENGINE}`, () => {
  let dir: string;
  let database: TestDatabase;
  let env: Record<string, string>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-secrets-'));
    database = await createTestDatabase();
    env = { CDIL_DATA_DIR: dir, CDIL_ENV: 'development', CDIL_LOG_LEVEL: 'warn', ...database.env };
    const created = runCli(['tenant', 'create', 'sealed-tenant'], env);
    assert.equal(created.status, 0, created.stderr);
    rmSync(join(dir, 'secrets.json'));
  });
  after(async () => {
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('server rejects new secrets', () => {
    const result = spawnSync(process.execPath, [CLI, 'serve'], {
      env: { ...process.env, ...env, CDIL_PORT: '0', CDIL_HOST: '127.0.0.1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(result.status, 78, result.stdout);
    assert.match(result.stderr, /secrets file .*secrets\.json is missing/);
    assert.match(result.stderr, /restore secrets\.json/);
    assert.doesNotMatch(result.stdout, /Server listening/);
    assert.equal(existsSync(join(dir, 'secrets.json')), false);
  });

  test('tenant create rejects new secrets', () => {
    const result = runCli(['tenant', 'create', 'second-tenant'], env);
    assert.equal(result.status, 78);
    assert.match(result.stderr, /secrets\.json is missing/);
    assert.equal(existsSync(join(dir, 'secrets.json')), false);
  });

  test('token rejects missing secrets', () => {
    const result = runCli(['token', '--tenant', 'sealed-tenant', '--role', 'auditor'], env);
    assert.equal(result.status, 78);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /secrets\.json does not exist.*restore it/);
    assert.equal(existsSync(join(dir, 'secrets.json')), false);
  });
});

describe('read-only commands on a missing data folder', () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-missing-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const readers = [
    ['tenant', 'list'],
    ['ledger', 'verify', '--tenant', 'any-tenant'],
    ['token', '--tenant', 'any-tenant', '--role', 'auditor'],
  ];
  for (const args of readers) {
    test(
      `${args.slice(0, 2).join(' ')} creates nothing`,
      { skip: TEST_ENGINE === 'postgres' },
      () => {
        const missing = join(dir, 'missing');
        const result = runCliIn(dir, args, { CDIL_DATA_DIR: missing });
        assert.notEqual(result.status, 0);
        assert.equal(result.stdout, '');
        assert.match(result.stderr, /missing does not exist, so it contains no database/);
        assert.equal(existsSync(missing), false);
      },
    );
  }

  // A missing data folder is a configuration error (EX_CONFIG) for every command but ledger
  // verify, which reports any input it cannot use with its own status 2.
  for (const [args, status] of [
    [['tenant', 'list'], 78],
    [['token', '--tenant', 'any-tenant', '--role', 'auditor'], 78],
    [['ledger', 'verify', '--tenant', 'any-tenant'], 2],
  ] as const) {
    test(
      `${args.slice(0, 2).join(' ')} exits ${status} without a data folder`,
      { skip: TEST_ENGINE === 'postgres' },
      () => {
        const result = runCliIn(dir, [...args], { CDIL_DATA_DIR: join(dir, 'absent') });
        assert.equal(result.status, status, result.stderr);
      },
    );
  }

  test('ledger verify --json reports it on one line', { skip: TEST_ENGINE === 'postgres' }, () => {
    const args = ['ledger', 'verify', '--tenant', 'any-tenant', '--json'];
    const result = runCliIn(dir, args, { CDIL_DATA_DIR: join(dir, 'absent') });
    assert.equal(result.status, 2, result.stderr);
    const output = JSON.parse(result.stdout) as { ok: boolean; error: { message: string } };
    assert.equal(output.ok, false);
    assert.match(output.error.message, /^database file .*absent\/cdil\.sqlite does not exist/);
    assert.doesNotMatch(output.error.message, /\n/);
  });

  for (const args of readers) {
    test(
      `${args.slice(0, 2).join(' ')} names the parent data folder`,
      { skip: TEST_ENGINE === 'postgres' },
      () => {
        const project = join(dir, 'project');
        const subfolder = join(project, 'docs');
        mkdirSync(join(project, '.cdil-data'), { recursive: true });
        mkdirSync(subfolder, { recursive: true });
        const result = runCliIn(subfolder, args, {});
        assert.notEqual(result.status, 0);
        assert.match(result.stderr, /docs\/\.cdil-data does not exist/);
        assert.match(result.stderr, new RegExp(`run the command in ${project}, which contains`));
        assert.equal(existsSync(join(subfolder, '.cdil-data')), false);
      },
    );
  }
});
