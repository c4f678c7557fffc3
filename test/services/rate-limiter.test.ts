// The shared rate limiter on the engine under test: several limiters on one database stand in
// for server processes, each with its own clock, so window edges and sync timing are exact.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AppError } from '../../src/services/errors.ts';
import {
  RATE_LIMIT_WINDOW_MS,
  RateLimiter,
  type RateLimitLogger,
} from '../../src/services/rate-limiter.ts';
import { PgStore } from '../../src/storage/postgres/pg-store.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import type { Store } from '../../src/storage/store.ts';
import {
  TEST_ENGINE,
  createTestDatabase,
  runSql,
  type StorageLocation,
  type TestDatabase,
} from '../helpers/database.ts';

/** A window start well away from the present, so rows of other tests never share it. */
const WINDOW = Date.parse('2030-01-01T00:00:00.000Z');

class FakeClock {
  value = WINDOW;
  now = (): number => this.value;
}

function limiter(
  store: Store,
  clock: FakeClock,
  defaultPerMinute: number,
  logger?: RateLimitLogger,
): RateLimiter {
  // The interval is long, so only the test's own sync() calls run.
  return new RateLimiter(store, {
    defaultPerMinute,
    syncIntervalMs: 3_600_000,
    now: clock.now,
    logger,
  });
}

/** Admits requests until the first rejection and returns how many were admitted. */
function admitUntilRejected(rateLimiter: RateLimiter, tenantId: string, max = 1000): number {
  for (let admitted = 0; admitted < max; admitted++) {
    try {
      rateLimiter.admit(tenantId);
    } catch (error) {
      assert.ok(error instanceof AppError, String(error));
      assert.equal(error.code, 'RATE_LIMITED');
      return admitted;
    }
  }
  return max;
}

function rejection(action: () => void): AppError {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof AppError, String(error));
    return error;
  }
  assert.fail('expected RATE_LIMITED');
}

