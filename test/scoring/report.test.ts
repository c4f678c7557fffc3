import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scoreNote } from '../../src/scoring/engine.ts';
import { CorpusAggregator, formatCorpusReport, parseNoteLine } from '../../src/scoring/report.ts';

test('parses corpus lines', () => {
  const note = parseNoteLine('{"note_id": 7, "specialty": "Nephrology", "text": "CKD."}', 1);
  assert.deepEqual(note, { note_id: '7', specialty: 'Nephrology', text: 'CKD.' });
  assert.equal(parseNoteLine('   ', 2), undefined);
  assert.throws(() => parseNoteLine('{"note_id": 1', 3), /line 3: invalid JSON/);
  assert.throws(() => parseNoteLine('{"note_id": 1}', 4), /line 4: missing string field text/);
});

test('aggregates conditions and gaps', () => {
  const aggregator = new CorpusAggregator();
  aggregator.add(
    'a',
    scoreNote({ text: 'ASSESSMENT:,  Atrial fibrillation.  Continue apixaban.' }),
  );
  aggregator.add('b', scoreNote({ text: 'ASSESSMENT:,  Atrial fibrillation.' }));
  aggregator.add('c', scoreNote({ text: 'No atrial fibrillation.' }));
  const report = aggregator.report();
  assert.equal(report.notes, 3);
  assert.equal(report.notes_with_counted_condition, 2);
  const afib = report.conditions.find((item) => item.condition_id === 'atrial_fibrillation');
  assert.equal(afib?.notes_counted, 2);
  assert.equal(afib?.notes_not_counted, 1);
  assert.equal(afib?.element_met_rate.treat, 0.5);
  assert.equal(afib?.element_met_rate.assess, 1);
  const treatGap = report.top_gaps.find(
    (gap) => gap.condition_id === 'atrial_fibrillation' && gap.element === 'treat',
  );
  assert.deepEqual(treatGap?.example_note_ids, ['b']);
  assert.equal(treatGap?.notes, 1);
  assert.match(formatCorpusReport(report), /atrial_fibrillation/);
});
