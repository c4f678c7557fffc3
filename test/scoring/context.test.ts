import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifySpan } from '../../src/scoring/context.ts';
import { scoreNote } from '../../src/scoring/engine.ts';
import { loadDefaultContextRules } from '../../src/scoring/ruleset.ts';

const rules = loadDefaultContextRules();

function classify(sentence: string, target: string) {
  const start = sentence.toLowerCase().indexOf(target.toLowerCase());
  assert.ok(start >= 0, `target ${target} not in sentence`);
  return classifySpan(rules, sentence, start, start + target.length);
}

function countedIds(text: string): string[] {
  return scoreNote({ text })
    .conditions.filter((condition) => condition.counted)
    .map((condition) => condition.condition_id);
}

test('negated mentions are not counted', () => {
  const cases = [
    ['The patient denies chest pain or heart failure symptoms.', 'heart_failure'],
    ['Chest x-ray shows no evidence of pneumonia.', 'pneumonia'],
    ['HEENT: negative for COPD or emphysema.', 'copd'],
    ['There is no sign of sepsis at this time.', 'sepsis'],
    ['He has never had atrial fibrillation.', 'atrial_fibrillation'],
  ] as const;
  for (const [text, id] of cases) {
    const result = scoreNote({ text });
    const condition = result.conditions.find((item) => item.condition_id === id);
    assert.ok(condition !== undefined, `${id} not found in: ${text}`);
    assert.equal(condition.counted, false, text);
    assert.equal(condition.mentions[0]?.assertion.negated, true, text);
  }
});

test('historical mentions are not counted', () => {
  assert.deepEqual(countedIds('History of sepsis in 2019, treated at another hospital.'), []);
  assert.deepEqual(countedIds('PAST MEDICAL HISTORY:,  Hypertension and diabetes.'), []);
  const assertion = classify('She had pneumonia 3 years ago.', 'pneumonia');
  assert.equal(assertion.temporality, 'historical');
});

test('hypothetical mentions are not counted', () => {
  assert.deepEqual(countedIds('Return to the clinic if symptoms of heart failure develop.'), []);
  assert.deepEqual(countedIds('Call if fever or signs of pneumonia.'), []);
  assert.equal(classify('Return if fever.', 'fever').temporality, 'hypothetical');
});

test('family mentions are not counted', () => {
  assert.deepEqual(countedIds('Mother had diabetes.'), []);
  assert.deepEqual(countedIds('FAMILY HISTORY:,  Hypertension and heart failure.'), []);
  assert.equal(
    classify('Her father had atrial fibrillation.', 'atrial fibrillation').experiencer,
    'family_member',
  );
});

test('rule out mentions are uncertain', () => {
  const assertion = classify('Blood cultures were sent to rule out sepsis.', 'sepsis');
  assert.equal(assertion.uncertain, true);
  assert.deepEqual(countedIds('Blood cultures were sent to rule out sepsis.'), []);
});

test('pseudo-trigger does not negate', () => {
  const assertion = classify('There is no increase in the pneumonia on this film.', 'pneumonia');
  assert.equal(assertion.negated, false);
  assert.equal(classify('Gram negative sepsis.', 'sepsis').negated, false);
});

test('terminator ends negation scope', () => {
  assert.equal(classify('No fever but has pneumonia.', 'pneumonia').negated, false);
  assert.equal(classify('No fever but has pneumonia.', 'fever').negated, true);
});

test('affirmed current mention is counted', () => {
  assert.deepEqual(countedIds('ASSESSMENT:,  Community acquired pneumonia.'), ['pneumonia']);
  const assertion = classify('The patient has diabetes.', 'diabetes');
  assert.deepEqual(assertion, {
    negated: false,
    uncertain: false,
    temporality: 'recent',
    experiencer: 'patient',
  });
});

function conditionIn(text: string, id: string) {
  const condition = scoreNote({ text }).conditions.find((item) => item.condition_id === id);
  assert.ok(condition !== undefined, `${id} not found in: ${text}`);
  return condition;
}

test('hedged diagnoses are uncertain', () => {
  const cases = [
    ['Possible pneumonia.', 'pneumonia'],
    ['Likely sepsis from urinary source.', 'sepsis'],
    ['Questionable CHF.', 'heart_failure'],
    ['Cannot exclude pulmonary embolism.', 'venous_thromboembolism'],
    ['Presumed sepsis.', 'sepsis'],
    ['? pneumonia.', 'pneumonia'],
    ['Pneumonia is suspected.', 'pneumonia'],
    ['Suspected sepsis.', 'sepsis'],
    ['Concern for pulmonary embolism.', 'venous_thromboembolism'],
    ['Probable pneumonia.', 'pneumonia'],
  ] as const;
  for (const [assessment, id] of cases) {
    const text = `ASSESSMENT: ${assessment} PLAN: Continue current care.`;
    const condition = conditionIn(text, id);
    assert.equal(condition.mentions[0]?.assertion.uncertain, true, text);
    assert.equal(condition.counted, false, text);
  }
});

test('hedge words in plain phrases do not hedge', () => {
  assert.equal(
    classify('Follow up as soon as possible for diabetes.', 'diabetes').uncertain,
    false,
  );
  assert.equal(classify('Does he have CHF? Yes.', 'CHF').uncertain, false);
});

test('ruled out and excluded negate backward', () => {
  const cases = [
    ['Heart failure ruled out; BNP normal.', 'heart_failure'],
    ['Pneumonia was excluded by CT.', 'pneumonia'],
    ['Pulmonary embolism has been excluded.', 'venous_thromboembolism'],
  ] as const;
  for (const [text, id] of cases) {
    const condition = conditionIn(text, id);
    assert.equal(condition.mentions[0]?.assertion.negated, true, text);
    assert.equal(condition.counted, false, text);
  }
});

test('not excluded is uncertain, not negated', () => {
  const assertion = classify('Pulmonary embolism not excluded.', 'Pulmonary embolism');
  assert.equal(assertion.negated, false);
  assert.equal(assertion.uncertain, true);
});

test('negation does not cross into the reason', () => {
  const cases = [
    ['Denies side effects from metformin for his diabetes.', 'diabetes'],
    ['CHF, symptom free on current regimen.', 'heart_failure'],
  ] as const;
  for (const [text, id] of cases) {
    const condition = conditionIn(text, id);
    assert.equal(condition.mentions[0]?.assertion.negated, false, text);
    assert.equal(condition.counted, true, text);
  }
  assert.equal(classify('She is smoke free and tumor free.', 'tumor').negated, true);
});

test('plan instruction with should is not hypothetical', () => {
  const text = 'Patient should continue lisinopril 20 mg daily for hypertension.';
  const condition = conditionIn(text, 'hypertension');
  assert.equal(condition.mentions[0]?.assertion.temporality, 'recent');
  assert.equal(condition.counted, true);
  assert.equal(classify('Should he develop sepsis, call.', 'sepsis').temporality, 'hypothetical');
});
