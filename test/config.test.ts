import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config/config.ts';

const SECRET = Buffer.alloc(32, 1).toString('base64');
const KEK = Buffer.alloc(32, 2).toString('base64');

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems;
  }
  return [];
}

test('production refuses to start without secrets', () => {
  const problems = problemsOf({ CDIL_ENV: 'production', CDIL_DATA_DIR: '/nonexistent/cdil' });
  assert.ok(problems.some((problem) => problem.includes('CDIL_JWT_SECRET is required')));
  assert.ok(problems.some((problem) => problem.includes('CDIL_KEK is required')));
  assert.equal(existsSync('/nonexistent/cdil'), false);
});

test('production accepts configured secrets', () => {
  const config = loadConfig({ CDIL_ENV: 'production', CDIL_JWT_SECRET: SECRET, CDIL_KEK: KEK });
  assert.equal(config.mode, 'production');
  assert.equal(config.kek.length, 32);
  assert.equal(config.secretsFile, undefined);
});

test('short JWT secret and wrong-size KEK are rejected', () => {
  const problems = problemsOf({
    CDIL_ENV: 'production',
    CDIL_JWT_SECRET: Buffer.alloc(16).toString('hex'),
    CDIL_KEK: Buffer.alloc(31).toString('base64'),
  });
  assert.equal(problems.length, 2);
});

test('invalid mode, port and log level are named', () => {
  const problems = problemsOf({
    CDIL_ENV: 'staging',
    CDIL_PORT: '99999',
    CDIL_LOG_LEVEL: 'loud',
    CDIL_JWT_SECRET: SECRET,
    CDIL_KEK: KEK,
  });
  assert.equal(problems.length, 3);
  assert.match(problems.join('\n'), /CDIL_ENV/);
  assert.match(problems.join('\n'), /CDIL_PORT/);
  assert.match(problems.join('\n'), /CDIL_LOG_LEVEL/);
});

test('key cache and rate-limit settings', () => {
  const defaults = loadConfig({ CDIL_JWT_SECRET: SECRET, CDIL_KEK: KEK });
  assert.equal(defaults.keyCacheTtlMs, 10_000);
  assert.equal(defaults.rateLimitPerMinute, 0);
  assert.equal(defaults.rateLimitSyncMs, 1_000);

  const set = loadConfig({
    CDIL_JWT_SECRET: SECRET,
    CDIL_KEK: KEK,
    CDIL_KEY_CACHE_TTL_MS: '0',
    CDIL_RATE_LIMIT_PER_MINUTE: '600',
    CDIL_RATE_LIMIT_SYNC_MS: '250',
  });
  assert.equal(set.keyCacheTtlMs, 0);
  assert.equal(set.rateLimitPerMinute, 600);
  assert.equal(set.rateLimitSyncMs, 250);

  const problems = problemsOf({
    CDIL_JWT_SECRET: SECRET,
    CDIL_KEK: KEK,
    CDIL_KEY_CACHE_TTL_MS: '-1',
    CDIL_RATE_LIMIT_PER_MINUTE: '1.5',
    CDIL_RATE_LIMIT_SYNC_MS: '5',
  });
  assert.equal(problems.length, 3);
  assert.match(problems.join('\n'), /CDIL_KEY_CACHE_TTL_MS must be an integer from 0 to 600000/);
  assert.match(problems.join('\n'), /CDIL_RATE_LIMIT_PER_MINUTE/);
  assert.match(problems.join('\n'), /CDIL_RATE_LIMIT_SYNC_MS must be an integer from 10 to 60000/);
});

test('development generates secrets once and reuses them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cdil-config-'));
  try {
    const dataDir = join(dir, 'data');
    const first = loadConfig({ CDIL_DATA_DIR: dataDir });
    assert.equal(first.secretsGenerated, true);
    assert.equal(first.secretsFile, join(dataDir, 'secrets.json'));
    assert.equal(statSync(first.secretsFile).mode & 0o777, 0o600);
    const second = loadConfig({ CDIL_DATA_DIR: dataDir });
    assert.equal(second.secretsGenerated, false);
    assert.deepEqual(second.kek, first.kek);
    assert.deepEqual(second.jwtSecret, first.jwtSecret);
    const other = loadConfig({ CDIL_DATA_DIR: join(dir, 'other') });
    assert.notDeepEqual(other.kek, first.kek);
    assert.ok(readFileSync(first.secretsFile, 'utf8').includes('kek'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
