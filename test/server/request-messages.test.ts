// Error messages for query, path and header values, which state the rule in words instead of
// quoting the regular expression that checks it, and the display-field check, which names the
// field and the code point it rejects.
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';

describe('request value messages', () => {
  let t: TestApp;
  let auditor: string;
  let analyst: string;
  let admin: string;

  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('alice');
    auditor = await t.token('auditor', 'alice');
    analyst = await t.token('analyst', 'alice');
    admin = await t.token('admin');
  });
  after(() => t.close());

  const cases: [string, 'GET' | 'POST', string, () => string, unknown, string][] = [
    [
      'audit page size 0',
      'GET',
      '/v1/audit-events?limit=0',
      () => auditor,
      undefined,
      'querystring field limit must be an integer from 1 to 500',
    ],
    [
      'audit page size 501',
      'GET',
      '/v1/audit-events?limit=501',
      () => auditor,
      undefined,
      'querystring field limit must be an integer from 1 to 500',
    ],
    [
      'tree size with a leading zero',
      'GET',
      '/v1/log/checkpoints/01',
      () => auditor,
      undefined,
      'params field tree_size must be an integer from 0 to 999999999999999 without leading zeros',
    ],
    [
      'consistency proof bound',
      'GET',
      '/v1/log/consistency-proof?from=x&to=2',
      () => auditor,
      undefined,
      'querystring field from must be an integer from 0 to 999999999999999 without leading zeros',
    ],
    [
      'shadow page size 0',
      'GET',
      '/v1/shadow/items?limit=0',
      () => analyst,
      undefined,
      'querystring field limit must be an integer from 1 to 200',
    ],
    [
      'verification sample 1001',
      'GET',
      '/v1/dashboard/executive-summary?verification_sample=1001',
      () => analyst,
      undefined,
      'querystring field verification_sample must be an integer from 1 to 1000',
    ],
    [
      'upper-case tenant id',
      'POST',
      '/v1/admin/tenants',
      () => admin,
      { tenant_id: 'Alice' },
      'body field tenant_id must be 2 to 63 lower-case letters, digits and hyphens, starting with a letter or digit',
    ],
    [
      'key id with a dot',
      'POST',
      '/v1/admin/tenants/alice/keys/a.b/revoke',
      () => admin,
      { reason: 'superseded' },
      'params field key_id must contain only letters, digits, - and _',
    ],
  ];

  test('pattern failures are described in words', async () => {
    for (const [name, method, url, token, payload, message] of cases) {
      const response = await t.app.inject({
        method,
        url,
        headers: bearer(token()),
        ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
      });
      assert.equal(response.statusCode, 400, name);
      const { error } = response.json();
      assert.equal(error.code, 'VALIDATION_FAILED', name);
      assert.equal(error.message, message, name);
      assert.ok(!error.details[0].message.includes('pattern'), name);
    }
  });

  test('repeated Idempotency-Key header is named', async () => {
    const address = await t.app.listen({ host: '127.0.0.1', port: 0 });
    const clinician = await t.token('clinician', 'alice');
    const body = JSON.stringify(issueBody({ note_text: 'two keys' }));
    const reply = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const outgoing = httpRequest(`${address}/v1/clinical/documentation`, { method: 'POST' });
      outgoing.on('error', reject);
      outgoing.setHeader('authorization', `Bearer ${clinician}`);
      outgoing.setHeader('content-type', 'application/json');
      // An array value makes Node send one header line per element.
      outgoing.setHeader('idempotency-key', ['key-1', 'key-2']);
      outgoing.on('response', (incoming) => {
        let text = '';
        incoming.setEncoding('utf8');
        incoming.on('data', (chunk: string) => (text += chunk));
        incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, text }));
        incoming.on('error', reject);
      });
      outgoing.end(body);
    });
    assert.equal(reply.status, 400);
    const { error } = JSON.parse(reply.text) as { error: { code: string; message: string } };
    assert.equal(error.code, 'VALIDATION_FAILED');
    assert.equal(
      error.message,
      'headers field idempotency-key was sent 2 times; send one idempotency-key header',
    );
  });

  test('display fields reject invisible characters', async () => {
    const clinician = await t.token('clinician', 'alice');
    const cases: [string, string, string][] = [
      ['model_name', 'scri\u200dbe', 'U+200D, a format character'],
      ['model_version', '1\u200b', 'U+200B, a format character'],
      ['prompt_version', 'p\u{e0041}', 'U+E0041, a format character'],
      ['governance_policy_version', 'g\u2028x', 'U+2028, a line separator'],
      ['encounter_id', 'e\u2029', 'U+2029, a paragraph separator'],
      ['patient_reference', 'p\uffff', 'U+FFFF, a noncharacter'],
      ['human_reviewer_id', 'dr\ufdd0', 'U+FDD0, a noncharacter'],
      ['model_name', 'x\u{10fffe}', 'U+10FFFE, a noncharacter'],
      ['model_name', 'x\u00ad', 'U+00AD, a format character'],
      ['model_name', 'x\ufeff', 'U+FEFF, a format character'],
      ['model_name', 'scribe\u202eevil', 'U+202E, a format character'],
      ['model_name', 'scribe\u0085', 'U+0085, a control character'],
      ['model_name', 'scribe\ud800', 'U+D800, a lone surrogate'],
    ];
    const rule =
      'The field is shown to people, so it may not contain control characters, format characters, line or paragraph separators, noncharacters or lone surrogates';
    for (const [field, value, what] of cases) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/clinical/documentation',
        headers: bearer(clinician),
        payload: issueBody({ [field]: value }),
      });
      assert.equal(response.statusCode, 400, `${field} ${what}`);
      const { error } = response.json();
      assert.equal(error.message, `body field ${field} must not contain ${what}. ${rule}`);
      assert.deepEqual(error.details, [
        { field, rule: 'pattern', message: `must not contain ${what}. ${rule}` },
      ]);
    }
    const accepted = await t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: bearer(clinician),
      payload: issueBody({
        model_name: 'scribe – ünïcode 模型 😀',
        note_text: 'note\u200d with\u2028 format\ufeff characters \uffff',
      }),
    });
    assert.equal(accepted.statusCode, 201);
  });
});
