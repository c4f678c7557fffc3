// Shadow items at rest. They survive a new app instance on the same data folder and database,
// and the stored data and logs contain no note text or client references. The executive
// summary reports real verification outcomes, including a certificate altered in the database.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { readStoredData, runSql } from '../helpers/database.ts';
import { GAP_NOTES } from '../helpers/shadow.ts';

const NOTE_MARKER = 'QUOKKA-SHADOW-MARKER-6617';
const REF_MARKER = 'MRN-SHADOW-MARKER-3390';
const CONTEXT_MARKER = 'ZQPAT';
// Structured context with a patient name and number written into free-text fields.
const MARKED_CONTEXT = {
  diagnoses: ['I50.22', { code: 'Z00.00', description: `${CONTEXT_MARKER} Smith annual visit` }],
  medications: [`furosemide for ${CONTEXT_MARKER} Smith MRN 778899`],
  labs: [{ name: `hemoglobin A1c ${CONTEXT_MARKER}`, value: 9.1 }],
  procedures: [`echocardiogram ${CONTEXT_MARKER}`],
  problem_list: [`${CONTEXT_MARKER} Smith: hypertension`],
};
// Counted conditions with evidence, so that spans and evidence exist next to the marker.
const MARKED_NOTE = `HISTORY: ${NOTE_MARKER} reports fatigue. ASSESSMENT: Type 2 diabetes mellitus, uncontrolled, A1c 9.1. Congestive heart failure. PLAN: Increase metformin ${NOTE_MARKER}. Recheck A1c in 3 months.`;

