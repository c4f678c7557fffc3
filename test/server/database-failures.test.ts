// How routes respond when the database connection fails: 503 DATABASE_UNAVAILABLE with
// Retry-After, an issuance that can be repeated with its Idempotency-Key, 500 for any other
// database error, and warning lines in the JSON log instead of process warnings. The tests that
// terminate sessions need PostgreSQL; the others run on both engines.
import assert from 'node:assert/strict';
import { closedPort } from '../helpers/ports.ts';
import { describe, test } from 'node:test';
import pg from 'pg';
import { DATABASE_UNAVAILABLE_RETRY_AFTER_S } from '../../src/services/errors.ts';
import { StoreUnavailableError } from '../../src/storage/store.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { walkChain } from '../helpers/chain.ts';
import { startRejectingServer, startSilentServer } from '../helpers/fake-postgres.ts';
import { READINESS_TIMEOUT_MS } from '../../src/server/routes/health.ts';
import {
  TEST_ENGINE,
  createTestDatabase,
  runSql,
  waitForLockWait,
  type StorageLocation,
  type TestDatabase,
} from '../helpers/database.ts';

/** A password no log line may contain; trust authentication accepts any password. */
const PASSWORD_MARKER = 'pw-marker-7f3c1e';

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

function logLines(t: TestApp): LogLine[] {
  return t.logs.map((line) => JSON.parse(line) as LogLine);
}

/** Creates a test database whose URL carries PASSWORD_MARKER as the password. */
async function databaseWithPassword(): Promise<TestDatabase> {
  const database = await createTestDatabase();
  const url = new URL(database.url!);
  url.password = PASSWORD_MARKER;
  return { ...database, env: { DATABASE_URL: url.toString() }, url: url.toString() };
}

function location(t: TestApp): StorageLocation {
  return { dir: t.dir, database: t.database };
}

/** Ends every session of the test database that waits for a lock, as pg_terminate_backend does for an operator. */
async function terminateWaitingSessions(where: StorageLocation): Promise<void> {
  await runSql(
    where,
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
  );
}

async function waitForLogLine(t: TestApp, matches: (line: LogLine) => boolean): Promise<LogLine> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const found = logLines(t).find(matches);
    if (found) {
      return found;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('expected log line did not appear within 5 s');
}

function assertUnavailable(response: {
  statusCode: number;
  body: string;
  headers: Record<string, unknown>;
}): void {
  assert.equal(response.statusCode, 503, response.body);
  assert.equal(response.headers['retry-after'], String(DATABASE_UNAVAILABLE_RETRY_AFTER_S));
  const body = JSON.parse(response.body) as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'DATABASE_UNAVAILABLE');
  assert.match(body.error.message, /may have been stored/);
  assert.match(body.error.message, /same Idempotency-Key/);
}

