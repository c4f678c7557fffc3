// Scores assertion classification (negation, temporality, experiencer) on the annotated
// sentences in <reference data>/assertions/dev.tsv and prints precision, recall and F1 per label.
//
//   node --import tsx scripts/eval-assertions.ts [--json] [--errors] [--file PATH]
//
// The reference data folder is $CDIL_REFERENCE_DATA, or ../shared/data next to the repository.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { evaluateAssertions, parseAnnotatedSentences } from '../src/scoring/assertion-eval.ts';
import { loadDefaultContextRules } from '../src/scoring/ruleset.ts';

const repositoryRoot = resolve(import.meta.dirname, '..');
const referenceData = resolve(
  repositoryRoot,
  process.env.CDIL_REFERENCE_DATA ?? join('..', 'shared', 'data'),
);

const args = process.argv.slice(2);
const fileIndex = args.indexOf('--file');
const file =
  fileIndex >= 0
    ? resolve(args[fileIndex + 1] ?? '')
    : join(referenceData, 'assertions', 'dev.tsv');

let tsv: string;
try {
  tsv = readFileSync(file, 'utf8');
} catch (error) {
  console.error(
    `cannot read ${file}: ${(error as Error).message}. Set CDIL_REFERENCE_DATA to the reference data folder or pass --file PATH.`,
  );
  process.exit(1);
}

const result = evaluateAssertions(loadDefaultContextRules(), parseAnnotatedSentences(tsv));

if (args.includes('--json')) {
  const { errors, ...summary } = result;
  console.log(
    JSON.stringify(
      args.includes('--errors') ? result : { ...summary, errors: errors.length },
      null,
      2,
    ),
  );
} else {
  console.log(
    `context rules ${result.context_rules_version}: ${result.rows} sentences, ${result.unmatched} without the condition phrase`,
  );
  console.log('label               support  predicted  TP    precision  recall  F1');
  for (const score of result.labels) {
    console.log(
      [
        score.label.padEnd(19),
        String(score.support).padStart(7),
        String(score.predicted).padStart(10),
        String(score.true_positives).padStart(5),
        score.precision.toFixed(3).padStart(10),
        score.recall.toFixed(3).padStart(7),
        score.f1.toFixed(3).padStart(6),
      ].join(' '),
    );
  }
  if (args.includes('--errors')) {
    for (const error of result.errors) {
      console.log(
        `${error.label}\texpected=${error.expected}\t${error.id}\t${error.condition}\t${error.sentence}`,
      );
    }
  }
}
