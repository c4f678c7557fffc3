// Shadow-mode routes through app.inject against a real SQLite store: validation, results,
// assumptions, batch analysis, leakage sums, intake links, item reads and two-tenant isolation.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { GAP_NOTES, GAP_NOTE_VALUES, ROI_INPUTS } from '../helpers/shadow.ts';

const FAKE_ID = '00000000-0000-4000-8000-000000000000';

describe('shadow-mode API', () => {
  let t: TestApp;
  let alice: string;
  let bob: string;
  let aliceCertificate: string;
  let aliceNoteText: string;

  const post = (url: string, token: string, payload: unknown) =>
    t.app.inject({ method: 'POST', url, headers: bearer(token), payload: payload as object });
  const get = (url: string, token: string) =>
    t.app.inject({ method: 'GET', url, headers: bearer(token) });

  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('alice');
    await t.services.tenants.create('bob');
    alice = await t.token('analyst', 'alice');
    bob = await t.token('analyst', 'bob');
    aliceNoteText = GAP_NOTES[0]!;
    const issued = await t.services.issuance.issue(
      'alice',
      issueBody({ note_text: aliceNoteText }) as never,
    );
    aliceCertificate = issued.certificate.certificate_id;
  });
  after(() => t.close());

  describe('evidence-deficit', () => {
    const url = '/v1/shadow/evidence-deficit';

    test('returns the result and the assumptions used', async () => {
      const response = await post(url, alice, { note_text: GAP_NOTES[1] });
      assert.equal(response.statusCode, 200);
      const body = response.json();
      assert.equal(body.result.summary.estimated_value_at_risk_usd, GAP_NOTE_VALUES[1]);
      assert.equal(body.assumptions.revision, 0);
      assert.equal(body.assumptions.source, 'ruleset_default');
      assert.equal(body.assumptions.condition_values_usd.sepsis, 9000);
      assert.match(body.note_hash, /^[0-9a-f]{64}$/);
      assert.equal(body.leakage.estimated_value_at_risk_usd, GAP_NOTE_VALUES[1]);
    });

    test('response holds spans but no note text', async () => {
      const response = await post(url, alice, { note_text: GAP_NOTES[0] });
      const body = response.json();
      assert.ok(!response.body.includes('"text"'));
      assert.ok(!response.body.includes('metformin'));
      const mention = body.result.conditions[0].mentions[0];
      assert.equal(mention.span.length, 2);
    });

    test('structured context counts a condition', async () => {
      const response = await post(url, alice, {
        note_text: 'PLAN: Continue current management.',
        context: { diagnoses: ['I50.22'], labs: [{ name: 'BNP', value: 900 }] },
      });
      assert.equal(response.statusCode, 200);
      const conditions = response.json().result.conditions;
      assert.equal(conditions[0].condition_id, 'heart_failure');
      assert.equal(conditions[0].source, 'diagnosis_code');
    });

    const invalid: [string, unknown, string][] = [
      ['unknown field', { note_text: 'x', tenant_id: 'bob' }, 'tenant_id'],
      ['missing note_text', { context: {} }, 'note_text'],
      ['empty note_text', { note_text: '' }, 'note_text'],
      ['note_text too long', { note_text: 'a'.repeat(200_001) }, 'note_text'],
      ['unknown context field', { note_text: 'x', context: { ward: '4B' } }, 'context.ward'],
      [
        'too many diagnoses',
        { note_text: 'x', context: { diagnoses: Array.from({ length: 201 }, () => 'E11.9') } },
        'context.diagnoses',
      ],
      [
        'lab without name',
        { note_text: 'x', context: { labs: [{ value: 1 }] } },
        'context.labs.0.name',
      ],
      ['note_ref on stateless route', { note_text: 'x', note_ref: 'r1' }, 'note_ref'],
      ['note_text with lone surrogate', { note_text: 'Hypertension \uD800 stable.' }, 'note_text'],
      [
        'diagnosis code not ICD-10',
        { note_text: 'x', context: { diagnoses: ['ZQDX1'] } },
        'context.diagnoses.0',
      ],
      [
        'diagnosis object code not ICD-10',
        { note_text: 'x', context: { diagnoses: [{ code: 'Smith 7788' }] } },
        'context.diagnoses.0.code',
      ],
    ];
    for (const [name, payload, field] of invalid) {
      test(`rejects ${name}`, async () => {
        const response = await post(url, alice, payload);
        assert.equal(response.statusCode, 400);
        const error = response.json().error;
        assert.equal(error.code, 'VALIDATION_FAILED');
        assert.ok(
          error.details.some((detail: { field: string }) => detail.field === field),
          JSON.stringify(error.details),
        );
      });
    }
  });

  describe('assumptions', () => {
    test('PUT rejects an unknown condition', async () => {
      const response = await t.app.inject({
        method: 'PUT',
        url: '/v1/shadow/assumptions',
        headers: bearer(bob),
        payload: { condition_values_usd: { gout: 10 } },
      });
      assert.equal(response.statusCode, 400);
      assert.equal(response.json().error.details[0].field, 'condition_values_usd.gout');
    });

    test('PUT rejects a negative value', async () => {
      const response = await t.app.inject({
        method: 'PUT',
        url: '/v1/shadow/assumptions',
        headers: bearer(bob),
        payload: { condition_values_usd: { sepsis: -1 } },
      });
      assert.equal(response.statusCode, 400);
    });

    test('PUT stores a revision that later results use', async () => {
      const put = await t.app.inject({
        method: 'PUT',
        url: '/v1/shadow/assumptions',
        headers: bearer(bob),
        payload: { condition_values_usd: { sepsis: 18000 }, basis: 'contract 2027 figures' },
      });
      assert.equal(put.statusCode, 200);
      assert.equal(put.json().revision, 1);
      assert.equal(put.json().source, 'tenant');
      assert.equal(put.json().condition_values_usd.sepsis, 18000);
      assert.equal(put.json().condition_values_usd.diabetes, 1800);

      const read = await get('/v1/shadow/assumptions', await t.token('auditor', 'bob'));
      assert.equal(read.statusCode, 200);
      assert.equal(read.json().revision, 1);
      assert.equal(read.json().basis, 'contract 2027 figures');

      const scored = await post('/v1/shadow/evidence-deficit', bob, { note_text: GAP_NOTES[1] });
      const sepsis = scored
        .json()
        .result.conditions.find((c: { condition_id: string }) => c.condition_id === 'sepsis');
      assert.equal(sepsis.estimated_value_at_risk_usd, 9000);
      assert.equal(scored.json().assumptions.revision, 1);
      assert.equal(scored.json().result.summary.value_basis, 'contract 2027 figures');

      const again = await t.app.inject({
        method: 'PUT',
        url: '/v1/shadow/assumptions',
        headers: bearer(bob),
        payload: {},
      });
      assert.equal(again.json().revision, 2);
      assert.equal(again.json().condition_values_usd.sepsis, 9000);
    });

    test("one tenant's update leaves the other on defaults", async () => {
      const response = await get('/v1/shadow/assumptions', alice);
      assert.equal(response.json().revision, 0);
      assert.equal(response.json().condition_values_usd.sepsis, 9000);
    });
  });

  describe('analyze', () => {
    test('stores one item per note and summarizes the batch', async () => {
      const response = await post('/v1/shadow/analyze', alice, {
        notes: GAP_NOTES.map((note_text, index) => ({
          note_text,
          note_ref: `MRN-ANALYZE-${index}`,
        })),
      });
      assert.equal(response.statusCode, 201);
      const body = response.json();
      assert.equal(body.items.length, GAP_NOTES.length);
      assert.deepEqual(
        body.items.map((item: { index: number }) => item.index),
        [0, 1, 2],
      );
      assert.deepEqual(
        body.items.map(
          (item: { estimated_value_at_risk_usd: number }) => item.estimated_value_at_risk_usd,
        ),
        GAP_NOTE_VALUES,
      );
      assert.equal(body.summary.notes, GAP_NOTES.length);
      assert.equal(
        body.summary.estimated_value_at_risk_usd,
        GAP_NOTE_VALUES.reduce((a, b) => a + b, 0),
      );
      assert.equal(body.assumptions.revision, 0);
      assert.ok(!response.body.includes('MRN-ANALYZE'), 'note_ref echoed');
      assert.match(body.items[0].note_ref_hash, /^[0-9a-f]{64}$/);

      const listed = await get(`/v1/shadow/items?batch_id=${body.batch_id}`, alice);
      assert.equal(listed.statusCode, 200);
      assert.equal(listed.json().items.length, GAP_NOTES.length);
    });

    test('same note_ref gives the same keyed hash', async () => {
      const first = await post('/v1/shadow/analyze', alice, {
        notes: [{ note_text: GAP_NOTES[2], note_ref: 'REF-SAME' }],
      });
      const second = await post('/v1/shadow/analyze', alice, {
        notes: [{ note_text: GAP_NOTES[1], note_ref: 'REF-SAME' }],
      });
      const other = await post('/v1/shadow/analyze', bob, {
        notes: [{ note_text: GAP_NOTES[1], note_ref: 'REF-SAME' }],
      });
      assert.equal(first.json().items[0].note_ref_hash, second.json().items[0].note_ref_hash);
      assert.notEqual(first.json().items[0].note_ref_hash, other.json().items[0].note_ref_hash);
    });

    test('rejects more than 100 notes', async () => {
      const response = await post('/v1/shadow/analyze', alice, {
        notes: Array.from({ length: 101 }, () => ({ note_text: 'ASSESSMENT: COPD.' })),
      });
      assert.equal(response.statusCode, 400);
      assert.equal(response.json().error.details[0].field, 'notes');
    });

    test('rejects an empty batch', async () => {
      const response = await post('/v1/shadow/analyze', alice, { notes: [] });
      assert.equal(response.statusCode, 400);
    });

    test('rejects an unknown field inside a note', async () => {
      const response = await post('/v1/shadow/analyze', alice, {
        notes: [{ note_text: 'x', patient_name: 'someone' }],
      });
      assert.equal(response.statusCode, 400);
      assert.equal(response.json().error.details[0].field, 'notes.0.patient_name');
    });

    test('rejects a note_ref over 128 characters', async () => {
      const response = await post('/v1/shadow/analyze', alice, {
        notes: [{ note_text: 'x', note_ref: 'r'.repeat(129) }],
      });
      assert.equal(response.statusCode, 400);
    });
  });

  describe('leakage-report', () => {
    test('attribution adds up per note and per breakdown', async () => {
      const response = await post('/v1/shadow/leakage-report', alice, {
        notes: GAP_NOTES.map((note_text) => ({ note_text })),
      });
      assert.equal(response.statusCode, 200);
      const body = response.json();
      const cents = (values: number[]) =>
        values.reduce((sum, value) => sum + Math.round(value * 100), 0);
      const total = GAP_NOTE_VALUES.reduce((a, b) => a + b, 0) * 100;
      assert.equal(Math.round(body.estimated_value_at_risk_usd * 100), total);
      body.per_note.forEach(
        (
          note: { estimated_value_at_risk_usd: number; gaps: { attributed_usd: number }[] },
          i: number,
        ) => {
          assert.equal(note.estimated_value_at_risk_usd, GAP_NOTE_VALUES[i]);
          assert.equal(
            cents(note.gaps.map((gap) => gap.attributed_usd)),
            Math.round(note.estimated_value_at_risk_usd * 100),
            `note ${i}`,
          );
        },
      );
      assert.equal(
        cents(
          body.by_condition.map(
            (row: { estimated_value_at_risk_usd: number }) => row.estimated_value_at_risk_usd,
          ),
        ),
        total,
      );
      assert.equal(
        cents(body.by_missing_element.map((row: { attributed_usd: number }) => row.attributed_usd)),
        total,
      );
      assert.equal(
        cents(body.by_gap.map((row: { attributed_usd: number }) => row.attributed_usd)),
        total,
      );
      assert.match(body.method, /largest remainder/);
      assert.equal(body.assumptions.revision, 0);
    });

    test('stores nothing', async () => {
      const before = await t.services.store.aggregateShadowItems('alice', {});
      await post('/v1/shadow/leakage-report', alice, { notes: [{ note_text: GAP_NOTES[0] }] });
      const after = await t.services.store.aggregateShadowItems('alice', {});
      assert.equal(after.items, before.items);
    });
  });

  describe('intake and items', () => {
    test('links a certificate of the same tenant', async () => {
      const response = await post('/v1/shadow/intake', alice, {
        note_text: aliceNoteText,
        certificate_id: aliceCertificate,
        note_ref: 'ENC-INTAKE-1',
      });
      assert.equal(response.statusCode, 201);
      const item = response.json();
      assert.equal(item.source, 'intake');
      assert.equal(item.certificate_id, aliceCertificate);
      assert.equal(item.certificate_note_hash_matches, true);
      assert.equal(item.estimated_value_at_risk_usd, GAP_NOTE_VALUES[0]);
      assert.ok(item.has_deficit);

      const read = await get(`/v1/shadow/items/${item.item_id}`, await t.token('auditor', 'alice'));
      assert.equal(read.statusCode, 200);
      assert.deepEqual(read.json(), item);
    });

    test('flags a linked certificate for another note', async () => {
      const response = await post('/v1/shadow/intake', alice, {
        note_text: GAP_NOTES[2],
        certificate_id: aliceCertificate,
      });
      assert.equal(response.json().certificate_note_hash_matches, false);
    });

    test("another tenant's certificate answers like a missing one", async () => {
      const foreign = await post('/v1/shadow/intake', bob, {
        note_text: 'ASSESSMENT: COPD.',
        certificate_id: aliceCertificate,
      });
      const missing = await post('/v1/shadow/intake', bob, {
        note_text: 'ASSESSMENT: COPD.',
        certificate_id: FAKE_ID,
      });
      assert.equal(foreign.statusCode, 404);
      assert.equal(missing.statusCode, 404);
      assert.equal(foreign.json().error.code, 'CERTIFICATE_NOT_FOUND');
      assert.equal(foreign.json().error.message, missing.json().error.message);
      const bobItems = await get('/v1/shadow/items?source=intake', bob);
      assert.equal(bobItems.json().items.length, 0, 'a failed intake stored an item');
    });

    test("another tenant's item answers like a missing one", async () => {
      const created = await post('/v1/shadow/intake', alice, { note_text: GAP_NOTES[1] });
      const id = created.json().item_id as string;
      const foreign = await get(`/v1/shadow/items/${id}`, bob);
      const missing = await get(`/v1/shadow/items/${FAKE_ID}`, bob);
      assert.equal(foreign.statusCode, 404);
      assert.equal(missing.statusCode, 404);
      assert.equal(foreign.json().error.code, 'SHADOW_ITEM_NOT_FOUND');
      assert.deepEqual(
        { ...foreign.json().error, request_id: undefined },
        { ...missing.json().error, request_id: undefined },
      );
      const bobList = await get('/v1/shadow/items', bob);
      assert.ok(
        bobList.json().items.every((item: { item_id: string }) => item.item_id !== id),
        "bob's list shows alice's item",
      );
    });

    test('list pages through every item once', async () => {
      const all = new Set<string>();
      let cursor: string | null = null;
      let pages = 0;
      do {
        const url: string = `/v1/shadow/items?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
        const response = await get(url, alice);
        assert.equal(response.statusCode, 200);
        for (const item of response.json().items as { item_id: string }[]) {
          assert.ok(!all.has(item.item_id), 'item repeated across pages');
          all.add(item.item_id);
        }
        cursor = response.json().next_cursor;
        pages++;
      } while (cursor !== null && pages < 50);
      const aggregate = await t.services.store.aggregateShadowItems('alice', {});
      assert.equal(all.size, aggregate.items);
    });

    test('list filters by condition, deficit and source', async () => {
      const sepsis = await get('/v1/shadow/items?condition=sepsis&limit=200', alice);
      assert.ok(sepsis.json().items.length > 0);
      for (const item of sepsis.json().items) {
        assert.ok(item.gaps.some((gap: { condition_id: string }) => gap.condition_id === 'sepsis'));
      }
      const clean = await get('/v1/shadow/items?has_deficit=false&limit=200', alice);
      for (const item of clean.json().items) {
        assert.equal(item.has_deficit, false);
      }
      const intake = await get('/v1/shadow/items?source=intake&limit=200', alice);
      assert.ok(intake.json().items.every((item: { source: string }) => item.source === 'intake'));
      assert.ok(intake.json().items.length >= 3);
    });

    test('list filters by created range', async () => {
      const future = await get('/v1/shadow/items?created_from=2999-01-01T00:00:00Z', alice);
      assert.equal(future.json().items.length, 0);
      const past = await get('/v1/shadow/items?created_to=2000-01-01T00:00:00Z', alice);
      assert.equal(past.json().items.length, 0);
      const open = await get('/v1/shadow/items?created_from=2000-01-01T00:00:00Z&limit=1', alice);
      assert.equal(open.json().items.length, 1);
    });

    const badQueries: [string, string][] = [
      ['limit 0', 'limit=0'],
      ['limit over 200', 'limit=201'],
      ['text limit', 'limit=ten'],
      ['has_deficit not boolean', 'has_deficit=yes'],
      ['unknown parameter', 'patient=1'],
      ['bad date', 'created_from=yesterday'],
      ['unknown condition', 'condition=gout'],
      ['garbage cursor', 'cursor=abc'],
    ];
    for (const [name, query] of badQueries) {
      test(`list rejects ${name}`, async () => {
        const response = await get(`/v1/shadow/items?${query}`, alice);
        assert.equal(response.statusCode, 400, response.body);
        assert.equal(response.json().error.code, 'VALIDATION_FAILED');
      });
    }

    test('cursor is bound to its filters', async () => {
      const first = await get('/v1/shadow/items?limit=1', alice);
      const cursor = first.json().next_cursor as string;
      assert.ok(cursor);
      const changed = await get(`/v1/shadow/items?limit=1&source=intake&cursor=${cursor}`, alice);
      assert.equal(changed.statusCode, 400);
    });
  });

  describe('risk queue', () => {
    test('ranks items by value at risk across pages', async () => {
      const values: number[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const url: string = `/v1/dashboard/risk-queue?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
        const response = await get(url, alice);
        assert.equal(response.statusCode, 200);
        values.push(
          ...response
            .json()
            .items.map(
              (i: { estimated_value_at_risk_usd: number }) => i.estimated_value_at_risk_usd,
            ),
        );
        assert.equal(response.json().assumptions.revision, 0);
        cursor = response.json().next_cursor;
        pages++;
      } while (cursor !== null && pages < 50);
      assert.ok(values.length >= 4);
      assert.ok(values.every((value) => value > 0));
      assert.deepEqual(
        values,
        [...values].sort((a, b) => b - a),
      );
    });

    test('a list cursor is rejected by the queue', async () => {
      const list = await get('/v1/shadow/items?limit=1', alice);
      const response = await get(
        `/v1/dashboard/risk-queue?cursor=${list.json().next_cursor}`,
        alice,
      );
      assert.equal(response.statusCode, 400);
    });
  });

  describe('dashboard', () => {
    test('totals match the stored items', async () => {
      const response = await get('/v1/shadow/dashboard', await t.token('auditor', 'alice'));
      assert.equal(response.statusCode, 200);
      const body = response.json();
      const aggregate = await t.services.store.aggregateShadowItems('alice', {});
      assert.equal(body.items, aggregate.items);
      let listed = 0;
      let cursor: string | null = null;
      do {
        const page = await get(
          `/v1/shadow/items?limit=200${cursor ? `&cursor=${cursor}` : ''}`,
          alice,
        );
        listed += page
          .json()
          .items.reduce(
            (sum: number, item: { estimated_value_at_risk_usd: number }) =>
              sum + item.estimated_value_at_risk_usd,
            0,
          );
        cursor = page.json().next_cursor;
      } while (cursor !== null);
      assert.equal(body.estimated_value_at_risk_usd, listed);
      const byElement = body.leakage_by_missing_element.reduce(
        (sum: number, row: { attributed_usd: number }) =>
          sum + Math.round(row.attributed_usd * 100),
        0,
      );
      assert.equal(byElement, listed * 100);
      assert.ok(body.conditions.some((c: { condition_id: string }) => c.condition_id === 'sepsis'));
      assert.ok(body.note_findings['note.short_note'] > 0);
    });

    test('batch rejects a lone surrogate', async () => {
      const response = await post('/v1/shadow/analyze', alice, {
        notes: [{ note_text: 'Hypertension.' }, { note_text: 'Sepsis \uDC00.' }],
      });
      assert.equal(response.statusCode, 400);
      const error = response.json().error;
      assert.equal(error.code, 'VALIDATION_FAILED');
      assert.equal(error.details[0].field, 'notes.1.note_text');
    });

    test('condition counts are never negative', async () => {
      await t.services.tenants.create('carol');
      const carol = await t.token('analyst', 'carol');
      const notes = [
        { note_text: 'ASSESSMENT: Hypertension, controlled. PLAN: Continue lisinopril.' },
        { note_text: 'ASSESSMENT: Hypertension, stable. PLAN: Continue amlodipine.' },
        { note_text: 'ASSESSMENT: Hypertension, uncontrolled. PLAN: Increase lisinopril.' },
        { note_text: 'ASSESSMENT: Hypertension. PLAN: Recheck in 2 weeks.' },
        {
          note_text: 'ASSESSMENT: Well visit. PLAN: Routine care.',
          context: { diagnoses: ['I10'] },
        },
      ];
      const analyzed = await post('/v1/shadow/analyze', carol, { notes });
      assert.equal(analyzed.statusCode, 201);
      const response = await get('/v1/shadow/dashboard', await t.token('auditor', 'carol'));
      assert.equal(response.statusCode, 200);
      const hypertension = response
        .json()
        .conditions.find((c: { condition_id: string }) => c.condition_id === 'hypertension');
      assert.ok(hypertension !== undefined);
      assert.equal(hypertension.items_counted, 5);
      assert.equal(hypertension.items_mentioned, 5);
      assert.equal(hypertension.items_not_counted, 0);
    });
  });

  describe('roi-projection', () => {
    const url = '/v2/analytics/roi-projection';

    test('returns the hand-computed projection', async () => {
      const response = await post(url, alice, ROI_INPUTS);
      assert.equal(response.statusCode, 200);
      const body = response.json();
      assert.equal(body.prevented_documentation_denials_usd, 1_000_000);
      assert.equal(body.incremental_appeal_gains_usd, 240_000);
      assert.equal(body.avoided_appeal_costs_usd, 16_000);
      assert.equal(body.total_preserved_usd, 1_256_000);
      assert.equal(body.roi_multiple, 12.56);
      assert.equal(body.assumptions.length, 10);
    });

    test('zero program cost gives a null multiple', async () => {
      const response = await post(url, alice, { ...ROI_INPUTS, program_cost_usd: 0 });
      assert.equal(response.statusCode, 200);
      assert.equal(response.json().roi_multiple, null);
      assert.match(response.json().roi_multiple_reason, /program_cost_usd is 0/);
    });

    for (const [name, payload, field] of [
      ['a rate above 1', { ...ROI_INPUTS, denial_rate: 1.5 }, 'denial_rate'],
      ['a negative cost', { ...ROI_INPUTS, program_cost_usd: -1 }, 'program_cost_usd'],
      [
        'a fractional volume',
        { ...ROI_INPUTS, annual_encounter_volume: 10.5 },
        'annual_encounter_volume',
      ],
      ['an unknown field', { ...ROI_INPUTS, discount_rate: 0.1 }, 'discount_rate'],
      ['a missing field', { ...ROI_INPUTS, appeal_cost_usd: undefined }, 'appeal_cost_usd'],
    ] as [string, object, string][]) {
      test(`rejects ${name}`, async () => {
        const response = await post(url, alice, payload);
        assert.equal(response.statusCode, 400);
        assert.ok(
          response.json().error.details.some((d: { field: string }) => d.field === field),
          response.body,
        );
      });
    }
  });

  test('scoring routes need an existing tenant', async () => {
    const ghost = await t.token('analyst', 'ghost-tenant');
    const response = await post('/v1/shadow/evidence-deficit', ghost, { note_text: 'x' });
    assert.equal(response.statusCode, 404);
    assert.equal(response.json().error.code, 'TENANT_NOT_FOUND');
  });
});
