import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ATTESTATION_MEANINGS } from '../../src/core/certificate.ts';
import { FIELD_LIMITS } from '../../src/server/schemas.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';

describe('POST /v1/clinical/documentation', () => {
  let t: TestApp;
  let clinician: string;

  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('alice');
    await t.services.tenants.create('strict', { phiPolicy: 'reject' });
    clinician = await t.token('clinician', 'alice');
  });
  after(() => t.close());

  const issue = (payload: unknown, headers: Record<string, string> = {}, token = clinician) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: { ...bearer(token), ...headers },
      payload: payload as Record<string, unknown>,
    });

  test('certificate carries the signed fields and keyed hashes', async () => {
    const response = await issue(issueBody());
    assert.equal(response.statusCode, 201);
    const { certificate, phi_screening } = response.json();
    assert.equal(certificate.tenant_id, 'alice');
    assert.equal(certificate.format_version, 'cdil.certificate.v2');
    assert.equal(certificate.attestation_meaning, 'reviewed_and_approved');
    assert.match(certificate.note_hash, /^[0-9a-f]{64}$/);
    assert.match(certificate.patient_hash, /^[0-9a-f]{64}$/);
    assert.match(certificate.encounter_id_hash, /^[0-9a-f]{64}$/);
    assert.match(certificate.human_reviewer_id_hash, /^[0-9a-f]{64}$/);
    assert.equal(certificate.human_attested_at_utc, certificate.issued_at_utc);
    assert.equal(phi_screening.policy, 'flag');
    assert.ok(!JSON.stringify(certificate).includes('pat-2002'));
  });

  test('unknown tenant fails and creates nothing', async () => {
    const response = await issue(issueBody(), {}, await t.token('clinician', 'nobody'));
    assert.equal(response.statusCode, 404);
    assert.equal(response.json().error.code, 'TENANT_NOT_FOUND');
    assert.equal(await t.services.store.getTenant('nobody'), undefined);
  });

  test('unknown fields are rejected and named', async () => {
    const response = await issue({ ...issueBody(), extra_field: 'x' });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.code, 'VALIDATION_FAILED');
    assert.deepEqual(response.json().error.details[0], {
      field: 'extra_field',
      rule: 'additionalProperties',
      message: 'is not a known field',
    });
    assert.equal(response.json().error.message, 'body field extra_field is not a known field');
  });

  test('unusual unknown field names are quoted', async () => {
    for (const [name, shown] of [
      ['', '""'],
      ['two words', '"two words"'],
    ]) {
      const response = await issue({ ...issueBody(), [name!]: 'x' });
      assert.equal(response.statusCode, 400, JSON.stringify(name));
      assert.equal(response.json().error.message, `body field ${shown} is not a known field`);
    }
  });

  for (const [field, limit] of Object.entries(FIELD_LIMITS)) {
    if (field === 'idempotency_key') {
      continue;
    }
    test(`${field} longer than ${limit} characters is rejected`, async () => {
      const response = await issue(issueBody({ [field]: 'x'.repeat(limit + 1) }));
      assert.equal(response.statusCode, 400);
      const detail = response.json().error.details[0];
      assert.equal(detail.field, field);
      assert.equal(detail.rule, 'maxLength');
    });
  }

  for (const field of [
    'model_name',
    'note_text',
    'encounter_id',
    'patient_reference',
    'human_reviewed',
  ]) {
    test(`missing ${field} is rejected`, async () => {
      const body = issueBody();
      delete body[field];
      const response = await issue(body);
      assert.equal(response.statusCode, 400);
      assert.equal(response.json().error.details[0].field, field);
    });
  }

  test('human_reviewed given as a string is rejected', async () => {
    const response = await issue(issueBody({ human_reviewed: 'true' }));
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.details[0].field, 'human_reviewed');
  });

  test('reviewer is required when human_reviewed is true', async () => {
    const body = issueBody();
    delete body.human_reviewer_id;
    const response = await issue(body);
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.details[0].field, 'human_reviewer_id');
  });

  test('unreviewed note has no reviewer hash or attestation time', async () => {
    const body = issueBody({ human_reviewed: false });
    delete body.human_reviewer_id;
    const response = await issue(body);
    assert.equal(response.statusCode, 201);
    assert.equal(response.json().certificate.human_reviewer_id_hash, null);
    assert.equal(response.json().certificate.human_attested_at_utc, null);
    assert.equal(response.json().certificate.attestation_meaning, null);
  });

  test('unknown attestation meaning lists the allowed values', async () => {
    const response = await issue(issueBody({ attestation_meaning: 'glanced_at' }));
    assert.equal(response.statusCode, 400);
    const { error } = response.json();
    assert.equal(error.code, 'VALIDATION_FAILED');
    assert.deepEqual(error.details, [
      {
        field: 'attestation_meaning',
        rule: 'enum',
        message: `must be one of ${ATTESTATION_MEANINGS.join(', ')}`,
      },
    ]);
    assert.equal(
      error.message,
      `body field attestation_meaning must be one of ${ATTESTATION_MEANINGS.join(', ')}`,
    );
  });

  test('attestation meaning is signed as sent', async () => {
    const response = await issue(issueBody({ attestation_meaning: 'authored' }));
    assert.equal(response.statusCode, 201);
    const { certificate } = response.json();
    assert.equal(certificate.attestation_meaning, 'authored');
    const row = await t.services.store.getCertificate('alice', certificate.certificate_id);
    assert.ok(row!.signed_message.startsWith('{"attestation_meaning":"authored",'));
    const report = await t.services.certificates.verify('alice', certificate.certificate_id);
    assert.equal(report.valid, true);
    assert.match(report.summary, /with the meaning authored at/);
  });

  test('attestation meaning without review is rejected', async () => {
    const body = issueBody({ human_reviewed: false, attestation_meaning: 'reviewed' });
    delete body.human_reviewer_id;
    const response = await issue(body);
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.details[0].field, 'attestation_meaning');
    const unknown = await issue(issueBody({ attestation_meaning: 'witnessed' }));
    assert.equal(unknown.statusCode, 400);
    assert.equal(unknown.json().error.details[0].field, 'attestation_meaning');
  });

  test('reviewer id without review is rejected', async () => {
    const response = await issue(issueBody({ human_reviewed: false }));
    assert.equal(response.statusCode, 400);
    const { error } = response.json();
    assert.equal(error.code, 'VALIDATION_FAILED');
    assert.equal(error.message, 'human_reviewer_id is allowed only when human_reviewed is true');
    assert.deepEqual(error.details, [
      {
        field: 'human_reviewer_id',
        rule: 'dependency',
        message: 'allowed only when human_reviewed is true',
      },
    ]);
  });

  test('malformed JSON gets 400 without echoing the body', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: { ...bearer(clinician), 'content-type': 'application/json' },
      payload: '{"note_text": "SECRET-NOTE-CONTENT',
    });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.code, 'BODY_NOT_JSON');
    assert.ok(!response.body.includes('SECRET-NOTE-CONTENT'));
  });

  test('idempotency key returns the same certificate for a retry', async () => {
    const headers = { 'idempotency-key': 'retry-abc-1' };
    const first = await issue(issueBody({ note_text: 'Idempotent note one.' }), headers);
    const second = await issue(issueBody({ note_text: 'Idempotent note one.' }), headers);
    assert.equal(first.statusCode, 201);
    assert.equal(second.statusCode, 200);
    assert.equal(second.headers['idempotent-replayed'], 'true');
    assert.deepEqual(second.json().certificate, first.json().certificate);
  });

  test('idempotency key reused with a different body is rejected', async () => {
    const headers = { 'idempotency-key': 'retry-abc-2' };
    const first = await issue(issueBody({ note_text: 'Original body.' }), headers);
    const second = await issue(issueBody({ note_text: 'Different body.' }), headers);
    assert.equal(first.statusCode, 201);
    assert.equal(second.statusCode, 422);
    assert.equal(second.json().error.code, 'IDEMPOTENCY_KEY_REUSED');
  });

  test('concurrent retries with one idempotency key create one certificate', async () => {
    const headers = { 'idempotency-key': 'retry-concurrent' };
    const responses = await Promise.all(
      Array.from({ length: 20 }, () =>
        issue(issueBody({ note_text: 'Concurrent retry.' }), headers),
      ),
    );
    const ids = new Set(responses.map((response) => response.json().certificate.certificate_id));
    assert.equal(ids.size, 1);
    assert.equal(responses.filter((response) => response.statusCode === 201).length, 1);
  });

  test('idempotency keys are scoped per tenant', async () => {
    const headers = { 'idempotency-key': 'shared-key' };
    await t.services.tenants.create('carol');
    const alice = await issue(issueBody(), headers);
    const carol = await issue(issueBody(), headers, await t.token('clinician', 'carol'));
    assert.equal(alice.statusCode, 201);
    assert.equal(carol.statusCode, 201);
    assert.notEqual(
      alice.json().certificate.certificate_id,
      carol.json().certificate.certificate_id,
    );
  });

  test('flag policy reports PHI findings by kind and count only', async () => {
    const note = 'Patient seen today. Call back at (617) 555-0142. SSN 123-45-6789 on file.';
    const response = await issue(issueBody({ note_text: note }));
    assert.equal(response.statusCode, 201);
    const findings = response.json().phi_screening.findings as { kind: string; count: number }[];
    assert.ok(findings.some((finding) => finding.kind === 'phone' && finding.count === 1));
    assert.ok(findings.some((finding) => finding.kind === 'ssn' && finding.count === 1));
    assert.ok(!response.body.includes('555-0142'));
    assert.ok(!response.body.includes('123-45-6789'));
  });

  test('reject policy refuses a note with PHI and stores nothing', async () => {
    const strict = await t.token('clinician', 'strict');
    const response = await issue(
      issueBody({ note_text: 'Reach patient at john.doe@example.com today.' }),
      {},
      strict,
    );
    assert.equal(response.statusCode, 422);
    assert.equal(response.json().error.code, 'PHI_DETECTED');
    assert.ok(!response.body.includes('john.doe'));
    const page = await t.services.certificates.query('strict', {}, {});
    assert.equal(page.items.length, 0);
  });

  test('stored free-text fields are screened under every policy', async () => {
    const response = await issue(issueBody({ model_name: 'model for 123-45-6789' }));
    assert.equal(response.statusCode, 422);
    assert.equal(response.json().error.details[0].field, 'model_name');
    assert.match(
      response.json().error.message,
      /^model_name contains text that looks like PHI; this field is stored/,
    );
    const both = await issue(
      issueBody({ model_name: 'model for 123-45-6789', model_version: 'v 234-56-7891' }),
    );
    assert.equal(both.statusCode, 422);
    assert.match(
      both.json().error.message,
      /^model_name, model_version contain text that looks like PHI; these fields are stored/,
    );
    assert.ok(!response.body.includes('123-45-6789'));
  });

  test('concurrent issuance keeps one unbroken chain', async () => {
    await t.services.tenants.create('busy');
    const token = await t.token('clinician', 'busy');
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        issue(issueBody({ note_text: `Concurrent note ${i}` }), {}, token),
      ),
    );
    assert.ok(responses.every((response) => response.statusCode === 201));
    const certificates = responses
      .map((response) => response.json().certificate)
      .sort((a, b) => a.chain_sequence - b.chain_sequence);
    certificates.forEach((certificate, i) => {
      assert.equal(certificate.chain_sequence, i + 1);
      assert.equal(certificate.previous_hash, i === 0 ? null : certificates[i - 1].chain_hash);
    });
  });
});