describe('shadow items at rest', () => {
  let t: TestApp;
  let itemId: string;
  let certificates: string[];

  before(async () => {
    t = await startTestApp({ CDIL_LOG_LEVEL: 'trace' });
    await t.services.tenants.create('alice');
    const analyst = await t.token('analyst', 'alice');
    certificates = [];
    for (const note of [MARKED_NOTE, GAP_NOTES[1]!]) {
      const issued = await t.services.issuance.issue(
        'alice',
        issueBody({ note_text: note }) as never,
      );
      certificates.push(issued.certificate.certificate_id);
    }
    const intake = await t.app.inject({
      method: 'POST',
      url: '/v1/shadow/intake',
      headers: bearer(analyst),
      payload: { note_text: MARKED_NOTE, note_ref: REF_MARKER, certificate_id: certificates[0] },
    });
    assert.equal(intake.statusCode, 201);
    itemId = intake.json().item_id;
    assert.ok(intake.json().conditions_counted >= 2);
    const second = await t.app.inject({
      method: 'POST',
      url: '/v1/shadow/intake',
      headers: bearer(analyst),
      payload: { note_text: GAP_NOTES[1], certificate_id: certificates[1] },
    });
    assert.equal(second.statusCode, 201);
    const batch = await t.app.inject({
      method: 'POST',
      url: '/v1/shadow/analyze',
      headers: bearer(analyst),
      payload: {
        notes: [{ note_text: MARKED_NOTE, note_ref: REF_MARKER, context: MARKED_CONTEXT }],
      },
    });
    assert.equal(batch.statusCode, 201);
    const batchItem = await t.app.inject({
      method: 'GET',
      url: `/v1/shadow/items/${batch.json().items[0].item_id}`,
      headers: bearer(analyst),
    });
    assert.equal(batchItem.statusCode, 200);
    assert.ok(batchItem.body.includes('furosemide'), 'structured evidence missing from the item');
    assert.ok(!batchItem.body.includes(CONTEXT_MARKER), 'context free text echoed in the item');
    assert.ok(!batchItem.body.includes('778899'), 'context free text echoed in the item');
    // Rejected requests that carry the markers must leave no trace either.
    await t.app.inject({
      method: 'POST',
      url: '/v1/shadow/analyze',
      headers: bearer(analyst),
      payload: { notes: [{ note_text: MARKED_NOTE, note_ref: REF_MARKER, extra: NOTE_MARKER }] },
    });
    await t.app.inject({
      method: 'POST',
      url: '/v1/shadow/evidence-deficit',
      headers: bearer(analyst),
      payload: { note_text: MARKED_NOTE },
    });
  });
  after(() => t.close());

  test('stored data holds no note text or note_ref', async () => {
    // Closing checkpoints the SQLite WAL. Then every SQLite file is scanned byte by byte, or
    // every row of every PostgreSQL table as text.
    await t.services.store.close();
    const stored = await readStoredData(t);
    assert.ok(stored.length >= 1);
    for (const { name, bytes } of stored) {
      const markers = [NOTE_MARKER, REF_MARKER, 'QUOKKA', 'metformin', 'fatigue', CONTEXT_MARKER];
      for (const marker of [...markers, '778899']) {
        assert.equal(bytes.indexOf(Buffer.from(marker)), -1, `${marker} found in ${name}`);
      }
    }
    const [rows] = await runSql(t, 'SELECT COUNT(*) AS n FROM shadow_items');
    assert.equal(Number(rows?.n), 3);
  });

  test('logs hold no note text or note_ref', () => {
    const text = t.logs.join('');
    assert.ok(!text.includes(NOTE_MARKER));
    assert.ok(!text.includes(REF_MARKER));
  });

  test('items survive a new app instance on the same data folder', async () => {
    await t.app.close();
    const second = await startTestApp({ CDIL_DATA_DIR: t.dir }, t.database);
    try {
      const analyst = await second.token('analyst', 'alice');
      const item = await second.app.inject({
        method: 'GET',
        url: `/v1/shadow/items/${itemId}`,
        headers: bearer(analyst),
      });
      assert.equal(item.statusCode, 200);
      assert.equal(item.json().certificate_id, certificates[0]);
      assert.equal(item.json().certificate_note_hash_matches, true);
      const list = await second.app.inject({
        method: 'GET',
        url: '/v1/shadow/items',
        headers: bearer(analyst),
      });
      assert.equal(list.json().items.length, 3);
      await executiveSummaryChecks(second);
    } finally {
      await second.close();
      rmSync(t.dir, { recursive: true, force: true });
    }
  });

  async function executiveSummaryChecks(app: TestApp): Promise<void> {
    const auditor = await app.token('auditor', 'alice');
    const summary = async (query = '') => {
      const response = await app.app.inject({
        method: 'GET',
        url: `/v1/dashboard/executive-summary${query}`,
        headers: bearer(auditor),
      });
      assert.equal(response.statusCode, 200, response.body);
      return response.json();
    };
    const clean = await summary();
    assert.equal(clean.notes_scored, 3);
    assert.equal(clean.certificates.linked_items, 2);
    assert.equal(clean.certificates.linked_certificates, 2);
    assert.equal(clean.certificates.verification.verified, 2);
    assert.equal(clean.certificates.verification.pass_share, 1);
    assert.equal(clean.certificates.note_hash_match_share, 1);
    assert.ok(clean.estimated_leakage.total_usd > 0);
    assert.ok(clean.top_gaps.length > 0);

    const location = { dir: dirname(app.config.sqlitePath), database: app.database };
    const [row] = await runSql(
      location,
      'SELECT signed_message FROM certificates WHERE certificate_id = ?',
      [certificates[1]!],
    );
    const signedMessage = String(row?.signed_message);
    const altered = signedMessage.replace('"model_version":"2026.11"', '"model_version":"2026.12"');
    assert.notEqual(altered, signedMessage);
    await runSql(location, 'UPDATE certificates SET signed_message = ? WHERE certificate_id = ?', [
      altered,
      certificates[1]!,
    ]);

    const tampered = await summary();
    assert.equal(tampered.certificates.verification.verified, 2);
    assert.equal(tampered.certificates.verification.passed, 1);
    assert.equal(tampered.certificates.verification.pass_share, 0.5);
    assert.equal(tampered.certificates.verification.failures[0].certificate_id, certificates[1]);
    assert.ok(tampered.certificates.verification.failures[0].failed_checks.length > 0);

    const sampled = await summary('?verification_sample=1');
    assert.equal(sampled.certificates.verification.verified, 1);
    assert.equal(sampled.certificates.verification.sample_limit, 1);

    const invalid = await app.app.inject({
      method: 'GET',
      url: '/v1/dashboard/executive-summary?verification_sample=0',
      headers: bearer(auditor),
    });
    assert.equal(invalid.statusCode, 400);
  }
});
