import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, DEFAULT_TSA_TIMEOUT_MS, loadConfig } from '../src/config/config.ts';
import { createCertificate } from './helpers/tsa.ts';

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

test('database timeout settings', () => {
  const defaults = loadConfig({ CDIL_JWT_SECRET: SECRET, CDIL_KEK: KEK });
  assert.equal(defaults.databaseConnectTimeoutMs, 5_000);
  assert.equal(defaults.databaseQueryTimeoutMs, 30_000);

  const set = loadConfig({
    CDIL_JWT_SECRET: SECRET,
    CDIL_KEK: KEK,
    CDIL_DATABASE_CONNECT_TIMEOUT_MS: '250',
    CDIL_DATABASE_QUERY_TIMEOUT_MS: '11000',
  });
  assert.equal(set.databaseConnectTimeoutMs, 250);
  assert.equal(set.databaseQueryTimeoutMs, 11_000);

  const cases: [string, Record<string, string>, RegExp][] = [
    [
      'connect timeout too short',
      { CDIL_DATABASE_CONNECT_TIMEOUT_MS: '50' },
      /^CDIL_DATABASE_CONNECT_TIMEOUT_MS must be an integer from 100 to 300000, got "50"$/,
    ],
    [
      'connect timeout not an integer',
      { CDIL_DATABASE_CONNECT_TIMEOUT_MS: '2.5' },
      /^CDIL_DATABASE_CONNECT_TIMEOUT_MS must be an integer/,
    ],
    [
      'query timeout equal to the lock timeout',
      { CDIL_DATABASE_QUERY_TIMEOUT_MS: '10000' },
      /^CDIL_DATABASE_QUERY_TIMEOUT_MS must be an integer from 11000 to 600000 \(milliseconds\), got "10000"\. It must exceed the 10000 ms PostgreSQL lock timeout by at least 1000 ms/,
    ],
    [
      'query timeout too long',
      { CDIL_DATABASE_QUERY_TIMEOUT_MS: '600001' },
      /^CDIL_DATABASE_QUERY_TIMEOUT_MS must be an integer from 11000 to 600000/,
    ],
    [
      'query timeout with a unit',
      { CDIL_DATABASE_QUERY_TIMEOUT_MS: '30s' },
      /^CDIL_DATABASE_QUERY_TIMEOUT_MS must be an integer/,
    ],
  ];
  for (const [name, env, expected] of cases) {
    const problems = problemsOf({ CDIL_JWT_SECRET: SECRET, CDIL_KEK: KEK, ...env });
    assert.equal(problems.length, 1, `${name}: ${problems.join('; ')}`);
    assert.match(problems[0]!, expected, name);
  }
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

describe('TSA settings', () => {
  let dir: string;
  let caPem: string;
  let leafPem: string;
  const base = { CDIL_ENV: 'production', CDIL_JWT_SECRET: SECRET, CDIL_KEK: KEK };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-config-tsa-'));
    caPem = await createCertificate('/CN=Config Root', ['basicConstraints = critical, CA:true']);
    leafPem = await createCertificate('/CN=Config TSA', [
      'extendedKeyUsage = critical, timeStamping',
    ]);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const writeRoots = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  test('TSA is off without TSA_URL', () => {
    assert.equal(loadConfig(base).tsa, undefined);
  });

  test('TSA settings are loaded', () => {
    const rootsFile = writeRoots('roots.pem', caPem + caPem);
    const config = loadConfig({
      ...base,
      TSA_URL: 'https://tsa.invalid/rfc3161',
      TSA_TRUSTED_ROOTS: rootsFile,
    });
    assert.equal(config.tsa?.url, 'https://tsa.invalid/rfc3161');
    assert.equal(config.tsa?.timeoutMs, DEFAULT_TSA_TIMEOUT_MS);
    assert.equal(config.tsa?.trustedRootsFile, rootsFile);
    assert.equal(config.tsa?.trustedRoots, caPem + caPem);
  });

  test('TSA_URL requires trusted roots', () => {
    const problems = problemsOf({ ...base, TSA_URL: 'https://tsa.invalid/' });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /TSA_TRUSTED_ROOTS is required when TSA_URL is set/);
  });

  test('invalid TSA settings are named', () => {
    const rootsFile = writeRoots('ok.pem', caPem);
    const cases: [Record<string, string>, RegExp][] = [
      [{ TSA_URL: 'ftp://tsa.invalid/' }, /TSA_URL must be an http/],
      [{ TSA_URL: 'not a url' }, /TSA_URL must be an http/],
      [{ TSA_TIMEOUT_MS: '0' }, /TSA_TIMEOUT_MS must be an integer/],
      [{ TSA_TIMEOUT_MS: '2.5' }, /TSA_TIMEOUT_MS must be an integer/],
      [{ TSA_TIMEOUT_MS: '120001' }, /TSA_TIMEOUT_MS must be an integer/],
      [{ TSA_TRUSTED_ROOTS: join(dir, 'missing.pem') }, /cannot be read: ENOENT/],
      [{ TSA_TRUSTED_ROOTS: writeRoots('empty.pem', 'no certificates') }, /no PEM certificate/],
      [
        { TSA_TRUSTED_ROOTS: writeRoots('leaf.pem', caPem + leafPem) },
        /certificate 2 \(CN=Config TSA\) is not a CA certificate/,
      ],
      [
        {
          TSA_TRUSTED_ROOTS: writeRoots(
            'garbled.pem',
            '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
          ),
        },
        /certificate 1 is not a valid X.509 certificate/,
      ],
    ];
    for (const [env, message] of cases) {
      const problems = problemsOf({
        ...base,
        TSA_URL: 'https://tsa.invalid/',
        TSA_TRUSTED_ROOTS: rootsFile,
        ...env,
      });
      assert.equal(problems.length, 1, `${JSON.stringify(env)}: ${problems.join('; ')}`);
      assert.match(problems[0]!, message);
    }
  });
});
