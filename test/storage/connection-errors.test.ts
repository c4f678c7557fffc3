// Which PostgreSQL errors count as a failed connection, and what PgStore raises when the server
// cannot be reached. Needs no PostgreSQL server, so it runs under both engines.
import assert from 'node:assert/strict';
import { closedPort } from '../helpers/ports.ts';
import { describe, test } from 'node:test';
import { readinessCheck } from '../../src/server/routes/health.ts';
import {
  startRejectingServer,
  startSilentServer,
  startStalledServer,
} from '../helpers/fake-postgres.ts';
import { loadConfig } from '../../src/config/config.ts';
import { openStore } from '../../src/storage/open.ts';
import {
  connectionErrorFields,
  isConnectionFailure,
  isPoolWaitTimeout,
  wrapConnectionFailure,
} from '../../src/storage/postgres/connection-errors.ts';
import { PgStore } from '../../src/storage/postgres/pg-store.ts';
import { StoreUnavailableError, type WarningLogger } from '../../src/storage/store.ts';

function coded(code: string, message = `error ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

describe('connection failure classification', () => {
  const cases: [string, unknown, boolean][] = [
    ['57P01 terminated by administrator', coded('57P01'), true],
    ['57P02 crash of another backend', coded('57P02'), true],
    ['57P03 server starting up', coded('57P03'), true],
    ['57P05 idle session timeout', coded('57P05'), true],
    ['25P03 idle in transaction timeout', coded('25P03'), true],
    ['53300 too many connections', coded('53300'), true],
    ['08006 connection failure', coded('08006'), true],
    ['08P01 protocol violation', coded('08P01'), true],
    ['28P01 wrong password', coded('28P01'), true],
    ['28000 unknown role', coded('28000'), true],
    ['3D000 unknown database', coded('3D000'), true],
    ['query timeout', new Error('Query read timeout'), true],
    ['client connect timeout', new Error('timeout expired'), true],
    ['pool connect timeout', new Error('Connection terminated due to connection timeout'), true],
    // Every pooled connection is in use, which PgStore raises as busy instead (see below).
    ['pool wait timeout', new Error('timeout exceeded when trying to connect'), false],
    ['3D001 other class 3D code', coded('3D001'), false],
    ['ECONNREFUSED', coded('ECONNREFUSED'), true],
    ['ECONNRESET', coded('ECONNRESET'), true],
    ['EPIPE', coded('EPIPE'), true],
    ['socket closed', new Error('Connection terminated unexpectedly'), true],
    [
      'query on a failed client',
      new Error('Client has encountered a connection error and is not queryable'),
      true,
    ],
    ['client ended on purpose', new Error('Connection terminated'), false],
    ['42601 syntax error', coded('42601'), false],
    ['42P01 undefined table', coded('42P01'), false],
    ['23505 unique violation', coded('23505'), false],
    ['55P03 lock timeout', coded('55P03'), false],
    ['57014 query canceled', coded('57014'), false],
    ['40001 serialization failure', coded('40001'), false],
    ['ENOENT', coded('ENOENT'), false],
    ['plain error', new Error('boom'), false],
    ['string', 'Connection terminated unexpectedly', false],
    ['undefined', undefined, false],
    [
      'every address refused',
      new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')]),
      true,
    ],
    [
      'one address with another error',
      new AggregateError([coded('ECONNREFUSED'), coded('EACCES')]),
      false,
    ],
    ['empty aggregate', new AggregateError([]), false],
  ];
  for (const [name, error, expected] of cases) {
    test(name, () => {
      assert.equal(isConnectionFailure(error), expected);
    });
  }
});

describe('pool wait timeout classification', () => {
  const cases: [string, unknown, boolean][] = [
    ['pool wait timeout', new Error('timeout exceeded when trying to connect'), true],
    ['pool connect timeout', new Error('Connection terminated due to connection timeout'), false],
    ['client connect timeout', new Error('timeout expired'), false],
    ['same message with a code', coded('57014', 'timeout exceeded when trying to connect'), false],
    ['string', 'timeout exceeded when trying to connect', false],
  ];
  for (const [name, error, expected] of cases) {
    test(name, () => {
      assert.equal(isPoolWaitTimeout(error), expected);
    });
  }
});

describe('wrapConnectionFailure', () => {
  test('wraps a connection failure with its cause', () => {
    const cause = coded('57P01', 'terminating connection due to administrator command');
    const wrapped = wrapConnectionFailure(cause);
    assert.ok(wrapped instanceof StoreUnavailableError);
    assert.equal(wrapped.cause, cause);
    assert.match(wrapped.message, /terminating connection due to administrator command/);
  });

  test('returns other errors unchanged', () => {
    const syntax = coded('42601', 'syntax error at or near "SELEC"');
    assert.equal(wrapConnectionFailure(syntax), syntax);
  });

  test('message ends with the SQLSTATE', () => {
    const cause = coded('28P01', 'password authentication failed for user "cdil"');
    const wrapped = wrapConnectionFailure(cause) as Error;
    assert.equal(
      wrapped.message,
      'PostgreSQL connection failed: password authentication failed for user "cdil" (28P01)',
    );
  });

  test('does not wrap twice', () => {
    const once = wrapConnectionFailure(coded('ECONNRESET'));
    assert.equal(wrapConnectionFailure(once), once);
  });
});

test('connection error fields leave out the client', () => {
  // pg-pool attaches the failed client, which contains the password, to an idle client's error.
  const error = Object.assign(coded('57P01', 'terminating connection'), {
    client: { connectionParameters: { password: 'secret-in-client' } },
  });
  const fields = connectionErrorFields(error);
  assert.deepEqual(fields, { code: '57P01', error: 'terminating connection' });
  assert.doesNotMatch(JSON.stringify(fields), /secret-in-client/);
  assert.deepEqual(connectionErrorFields(new Error('Connection terminated unexpectedly')), {
    error: 'Connection terminated unexpectedly',
  });
});

test('unreachable server raises StoreUnavailableError', async () => {
  const lines: { details: object; message: string }[] = [];
  const logger: WarningLogger = { warn: (details, message) => lines.push({ details, message }) };
  const port = await closedPort();
  const store = new PgStore(`postgres://cdil:password-marker@127.0.0.1:${port}/cdil`, {
    poolSize: 2,
    logger,
  });
  try {
    const operations: [string, () => Promise<unknown>][] = [
      ['ping', () => store.ping()],
      ['getTenant', () => store.getTenant('any')],
      ['syncRateLimitCounters', () => store.syncRateLimitCounters('2026-01-01T00:00:00.000Z', [])],
      ['getLogHead', () => store.getLogHead('any')],
      ['appendCertificates', () => store.appendCertificates('any', [{}], () => assert.fail())],
      ['migrate', () => store.migrate()],
    ];
    for (const [name, operation] of operations) {
      await assert.rejects(operation(), (error: unknown) => {
        assert.ok(error instanceof StoreUnavailableError, `${name}: ${String(error)}`);
        assert.equal((error.cause as { code?: unknown }).code, 'ECONNREFUSED', name);
        assert.doesNotMatch(error.message, /password-marker/, name);
        return true;
      });
    }
  } finally {
    await store.close();
  }
  // A connection that was never opened fails its operation and is not a pool warning.
  assert.deepEqual(lines, []);
});

