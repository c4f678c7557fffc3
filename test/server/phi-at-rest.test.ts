// Issues certificates with distinctive note text and identifiers, including requests that
// fail, then scans everything stored (every byte of the SQLite files, or every row of every
// PostgreSQL table) and every captured log line for them. The requests also leave audit
// events, and the audit export is scanned too.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { readStoredData, runSql } from '../helpers/database.ts';

const MARKERS = {
  note_text: 'ZEBRA-NOTE-MARKER-7731 patient with unusual xylophone symptoms',
  patient_reference: 'PATIENT-MARKER-5521',
  encounter_id: 'ENCOUNTER-MARKER-9081',
  human_reviewer_id: 'REVIEWER-MARKER-4410',
};

/**
 * A client-chosen request id that looks like an identifier. It appears in the structured log,
 * which echoes request ids, but must not reach the audit trail, which can never be erased.
 */
const REQUEST_ID_MARKER = 'MRN-REQUEST-MARKER-3306';

describe('no PHI at rest or in logs', () => {
  let t: TestApp;
  let auditExport: string;

  before(async () => {
    t = await startTestApp({ CDIL_LOG_LEVEL: 'trace' });
    await t.services.tenants.create('alice');
    await t.services.tenants.create('strict', { phiPolicy: 'reject' });
    const clinician = await t.token('clinician', 'alice');
    const auditor = await t.token('auditor', 'alice');
    const post = (payload: unknown, token = clinician, headers: Record<string, string> = {}) =>
      t.app.inject({
        method: 'POST',
        url: '/v1/clinical/documentation',
        headers: { ...bearer(token), ...headers },
        payload: payload as Record<string, unknown>,
      });
    const good = await post(issueBody(MARKERS), clinician, { 'idempotency-key': 'phi-scan-1' });
    assert.equal(good.statusCode, 201);
    const id = good.json().certificate.certificate_id as string;
    await post(issueBody(MARKERS), clinician, { 'idempotency-key': 'phi-scan-1' });
    // Failing requests of several kinds, each carrying the markers.
    await post({ ...issueBody(MARKERS), unexpected: MARKERS.note_text });
    await post(
      issueBody({ ...MARKERS, note_text: `${MARKERS.note_text} SSN 123-45-6789` }),
      await t.token('clinician', 'strict'),
    );
    await post(issueBody({ ...MARKERS, human_reviewer_id: undefined }));
    await t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: { ...bearer(clinician), 'content-type': 'application/json' },
      payload: `{"note_text": "${MARKERS.note_text}", "patient_reference": "${MARKERS.patient_reference}`,
    });
    await post(issueBody(MARKERS), 'not-a-token');
    await t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${id}/verify`,
      headers: bearer(auditor),
      payload: { note_text: MARKERS.note_text },
    });
    await t.app.inject({
      method: 'GET',
      url: `/v1/certificates/${id}/defense-bundle`,
      headers: { ...bearer(auditor), 'x-request-id': REQUEST_ID_MARKER },
    });
    await t.app.inject({
      method: 'GET',
      url: `/v1/certificates/${id}/evidence-bundle.json`,
      headers: bearer(auditor),
    });
    // Rejected requests with a valid token are recorded. The markers are in the body.
    await post(issueBody(MARKERS), auditor, { 'x-request-id': REQUEST_ID_MARKER });
    await t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${id}/verify`,
      headers: bearer(auditor),
      payload: { note_text: MARKERS.note_text, patient_reference: MARKERS.patient_reference },
    });
    const events = await runSql(t, 'SELECT action, event_json FROM audit_events');
    assert.ok(events.some((event) => event.action === 'request.rejected'));
    assert.ok(events.some((event) => event.action === 'certificate.verify'));
    const lines: string[] = [];
    await t.services.auditExport.export('alice', {}, (line) => {
      lines.push(line);
      return Promise.resolve();
    });
    auditExport = lines.join('\n');
    await t.services.store.close();
  });
  after(() => t.close());

  test('stored data holds no note text or identifiers', async () => {
    const stored = await readStoredData(t);
    assert.ok(stored.length >= 1);
    for (const { name, bytes } of stored) {
      for (const [field, marker] of Object.entries(MARKERS)) {
        for (const fragment of [marker, marker.slice(0, 12)]) {
          assert.equal(bytes.indexOf(Buffer.from(fragment)), -1, `${field} found in ${name}`);
        }
      }
      assert.equal(bytes.indexOf(Buffer.from('123-45-6789')), -1);
      assert.equal(bytes.indexOf(Buffer.from(REQUEST_ID_MARKER)), -1, `request id in ${name}`);
    }
  });

  test('audit export holds no note text or identifiers', () => {
    assert.ok(auditExport.includes('certificate.issue'));
    for (const [field, marker] of Object.entries(MARKERS)) {
      assert.ok(!auditExport.includes(marker.slice(0, 12)), `${field} found in the audit export`);
    }
    assert.ok(!auditExport.includes(REQUEST_ID_MARKER));
  });

  test('log lines hold no note text or identifiers', () => {
    assert.ok(t.logs.length > 10, 'expected captured log lines');
    const text = t.logs.join('');
    for (const [field, marker] of Object.entries(MARKERS)) {
      assert.ok(!text.includes(marker.slice(0, 12)), `${field} found in logs`);
    }
    assert.ok(!text.includes('123-45-6789'));
    assert.ok(!/Bearer [A-Za-z0-9]/.test(text), 'bearer token found in logs');
  });

  test('private keys are not stored in plaintext', async () => {
    const stored = await readStoredData(t);
    assert.ok(stored.some(({ bytes }) => bytes.indexOf('PUBLIC KEY') >= 0));
    for (const { name, bytes } of stored) {
      assert.equal(bytes.indexOf(Buffer.from('PRIVATE KEY')), -1, name);
    }
  });
});
