// Audit events of rejected requests while the network path to PostgreSQL fails. The service
// reaches PostgreSQL through a TCP proxy on 127.0.0.1 that the tests cut and restore, and the
// checks read the database directly. A rejection's event is retried in the background until the
// path is back, and a retry whose earlier try committed but lost its reply counts as written.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import {
  TEST_ENGINE,
  createTestDatabase,
  runSql,
  type StorageLocation,
  type TestDatabase,
} from '../helpers/database.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';

const TENANT = 'outage-t1';

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

interface ProxiedApp {
  t: TestApp;
  proxy: TcpProxy;
  /** The database itself, not through the proxy, for the checks. */
  location: StorageLocation;
  close(): Promise<void>;
}

/** Starts the service on a new database that it reaches through a new proxy. */
async function startProxiedApp(): Promise<ProxiedApp> {
  const database = await createTestDatabase();
  const target = new URL(database.url!);
  const proxy = await startTcpProxy(Number(target.port));
  const proxiedUrl = new URL(target);
  proxiedUrl.hostname = '127.0.0.1';
  proxiedUrl.port = String(proxy.port);
  const proxied: TestDatabase = {
    env: { DATABASE_URL: proxiedUrl.toString() },
    url: proxiedUrl.toString(),
    drop: () => Promise.resolve(),
  };
  const t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' }, proxied);
  return {
    t,
    proxy,
    location: { dir: t.dir, database },
    close: async () => {
      proxy.restore();
      await t.close();
      await proxy.close();
      await database.drop();
    },
  };
}

interface Rejection {
  status: number;
  requestId: string;
}

/** Sends an issuance that the service rejects: a body with an invalid field, or a wrong role. */
async function sendRejected(
  t: TestApp,
  token: string,
  kind: 'invalid' | 'role',
): Promise<Rejection> {
  const response = await t.app.inject({
    method: 'POST',
    url: '/v1/clinical/documentation',
    headers: bearer(token),
    payload: kind === 'invalid' ? issueBody({ human_reviewed: 'yes' }) : issueBody(),
  });
  return { status: response.statusCode, requestId: String(response.headers['x-request-id']) };
}

interface StoredEvent {
  event_id: string;
  tenant_id: string;
  occurred_at: string;
  event: { event_id: string; request_id: string | null; occurred_at: string };
}

async function rejectionEvents(location: StorageLocation): Promise<StoredEvent[]> {
  const rows = await runSql(
    location,
    "SELECT event_id, tenant_id, occurred_at, event_json FROM audit_events WHERE action = 'request.rejected' ORDER BY log_index",
  );
  return rows.map((row) => ({
    event_id: String(row.event_id),
    tenant_id: String(row.tenant_id),
    occurred_at: String(row.occurred_at),
    event: JSON.parse(String(row.event_json)) as StoredEvent['event'],
  }));
}