describe('database failures on any engine', () => {
  test('unreachable database answers 503', async () => {
    const port = await closedPort();
    const url = `postgres://cdil:${PASSWORD_MARKER}@127.0.0.1:${port}/cdil`;
    const unreachable: TestDatabase = {
      env: { DATABASE_URL: url },
      url,
      drop: () => Promise.resolve(),
    };
    const t = await startTestApp({}, unreachable, { migrate: false });
    try {
      const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 503, ready.body);
      assert.equal(ready.json().error.code, 'NOT_READY');

      const issued = await t.app.inject({
        method: 'POST',
        url: '/v1/clinical/documentation',
        headers: { ...bearer(await t.token('clinician', 'down-t1')), 'idempotency-key': 'k-1' },
        payload: issueBody(),
      });
      assertUnavailable(issued);
      const read = await t.app.inject({
        method: 'GET',
        url: '/v1/certificates/00000000-0000-4000-8000-000000000000',
        headers: bearer(await t.token('auditor', 'down-t1')),
      });
      assertUnavailable(read);

      const failures = logLines(t).filter(
        (line) => line.msg === 'request failed' && line.code === 'DATABASE_UNAVAILABLE',
      );
      assert.equal(failures.length, 2, t.logs.join(''));
      for (const failure of failures) {
        assert.match(String((failure.err as { message?: unknown }).message), /ECONNREFUSED/);
      }
    } finally {
      await t.close();
    }
    assert.ok(!t.logs.join('').includes(PASSWORD_MARKER), 'the password reached the log');
  });

  test('silent database fails readiness in time', async () => {
    const server = await startSilentServer();
    const url = `postgres://cdil:${PASSWORD_MARKER}@127.0.0.1:${server.port}/cdil`;
    const silent: TestDatabase = { env: { DATABASE_URL: url }, url, drop: () => Promise.resolve() };
    const t = await startTestApp({}, silent, { migrate: false });
    try {
      for (const probe of ['first', 'repeated']) {
        const started = Date.now();
        const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
        const elapsed = Date.now() - started;
        assert.equal(ready.statusCode, 503, ready.body);
        assert.equal(ready.json().error.code, 'NOT_READY');
        // The margin covers a loaded machine; the store's connect timeout is 5 s.
        assert.ok(elapsed < READINESS_TIMEOUT_MS + 1_500, `${probe} probe took ${elapsed} ms`);
      }
      // The repeated probe waited for the ping that the first one started.
      assert.equal(server.connections(), 1);
    } finally {
      await t.close();
      await server.close();
    }
  });

  test('rejected login answers 503', async () => {
    const server = await startRejectingServer(
      '28P01',
      'password authentication failed for user "cdil"',
    );
    const url = `postgres://cdil:${PASSWORD_MARKER}@127.0.0.1:${server.port}/cdil`;
    const rejecting: TestDatabase = {
      env: { DATABASE_URL: url },
      url,
      drop: () => Promise.resolve(),
    };
    const t = await startTestApp({}, rejecting, { migrate: false });
    try {
      const issued = await t.app.inject({
        method: 'POST',
        url: '/v1/clinical/documentation',
        headers: { ...bearer(await t.token('clinician', 'login-t1')), 'idempotency-key': 'k-1' },
        payload: issueBody(),
      });
      assertUnavailable(issued);
      const failure = logLines(t).find(
        (line) => line.msg === 'request failed' && line.code === 'DATABASE_UNAVAILABLE',
      );
      assert.ok(failure, t.logs.join(''));
      assert.match(
        String((failure.err as { message?: unknown }).message),
        /password authentication failed for user "cdil" \(28P01\)/,
      );
    } finally {
      await t.close();
      await server.close();
    }
    assert.ok(!t.logs.join('').includes(PASSWORD_MARKER), 'the password reached the log');
  });

  test('other database error answers 500', async () => {
    const t = await startTestApp();
    try {
      await t.services.tenants.create('moved-t1');
      const auditor = await t.token('auditor', 'moved-t1');
      const { certificate } = await t.services.issuance.issue('moved-t1', issueBody() as never);
      await runSql(location(t), 'ALTER TABLE certificates RENAME TO certificates_moved');
      const response = await t.app.inject({
        method: 'GET',
        url: `/v1/certificates/${certificate.certificate_id}`,
        headers: bearer(auditor),
      });
      assert.equal(response.statusCode, 500, response.body);
      assert.equal(response.json().error.code, 'INTERNAL');
      assert.equal(response.headers['retry-after'], undefined);
    } finally {
      await t.close();
    }
  });

  test('lost commit reply replays on retry', async () => {
    // The fault is made in the store, so the append must run in this thread; the append
    // thread's own lost replies are tested in test/services/append-thread.test.ts.
    const t = await startTestApp({ CDIL_SQLITE_APPEND_THREAD: 'false' });
    try {
      await t.services.tenants.create('lost-t1');
      const clinician = await t.token('clinician', 'lost-t1');
      // The append commits, and then the store reports a failed connection, as when the
      // connection fails after the server committed but before its reply arrived.
      const store = t.services.store;
      const append = store.appendCertificateGroups.bind(store);
      store.appendCertificateGroups = async (groups, seal) => {
        await append(groups, seal);
        throw new StoreUnavailableError(
          'PostgreSQL connection failed: Connection terminated unexpectedly',
        );
      };
      const issue = () =>
        t.app.inject({
          method: 'POST',
          url: '/v1/clinical/documentation',
          headers: { ...bearer(clinician), 'idempotency-key': 'lost-reply-1' },
          payload: issueBody(),
        });
      assertUnavailable(await issue());
      store.appendCertificateGroups = append;

      const retried = await issue();
      assert.equal(retried.statusCode, 200, retried.body);
      assert.equal(retried.json().replayed, true);
      const chain = await walkChain(t.services, 'lost-t1');
      assert.deepEqual(chain, [retried.json().certificate.certificate_id]);
    } finally {
      await t.close();
    }
  });
});

