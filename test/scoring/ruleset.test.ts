import { test } from 'node:test';
import assert from 'node:assert/strict';
import meatRules from '../../src/scoring/rules/meat-rules.json' with { type: 'json' };
import contextRules from '../../src/scoring/rules/context-rules.json' with { type: 'json' };
import {
  RulesetValidationError,
  codeMatches,
  compileRuleset,
  loadDefaultRuleset,
  normalizeIcd10,
  parseRuleset,
} from '../../src/scoring/ruleset.ts';

function cloneRules(): Record<string, unknown> {
  return structuredClone(meatRules);
}

function conditionsOf(rules: Record<string, unknown>): Record<string, unknown>[] {
  return rules.conditions as Record<string, unknown>[];
}

function rejects(rules: unknown, field: string, context: unknown = contextRules): void {
  assert.throws(
    () => compileRuleset(rules, context),
    (error: unknown) => error instanceof RulesetValidationError && error.field === field,
    `expected a validation error on ${field}`,
  );
}

test('default ruleset compiles', () => {
  const ruleset = loadDefaultRuleset();
  assert.match(ruleset.version, /\S/);
  assert.ok(ruleset.conditions.length >= 14);
  const ids = ruleset.conditions.map((condition) => condition.id);
  for (const id of [
    'diabetes',
    'hypertension',
    'heart_failure',
    'sepsis',
    'acute_respiratory_failure',
    'malnutrition',
    'acute_kidney_injury',
    'chronic_kidney_disease',
    'copd',
    'pneumonia',
    'atrial_fibrillation',
    'morbid_obesity',
    'major_depression',
    'encephalopathy',
  ]) {
    assert.ok(ids.includes(id), `missing condition ${id}`);
  }
});

test('rejects missing version', () => {
  const rules = cloneRules();
  delete rules.ruleset_version;
  rejects(rules, 'ruleset.ruleset_version');
});

test('rejects bad ICD-10 range', () => {
  const rules = cloneRules();
  const first = conditionsOf(rules)[0];
  assert.ok(first !== undefined);
  first.icd10 = ['E13-E08'];
  rejects(rules, 'ruleset.conditions[0].icd10[0]');
  first.icd10 = ['diabetes'];
  rejects(rules, 'ruleset.conditions[0].icd10[0]');
});

test('rejects unknown section kind', () => {
  const rules = cloneRules();
  const first = conditionsOf(rules)[0];
  const meat = first?.meat as Record<string, Record<string, unknown>[]>;
  const rule = meat.treat?.[0];
  assert.ok(rule !== undefined);
  rule.sections = ['assesment'];
  rejects(rules, 'ruleset.conditions[0].meat.treat[0].sections[0]');
});

test('rejects misspelt field', () => {
  const rules = cloneRules();
  const first = conditionsOf(rules)[0];
  assert.ok(first !== undefined);
  first.synonyms = ['sugar'];
  rejects(rules, 'ruleset.conditions[0].synonyms');
});

test('rejects rule without evidence', () => {
  const rules = cloneRules();
  const first = conditionsOf(rules)[0];
  (first?.meat as Record<string, unknown>).monitor = [{ id: 'empty.rule' }];
  rejects(rules, 'ruleset.conditions[0].meat.monitor[0]');
});

test('rejects weights not adding to one', () => {
  const rules = cloneRules();
  rules.element_weights = { monitor: 0.5, evaluate: 0.5, assess: 0.5, treat: 0.5 };
  rejects(rules, 'ruleset.element_weights');
});

test('rejects duplicate condition id', () => {
  const rules = cloneRules();
  const conditions = conditionsOf(rules);
  conditions.push(structuredClone(conditions[0] ?? {}));
  rejects(rules, `ruleset.conditions[${conditions.length - 1}].id`);
});

test('rejects bad context category', () => {
  const context = structuredClone(contextRules) as unknown as { triggers: { category: string }[] };
  const first = context.triggers[0];
  assert.ok(first !== undefined);
  first.category = 'negative';
  rejects(meatRules, 'context.triggers[0].category', context);
});

test('rejects invalid JSON text', () => {
  assert.throws(() => parseRuleset('{ "ruleset_version": '), RulesetValidationError);
});

test('ICD-10 ranges and prefixes match', () => {
  const ruleset = loadDefaultRuleset();
  const diabetes = ruleset.conditions.find((condition) => condition.id === 'diabetes');
  assert.ok(diabetes !== undefined);
  const matches = (code: string): boolean =>
    diabetes.icd10.some((pattern) => codeMatches(normalizeIcd10(code), pattern));
  assert.equal(matches('E11.65'), true);
  assert.equal(matches('e08.00'), true);
  assert.equal(matches('E13.9'), true);
  assert.equal(matches('E12.0'), false);
  assert.equal(matches('E14'), false);
  assert.equal(matches('E1'), false);
});
