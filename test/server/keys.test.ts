// Key rotation and revocation through the HTTP API, with a second service stack on the same
// database standing in for another server process. Its key cache lives for 10 minutes, so every
// change it picks up in these tests comes from the check in the append transaction.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseTrustedKeys, verifyBundle } from '../../src/core/bundle.ts';
import type { Certificate } from '../../src/core/certificate.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import type { Jwks } from '../../src/core/key.ts';
import type { CheckResult, VerificationReport } from '../../src/core/verify/verify.ts';
import { Keyring } from '../../src/services/keyring.ts';
import type { KeyRevocationSummary, KeyRotationSummary } from '../../src/services/tenants.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';

const LONG_CACHE = { CDIL_KEY_CACHE_TTL_MS: '600000' };

function check(report: VerificationReport, name: string): CheckResult {
  const found = report.checks.find((candidate) => candidate.check === name);
  assert.ok(found, `no ${name} check in the report`);
  return found;
}

describe('key rotation and revocation', () => {
  let t: TestApp;
  let other: TestApp;
  let admin: string;

  before(async () => {
    t = await startTestApp(LONG_CACHE);
    other = await startTestApp({ ...LONG_CACHE, CDIL_DATA_DIR: t.dir }, t.database);
    admin = await t.token('admin');
    for (const tenant of ['rotating', 'revoking', 'retiring', 'racing', 'limited']) {
      await t.services.tenants.create(tenant);
    }
  });
  after(async () => {
    await other.close();
    await t.close();
  });

  async function issue(app: TestApp, tenant: string, note = 'ASSESSMENT: COPD, stable.') {
    const response = await app.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: bearer(await app.token('clinician', tenant)),
      payload: issueBody({ note_text: note }),
    });
    assert.equal(response.statusCode, 201, response.body);
    return response.json().certificate as Certificate;
  }

  async function verify(tenant: string, certificateId: string): Promise<VerificationReport> {
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${certificateId}/verify`,
      headers: bearer(await t.token('auditor', tenant)),
    });
    assert.equal(response.statusCode, 200, response.body);
    return response.json<VerificationReport>();
  }

  async function jwks(tenant: string): Promise<Jwks> {
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/tenants/${tenant}/jwks.json`,
    });
    assert.equal(response.statusCode, 200);
    return parseTrustedKeys(response.body);
  }

  async function bundle(tenant: string, certificateId: string): Promise<Uint8Array> {
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/certificates/${certificateId}/defense-bundle`,
      headers: bearer(await t.token('auditor', tenant)),
    });
    assert.equal(response.statusCode, 200);
    return response.rawPayload;
  }

  const rotate = (tenant: string) =>
    t.app.inject({
      method: 'POST',
      url: `/v1/admin/tenants/${tenant}/keys/rotate`,
      headers: bearer(admin),
    });

  const revoke = (tenant: string, keyId: string, payload: Record<string, unknown>) =>
    t.app.inject({
      method: 'POST',
      url: `/v1/admin/tenants/${tenant}/keys/${keyId}/revoke`,
      headers: bearer(admin),
      payload,
    });

  test('rotation retires the old key', async () => {
    const before = await issue(t, 'rotating');
    const warm = await issue(other, 'rotating');
    assert.equal(warm.key_id, before.key_id);

    const response = await rotate('rotating');
    assert.equal(response.statusCode, 201, response.body);
    const rotation = response.json<KeyRotationSummary>();
    assert.equal(rotation.previous_key.key_id, before.key_id);
    assert.equal(rotation.previous_key.status, 'retired');
    assert.equal(rotation.active_key.status, 'active');
    assert.notEqual(rotation.active_key.key_id, before.key_id);
    assert.equal(rotation.previous_key.valid_until, rotation.active_key.valid_from);
    assert.ok(rotation.previous_key.valid_until > before.issued_at_utc);
    // The rotation is an audit event in the tenant's log, with the new key as its object.
    const events = await t.services.store.listAuditEvents(
      'rotating',
      { action: 'key.rotate' },
      -1,
      10,
    );
    assert.equal(events.length, 1);
    assert.equal(events[0]!.object_id, rotation.active_key.key_id);
    assert.equal(events[0]!.object_type, 'signing_key');

    const published = await jwks('rotating');
    assert.deepEqual(
      published.keys.map((key) => [key.kid, key.status, key.valid_until]),
      [
        [before.key_id, 'retired', rotation.previous_key.valid_until],
        [rotation.active_key.key_id, 'active', undefined],
      ],
    );

    const after = await issue(t, 'rotating');
    assert.equal(after.key_id, rotation.active_key.key_id);
    // The other stack cached the old key for ten minutes, yet its next certificate is signed
    // with the new key, because the append found the old one inactive.
    const elsewhere = await issue(other, 'rotating');
    assert.equal(elsewhere.key_id, rotation.active_key.key_id);
    assert.ok(elsewhere.issued_at_utc >= rotation.active_key.valid_from);

    for (const certificate of [before, warm, after, elsewhere]) {
      const report = await verify('rotating', certificate.certificate_id);
      assert.equal(report.valid, true, JSON.stringify(report.checks));
    }
  });

  test('old bundles verify offline after rotation', async () => {
    const certificate = await issue(t, 'rotating', 'PLAN: continue inhaler.');
    const zip = await bundle('rotating', certificate.certificate_id);
    assert.equal((await rotate('rotating')).statusCode, 201);
    const report = verifyBundle(nodeCrypto, zip, {
      trustedKeys: await jwks('rotating'),
      noteText: 'PLAN: continue inhaler.',
    });
    assert.equal(report.valid, true, JSON.stringify(report.checks));
    assert.equal(check(report, 'trusted_key').status, 'pass');
  });

  test('rotations during issuance keep certificates valid', async () => {
    const issued = Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        issue(i % 2 === 0 ? t : other, 'racing', `Racing note ${i}`),
      ),
    );
    const rotations = Promise.all([
      rotate('racing'),
      other.app.inject({
        method: 'POST',
        url: '/v1/admin/tenants/racing/keys/rotate',
        headers: bearer(await other.token('admin')),
      }),
      rotate('racing'),
    ]);
    const [certificates, responses] = await Promise.all([issued, rotations]);
    assert.deepEqual(
      responses.map((response) => response.statusCode),
      [201, 201, 201],
    );
    const keys = (await t.services.tenants.get('racing')).keys;
    assert.equal(keys.length, 4);
    assert.equal(keys.filter((key) => key.status === 'active').length, 1);
    for (const certificate of certificates) {
      const report = await verify('racing', certificate.certificate_id);
      assert.equal(report.valid, true, JSON.stringify(report.checks));
    }
  });

  test('active key is revoked only with rotate', async () => {
    const certificate = await issue(t, 'revoking');
    const refused = await revoke('revoking', certificate.key_id, { reason: 'key_compromise' });
    assert.equal(refused.statusCode, 409);
    assert.equal(refused.json().error.code, 'KEY_ACTIVE');
    assert.match(refused.json().error.message, /"rotate": true/);
    assert.equal((await verify('revoking', certificate.certificate_id)).valid, true);
  });

  test('revocation fails every certificate of the key', async () => {
    const certificate = await issue(t, 'revoking', 'Signed before the compromise.');
    const exported = await bundle('revoking', certificate.certificate_id);
    await issue(other, 'revoking');

    const response = await revoke('revoking', certificate.key_id, {
      reason: 'key_compromise',
      rotate: true,
    });
    assert.equal(response.statusCode, 200, response.body);
    const revocation = response.json<KeyRevocationSummary>();
    assert.equal(revocation.rotated, true);
    assert.equal(revocation.revoked_key.status, 'revoked');
    assert.equal(revocation.revoked_key.revocation_reason, 'key_compromise');
    assert.equal(revocation.revoked_key.revoked_at, revocation.revoked_key.valid_until);
    assert.notEqual(revocation.active_key.key_id, certificate.key_id);

    const report = await verify('revoking', certificate.certificate_id);
    assert.equal(report.valid, false);
    assert.equal(check(report, 'key_validity').code, 'KEY_NOT_VALID');
    assert.match(check(report, 'key_validity').detail, /revoked at .* \(key_compromise\)/);
    assert.equal(check(report, 'trusted_key').code, 'KEY_NOT_TRUSTED');

    const published = (await jwks('revoking')).keys.find((key) => key.kid === certificate.key_id);
    assert.equal(published?.status, 'revoked');
    assert.equal(published?.revocation_reason, 'key_compromise');
    assert.equal(published?.revoked_at, revocation.revoked_key.revoked_at);

    // A bundle exported before the revocation still names the key active; a key set fetched
    // after it is what rejects the certificate offline.
    const offline = verifyBundle(nodeCrypto, exported, { trustedKeys: await jwks('revoking') });
    assert.equal(offline.valid, false);
    assert.equal(check(offline, 'key_validity').status, 'pass');
    assert.equal(check(offline, 'trusted_key').code, 'KEY_NOT_TRUSTED');

    const replacement = await issue(other, 'revoking');
    assert.equal(replacement.key_id, revocation.active_key.key_id);
    assert.equal((await verify('revoking', replacement.certificate_id)).valid, true);
  });

  test('revoking a retired key keeps the active key', async () => {
    const old = await issue(t, 'retiring');
    const rotation = (await rotate('retiring')).json<KeyRotationSummary>();
    assert.equal((await verify('retiring', old.certificate_id)).valid, true);

    const response = await revoke('retiring', old.key_id, { reason: 'superseded', rotate: true });
    assert.equal(response.statusCode, 200, response.body);
    const revocation = response.json<KeyRevocationSummary>();
    assert.equal(revocation.rotated, false);
    assert.equal(revocation.active_key.key_id, rotation.active_key.key_id);
    assert.equal(revocation.revoked_key.valid_until, rotation.active_key.valid_from);
    assert.equal((await verify('retiring', old.certificate_id)).valid, false);

    const again = await revoke('retiring', old.key_id, { reason: 'superseded' });
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().error.code, 'KEY_ALREADY_REVOKED');
  });

  test('key routes reject bad input', async () => {
    const cases: [Promise<{ statusCode: number; json(): any }>, number, string][] = [
      [revoke('retiring', 'no-such-key', { reason: 'superseded' }), 404, 'KEY_NOT_FOUND'],
      [revoke('no-such-tenant', 'abc', { reason: 'superseded' }), 404, 'TENANT_NOT_FOUND'],
      [rotate('no-such-tenant'), 404, 'TENANT_NOT_FOUND'],
      [revoke('retiring', 'abc', { reason: 'lost' }), 400, 'VALIDATION_FAILED'],
      [revoke('retiring', 'abc', {}), 400, 'VALIDATION_FAILED'],
      [revoke('retiring', 'abc', { reason: 'superseded', extra: 1 }), 400, 'VALIDATION_FAILED'],
      [revoke('retiring', 'a.b', { reason: 'superseded' }), 400, 'VALIDATION_FAILED'],
    ];
    for (const [pending, status, code] of cases) {
      const response = await pending;
      assert.equal(response.statusCode, status, code);
      assert.equal(response.json().error.code, code);
    }
  });

  test('rate-limit override is set and cleared', async () => {
    const put = (tenant: string, payload: unknown) =>
      t.app.inject({
        method: 'PUT',
        url: `/v1/admin/tenants/${tenant}/rate-limit`,
        headers: bearer(admin),
        payload: payload as Record<string, unknown>,
      });
    const set = await put('limited', { requests_per_minute: 120 });
    assert.equal(set.statusCode, 200, set.body);
    assert.equal(set.json().rate_limit_per_minute, 120);
    assert.equal((await t.services.tenants.get('limited')).rate_limit_per_minute, 120);

    const cleared = await put('limited', { requests_per_minute: null });
    assert.equal(cleared.statusCode, 200);
    assert.equal(cleared.json().rate_limit_per_minute, null);

    for (const payload of [{ requests_per_minute: -1 }, { requests_per_minute: 1.5 }, {}]) {
      const response = await put('limited', payload);
      assert.equal(response.statusCode, 400, JSON.stringify(payload));
      assert.equal(response.json().error.code, 'VALIDATION_FAILED');
    }
    const missing = await put('no-such-tenant', { requests_per_minute: 1 });
    assert.equal(missing.statusCode, 404);
  });
});

describe('key cache lifetime', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('cached');
  });
  after(() => t.close());

  test('cached keys are read again after the TTL', async () => {
    let now = 1_000_000;
    const keyring = new Keyring(t.services.store, t.config.kek, { ttlMs: 500, now: () => now });
    const first = (await keyring.get('cached'))!.activeKey.key_id;
    // t.services.tenants writes through the store, as another process would.
    const rotation = await t.services.tenants.rotateKey('cached');
    now += 499;
    assert.equal((await keyring.get('cached'))!.activeKey.key_id, first);
    now += 1;
    assert.equal((await keyring.get('cached'))!.activeKey.key_id, rotation.active_key.key_id);
  });

  test('TTL of zero reads keys on every call', async () => {
    const keyring = new Keyring(t.services.store, t.config.kek, { ttlMs: 0 });
    const before = (await keyring.get('cached'))!.activeKey.key_id;
    const rotation = await t.services.tenants.rotateKey('cached');
    assert.notEqual(rotation.active_key.key_id, before);
    assert.equal((await keyring.get('cached'))!.activeKey.key_id, rotation.active_key.key_id);
  });
});