describe(
  'terminated PostgreSQL sessions',
  { skip: TEST_ENGINE !== 'postgres' && 'needs DATABASE_URL' },
  () => {
    test('terminated issuance answers 503 and the retry issues once', async () => {
      const database = await databaseWithPassword();
      const t = await startTestApp({}, database);
      const rival = new pg.Client({ connectionString: database.url });
      try {
        await t.services.tenants.create('cut-t1');
        const clinician = await t.token('clinician', 'cut-t1');
        const issue = () =>
          t.app.inject({
            method: 'POST',
            url: '/v1/clinical/documentation',
            headers: { ...bearer(clinician), 'idempotency-key': 'cut-key-1' },
            payload: issueBody(),
          });
        await rival.connect();
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'cut-t1' FOR UPDATE");
        const pending = issue();
        await waitForLockWait(location(t));
        await terminateWaitingSessions(location(t));
        assertUnavailable(await pending);
        await rival.query('ROLLBACK');

        const created = await issue();
        assert.equal(created.statusCode, 201, created.body);
        const replayed = await issue();
        assert.equal(replayed.statusCode, 200, replayed.body);
        assert.equal(
          replayed.json().certificate.certificate_id,
          created.json().certificate.certificate_id,
        );
        assert.deepEqual(await walkChain(t.services, 'cut-t1'), [
          created.json().certificate.certificate_id,
        ]);

        const lines = logLines(t);
        const warning = lines.find((line) => /connection failed while in use/.test(line.msg));
        assert.ok(warning, t.logs.join(''));
        assert.equal(warning.level, 40);
        const failure = lines.find((line) => line.msg === 'request failed');
        assert.ok(failure, t.logs.join(''));
        assert.equal(failure.code, 'DATABASE_UNAVAILABLE');
        // The cause stays in the operator log.
        assert.match(
          String((failure.err as { message?: unknown }).message),
          /terminating connection due to administrator command/,
        );
      } finally {
        await rival.end();
        await t.close();
        await database.drop();
      }
      assert.ok(!t.logs.join('').includes(PASSWORD_MARKER), 'the password reached the log');
    });

    test('full pool answers 503 busy', async () => {
      // The only pooled connection waits for a chain head that a rival holds.
      const t = await startTestApp({
        CDIL_DATABASE_POOL_SIZE: '1',
        CDIL_DATABASE_CONNECT_TIMEOUT_MS: '300',
        CDIL_CHECKPOINT_INTERVAL_MS: '0',
      });
      const rival = new pg.Client({ connectionString: t.database.url });
      try {
        await t.services.tenants.create('pool-t1');
        const clinician = await t.token('clinician', 'pool-t1');
        const auditor = await t.token('auditor', 'pool-t1');
        await rival.connect();
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'pool-t1' FOR UPDATE");
        const issued = t.app.inject({
          method: 'POST',
          url: '/v1/clinical/documentation',
          headers: { ...bearer(clinician), 'idempotency-key': 'pool-key-1' },
          payload: issueBody(),
        });
        await waitForLockWait(location(t));
        // The regular batch gives up on the held tenant after 250 ms and frees the connection.
        // The tenant is then appended alone, which takes the connection again and waits for the
        // lock timeout.
        await new Promise((resolve) => setTimeout(resolve, 400));
        await waitForLockWait(location(t));
        const read = await t.app.inject({
          method: 'GET',
          url: '/v1/certificates/00000000-0000-4000-8000-000000000000',
          headers: bearer(auditor),
        });
        assert.equal(read.statusCode, 503, read.body);
        assert.equal(read.json().error.code, 'DATABASE_BUSY');
        assert.equal(read.headers['retry-after'], '1');
        const failure = logLines(t).find(
          (line) => line.msg === 'request failed' && line.code === 'DATABASE_BUSY',
        );
        assert.ok(failure, t.logs.join(''));
        assert.match(
          String((failure.err as { message?: unknown }).message),
          /PostgreSQL connections of the pool stayed in use for 300 ms/,
        );
        await rival.query('ROLLBACK');
        const created = await issued;
        assert.equal(created.statusCode, 201, created.body);
      } finally {
        await rival.end();
        await t.close();
      }
    });

    test('terminated read and rotation answer 503', async () => {
      const t = await startTestApp();
      const rival = new pg.Client({ connectionString: t.database.url });
      try {
        await t.services.tenants.create('cut-t2');
        const auditor = await t.token('auditor', 'cut-t2');
        const admin = await t.token('admin');
        const { certificate } = await t.services.issuance.issue('cut-t2', issueBody() as never);
        await rival.connect();

        await rival.query('BEGIN');
        await rival.query('LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE');
        const read = t.app.inject({
          method: 'GET',
          url: `/v1/certificates/${certificate.certificate_id}`,
          headers: bearer(auditor),
        });
        await waitForLockWait(location(t));
        await terminateWaitingSessions(location(t));
        assertUnavailable(await read);
        await rival.query('ROLLBACK');

        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'cut-t2' FOR UPDATE");
        const rotation = t.app.inject({
          method: 'POST',
          url: '/v1/admin/tenants/cut-t2/keys/rotate',
          headers: bearer(admin),
        });
        await waitForLockWait(location(t));
        await terminateWaitingSessions(location(t));
        assertUnavailable(await rotation);
        await rival.query('ROLLBACK');

        const again = await t.app.inject({
          method: 'GET',
          url: `/v1/certificates/${certificate.certificate_id}`,
          headers: bearer(auditor),
        });
        assert.equal(again.statusCode, 200, again.body);
      } finally {
        await rival.end();
        await t.close();
      }
    });

    test('unknown role or database answers 503', async () => {
      const server = new URL(process.env.DATABASE_URL!);
      const unknownRole = new URL(server);
      unknownRole.username = 'cdil_no_such_role';
      const unknownDatabase = new URL(server);
      unknownDatabase.pathname = '/cdil_no_such_database';
      const cases: [string, URL, string][] = [
        ['unknown role', unknownRole, '28000'],
        ['unknown database', unknownDatabase, '3D000'],
      ];
      for (const [name, target, code] of cases) {
        const url = target.toString();
        const database: TestDatabase = {
          env: { DATABASE_URL: url },
          url,
          drop: () => Promise.resolve(),
        };
        const t = await startTestApp({}, database, { migrate: false });
        try {
          const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
          assert.equal(ready.statusCode, 503, `${name}: ${ready.body}`);
          const read = await t.app.inject({
            method: 'GET',
            url: '/v1/certificates/00000000-0000-4000-8000-000000000000',
            headers: bearer(await t.token('auditor', 'login-t2')),
          });
          assertUnavailable(read);
          const failure = logLines(t).find(
            (line) => line.msg === 'request failed' && line.code === 'DATABASE_UNAVAILABLE',
          );
          assert.ok(failure, `${name}: ${t.logs.join('')}`);
          assert.match(
            String((failure.err as { message?: unknown }).message),
            new RegExp(`does not exist \\(${code}\\)`),
            name,
          );
        } finally {
          await t.close();
        }
      }
    });

    test('terminated idle connection logs a JSON warning', async () => {
      const t = await startTestApp();
      const processWarnings: string[] = [];
      const collect = (warning: Error) => processWarnings.push(warning.message);
      process.on('warning', collect);
      try {
        // Leaves an idle connection in the pool.
        const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
        assert.equal(ready.statusCode, 200, ready.body);
        await runSql(
          location(t),
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cdil'",
        );
        const warning = await waitForLogLine(t, (line) =>
          line.msg.startsWith('idle PostgreSQL connection failed'),
        );
        assert.equal(warning.level, 40);
        assert.equal(warning.code, '57P01');
        assert.equal(typeof warning.error, 'string');
        // Process warnings are emitted on the next tick of the event loop.
        await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(processWarnings, []);
        const readyAgain = await t.app.inject({ method: 'GET', url: '/readyz' });
        assert.equal(readyAgain.statusCode, 200, readyAgain.body);
      } finally {
        process.off('warning', collect);
        await t.close();
      }
    });
  },
);
