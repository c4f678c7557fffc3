// Evaluation of assertion classification against sentences annotated for negation, temporality
// and experiencer, in the tab-separated layout of the ConText evaluation set:
// id, condition, sentence, negation, temporality, experiencer. Pure: the caller reads the file.
import { classifySpan, type Assertion, type CompiledContextRules } from './context.ts';
import { detectSections, sectionIndexAt } from './sections.ts';
import { splitSentences } from './sentences.ts';

export interface AnnotatedSentence {
  readonly id: string;
  readonly condition: string;
  readonly sentence: string;
  readonly negation: string;
  readonly temporality: string;
  readonly experiencer: string;
}

export interface LabelScore {
  readonly label: string;
  readonly support: number;
  readonly predicted: number;
  readonly true_positives: number;
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
}

export interface AssertionEvaluation {
  readonly context_rules_version: string;
  readonly rows: number;
  /** Rows where the condition phrase was not found in the sentence, so nothing was classified. */
  readonly unmatched: number;
  readonly labels: readonly LabelScore[];
  readonly errors: readonly {
    id: string;
    label: string;
    expected: boolean;
    condition: string;
    sentence: string;
  }[];
}

const EXPECTED_COLUMNS = [
  'id',
  'condition',
  'sentence',
  'negation',
  'temporality',
  'experiencer',
] as const;

/** Parses the annotated TSV. Throws when the header does not have the expected columns. */
export function parseAnnotatedSentences(tsv: string): AnnotatedSentence[] {
  const lines = tsv.split(/\r?\n/).filter((line) => line.trim() !== '');
  const header = (lines[0] ?? '').split('\t').map((name) => name.trim().toLowerCase());
  for (const [index, name] of EXPECTED_COLUMNS.entries()) {
    if (header[index] !== name) {
      throw new Error(
        `invalid annotation header: column ${index + 1} is ${JSON.stringify(header[index])}, expected ${name}`,
      );
    }
  }
  return lines.slice(1).map((line, index) => {
    const cells = line.split('\t');
    if (cells.length < EXPECTED_COLUMNS.length) {
      throw new Error(`invalid annotation row ${index + 2}: expected 6 tab-separated columns`);
    }
    return {
      id: cells[0] ?? '',
      condition: cells[1] ?? '',
      sentence: cells[2] ?? '',
      negation: (cells[3] ?? '').trim(),
      temporality: (cells[4] ?? '').trim(),
      experiencer: (cells[5] ?? '').trim(),
    };
  });
}

/**
 * Locates the condition phrase in the sentence. Runs of whitespace may differ. The annotated
 * occurrence is written in capitals in the evaluation set, so an all-capital occurrence is
 * preferred and the first case-insensitive occurrence is the fallback.
 */
export function locateCondition(sentence: string, condition: string): [number, number] | undefined {
  const words = condition.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) {
    return undefined;
  }
  const escape = (word: string): string => word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = words.map(escape).join('\\s+');
  const capitalsPattern = words.map((word) => escape(word.toUpperCase())).join('\\s+');
  const match =
    new RegExp(capitalsPattern).exec(sentence) ?? new RegExp(pattern, 'i').exec(sentence);
  return match === null ? undefined : [match.index, match.index + match[0].length];
}

interface LabelDefinition {
  readonly label: string;
  readonly gold: (row: AnnotatedSentence) => boolean;
  readonly predicted: (assertion: Assertion) => boolean;
}

const LABELS: readonly LabelDefinition[] = [
  {
    label: 'negated',
    gold: (row) => row.negation === 'Negated',
    predicted: (assertion) => assertion.negated,
  },
  {
    label: 'historical',
    gold: (row) => row.temporality === 'Historical',
    predicted: (assertion) => assertion.temporality === 'historical',
  },
  {
    // The data set calls hypothetical or timeless mentions "Not particular".
    label: 'hypothetical',
    gold: (row) => row.temporality === 'Not particular',
    predicted: (assertion) => assertion.temporality === 'hypothetical',
  },
  {
    label: 'experiencer_other',
    gold: (row) => row.experiencer !== 'Patient',
    predicted: (assertion) => assertion.experiencer !== 'patient',
  },
  {
    label: 'experiencer_family',
    gold: (row) => row.experiencer === 'Family member',
    predicted: (assertion) => assertion.experiencer === 'family_member',
  },
];

function ratio(numerator: number, denominator: number): number {
  return denominator === 0 ? 0 : numerator / denominator;
}

/**
 * Classifies every row and scores each label. Each row is processed like a small note. Sections
 * are detected inside it because some rows begin with a heading such as `PAST MEDICAL HISTORY:`.
 * The splitter then picks the sentence that contains the condition, because some rows contain a
 * whole numbered list.
 */
export function evaluateAssertions(
  rules: CompiledContextRules,
  rows: readonly AnnotatedSentence[],
): AssertionEvaluation {
  const counts = LABELS.map(() => ({ support: 0, predicted: 0, truePositives: 0 }));
  const errors: AssertionEvaluation['errors'][number][] = [];
  let unmatched = 0;
  for (const row of rows) {
    const span = locateCondition(row.sentence, row.condition);
    let assertion: Assertion | undefined;
    if (span === undefined) {
      unmatched++;
    } else {
      const sections = detectSections(row.sentence);
      const section = sections[sectionIndexAt(sections, span[0])];
      const sentence = splitSentences(row.sentence, sections).find(
        (candidate) => candidate.start <= span[0] && span[1] <= candidate.end,
      ) ?? { start: 0, end: row.sentence.length };
      const text = row.sentence.slice(sentence.start, sentence.end);
      assertion = classifySpan(
        rules,
        text,
        span[0] - sentence.start,
        span[1] - sentence.start,
        section?.kind,
      );
    }
    LABELS.forEach((definition, index) => {
      const count = counts[index];
      if (count === undefined) {
        return;
      }
      const gold = definition.gold(row);
      const predicted = assertion !== undefined && definition.predicted(assertion);
      count.support += gold ? 1 : 0;
      count.predicted += predicted ? 1 : 0;
      count.truePositives += gold && predicted ? 1 : 0;
      if (gold !== predicted) {
        errors.push({
          id: row.id,
          label: definition.label,
          expected: gold,
          condition: row.condition,
          sentence: row.sentence,
        });
      }
    });
  }
  const labels = LABELS.map((definition, index) => {
    const count = counts[index] ?? { support: 0, predicted: 0, truePositives: 0 };
    const precision = ratio(count.truePositives, count.predicted);
    const recall = ratio(count.truePositives, count.support);
    return {
      label: definition.label,
      support: count.support,
      predicted: count.predicted,
      true_positives: count.truePositives,
      precision,
      recall,
      f1: ratio(2 * precision * recall, precision + recall),
    };
  });
  return { context_rules_version: rules.version, rows: rows.length, unmatched, labels, errors };
}
