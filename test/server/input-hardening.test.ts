// Inputs that once slipped through: control and bidi characters, lone surrogates, invalid
// UTF-8, odd content types and dates, huge error lists, long-lived tokens, and identifiers
// that could end up stored or echoed.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { formatReport } from '../../src/cli/commands/verify.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { TEST_ENGINE, readStoredData } from '../helpers/database.ts';

describe('input hardening', () => {
  let t: TestApp;
  let clinician: string;
  let auditor: string;

  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('alice');
    clinician = await t.token('clinician', 'alice');
    auditor = await t.token('auditor', 'alice');
  });
  after(() => t.close());

  const issue = (payload: unknown, headers: Record<string, string> = {}) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: { ...bearer(clinician), ...headers },
      payload: payload as string,
    });

  for (const [name, value] of [
    ['escape sequence', 'scribe\u001b[31m'],
    ['NUL', 'scribe\u0000'],
    ['right-to-left override', 'scribe\u202eevil'],
    ['lone surrogate', 'scribe\ud800'],
  ] as const) {
    test(`model_name with a ${name} is rejected`, async () => {
      const response = await issue(issueBody({ model_name: value }));
      assert.equal(response.statusCode, 400);
      const detail = response.json().error.details[0];
      assert.equal(detail.field, 'model_name');
      assert.match(detail.message, /control characters/);
    });
  }

  test('note text with a lone surrogate is rejected', async () => {
    const response = await issue(issueBody({ note_text: 'text \udfff more' }));
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.details[0].field, 'note_text');
  });

  test('verify note text with a lone surrogate is rejected', async () => {
    const { certificate } = (await issue(issueBody())).json();
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${certificate.certificate_id}/verify`,
      headers: bearer(auditor),
      payload: { note_text: 'x\ud800' },
    });
    assert.equal(response.statusCode, 400);
  });

  test('invalid UTF-8 body bytes are rejected', async () => {
    const json = Buffer.from(JSON.stringify(issueBody({ note_text: 'ZQX__NOTE' })));
    const at = json.indexOf('__');
    json[at] = 0xff;
    json[at + 1] = 0xfe;
    const response = await issue(json, { 'content-type': 'application/json' });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.code, 'BODY_NOT_JSON');
  });

  test('text/plain body gets 415', async () => {
    const response = await issue('hello', { 'content-type': 'text/plain' });
    assert.equal(response.statusCode, 415);
    assert.equal(response.json().error.code, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('leap-second date in a query is a 400', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/certificates/query',
      headers: bearer(auditor),
      payload: { issued_from: '2026-12-31T23:59:60Z' },
    });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.details[0].field, 'issued_from');
  });

  test('error details are capped for bodies full of unknown fields', async () => {
    const body: Record<string, unknown> = issueBody();
    for (let i = 0; i < 5000; i++) {
      body[`junk_${i}`] = 1;
    }
    const response = await issue(body);
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.details.length, 20);
    assert.match(response.json().error.message, /more problems/);
    assert.ok(response.body.length < 10_000);
  });

  test('full-width digits in a stored field are screened as PHI', async () => {
    const response = await issue(issueBody({ model_name: 'scribe １２３-４５-６７８９' }));
    assert.equal(response.statusCode, 422);
    assert.equal(response.json().error.code, 'PHI_DETECTED');
  });

  test('unknown route does not echo the path', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/patients/ZQXPATH?name=ZQXQ' });
    assert.equal(response.statusCode, 404);
    assert.ok(!response.body.includes('ZQX'));
  });

  test('token expiring in 1e20 seconds is rejected', async () => {
    const token = await new SignJWT({ roles: ['auditor'], tenant_id: 'alice' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(1e20)
      .sign(t.config.jwtSecret);
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/certificates/query',
      headers: bearer(token),
      payload: {},
    });
    assert.equal(response.statusCode, 401);
    assert.match(response.json().error.message, /31 days/);
  });

  test('token without exp says the claim is missing', async () => {
    const token = await new SignJWT({ roles: ['auditor'], tenant_id: 'alice' })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(t.config.jwtSecret);
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/certificates/query',
      headers: bearer(token),
      payload: {},
    });
    assert.equal(response.statusCode, 401);
    assert.match(response.json().error.message, /exp is missing/);
  });

  test('idempotency keys are stored only as keyed hashes', async () => {
    const response = await issue(issueBody({ note_text: 'idempotent' }), {
      'idempotency-key': 'ZQXIDEM-enc-77',
    });
    assert.equal(response.statusCode, 201);
    await t.services.store.close();
    const stored = await readStoredData(t);
    assert.ok(stored.length >= 1);
    for (const { name, bytes } of stored) {
      assert.equal(bytes.indexOf('ZQXIDEM'), -1, name);
    }
  });

  test(
    'SQLite file is readable by its owner only',
    {
      skip:
        TEST_ENGINE === 'postgres' &&
        'PostgreSQL stores data in its own cluster, whose file modes the server sets',
    },
    () => {
      assert.equal(statSync(join(t.dir, 'cdil.sqlite')).mode & 0o777, 0o600);
    },
  );
});

test('oversized request headers get a JSON 431', async () => {
  const t = await startTestApp();
  try {
    const address = await t.app.listen({ host: '127.0.0.1', port: 0 });
    const port = Number(new URL(address).port);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(`GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(100_000)}\r\n\r\n`);
      });
      let data = '';
      socket.on('data', (chunk) => (data += chunk.toString()));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    assert.match(reply, /^HTTP\/1.1 431/);
    assert.match(reply, /"code":"VALIDATION_FAILED"/);
  } finally {
    await t.close();
  }
});

test('verify output escapes terminal control characters from a bundle', () => {
  const text = formatReport({
    format: 'cdil.verification-report.v1',
    valid: false,
    certificate_id: 'abc\u001b[2J\nVALID fake\u202e',
    tenant_id: 't',
    key_id: 'k',
    checks: [
      { check: 'signature', status: 'fail', code: 'SIGNATURE_INVALID', detail: 'x\u001b[8m' },
    ],
    summary: 'summary\u0007',
  });
  // eslint-disable-next-line no-control-regex -- the test looks for raw control characters
  assert.ok(!/[\u0000-\u0009\u000b-\u001f\u202e]/.test(text));
  assert.ok(!text.includes('\nVALID fake'));
  assert.match(text, /\\u001b\[2J/);
});
