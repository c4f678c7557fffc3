// Requests that wait for a PostgreSQL row lock that another session holds for longer than the
// lock timeout: key rotation and revocation on a held chain head, and an audit event on a held
// log head. Each gets 503 DATABASE_BUSY with Retry-After, as issuance does, and the rejection's
// audit event is written once the lock is free. A key or rate-limit change that gets 503 stored
// neither the change nor its audit event. The `cdil tenant rotate-key` command reports the same
// failure and exits with 1.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { PgStore } from '../../src/storage/postgres/pg-store.ts';
import { DEFAULT_LOCK_TIMEOUT_MS } from '../../src/storage/postgres/timeouts.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { runCliAsync } from '../helpers/cli.ts';
import {
  TEST_ENGINE,
  createTestDatabase,
  waitForLockWait,
  type StorageLocation,
  type TestDatabase,
} from '../helpers/database.ts';

/** Lock timeout of the app's store, short so that each wait ends soon. */
const LOCK_TIMEOUT_MS = 500;

interface LockedApp {
  t: TestApp;
  database: TestDatabase;
  location: StorageLocation;
  /** A session of its own that holds row locks as another process would. */
  rival: pg.Client;
  close(): Promise<void>;
}

async function startLockedApp(lockTimeoutMs = LOCK_TIMEOUT_MS): Promise<LockedApp> {
  const database = await createTestDatabase();
  const store = new PgStore(database.url!, { poolSize: 4, lockTimeoutMs });
  const t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' }, database, { store });
  const rival = new pg.Client({ connectionString: database.url });
  await rival.connect();
  return {
    t,
    database,
    location: { dir: t.dir, database },
    rival,
    close: async () => {
      await rival.end();
      await t.close();
      await database.drop();
    },
  };
}

function assertBusy(
  response: { statusCode: number; body: string; headers: Record<string, unknown> },
  request: string,
): void {
  assert.equal(response.statusCode, 503, `${request}: ${response.body}`);
  const { error } = JSON.parse(response.body) as { error: { code: string; message: string } };
  assert.equal(error.code, 'DATABASE_BUSY', request);
  assert.match(error.message, /Nothing was stored; retry later/, request);
  assert.equal(response.headers['retry-after'], '1', request);
}

async function countFailedEvents(t: TestApp, tenantId: string): Promise<number> {
  const events = await t.services.store.listAuditEvents(
    tenantId,
    { action: 'request.failed' },
    -1,
    100,
  );
  return events.length;
}

/**
 * Waits up to 10 s until the tenant's log has at least `count` request.failed events, and
 * returns how many it has.
 */
async function waitForFailedEvents(t: TestApp, tenantId: string, count: number): Promise<number> {
  let found = await countFailedEvents(t, tenantId);
  for (let attempt = 0; attempt < 200 && found < count; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    found = await countFailedEvents(t, tenantId);
  }
  return found;
}

/**
 * Creates the tenant, issues one certificate as a clinician, and returns its id with the
 * auditor's token and a function that sends a verification of it with the note text.
 */
