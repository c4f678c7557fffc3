import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  evaluateAssertions,
  locateCondition,
  parseAnnotatedSentences,
} from '../../src/scoring/assertion-eval.ts';
import { loadDefaultRuleset } from '../../src/scoring/ruleset.ts';

const repositoryRoot = resolve(import.meta.dirname, '..', '..');
const devFile = join(
  resolve(repositoryRoot, process.env.CDIL_REFERENCE_DATA ?? join('..', 'shared', 'data')),
  'assertions',
  'dev.tsv',
);
const missingData = existsSync(devFile) ? false : `reference data not found at ${devFile}`;

test('assertion F1 meets targets', { skip: missingData }, () => {
  const rows = parseAnnotatedSentences(readFileSync(devFile, 'utf8'));
  assert.equal(rows.length, 1188);
  const result = evaluateAssertions(loadDefaultRuleset().context, rows);
  const f1 = (label: string): number =>
    result.labels.find((score) => score.label === label)?.f1 ?? 0;
  assert.ok(f1('negated') >= 0.93, `negated F1 ${f1('negated')}`);
  assert.ok(f1('historical') >= 0.75, `historical F1 ${f1('historical')}`);
  assert.ok(f1('hypothetical') >= 0.8, `hypothetical F1 ${f1('hypothetical')}`);
  assert.ok(result.unmatched <= 10, `${result.unmatched} rows without the condition phrase`);
});

test('evaluation counts labels', () => {
  const tsv = [
    'id\tcondition\tsentence\tnegation\ttemporality\texperiencer',
    '1\tedema\tExtremities reveal no peripheral cyanosis or EDEMA.\tNegated\tRecent\tPatient',
    '2\tfever\tReturn if FEVER.\tAffirmed\tNot particular\tPatient',
    '3\tdiabetes\tMother had DIABETES.\tAffirmed\tRecent\tFamily member',
    '4\tcough\tShe has a COUGH.\tAffirmed\tRecent\tPatient',
  ].join('\n');
  const result = evaluateAssertions(loadDefaultRuleset().context, parseAnnotatedSentences(tsv));
  const negated = result.labels.find((score) => score.label === 'negated');
  assert.deepEqual([negated?.support, negated?.predicted, negated?.true_positives], [1, 1, 1]);
  const hypothetical = result.labels.find((score) => score.label === 'hypothetical');
  assert.equal(hypothetical?.f1, 1);
  const family = result.labels.find((score) => score.label === 'experiencer_family');
  assert.equal(family?.f1, 1);
});

test('rejects wrong header', () => {
  assert.throws(() => parseAnnotatedSentences('id\tsentence\n1\tx'), /invalid annotation header/);
});

test('locates condition with flexible spacing', () => {
  const sentence = 'No peripheral cyanosis or   RALES.';
  assert.deepEqual(locateCondition(sentence, 'rales'), [28, 33]);
  assert.deepEqual(
    locateCondition('Has CONGESTIVE HEART\n FAILURE.', 'congestive heart failure'),
    [4, 29],
  );
  assert.equal(locateCondition('Nothing here.', 'edema'), undefined);
});
