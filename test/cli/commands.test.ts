import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const COMMANDS = [
  [],
  ['serve'],
  ['migrate'],
  ['tenant'],
  ['tenant', 'create'],
  ['tenant', 'list'],
  ['token'],
  ['verify'],
  ['audit'],
  ['audit', 'export'],
  ['audit', 'verify'],
  ['demo'],
  ['shadow'],
  ['shadow', 'analyze'],
];

describe('cdil command line', () => {
  let dir: string;
  let env: Record<string, string>;
  let database: TestDatabase;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-cli-'));
    database = await createTestDatabase();
    env = {
      CDIL_DATA_DIR: dir,
      CDIL_ENV: 'development',
      CDIL_LOG_LEVEL: 'warn',
      ...database.env,
    };
  });
  after(async () => {
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const command of COMMANDS) {
    test(`cdil ${command.join(' ')} --help describes itself`, () => {
      const result = runCli([...command, '--help'], env);
      assert.equal(result.status, 0);
      assert.match(result.stdout, /Usage: cdil/);
      assert.ok(result.stdout.length > 80);
    });
  }

  test('migrate is safe to run twice', () => {
    const first = runCli(['migrate'], env);
    assert.equal(first.status, 0, first.stderr);
    const second = runCli(['migrate'], env);
    assert.equal(second.status, 0);
    assert.match(second.stdout, /up to date/);
  });

  test('tenant create provisions a key and rejects duplicates', () => {
    const created = runCli(['tenant', 'create', 'east-wing'], env);
    assert.equal(created.status, 0, created.stderr);
    const tenant = JSON.parse(created.stdout);
    assert.equal(tenant.tenant_id, 'east-wing');
    assert.equal(tenant.keys.length, 1);
    assert.equal(tenant.keys[0].status, 'active');
    assert.equal(JSON.stringify(tenant).includes('private'), false);
    const again = runCli(['tenant', 'create', 'east-wing'], env);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already exists/);
  });

  test('tenant create rejects an invalid id', () => {
    const result = runCli(['tenant', 'create', 'Bad Id!'], env);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /tenant_id must be/);
  });

  test('token carries tenant, roles and expiry', () => {
    const result = runCli(
      ['token', '--tenant', 'east-wing', '--role', 'auditor', '--ttl', '120'],
      env,
    );
    assert.equal(result.status, 0, result.stderr);
    const claims = decodeJwt(result.stdout.trim());
    assert.equal(claims.tenant_id, 'east-wing');
    assert.deepEqual(claims.roles, ['auditor']);
    assert.equal(typeof claims.exp, 'number');
    assert.ok(claims.exp! - Math.floor(Date.now() / 1000) <= 120);
  });

  test('token rejects an unknown role and a missing tenant', () => {
    assert.equal(runCli(['token', '--tenant', 'x1', '--role', 'superuser'], env).status, 1);
    const noTenant = runCli(['token', '--role', 'clinician'], env);
    assert.equal(noTenant.status, 1);
    assert.match(noTenant.stderr, /--tenant is required/);
  });

  test('production mode without secrets exits with a clear error', () => {
    const result = runCli(['serve'], { CDIL_ENV: 'production', CDIL_DATA_DIR: join(dir, 'prod') });
    assert.equal(result.status, 78);
    assert.match(result.stderr, /CDIL_JWT_SECRET is required/);
    assert.match(result.stderr, /CDIL_KEK is required/);
  });

  test('unknown command is a usage error', () => {
    const result = runCli(['frobnicate'], env);
    assert.equal(result.status, 2);
  });

  test('demo runs the whole story within a minute', () => {
    const started = Date.now();
    const result = runCli(['demo'], env);
    assert.equal(result.status, 0, result.stderr);
    assert.ok(Date.now() - started < 60_000);
    assert.match(result.stdout, /certified 25\/25/);
    assert.match(result.stdout, /verified 25\/25: 25 valid/);
    assert.match(result.stdout, /FAIL: failed checks: note_hash/);
    assert.match(result.stdout, /FAIL: failed checks: .*certificate_fields/);
    assert.match(result.stdout, /Demo complete/);
  });
});