async function tenantWithCertificate(
  t: TestApp,
  tenantId: string,
): Promise<{
  certificateId: string;
  auditor: string;
  verify: () => Promise<LightMyRequestResponse>;
}> {
  await t.services.tenants.create(tenantId);
  const clinician = await t.token('clinician', tenantId);
  const auditor = await t.token('auditor', tenantId);
  const issued = await t.app.inject({
    method: 'POST',
    url: '/v1/clinical/documentation',
    headers: bearer(clinician),
    payload: issueBody(),
  });
  assert.equal(issued.statusCode, 201, issued.body);
  const certificateId = issued.json().certificate.certificate_id as string;
  const verify = () =>
    t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${certificateId}/verify`,
      headers: bearer(auditor),
      payload: { note_text: issueBody().note_text },
    });
  return { certificateId, auditor, verify };
}

describe(
  'PostgreSQL lock timeouts over HTTP',
  { skip: TEST_ENGINE !== 'postgres' && 'needs DATABASE_URL' },
  () => {
    test('key changes on a held chain head answer 503 busy', async () => {
      const locked = await startLockedApp();
      const { t, rival } = locked;
      try {
        const created = await t.services.tenants.create('rot-t1');
        const keyId = created.keys[0]!.key_id;
        const admin = await t.token('admin', 'rot-t1');
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'rot-t1' FOR UPDATE");
        const rotation = await t.app.inject({
          method: 'POST',
          url: '/v1/admin/tenants/rot-t1/keys/rotate',
          headers: bearer(admin),
        });
        assertBusy(rotation, 'rotation');
        const revocation = await t.app.inject({
          method: 'POST',
          url: `/v1/admin/tenants/rot-t1/keys/${keyId}/revoke`,
          headers: bearer(admin),
          payload: { reason: 'key_compromise', rotate: true },
        });
        assertBusy(revocation, 'revocation');
        await rival.query('ROLLBACK');

        const keys = await t.services.store.listKeys('rot-t1');
        assert.deepEqual(
          keys.map((key) => [key.key_id, key.status]),
          [[keyId, 'active']],
        );
        const rotated = await t.app.inject({
          method: 'POST',
          url: '/v1/admin/tenants/rot-t1/keys/rotate',
          headers: bearer(admin),
        });
        assert.equal(rotated.statusCode, 201, rotated.body);
        // Both rejections are recorded once the chain head is free.
        assert.equal(await waitForFailedEvents(t, 'rot-t1', 2), 2, t.logs.join(''));
      } finally {
        await locked.close();
      }
    });

    test('audit event on a held log head answers 503 busy', async () => {
      const locked = await startLockedApp();
      const { t, location, rival } = locked;
      try {
        const { verify } = await tenantWithCertificate(t, 'log-t1');
        // Publishes the checkpoint that verification needs, so that only the audit event of the
        // next verification waits for the log head.
        const first = await verify();
        assert.equal(first.statusCode, 200, first.body);

        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM log_heads WHERE tenant_id = 'log-t1' FOR UPDATE");
        const pending = verify();
        await waitForLockWait(location);
        assertBusy(await pending, 'verification');
        // The rejection's own event waits for the same row in the background.
        await new Promise((resolve) => setTimeout(resolve, LOCK_TIMEOUT_MS * 2));
        assert.equal(await countFailedEvents(t, 'log-t1'), 0);
        await rival.query('ROLLBACK');

        assert.equal(await waitForFailedEvents(t, 'log-t1', 1), 1, t.logs.join(''));
        const [failed] = await t.services.store.listAuditEvents(
          'log-t1',
          { action: 'request.failed' },
          -1,
          10,
        );
        const event = JSON.parse(failed!.event_json) as { reason: string; route: string };
        assert.equal(event.reason, 'unavailable');
        assert.equal(event.route, 'POST /v1/certificates/:certificate_id/verify');
        const again = await verify();
        assert.equal(again.statusCode, 200, again.body);
      } finally {
        await locked.close();
      }
    });

    test('key changes on a held log head store nothing', async () => {
      const lockTimeoutMs = 2_000;
      const locked = await startLockedApp(lockTimeoutMs);
      const { t, location, rival } = locked;
      try {
        const created = await t.services.tenants.create('rot-t3');
        const keyId = created.keys[0]!.key_id;
        const admin = await t.token('admin', 'rot-t3');
        const changes = {
          rotation: { method: 'POST', url: '/v1/admin/tenants/rot-t3/keys/rotate' },
          revocation: {
            method: 'POST',
            url: `/v1/admin/tenants/rot-t3/keys/${keyId}/revoke`,
            payload: { reason: 'key_compromise', rotate: true },
          },
          'rate limit': {
            method: 'PUT',
            url: '/v1/admin/tenants/rot-t3/rate-limit',
            payload: { requests_per_minute: 7 },
          },
        } as const;
        const send = (name: keyof typeof changes) =>
          t.app.inject({ ...changes[name], headers: bearer(admin) });
        const actions = async () =>
          (await t.services.store.listAuditEvents('rot-t3', {}, -1, 100)).map((row) => row.action);

        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM log_heads WHERE tenant_id = 'rot-t3' FOR UPDATE");
        for (const name of Object.keys(changes) as (keyof typeof changes)[]) {
          const started = Date.now();
          const pending = send(name);
          pending.catch(() => undefined);
          await waitForLockWait(location);
          const response = await pending;
          const elapsed = Date.now() - started;
          assertBusy(response, name);
          assert.ok(elapsed < lockTimeoutMs * 1.5, `${name} answered after ${elapsed} ms`);
        }
        assert.deepEqual(
          (await t.services.store.listKeys('rot-t3')).map((key) => [key.key_id, key.status]),
          [[keyId, 'active']],
        );
        assert.equal((await t.services.store.getTenant('rot-t3'))?.rate_limit_per_minute, null);
        await rival.query('ROLLBACK');
        // The rejections' own request.failed events are written in the background once the log
        // head is free, so they may already be stored here.
        const changed = (await actions()).filter((action) => action !== 'request.failed');
        assert.deepEqual(changed, ['tenant.create']);

        // Once the log head is free, each change is stored with its event.
        for (const name of Object.keys(changes) as (keyof typeof changes)[]) {
          const response = await send(name);
          assert.ok(response.statusCode < 300, `${name}: ${response.body}`);
        }
        const stored = (await actions()).filter((action) => action !== 'request.failed');
        assert.deepEqual(stored, [
          'tenant.create',
          'key.rotate',
          'key.revoke',
          'tenant.set_rate_limit',
        ]);
      } finally {
        await locked.close();
      }
    });

    test('queued audit events answer within one timeout', async () => {
      const lockTimeoutMs = 2_000;
      const locked = await startLockedApp(lockTimeoutMs);
      const { t, location, rival } = locked;
      try {
        const { certificateId, auditor, verify } = await tenantWithCertificate(t, 'log-t2');
        const exportBundle = () =>
          t.app.inject({
            method: 'GET',
            url: `/v1/certificates/${certificateId}/defense-bundle`,
            headers: bearer(auditor),
          });
        // Publishes the checkpoint that both requests need, so only their events wait.
        const first = await verify();
        assert.equal(first.statusCode, 200, first.body);

        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM log_heads WHERE tenant_id = 'log-t2' FOR UPDATE");
        const started = Date.now();
        const verified = verify().then((response) => ({
          response,
          elapsed: Date.now() - started,
        }));
        verified.catch(() => undefined);
        await waitForLockWait(location);
        // The export's event queues behind the verification's, which waits for the lock.
        const exported = exportBundle().then((response) => ({
          response,
          elapsed: Date.now() - started,
        }));
        const outcomes = { verification: await verified, export: await exported };
        await rival.query('ROLLBACK');
        for (const [name, { response, elapsed }] of Object.entries(outcomes)) {
          assertBusy(response, name);
          assert.ok(elapsed < lockTimeoutMs * 1.5, `${name} answered after ${elapsed} ms`);
        }
      } finally {
        await locked.close();
      }
    });

    test('rotate-key command on a held chain head fails as busy', async () => {
      // The command opens its own store with the default lock timeout, so it waits that long.
      const locked = await startLockedApp();
      const { t, database, rival } = locked;
      try {
        await t.services.tenants.create('rot-t2');
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'rot-t2' FOR UPDATE");
        const started = Date.now();
        const result = await runCliAsync(['tenant', 'rotate-key', 'rot-t2'], {
          CDIL_ENV: 'development',
          CDIL_DATA_DIR: t.dir,
          DATABASE_URL: database.url!,
        });
        const elapsed = Date.now() - started;
        await rival.query('ROLLBACK');
        assert.equal(result.status, 1, result.stderr);
        assert.match(result.stderr, /^error: the database stayed busy for too long/);
        assert.match(
          result.stderr,
          new RegExp(
            `chain head of tenant rot-t2 stayed locked by another transaction for ${DEFAULT_LOCK_TIMEOUT_MS} ms`,
          ),
        );
        // Queued behind no other waiter, the command fails after one lock timeout.
        assert.ok(elapsed < DEFAULT_LOCK_TIMEOUT_MS * 1.5 + 5_000, `failed after ${elapsed} ms`);
        assert.equal((await t.services.store.listKeys('rot-t2')).length, 1);
      } finally {
        await locked.close();
      }
    });
  },
);
