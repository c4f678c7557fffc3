// The issuance rate limit over HTTP in one process: 429 with Retry-After, per-tenant counting,
// and the admin override. test/services/rate-limiter.test.ts covers several processes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RATE_LIMIT_WINDOW_MS } from '../../src/services/rate-limiter.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';

/** Waits until at least `seconds` remain in the current one-minute window. */
async function awayFromWindowEnd(seconds: number): Promise<void> {
  const remaining = RATE_LIMIT_WINDOW_MS - (Date.now() % RATE_LIMIT_WINDOW_MS);
  if (remaining < seconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, remaining + 50));
  }
}

describe('issuance rate limit', () => {
  let t: TestApp;

  before(async () => {
    t = await startTestApp({ CDIL_RATE_LIMIT_PER_MINUTE: '3', CDIL_RATE_LIMIT_SYNC_MS: '50' });
    await t.services.tenants.create('busy');
    await t.services.tenants.create('quiet');
  });
  after(() => t.close());

  const issue = async (tenant: string) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: bearer(await t.token('clinician', tenant)),
      payload: issueBody(),
    });

  const setLimit = async (tenant: string, perMinute: number | null) => {
    const response = await t.app.inject({
      method: 'PUT',
      url: `/v1/admin/tenants/${tenant}/rate-limit`,
      headers: bearer(await t.token('admin')),
      payload: { requests_per_minute: perMinute },
    });
    assert.equal(response.statusCode, 200, response.body);
  };

  test('limit applies per tenant with Retry-After', async () => {
    await awayFromWindowEnd(10);
    for (let i = 0; i < 3; i++) {
      assert.equal((await issue('busy')).statusCode, 201);
    }
    const limited = await issue('busy');
    assert.equal(limited.statusCode, 429);
    const error = limited.json().error;
    assert.equal(error.code, 'RATE_LIMITED');
    assert.match(error.message, /limit of 3 issuance requests per minute/);
    const retryAfter = Number(limited.headers['retry-after']);
    assert.ok(
      Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60,
      String(retryAfter),
    );
    assert.equal(error.retry_after_seconds, retryAfter);
    assert.ok(
      t.logs.some((line) => line.includes('"code":"RATE_LIMITED"')),
      'the rejection is logged with its code',
    );

    assert.equal((await issue('quiet')).statusCode, 201, 'another tenant has its own count');
    const query = await t.app.inject({
      method: 'POST',
      url: '/v1/certificates/query',
      headers: bearer(await t.token('auditor', 'busy')),
      payload: {},
    });
    assert.equal(query.statusCode, 200, 'only issuance is limited');
  });

  test('override raises and removes the limit', async () => {
    await t.services.tenants.create('raised');
    await awayFromWindowEnd(10);
    await setLimit('raised', 5);
    // The first request of a tenant uses the default limit; the sync after it reads the
    // override.
    assert.equal((await issue('raised')).statusCode, 201);
    await t.services.rateLimiter.sync();
    let admitted = 0;
    while ((await issue('raised')).statusCode === 201) {
      admitted += 1;
      assert.ok(admitted <= 5, 'override of 5 was not applied');
    }
    assert.equal(admitted, 4);
    const stored = await t.services.certificates.query('raised', {}, { limit: 500 });
    assert.equal(stored.items.length, 5);

    await setLimit('raised', 0);
    await issue('raised');
    await t.services.rateLimiter.sync();
    for (let i = 0; i < 5; i++) {
      assert.equal((await issue('raised')).statusCode, 201, 'a limit of 0 means no limit');
    }
  });
});
