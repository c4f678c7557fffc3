import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseTrustedKeys, verifyBundle } from '../../src/core/bundle.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { readZipSafely } from '../../src/core/zip.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';

describe('certificate read, query, verify and export', () => {
  let t: TestApp;
  let auditor: string;
  const notes: { id: string; text: string; model: string; reviewed: boolean }[] = [];

  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('alice');
    auditor = await t.token('auditor', 'alice');
    for (let i = 0; i < 30; i++) {
      const text = `Progress note ${i}: patient stable, plan unchanged.`;
      const model = i % 3 === 0 ? 'v2' : 'v1';
      const reviewed = i % 2 === 0;
      const body = issueBody({ note_text: text, model_version: model, human_reviewed: reviewed });
      if (!reviewed) {
        delete body.human_reviewer_id;
      }
      const { certificate } = await t.services.issuance.issue('alice', body as never);
      notes.push({ id: certificate.certificate_id, text, model, reviewed });
    }
  });
  after(() => t.close());

  const query = (payload: Record<string, unknown>) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/certificates/query',
      headers: bearer(auditor),
      payload,
    });

  test('get returns the certificate', async () => {
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/certificates/${notes[0]!.id}`,
      headers: bearer(auditor),
    });
    assert.equal(response.statusCode, 200);
    assert.equal(response.json().certificate_id, notes[0]!.id);
    assert.equal(response.json().signature_algorithm, 'ECDSA_P256_SHA256');
  });

  test('query pages through all certificates in chain order', async () => {
    const seen: number[] = [];
    let cursor: string | undefined;
    do {
      const response = await query({ limit: 7, ...(cursor ? { cursor } : {}) });
      assert.equal(response.statusCode, 200);
      const page = response.json();
      seen.push(...page.items.map((item: { chain_sequence: number }) => item.chain_sequence));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    assert.deepEqual(
      seen,
      Array.from({ length: 30 }, (_, i) => i + 1),
    );
  });

  test('query filters by model version and review status', async () => {
    const response = await query({ model_version: 'v2', human_reviewed: true, limit: 100 });
    const expected = notes
      .filter((note) => note.model === 'v2' && note.reviewed)
      .map((note) => note.id);
    assert.deepEqual(
      response.json().items.map((item: { certificate_id: string }) => item.certificate_id),
      expected,
    );
  });

  test('query filters by time range', async () => {
    const future = await query({ issued_from: '2999-01-01T00:00:00Z' });
    assert.equal(future.json().items.length, 0);
    const past = await query({ issued_to: '2999-01-01T00:00:00Z', limit: 500 });
    assert.equal(past.json().items.length, 30);
  });

  for (const [payload, field] of [
    [{ limit: 0 }, 'limit'],
    [{ limit: 501 }, 'limit'],
    [{ limit: 'ten' }, 'limit'],
    [{ cursor: 'not-a-cursor' }, 'cursor'],
    [{ issued_from: 'yesterday' }, 'issued_from'],
    [{ sort: 'desc' }, 'sort'],
  ] as const) {
    test(`query rejects invalid ${field}`, async () => {
      const response = await query(payload);
      assert.equal(response.statusCode, 400);
      assert.equal(response.json().error.details[0].field, field);
    });
  }

  test('cursor from one filter is rejected under another', async () => {
    const first = await query({ model_version: 'v1', limit: 2 });
    const cursor = first.json().next_cursor as string;
    const response = await query({ model_version: 'v2', cursor });
    assert.equal(response.statusCode, 400);
  });

  test('verify lists each check and a summary', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${notes[5]!.id}/verify`,
      headers: bearer(auditor),
      payload: {},
    });
    assert.equal(response.statusCode, 200);
    const report = response.json();
    assert.equal(report.valid, true);
    for (const check of [
      'message_format',
      'certificate_fields',
      'key_binding',
      'signature',
      'key_validity',
      'trusted_key',
      'chain_hash',
      'chain_link',
    ]) {
      assert.equal(
        report.checks.find((item: { check: string }) => item.check === check)?.status,
        'pass',
        check,
      );
    }
    assert.match(report.summary, /is valid/);
    assert.match(
      report.checks.find((item: { check: string }) => item.check === 'chain_link').detail,
      /stored entry 5/,
    );
  });

  test('verify pins the tenant keys', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${notes[4]!.id}/verify`,
      headers: bearer(auditor),
    });
    assert.equal(response.statusCode, 200);
    assert.equal(response.json().key_pinned, true);
    assert.equal(response.json().log_key_pinned, true);
  });

  test('query without a body lists every certificate', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/certificates/query',
      headers: bearer(auditor),
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().items.length, 30);
    assert.equal(response.json().next_cursor, null);
  });

  test('verify without a body works', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${notes[1]!.id}/verify`,
      headers: bearer(auditor),
    });
    assert.equal(response.statusCode, 200);
    assert.equal(response.json().valid, true);
  });

  test('verify with note text says whether it is the certified note', async () => {
    const verify = (note_text: string) =>
      t.app.inject({
        method: 'POST',
        url: `/v1/certificates/${notes[2]!.id}/verify`,
        headers: bearer(auditor),
        payload: { note_text },
      });
    const same = (await verify(notes[2]!.text)).json();
    const other = (await verify(notes[2]!.text + ' ')).json();
    assert.equal(same.valid, true);
    assert.equal(
      same.checks.find((item: { check: string }) => item.check === 'note_hash').status,
      'pass',
    );
    assert.equal(other.valid, false);
    assert.equal(
      other.checks.find((item: { check: string }) => item.check === 'note_hash').status,
      'fail',
    );
    assert.match(other.summary, /not the note that was certified/);
  });

  test('defense bundle is deterministic and verifies offline', async () => {
    const url = `/v1/certificates/${notes[3]!.id}/defense-bundle`;
    const first = await t.app.inject({ method: 'GET', url, headers: bearer(auditor) });
    const second = await t.app.inject({ method: 'GET', url, headers: bearer(auditor) });
    assert.equal(first.statusCode, 200);
    assert.equal(first.headers['content-type'], 'application/zip');
    assert.deepEqual(first.rawPayload, second.rawPayload);
    const files = readZipSafely(first.rawPayload);
    for (const name of [
      'certificate.json',
      'canonical_message.json',
      'verification_report.json',
      'public_key.pem',
      'README.txt',
      'manifest.json',
    ]) {
      assert.ok(files.has(name), name);
    }
    const jwks = await t.app.inject({ method: 'GET', url: '/v1/tenants/alice/jwks.json' });
    const report = verifyBundle(nodeCrypto, first.rawPayload, {
      trustedKeys: parseTrustedKeys(jwks.body),
      noteText: notes[3]!.text,
    });
    assert.equal(report.valid, true);
  });

  test('evidence bundle JSON holds the same evidence as the ZIP', async () => {
    const id = notes[4]!.id;
    const json = (
      await t.app.inject({
        method: 'GET',
        url: `/v1/certificates/${id}/evidence-bundle.json`,
        headers: bearer(auditor),
      })
    ).json();
    const zip = await t.app.inject({
      method: 'GET',
      url: `/v1/certificates/${id}/defense-bundle`,
      headers: bearer(auditor),
    });
    const files = readZipSafely(zip.rawPayload);
    assert.equal(
      json.canonical_message,
      Buffer.from(files.get('canonical_message.json')!).toString('utf8'),
    );
    assert.deepEqual(
      json.certificate,
      JSON.parse(Buffer.from(files.get('certificate.json')!).toString('utf8')),
    );
    assert.equal(json.public_key_pem, Buffer.from(files.get('public_key.pem')!).toString('utf8'));
    assert.deepEqual(
      json.manifest,
      JSON.parse(Buffer.from(files.get('manifest.json')!).toString('utf8')),
    );
    assert.equal(json.verification_report.valid, true);
  });

  test('JWKS lists the key with id, status and validity start', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/tenants/alice/jwks.json' });
    assert.equal(response.statusCode, 200);
    const [key] = response.json().keys;
    assert.equal(key.kty, 'EC');
    assert.equal(key.crv, 'P-256');
    assert.equal(key.status, 'active');
    assert.match(key.valid_from, /^\d{4}-\d{2}-\d{2}T/);
    assert.equal(key.kid, (await t.services.certificates.get('alice', notes[0]!.id)).key_id);
    assert.equal(key.d, undefined);
  });

  test('JWKS of an unknown tenant is 404', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/tenants/nobody/jwks.json' });
    assert.equal(response.statusCode, 404);
  });
});