/** Polls until an event of each request id is stored, for up to `timeoutMs`. */
async function waitForEvents(
  location: StorageLocation,
  requestIds: readonly string[],
  timeoutMs: number,
): Promise<StoredEvent[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const events = await rejectionEvents(location);
    const found = new Set(events.map((event) => event.event.request_id));
    if (requestIds.every((id) => found.has(id)) || Date.now() > deadline) {
      return events;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Resolves when `cut` does, and rejects when it takes longer than `timeoutMs`. */
async function resolvesWithin(
  cut: Promise<void>,
  timeoutMs: number,
  description: string,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      cut,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${description} within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function logLines(t: TestApp): LogLine[] {
  return t.logs.map((line) => JSON.parse(line) as LogLine);
}

function notWrittenLines(t: TestApp): LogLine[] {
  return logLines(t).filter(
    (line) => line.msg === 'audit event of a rejected request was not written',
  );
}

function storedEarlierLines(t: TestApp): LogLine[] {
  return logLines(t).filter((line) => /already stored by an earlier try/.test(line.msg));
}

describe(
  'rejection audit events across a PostgreSQL outage',
  { skip: TEST_ENGINE !== 'postgres' && 'needs DATABASE_URL' },
  () => {
    test('lost commit reply counts as written', async () => {
      const app = await startProxiedApp();
      const { t, proxy, location } = app;
      try {
        await t.services.tenants.create(TENANT);
        const clinician = await t.token('clinician', TENANT);
        const cut = proxy.cutAfterClientSends('COMMIT');
        const rejected = sendRejected(t, clinician, 'invalid');
        // The proxy passes the COMMIT of the event's transaction and then drops its reply.
        await resolvesWithin(cut, 5_000, 'no COMMIT passed the proxy');
        proxy.restore();
        const { status, requestId } = await rejected;
        assert.equal(status, 400);
        const events = await waitForEvents(location, [requestId], 5_000);
        const ofRequest = events.filter((event) => event.event.request_id === requestId);
        assert.equal(ofRequest.length, 1, JSON.stringify(events));
        // The retry is logged as finding the event stored, and never as not written.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        assert.deepEqual(notWrittenLines(t), []);
        const stored = storedEarlierLines(t);
        assert.equal(stored.length, 1, t.logs.join(''));
        assert.equal(stored[0]!.requestId, requestId);
        assert.equal(stored[0]!.level, 40);
        assert.equal((await rejectionEvents(location)).length, 1, 'the event is stored twice');
      } finally {
        await app.close();
      }
    });

    test('every rejection stored after the outage', async () => {
      const app = await startProxiedApp();
      const { t, proxy, location } = app;
      try {
        await t.services.tenants.create(TENANT);
        const clinician = await t.token('clinician', TENANT);
        const auditor = await t.token('auditor', TENANT);
        const warmUp = await sendRejected(t, clinician, 'invalid');
        assert.equal((await waitForEvents(location, [warmUp.requestId], 5_000)).length, 1);
        const outageStarted = new Date();

        // The outage starts as the first rejection's event commits, so its reply is lost.
        const cut = proxy.cutAfterClientSends('COMMIT');
        const first = sendRejected(t, clinician, 'invalid');
        await resolvesWithin(cut, 5_000, 'no COMMIT passed the proxy');
        const during = await Promise.all([
          sendRejected(t, clinician, 'invalid'),
          sendRejected(t, auditor, 'role'),
          sendRejected(t, clinician, 'invalid'),
          sendRejected(t, auditor, 'role'),
          sendRejected(t, clinician, 'invalid'),
        ]);
        const rejections = [await first, ...during];
        assert.deepEqual(
          rejections.map((rejection) => rejection.status),
          [400, 400, 403, 400, 403, 400],
        );
        // Only the first event committed, before its connection was cut.
        const beforeRestore = await rejectionEvents(location);
        const storedIds = beforeRestore.map((event) => event.event.request_id);
        assert.ok(storedIds.includes(rejections[0]!.requestId), 'the first event committed');
        for (const { requestId } of during) {
          assert.ok(
            !storedIds.includes(requestId),
            `event of ${requestId} stored during the outage`,
          );
        }
        assert.ok(proxy.cutConnections() > 0);

        const restoredAt = new Date();
        proxy.restore();
        const requestIds = rejections.map((rejection) => rejection.requestId);
        const events = await waitForEvents(location, requestIds, 12_000);
        for (const requestId of requestIds) {
          const ofRequest = events.filter((event) => event.event.request_id === requestId);
          assert.equal(ofRequest.length, 1, `events of request ${requestId}`);
          const [event] = ofRequest;
          assert.equal(event!.tenant_id, TENANT);
          assert.equal(event!.event.event_id, event!.event_id);
          // The time of the rejection, not of the write after the outage.
          assert.equal(event!.event.occurred_at, event!.occurred_at);
          const occurred = new Date(event!.occurred_at);
          assert.ok(occurred >= outageStarted, `${requestId} occurred ${event!.occurred_at}`);
          assert.ok(occurred < restoredAt, `${requestId} occurred ${event!.occurred_at}`);
        }
        assert.equal(events.length, 1 + requestIds.length, 'an event is stored twice');
        assert.deepEqual(notWrittenLines(t), []);
        const stored = storedEarlierLines(t);
        assert.equal(stored.length, 1, t.logs.join(''));
        assert.equal(stored[0]!.requestId, rejections[0]!.requestId);
      } finally {
        await app.close();
      }
    });
  },
);