describe(`shared rate limiter on ${TEST_ENGINE}`, () => {
  let dir: string;
  let database: TestDatabase;
  let location: StorageLocation;
  let stores: Store[];

  const openStore = (): Store =>
    database.url === undefined
      ? new SqliteStore(join(dir, 'cdil.sqlite'))
      : new PgStore(database.url, { poolSize: 2 });

  const createTenant = async (tenantId: string): Promise<void> => {
    const now = new Date().toISOString();
    await stores[0]!.createTenant(
      {
        tenant_id: tenantId,
        created_at: now,
        phi_policy: 'flag',
        hmac_secret_sealed: 'sealed',
        timestamp_policy: 'best_effort',
        timestamp_certificates: false,
      },
      {
        tenant_id: tenantId,
        key_id: `${tenantId}-key`,
        algorithm: 'ES256',
        status: 'active',
        valid_from: now,
        valid_until: null,
        public_key_pem: 'public',
        private_key_sealed: 'sealed',
        created_at: now,
      },
    );
  };

  const counterRows = async (tenantId: string) =>
    runSql(
      location,
      'SELECT window_start, request_count FROM rate_limit_counters WHERE tenant_id = ? ORDER BY window_start',
      [tenantId],
    );

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-rate-limit-'));
    database = await createTestDatabase();
    location = { dir, database };
    const first = openStore();
    await first.migrate();
    stores = [first, openStore()];
  });
  after(async () => {
    for (const store of stores) {
      await store.close();
    }
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('one process stops at the limit', async () => {
    await createTenant('solo');
    const clock = new FakeClock();
    const only = limiter(stores[0]!, clock, 5);
    assert.equal(admitUntilRejected(only, 'solo'), 5);
    await only.sync();
    assert.deepEqual(
      (await counterRows('solo')).map((row) => Number(row.request_count)),
      [5],
    );
    await only.close();
  });

  test('two processes share one limit', async () => {
    await createTenant('shared');
    const clock = new FakeClock();
    const a = limiter(stores[0]!, clock, 10);
    const b = limiter(stores[1]!, clock, 10);

    assert.equal(admitUntilRejected(a, 'shared', 5), 5);
    await a.sync();
    assert.equal(admitUntilRejected(b, 'shared', 5), 5);
    await b.sync();
    // b read the total of 10 and rejects. a last read 5, so it admits until its next sync:
    // that one request is the overshoot the sync interval allows.
    assert.equal(rejection(() => b.admit('shared')).code, 'RATE_LIMITED');
    a.admit('shared');
    await a.sync();
    assert.equal(rejection(() => a.admit('shared')).code, 'RATE_LIMITED');
    assert.deepEqual(
      (await counterRows('shared')).map((row) => Number(row.request_count)),
      [11],
    );
    await a.close();
    await b.close();
  });

  test('overshoot is at most one interval per process', async () => {
    await createTenant('burst');
    const clock = new FakeClock();
    const a = limiter(stores[0]!, clock, 10);
    const b = limiter(stores[1]!, clock, 10);
    // Neither has synced, so each admits up to the whole limit alone.
    const admitted = admitUntilRejected(a, 'burst') + admitUntilRejected(b, 'burst');
    assert.equal(admitted, 20);
    await a.sync();
    await b.sync();
    assert.equal(rejection(() => a.admit('burst')).code, 'RATE_LIMITED');
    assert.equal(rejection(() => b.admit('burst')).code, 'RATE_LIMITED');
    await a.close();
    await b.close();
  });

  test('rejection carries Retry-After to the window end', async () => {
    await createTenant('retry');
    const clock = new FakeClock();
    clock.value = WINDOW + 45_500;
    const only = limiter(stores[0]!, clock, 1);
    only.admit('retry');
    const error = rejection(() => only.admit('retry'));
    assert.equal(error.status, 429);
    assert.equal(error.headers?.['retry-after'], '15');
    assert.equal(error.extra?.retry_after_seconds, 15);
    assert.match(error.message, /limit of 1 issuance requests per minute/);
    await only.close();
  });

  test('next window starts from zero', async () => {
    await createTenant('windows');
    const clock = new FakeClock();
    const only = limiter(stores[0]!, clock, 2);
    assert.equal(admitUntilRejected(only, 'windows'), 2);
    await only.sync();
    clock.value += RATE_LIMIT_WINDOW_MS;
    assert.equal(admitUntilRejected(only, 'windows'), 2);
    await only.sync();
    assert.equal((await counterRows('windows')).length, 2, 'the previous window is kept');

    clock.value += RATE_LIMIT_WINDOW_MS;
    only.admit('windows');
    await only.sync();
    const windowStarts = (await counterRows('windows')).map((row) => row.window_start).sort();
    assert.deepEqual(
      windowStarts,
      [WINDOW + RATE_LIMIT_WINDOW_MS, WINDOW + 2 * RATE_LIMIT_WINDOW_MS].map((start) =>
        new Date(start).toISOString(),
      ),
      'windows before the previous one are pruned',
    );
    await only.close();
  });

  test('override replaces the default after sync', async () => {
    await createTenant('override');
    const clock = new FakeClock();
    const a = limiter(stores[0]!, clock, 0);
    const b = limiter(stores[1]!, clock, 0);
    const counted = async () =>
      (await counterRows('override')).map((row) => Number(row.request_count));

    // Until its first sync a process does not know the tenant's override, so it counts.
    assert.equal(admitUntilRejected(a, 'override', 50), 50);
    await a.sync();
    assert.deepEqual(await counted(), [50]);
    // Known to have no limit, the tenant is no longer counted.
    assert.equal(admitUntilRejected(a, 'override', 50), 50);
    await a.sync();
    assert.deepEqual(await counted(), [50]);

    clock.value += RATE_LIMIT_WINDOW_MS;
    assert.equal(await stores[0]!.setTenantRateLimit('override', 3), true);
    // a's first request after the change still has no limit and is not counted; the sync
    // after it reads the override.
    a.admit('override');
    await a.sync();
    assert.equal(admitUntilRejected(a, 'override'), 3);
    await a.sync();
    // b has never synced, so its first request uses the default but is counted.
    b.admit('override');
    await b.sync();
    assert.equal(rejection(() => b.admit('override')).code, 'RATE_LIMITED');
    assert.deepEqual(await counted(), [50, 4]);

    // A raised limit reaches a process that rejects every request at its next sync.
    assert.equal(await stores[1]!.setTenantRateLimit('override', 0), true);
    assert.equal(rejection(() => b.admit('override')).code, 'RATE_LIMITED');
    await b.sync();
    assert.equal(admitUntilRejected(b, 'override', 20), 20);
    await a.close();
    await b.close();
  });

  test('failed sync keeps counts and logs once', async () => {
    await createTenant('flaky');
    const clock = new FakeClock();
    const lines: { level: string; message: string; details: Record<string, unknown> }[] = [];
    const logger: RateLimitLogger = {
      info: (details, message) =>
        lines.push({ level: 'info', message, details: details as Record<string, unknown> }),
      warn: (details, message) =>
        lines.push({ level: 'warn', message, details: details as Record<string, unknown> }),
    };
    let failing = true;
    const flaky: Store = new Proxy(stores[0]!, {
      get(target, property, receiver) {
        if (property === 'syncRateLimitCounters' && failing) {
          return () => Promise.reject(new Error('connection refused'));
        }
        const value = Reflect.get(target, property, receiver) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const only = limiter(flaky, clock, 100, logger);
    for (let round = 0; round < 3; round++) {
      only.admit('flaky');
      await only.sync();
    }
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]!.level, 'warn');
    assert.match(lines[0]!.message, /sync failed/);
    assert.equal(lines[0]!.details.failures, 1);

    failing = false;
    await only.sync();
    assert.deepEqual(
      (await counterRows('flaky')).map((row) => Number(row.request_count)),
      [3],
      'counts admitted while the database failed are added later',
    );
    assert.equal(lines.length, 2);
    assert.equal(lines[1]!.level, 'info');
    assert.equal(lines[1]!.details.failures, 3);
    await only.close();
  });

  test('close adds the last counts', async () => {
    await createTenant('closing');
    const clock = new FakeClock();
    const only = limiter(stores[0]!, clock, 100);
    only.admit('closing');
    only.admit('closing');
    await only.close();
    assert.deepEqual(
      (await counterRows('closing')).map((row) => Number(row.request_count)),
      [2],
    );
  });
});
