import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scoreNote } from '../../src/scoring/engine.ts';
import type { ConditionResult, ScoreResult } from '../../src/scoring/types.ts';

function condition(result: ScoreResult, id: string): ConditionResult | undefined {
  return result.conditions.find((item) => item.condition_id === id);
}

const supportedDiabetes = [
  'CHIEF COMPLAINT:,  Follow up of diabetes.',
  'HISTORY OF PRESENT ILLNESS:,  A 58-year-old man with type 2 diabetes mellitus checks his blood sugars at home.',
  'ASSESSMENT AND PLAN:,1.  Type 2 diabetes mellitus, uncontrolled.  Hemoglobin A1c is 9.1.  Increase metformin to 1000 mg twice daily.  Recheck A1c in 3 months.',
].join(',');

test('supported condition has no deficit', () => {
  const result = scoreNote({ text: supportedDiabetes });
  const diabetes = condition(result, 'diabetes');
  assert.ok(diabetes !== undefined);
  assert.equal(diabetes.counted, true);
  assert.equal(diabetes.source, 'note');
  assert.equal(diabetes.meat.monitor.met, true);
  assert.equal(diabetes.meat.treat.met, true);
  assert.equal(diabetes.meat.assess.met, true);
  assert.equal(diabetes.meat.evaluate.met, true);
  assert.deepEqual(diabetes.missing, []);
  assert.equal(diabetes.completeness, 1);
  assert.equal(diabetes.estimated_value_at_risk_usd, 0);
});

test('evidence spans point into the note', () => {
  const result = scoreNote({ text: supportedDiabetes });
  const diabetes = condition(result, 'diabetes');
  assert.ok(diabetes !== undefined);
  const treat = diabetes.meat.treat.evidence.find(
    (item) => item.rule_id === 'diabetes.treat.therapy',
  );
  assert.ok(treat?.span !== undefined);
  assert.equal(supportedDiabetes.slice(treat.span[0], treat.span[1]), 'metformin');
  assert.equal(treat.section, 'assessment_and_plan');
});

test('unsupported condition lists missing elements', () => {
  const text = 'ASSESSMENT:,  Atrial fibrillation.,PLAN:,  Return in one year.';
  const afib = condition(scoreNote({ text }), 'atrial_fibrillation');
  assert.ok(afib !== undefined);
  assert.equal(afib.counted, true);
  assert.equal(afib.meat.assess.met, true);
  assert.equal(afib.meat.treat.met, false);
  assert.ok(afib.missing.includes('treat'));
  assert.ok(afib.missing.includes('evaluate'));
  assert.ok(afib.completeness < 1);
  assert.ok(afib.estimated_value_at_risk_usd > 0);
});

test('evidence far from the mention does not count', () => {
  const text = [
    'HISTORY OF PRESENT ILLNESS:,  She reports knee pain after a fall and was given furosemide by urgent care for ankle swelling.',
    'ASSESSMENT:,  Heart failure.',
  ].join(',');
  const heartFailure = condition(scoreNote({ text }), 'heart_failure');
  assert.ok(heartFailure !== undefined);
  assert.equal(heartFailure.meat.treat.met, false);
});

test('terms match whole words only', () => {
  const cases = [
    'The CHFx registry flag was cleared.',
    'Antisepsis of the skin was performed.',
    'Patient MAKI was seen today.',
    'Hypertensiveness is not a word we use.',
    'Diabetesmellitus typo in the form.',
  ];
  for (const text of cases) {
    assert.deepEqual(scoreNote({ text }).conditions, [], text);
  }
  const aki = condition(scoreNote({ text: 'ASSESSMENT:,  AKI, prerenal.' }), 'acute_kidney_injury');
  assert.equal(aki?.counted, true);
});

test('excluded phrases do not match', () => {
  const result = scoreNote({ text: 'ASSESSMENT:,  Pulmonary hypertension.' });
  assert.equal(condition(result, 'hypertension'), undefined);
});

test('ICD-10 code in context detects condition', () => {
  const result = scoreNote({
    text: 'Patient seen for follow up.',
    context: { diagnoses: ['I50.22', { code: 'E11.9', description: 'Type 2 diabetes' }, 'Z00.00'] },
  });
  const heartFailure = condition(result, 'heart_failure');
  assert.equal(heartFailure?.counted, true);
  assert.equal(heartFailure?.source, 'diagnosis_code');
  assert.deepEqual(heartFailure?.codes, ['I50.22']);
  assert.deepEqual(heartFailure?.missing, ['monitor', 'evaluate', 'assess', 'treat']);
  assert.equal(condition(result, 'diabetes')?.source, 'diagnosis_code');
  assert.ok(
    result.note_findings.some(
      (finding) =>
        finding.kind === 'unmapped_diagnosis_code' &&
        finding.detail === '1 diagnosis code maps to no condition in the ruleset',
    ),
  );
});

test('structured context supplies evidence', () => {
  const result = scoreNote({
    text: 'ASSESSMENT:,  Heart failure, chronic, stable.',
    context: {
      labs: [{ name: 'NT-proBNP', value: 900, unit: 'pg/mL' }],
      medications: [{ name: 'Furosemide 40 mg' }],
      vitals: [{ name: 'weight', value: 82 }],
    },
  });
  const heartFailure = condition(result, 'heart_failure');
  assert.ok(heartFailure !== undefined);
  assert.equal(heartFailure.meat.evaluate.met, true);
  assert.equal(heartFailure.meat.treat.met, true);
  assert.equal(heartFailure.meat.monitor.met, true);
  assert.ok(
    heartFailure.meat.treat.evidence.some((item) => item.structured?.kind === 'medications'),
  );
});