test('silent server fails within connect timeout', async () => {
  const server = await startSilentServer();
  const store = new PgStore(`postgres://cdil:password-marker@127.0.0.1:${server.port}/cdil`, {
    poolSize: 2,
    connectTimeoutMs: 300,
  });
  try {
    const operations: [string, () => Promise<unknown>][] = [
      ['ping', () => store.ping()],
      ['getTenant', () => store.getTenant('any')],
      ['appendCertificates', () => store.appendCertificates('any', [{}], () => assert.fail())],
      ['migrate', () => store.migrate()],
    ];
    for (const [name, operation] of operations) {
      const started = Date.now();
      await assert.rejects(operation(), (error: unknown) => {
        assert.ok(error instanceof StoreUnavailableError, `${name}: ${String(error)}`);
        assert.match(error.message, /timeout/, name);
        assert.doesNotMatch(error.message, /password-marker/, name);
        return true;
      });
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 250, `${name} failed after ${elapsed} ms, before the connect timeout`);
      // The margin covers a loaded machine; without a connect timeout the call would not end.
      assert.ok(elapsed < 3_000, `${name} failed after ${elapsed} ms`);
    }
    assert.ok(server.connections() >= operations.length);
  } finally {
    await store.close();
    await server.close();
  }
});

test('rejected login raises StoreUnavailableError', async () => {
  const server = await startRejectingServer(
    '28P01',
    'password authentication failed for user "cdil"',
  );
  const store = new PgStore(`postgres://cdil:password-marker@127.0.0.1:${server.port}/cdil`, {
    poolSize: 1,
  });
  try {
    await assert.rejects(store.getTenant('any'), (error: unknown) => {
      assert.ok(error instanceof StoreUnavailableError, String(error));
      assert.equal((error.cause as { code?: unknown }).code, '28P01');
      assert.match(error.message, /password authentication failed for user "cdil" \(28P01\)/);
      assert.doesNotMatch(error.message, /password-marker/);
      return true;
    });
  } finally {
    await store.close();
    await server.close();
  }
});

