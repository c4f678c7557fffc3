import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { ROLES, ROUTES, type RouteAccess } from '../../src/server/route-table.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { ROI_INPUTS } from '../helpers/shadow.ts';

const FAKE_ID = '00000000-0000-4000-8000-000000000000';

function urlOf(route: RouteAccess, tenantId: string, certificateId: string): string {
  return route.url.replace(':tenant_id', tenantId).replace(':certificate_id', certificateId);
}

function bodyOf(route: RouteAccess): Record<string, unknown> | undefined {
  if (route.method === 'GET') {
    return undefined;
  }
  switch (route) {
    case ROUTES.issue:
      return issueBody();
    case ROUTES.createTenant:
      return { tenant_id: 'created-by-test' };
    case ROUTES.shadowEvidenceDeficit:
    case ROUTES.shadowIntake:
      return { note_text: 'ASSESSMENT: COPD, stable.' };
    case ROUTES.shadowAnalyze:
    case ROUTES.shadowLeakageReport:
      return { notes: [{ note_text: 'ASSESSMENT: COPD, stable.', note_ref: 'ref-1' }] };
    case ROUTES.roiProjection:
      return ROI_INPUTS;
    default:
      return {};
  }
}

describe('auth and roles', () => {
  let t: TestApp;
  let aliceCertificate: string;

  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('alice');
    await t.services.tenants.create('bob');
    const issued = await t.services.issuance.issue('alice', issueBody() as never);
    aliceCertificate = issued.certificate.certificate_id;
  });
  after(() => t.close());

  for (const [id, route] of Object.entries(ROUTES) as [string, RouteAccess][]) {
    if (route.roles === 'public') {
      test(`${id} answers without a token`, async () => {
        const response = await t.app.inject({
          method: route.method,
          url: urlOf(route, 'alice', aliceCertificate),
        });
        assert.notEqual(response.statusCode, 401);
        assert.notEqual(response.statusCode, 403);
      });
      continue;
    }
    const allowed = route.roles;

    test(`${id} rejects a missing token with 401`, async () => {
      const response = await t.app.inject({
        method: route.method,
        url: urlOf(route, 'alice', aliceCertificate),
        ...(bodyOf(route) ? { payload: bodyOf(route) } : {}),
      });
      assert.equal(response.statusCode, 401);
      assert.equal(response.json().error.code, 'UNAUTHENTICATED');
    });

    test(`${id} rejects a token signed with another secret`, async () => {
      const forged = await new SignJWT({ roles: [...allowed], tenant_id: 'alice' })
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime('5m')
        .sign(new Uint8Array(32).fill(7));
      const response = await t.app.inject({
        method: route.method,
        url: urlOf(route, 'alice', aliceCertificate),
        headers: bearer(forged),
        ...(bodyOf(route) ? { payload: bodyOf(route) } : {}),
      });
      assert.equal(response.statusCode, 401);
    });

    for (const role of ROLES.filter((candidate) => !allowed.includes(candidate))) {
      test(`${id} rejects role ${role} with 403`, async () => {
        const response = await t.app.inject({
          method: route.method,
          url: urlOf(route, 'alice', aliceCertificate),
          headers: bearer(await t.token(role, 'alice')),
          ...(bodyOf(route) ? { payload: bodyOf(route) } : {}),
        });
        assert.equal(response.statusCode, 403);
        assert.equal(response.json().error.code, 'FORBIDDEN');
        const required =
          allowed.length === 1
            ? `requires the ${allowed[0]} role`
            : `requires one of the roles ${allowed.join(', ')}`;
        assert.equal(response.json().error.message, `this endpoint ${required}`);
      });
    }

    if (route.tenantScoped && route.url.includes(':certificate_id')) {
      test(`${id} answers 404 for another tenant's certificate exactly as for a missing one`, async () => {
        const role = allowed[0]!;
        const foreign = await t.app.inject({
          method: route.method,
          url: urlOf(route, 'bob', aliceCertificate),
          headers: bearer(await t.token(role, 'bob')),
          ...(bodyOf(route) ? { payload: bodyOf(route) } : {}),
        });
        const missing = await t.app.inject({
          method: route.method,
          url: urlOf(route, 'bob', FAKE_ID),
          headers: bearer(await t.token(role, 'bob')),
          ...(bodyOf(route) ? { payload: bodyOf(route) } : {}),
        });
        assert.equal(foreign.statusCode, 404);
        assert.equal(missing.statusCode, 404);
        const withoutRequestId = (error: Record<string, unknown>) => ({
          ...error,
          request_id: undefined,
        });
        assert.deepEqual(
          withoutRequestId(foreign.json().error),
          withoutRequestId(missing.json().error),
        );
        const owner = await t.app.inject({
          method: route.method,
          url: urlOf(route, 'alice', aliceCertificate),
          headers: bearer(await t.token(role, 'alice')),
          ...(bodyOf(route) ? { payload: bodyOf(route) } : {}),
        });
        assert.equal(owner.statusCode, 200);
      });
    }
  }

  describe('token for a tenant that does not exist', () => {
    for (const [id, route] of Object.entries(ROUTES) as [string, RouteAccess][]) {
      const roles = route.roles === 'public' ? [] : route.roles;
      const role = roles[0] ?? 'auditor';
      const url = urlOf(route, 'no-such-tenant', FAKE_ID)
        .replace(':key_id', 'no-such-key')
        .replace(':tree_size', '1')
        .replace(':log_index', '0')
        .replace(':item_id', FAKE_ID);
      const expectation = route.tenantScoped ? '404 TENANT_NOT_FOUND' : 'no 500';
      test(`${id} answers ${expectation}`, async () => {
        const response = await t.app.inject({
          method: route.method,
          url,
          headers: bearer(await t.token(role, 'no-such-tenant')),
          ...(bodyOf(route) ? { payload: bodyOf(route) } : {}),
        });
        assert.ok(response.statusCode < 500, `${response.statusCode} ${response.body}`);
        if (route.tenantScoped) {
          assert.equal(response.statusCode, 404, response.body);
          assert.equal(response.json().error.code, 'TENANT_NOT_FOUND');
        }
      });
    }
  });

  test('expired token is rejected', async () => {
    const expired = await new SignJWT({ roles: ['auditor'], tenant_id: 'alice' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(t.config.jwtSecret);
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/certificates/${aliceCertificate}`,
      headers: bearer(expired),
    });
    assert.equal(response.statusCode, 401);
    assert.match(response.json().error.message, /expired/);
  });

  test('token without exp is rejected', async () => {
    const eternal = await new SignJWT({ roles: ['auditor'], tenant_id: 'alice' })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(t.config.jwtSecret);
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/certificates/${aliceCertificate}`,
      headers: bearer(eternal),
    });
    assert.equal(response.statusCode, 401);
  });

  test('alg none token is rejected', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const payload = Buffer.from(
      JSON.stringify({
        roles: ['auditor'],
        tenant_id: 'alice',
        exp: Math.floor(Date.now() / 1000) + 600,
      }),
    ).toString('base64url');
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/certificates/${aliceCertificate}`,
      headers: bearer(`${header}.${payload}.`),
    });
    assert.equal(response.statusCode, 401);
  });

  test('tenant comes from the token, not the body', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: bearer(await t.token('clinician', 'bob')),
      payload: { ...issueBody(), tenant_id: 'alice' },
    });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.details[0].field, 'tenant_id');
  });

  test('clinician token without tenant_id is forbidden', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: bearer(await t.token('clinician')),
      payload: issueBody(),
    });
    assert.equal(response.statusCode, 403);
  });
  test('bearer scheme is case-insensitive', async () => {
    const token = await t.token('auditor', 'alice');
    for (const scheme of ['bearer', 'BEARER', 'beARer']) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/certificates/query',
        headers: { authorization: `${scheme} ${token}` },
        payload: {},
      });
      assert.equal(response.statusCode, 200, scheme);
    }
    for (const header of [`Basic ${token}`, `Bearer${token}`, `Bearer ${token} x`]) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/certificates/query',
        headers: { authorization: header },
        payload: {},
      });
      assert.equal(response.statusCode, 401, header.slice(0, 12));
    }
  });
});

describe('issuer and audience checks', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({
      CDIL_JWT_ISSUER: 'https://idp.hospital.example',
      CDIL_JWT_AUDIENCE: 'cdil-api',
    });
    await t.services.tenants.create('alice');
  });
  after(() => t.close());

  test('token with configured iss and aud is accepted', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/certificates/query',
      headers: bearer(await t.token('auditor', 'alice')),
      payload: {},
    });
    assert.equal(response.statusCode, 200);
  });

  for (const [claim, value] of [
    ['iss', 'https://other-idp.example'],
    ['aud', 'other-api'],
  ] as const) {
    test(`token with wrong ${claim} is rejected`, async () => {
      const jwt = new SignJWT({ roles: ['auditor'], tenant_id: 'alice' })
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime('5m')
        .setIssuer(claim === 'iss' ? value : 'https://idp.hospital.example')
        .setAudience(claim === 'aud' ? value : 'cdil-api');
      const token = await jwt.sign(t.config.jwtSecret);
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/certificates/query',
        headers: bearer(token),
        payload: {},
      });
      assert.equal(response.statusCode, 401);
      assert.match(response.json().error.message, new RegExp(claim));
    });
  }
});