test('problem list counts a condition', () => {
  const result = scoreNote({ text: 'Seen today.', context: { problem_list: ['COPD, moderate'] } });
  assert.equal(condition(result, 'copd')?.source, 'problem_list');
});

test('note findings flag short notes and missing sections', () => {
  const result = scoreNote({ text: 'Doing well. Continue current management.' });
  const kinds = result.note_findings.map((finding) => finding.rule_id);
  assert.ok(kinds.includes('note.short_note'));
  assert.ok(kinds.includes('note.missing_assessment'));
  assert.ok(kinds.includes('note.missing_plan'));
});

test('vague plan is flagged', () => {
  const text =
    'ASSESSMENT:,  Hypertension.,PLAN:,  Continue current management and follow up as needed with primary care as discussed today.';
  const result = scoreNote({ text });
  assert.ok(result.note_findings.some((finding) => finding.kind === 'vague_plan'));
});

test('scoring is deterministic', () => {
  const input = {
    text: supportedDiabetes,
    context: { diagnoses: ['I10', 'N18.4'], labs: [{ name: 'creatinine', value: 2.1 }] },
  };
  const first = JSON.stringify(scoreNote(input));
  for (let i = 0; i < 5; i++) {
    assert.equal(JSON.stringify(scoreNote(input)), first);
  }
});

test('summary totals match conditions', () => {
  const result = scoreNote({ text: supportedDiabetes, context: { diagnoses: ['I48.91'] } });
  const counted = result.conditions.filter((item) => item.counted);
  assert.equal(result.summary.conditions_counted, counted.length);
  assert.equal(
    result.summary.estimated_value_at_risk_usd,
    counted.reduce((sum, item) => sum + item.estimated_value_at_risk_usd, 0),
  );
});

test('empty note scores cleanly', () => {
  const result = scoreNote({ text: '' });
  assert.deepEqual(result.conditions, []);
  assert.equal(result.summary.mean_completeness, null);
});

test('long unpunctuated note scores in linear time', () => {
  // One 200,000-character sentence with about 37,000 mentions and 12,000 negation triggers.
  const text = 'hypertension diabetes sepsis no '.repeat(8000).slice(0, 200_000);
  const started = performance.now();
  const result = scoreNote({ text });
  const elapsedMs = performance.now() - started;
  assert.ok(condition(result, 'hypertension') !== undefined);
  assert.ok(elapsedMs < 2000, `scoring took ${elapsedMs.toFixed(0)} ms`);
});

test('problem list entries keep their assertion', () => {
  const result = scoreNote({
    text: 'Routine follow up visit.',
    context: { problem_list: ['history of CHF', 'no COPD', 'Hypertension'] },
  });
  assert.equal(condition(result, 'heart_failure')?.counted ?? false, false);
  assert.equal(condition(result, 'copd')?.counted ?? false, false);
  assert.equal(condition(result, 'hypertension')?.counted, true);
});

test('diagnosis description keeps its assertion', () => {
  const result = scoreNote({
    text: 'Routine follow up visit.',
    context: {
      diagnoses: [
        { code: 'Z99.89', description: 'possible pneumonia' },
        { code: 'Z99.81', description: 'atrial fibrillation' },
      ],
    },
  });
  assert.equal(condition(result, 'pneumonia')?.counted ?? false, false);
  assert.equal(condition(result, 'atrial_fibrillation')?.counted, true);
});

test('list item evidence stays with its problem', () => {
  const text =
    'ASSESSMENT AND PLAN:,1.  Congestive heart failure.  BNP 1200.  Continue Lasix.,2.  Hypertension, controlled.';
  const result = scoreNote({ text });
  const heartFailure = condition(result, 'heart_failure');
  const hypertension = condition(result, 'hypertension');
  assert.equal(heartFailure?.meat.treat.met, true);
  assert.equal(hypertension?.meat.treat.met, false);
  assert.deepEqual(
    hypertension?.meat.treat.evidence.map((item) => item.text),
    [],
  );
});

test('status words attach to nearest condition', () => {
  const result = scoreNote({ text: 'ASSESSMENT: HTN, DM2, A-fib, CKD stage 3, AKI' });
  const kidneyInjury = condition(result, 'acute_kidney_injury');
  assert.ok(kidneyInjury !== undefined);
  assert.deepEqual(
    kidneyInjury.meat.assess.evidence.filter((item) => item.text === 'stage 3'),
    [],
  );
});

test('recheck BP meets hypertension monitor', () => {
  const text =
    'ASSESSMENT: Hypertension, controlled. PLAN: Continue lisinopril. Recheck BP in 2 weeks.';
  const hypertension = condition(scoreNote({ text }), 'hypertension');
  assert.equal(hypertension?.meat.monitor.met, true);
});

test('plan finding uses singular word', () => {
  const result = scoreNote({ text: 'ASSESSMENT: Hypertension. PLAN: Observe.' });
  const details = result.note_findings.map((finding) => finding.detail);
  assert.ok(details.includes('plan has 1 word, fewer than 8'), JSON.stringify(details));
  assert.ok(details.includes('note has 4 words, fewer than 60'), JSON.stringify(details));
});

test('negated coded condition is a conflict', () => {
  const result = scoreNote({
    text: 'No evidence of heart failure.',
    context: { diagnoses: ['I50.22'] },
  });
  const conflicts = result.note_findings.filter(
    (finding) => finding.kind === 'documentation_conflict',
  );
  assert.equal(conflicts.length, 1);
  assert.equal(conflicts[0]?.condition_id, 'heart_failure');
  const affirmed = scoreNote({
    text: 'Heart failure, stable.',
    context: { diagnoses: ['I50.22'] },
  });
  assert.ok(!affirmed.note_findings.some((finding) => finding.kind === 'documentation_conflict'));
});