test('query timeout must exceed lock timeout', () => {
  assert.throws(
    () => new PgStore('postgres://127.0.0.1:1/cdil', { lockTimeoutMs: 500, queryTimeoutMs: 500 }),
    /queryTimeoutMs \(500\) must exceed lockTimeoutMs \(500\)/,
  );
});

describe('configured PostgreSQL timeouts', () => {
  const secrets = {
    CDIL_JWT_SECRET: Buffer.alloc(32, 1).toString('base64'),
    CDIL_KEK: Buffer.alloc(32, 2).toString('base64'),
  };

  test('connect timeout from the configuration', async () => {
    const server = await startSilentServer();
    const store = openStore(
      loadConfig({
        ...secrets,
        DATABASE_URL: `postgres://cdil@127.0.0.1:${server.port}/cdil`,
        CDIL_DATABASE_CONNECT_TIMEOUT_MS: '300',
      }),
    );
    try {
      const started = Date.now();
      await assert.rejects(store.ping(), StoreUnavailableError);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 250, `failed after ${elapsed} ms`);
      // The default connect timeout is 5 s.
      assert.ok(elapsed < 3_000, `failed after ${elapsed} ms`);
    } finally {
      await store.close();
      await server.close();
    }
  });

  test('query timeout from the configuration', async () => {
    const server = await startStalledServer();
    const store = openStore(
      loadConfig({
        ...secrets,
        DATABASE_URL: `postgres://cdil@127.0.0.1:${server.port}/cdil`,
        CDIL_DATABASE_QUERY_TIMEOUT_MS: '11000',
      }),
    );
    try {
      const started = Date.now();
      await assert.rejects(store.ping(), (error: unknown) => {
        assert.ok(error instanceof StoreUnavailableError, String(error));
        assert.equal((error.cause as Error).message, 'Query read timeout');
        return true;
      });
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 10_900, `failed after ${elapsed} ms`);
      // The default query timeout is 30 s.
      assert.ok(elapsed < 20_000, `failed after ${elapsed} ms`);
    } finally {
      await store.close();
      await server.close();
    }
  });
});

describe('readinessCheck', () => {
  test('fails when the ping outlasts the limit', async () => {
    let pings = 0;
    const check = readinessCheck(
      {
        ping: () => {
          pings += 1;
          return new Promise<void>(() => {});
        },
      },
      100,
    );
    const started = Date.now();
    await assert.rejects(check(), /database ping timed out after 100 ms/);
    assert.ok(Date.now() - started >= 90);
    assert.equal(pings, 1);
  });

  test('shares a running ping', async () => {
    let pings = 0;
    let finishPing: (() => void) | undefined;
    const check = readinessCheck(
      {
        ping: () => {
          pings += 1;
          return new Promise<void>((resolve) => {
            finishPing = resolve;
          });
        },
      },
      50,
    );
    await assert.rejects(check(), /timed out/);
    await assert.rejects(check(), /timed out/);
    assert.equal(pings, 1, 'a second probe started a second ping');
    const passing = check();
    finishPing!();
    await passing;
    // The finished ping is not reused: the next check pings again.
    const next = check();
    assert.equal(pings, 2);
    finishPing!();
    await next;
  });

  test('passes a ping failure through', async () => {
    const failure = new Error('connection refused');
    const check = readinessCheck({ ping: () => Promise.reject(failure) }, 1_000);
    await assert.rejects(check(), (error: unknown) => error === failure);
  });
});
