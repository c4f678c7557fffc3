import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { CLI, runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { closedPort } from '../helpers/ports.ts';

const packageFolder = resolve(import.meta.dirname, '..', '..');

const COMMANDS = [
  [],
  ['serve'],
  ['migrate'],
  ['tenant'],
  ['tenant', 'create'],
  ['tenant', 'list'],
  ['tenant', 'rotate-key'],
  ['tenant', 'revoke-key'],
  ['tenant', 'set-rate-limit'],
  ['token'],
  ['verify'],
  ['audit'],
  ['audit', 'export'],
  ['audit', 'verify'],
  ['demo'],
  ['shadow'],
  ['shadow', 'analyze'],
  ['ledger'],
  ['ledger', 'verify'],
  ['witness'],
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

  test('tenant rotate-key retires the active key', () => {
    const created = runCli(['tenant', 'create', 'key-wing'], env);
    assert.equal(created.status, 0, created.stderr);
    const firstKey = JSON.parse(created.stdout).keys[0].key_id;

    const rotated = runCli(['tenant', 'rotate-key', 'key-wing'], env);
    assert.equal(rotated.status, 0, rotated.stderr);
    const rotation = JSON.parse(rotated.stdout);
    assert.equal(rotation.previous_key.key_id, firstKey);
    assert.equal(rotation.previous_key.status, 'retired');
    assert.equal(rotation.active_key.status, 'active');
    assert.equal(rotation.active_key.valid_from, rotation.previous_key.valid_until);
    assert.equal(rotated.stdout.includes('private'), false);

    const listing = runCli(['tenant', 'list'], env);
    // The read-only listing writes nothing, so no rate-limit sync fails on it.
    assert.equal(listing.stderr, '');
    const listed = JSON.parse(listing.stdout);
    const tenant = listed.find((entry: { tenant_id: string }) => entry.tenant_id === 'key-wing');
    assert.deepEqual(
      tenant.keys.map((key: { status: string }) => key.status),
      ['retired', 'active'],
    );

    const missing = runCli(['tenant', 'rotate-key', 'no-such-tenant'], env);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /tenant not found/);
  });

  test('tenant revoke-key needs --rotate for the active key', () => {
    const tenant = JSON.parse(runCli(['tenant', 'list'], env).stdout).find(
      (entry: { tenant_id: string }) => entry.tenant_id === 'key-wing',
    );
    const [retired, active] = tenant.keys.map((key: { key_id: string }) => key.key_id);

    const refused = runCli(
      ['tenant', 'revoke-key', 'key-wing', active, '--reason', 'key_compromise'],
      env,
    );
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /active signing key/);
    assert.match(refused.stderr, /add --rotate to revoke it/);
    assert.doesNotMatch(refused.stderr, /"rotate": true/);

    const revoked = runCli(
      ['tenant', 'revoke-key', 'key-wing', active, '--reason', 'key_compromise', '--rotate'],
      env,
    );
    assert.equal(revoked.status, 0, revoked.stderr);
    const revocation = JSON.parse(revoked.stdout);
    assert.equal(revocation.rotated, true);
    assert.equal(revocation.revoked_key.status, 'revoked');
    assert.equal(revocation.revoked_key.revocation_reason, 'key_compromise');
    assert.notEqual(revocation.active_key.key_id, active);

    const retiredRevoked = runCli(
      ['tenant', 'revoke-key', 'key-wing', retired, '--reason', 'superseded'],
      env,
    );
    assert.equal(retiredRevoked.status, 0, retiredRevoked.stderr);
    assert.equal(JSON.parse(retiredRevoked.stdout).rotated, false);

    const badReason = runCli(
      ['tenant', 'revoke-key', 'key-wing', retired, '--reason', 'lost'],
      env,
    );
    assert.equal(badReason.status, 1);
    assert.match(badReason.stderr, /--reason must be one of/);
    const noReason = runCli(['tenant', 'revoke-key', 'key-wing', retired], env);
    assert.equal(noReason.status, 2);
  });

  test('tenant revoke-key takes a key id starting with a dash', () => {
    const dashed = runCli(
      ['tenant', 'revoke-key', 'key-wing', '-8Jd2kQ', '--reason', 'superseded'],
      env,
    );
    assert.equal(dashed.status, 1, dashed.stderr);
    assert.doesNotMatch(dashed.stderr, /unknown option/);
    assert.match(dashed.stderr, /-8Jd2kQ/);

    const misspelled = runCli(
      ['tenant', 'revoke-key', 'key-wing', '-8Jd2kQ', '--reason', 'superseded', '--rotat'],
      env,
    );
    assert.equal(misspelled.status, 2);
    assert.match(misspelled.stderr, /too many arguments/);
  });

  test('tenant set-rate-limit sets and clears the override', () => {
    const set = runCli(['tenant', 'set-rate-limit', 'key-wing', '30'], env);
    assert.equal(set.status, 0, set.stderr);
    assert.equal(JSON.parse(set.stdout).rate_limit_per_minute, 30);
    const cleared = runCli(['tenant', 'set-rate-limit', 'key-wing', 'default'], env);
    assert.equal(cleared.status, 0, cleared.stderr);
    assert.equal(JSON.parse(cleared.stdout).rate_limit_per_minute, null);
    for (const bad of ['-1', '1.5', 'many']) {
      const result = runCli(['tenant', 'set-rate-limit', 'key-wing', bad], env);
      assert.equal(result.status, 1, bad);
      assert.match(result.stderr, /limit must be an integer/);
    }
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

  test('token warns about a tenant missing from the database', async () => {
    const missing = runCli(['token', '--tenant', 'no-such-wing', '--role', 'auditor'], env);
    assert.equal(missing.status, 0, missing.stderr);
    assert.equal(decodeJwt(missing.stdout.trim()).tenant_id, 'no-such-wing');
    assert.match(missing.stderr, /warning: tenant no-such-wing does not exist/);
    const present = runCli(['token', '--tenant', 'east-wing', '--role', 'auditor'], env);
    assert.equal(present.status, 0, present.stderr);
    assert.equal(present.stderr, '');

    // A token issuer that has the secrets but no database gets the token and no warning.
    const empty = join(dir, 'no-database');
    const secrets = {
      CDIL_JWT_SECRET: Buffer.alloc(32, 1).toString('base64'),
      CDIL_KEK: Buffer.alloc(32, 2).toString('base64'),
    };
    const withoutDatabase = [
      { ...secrets, CDIL_DATA_DIR: empty, DATABASE_URL: '' },
      {
        ...secrets,
        CDIL_DATA_DIR: empty,
        DATABASE_URL: `postgres://cdil@127.0.0.1:${await closedPort()}/cdil`,
      },
    ];
    for (const override of withoutDatabase) {
      const result = runCli(['token', '--tenant', 'no-such-wing', '--role', 'auditor'], {
        ...env,
        ...override,
      });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(decodeJwt(result.stdout.trim()).tenant_id, 'no-such-wing');
      assert.equal(result.stderr, '', override.DATABASE_URL);
    }
    assert.equal(existsSync(join(empty, 'cdil.sqlite')), false);
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

  test('serve help points to the configuration docs', () => {
    const result = runCli(['serve', '--help'], env);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /see\s+docs\/operations\.md/);
  });

  test('demo --keep names the command for the folder', () => {
    const outside = mkdtempSync(join(tmpdir(), 'cdil-cwd-'));
    try {
      for (const [cwd, expected] of [
        [packageFolder, 'npx cdil verify '],
        [outside, 'cdil verify '],
      ] as const) {
        const result = spawnSync(process.execPath, [CLI, 'demo', '--limit', '2', '--keep'], {
          cwd,
          env: { ...process.env, ...env },
          encoding: 'utf8',
          timeout: 120_000,
        });
        assert.equal(result.status, 0, result.stderr);
        const line = /^Try it by hand: (.*)$/m.exec(result.stdout)?.[1];
        assert.ok(line !== undefined, result.stdout);
        const keptDataDir = /(\S+)[\\/]bundle\.zip/.exec(line)?.[1];
        if (keptDataDir !== undefined) {
          rmSync(keptDataDir, { recursive: true, force: true });
        }
        assert.ok(line.startsWith(expected), `${cwd}: ${line}`);
      }
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
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
