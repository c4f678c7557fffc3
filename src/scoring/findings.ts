// Note-level documentation findings that do not belong to one condition. They cover a note that
// is too short, a missing assessment or plan section, and a plan with little specific content.
// They also cover conditions mentioned only as history, negated, hypothetical or about someone
// else, diagnosis codes that map to no condition of the ruleset, and coded conditions that the
// note only negates.
import type { NoteIndex } from './note-index.ts';
import type { CompiledRuleset } from './ruleset.ts';
import type { ConditionResult, NoteFinding } from './types.ts';

/** Formats a count with its noun, singular for one: "1 word", "3 words". */
function countOf(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function planFindings(note: NoteIndex, ruleset: CompiledRuleset): NoteFinding[] {
  const rules = ruleset.noteRules.vaguePlan;
  let words = 0;
  let vagueHits = 0;
  let specificHits = 0;
  let present = false;

  // Sections are sorted, so one token cursor serves all of them and the scan stays linear.
  let first = 0;
  for (const section of note.sections) {
    if (!rules.sections.has(section.kind)) {
      continue;
    }
    present = true;
    while (
      first < note.tokens.words.length &&
      (note.tokens.starts[first] ?? 0) < section.bodyStart
    ) {
      first++;
    }
    let last = first;
    while (last < note.tokens.words.length && (note.tokens.ends[last] ?? 0) <= section.end) {
      last++;
    }
    words += last - first;
    vagueHits += rules.vagueTerms.findAll(note.tokens, first, last).length;
    for (const hit of ruleset.evidenceTerms.findAll(note.tokens, first, last)) {
      // Shared plan verbs ("continue", "follow up") are not specific content.
      if (hit.value.some((rule) => !rule.id.startsWith('shared.'))) {
        specificHits++;
      }
    }
  }

  if (!present) {
    return [];
  }
  if (words < rules.minWords) {
    return [
      {
        rule_id: rules.ruleId,
        kind: 'vague_plan',
        detail: `plan has ${countOf(words, 'word')}, fewer than ${rules.minWords}`,
      },
    ];
  }
  if (vagueHits > 0 && specificHits === 0) {
    return [
      {
        rule_id: rules.ruleId,
        kind: 'vague_plan',
        detail: 'plan uses general wording and names no medication, test or procedure',
      },
    ];
  }
  return [];
}

/**
 * Lists the note-level findings, in a fixed order: length, sections, plan, conditions,
 * documentation conflicts, codes.
 */
export function noteFindings(
  note: NoteIndex,
  ruleset: CompiledRuleset,
  conditions: readonly ConditionResult[],
  unmappedCodeCount: number,
): NoteFinding[] {
  const rules = ruleset.noteRules;
  const findings: NoteFinding[] = [];
  const words = note.tokens.words.length;
  if (words < rules.shortNote.minWords) {
    findings.push({
      rule_id: rules.shortNote.ruleId,
      kind: 'short_note',
      detail: `note has ${countOf(words, 'word')}, fewer than ${rules.shortNote.minWords}`,
    });
  }
  const kinds = new Set(note.sections.map((section) => section.kind));
  for (const required of rules.requiredSections) {
    if (![...required.anyOf].some((kind) => kinds.has(kind))) {
      findings.push({
        rule_id: required.ruleId,
        kind: 'missing_section',
        detail: `no ${required.label} section`,
      });
    }
  }
  findings.push(...planFindings(note, ruleset));
  for (const condition of conditions) {
    if (!condition.counted && condition.mentions.length > 0) {
      findings.push({
        rule_id: rules.uncountedHistory.ruleId,
        kind: 'uncounted_condition',
        detail: `${condition.name}: ${rules.uncountedHistory.detail}`,
        condition_id: condition.condition_id,
      });
    }
  }
  for (const condition of conditions) {
    const coded = condition.codes.length > 0;
    const affirmed = condition.mentions.some((mention) => mention.counted);
    if (coded && !affirmed && condition.mentions.some((mention) => mention.assertion.negated)) {
      findings.push({
        rule_id: 'note.documentation_conflict',
        kind: 'documentation_conflict',
        detail: `${condition.name}: a diagnosis code lists it, but the note negates it`,
        condition_id: condition.condition_id,
      });
    }
  }
  // The finding counts unmapped codes instead of quoting them, because a caller's code field may
  // carry free text.
  if (unmappedCodeCount > 0) {
    findings.push({
      rule_id: 'note.unmapped_diagnosis_code',
      kind: 'unmapped_diagnosis_code',
      detail:
        unmappedCodeCount === 1
          ? '1 diagnosis code maps to no condition in the ruleset'
          : `${unmappedCodeCount} diagnosis codes map to no condition in the ruleset`,
    });
  }
  return findings;
}
