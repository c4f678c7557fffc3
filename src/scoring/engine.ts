// Shadow-mode scoring: finds conditions in a clinical note and checks each counted condition for
// MEAT evidence (Monitor, Evaluate, Assess, Treat). Pure and deterministic: no I/O, no clock, no
// randomness, and output order follows rule order and text order.
//
// A condition is counted when the note has an affirmed, current mention about the patient, or
// when the encounter context lists it as an ICD-10 code or in an affirmed problem-list entry.
// Negated, historical, hypothetical, uncertain ("rule out") and family mentions are reported but count
// neither as the condition nor as evidence.
import {
  AFFIRMED_RECENT_PATIENT,
  classifyTokens,
  findContextTermsAround,
  isQuestionedTarget,
  type Assertion,
} from './context.ts';
import { noteFindings } from './findings.ts';
import { indexNote, type NoteIndex } from './note-index.ts';
import {
  MEAT_ELEMENTS,
  STRUCTURED_KINDS,
  codeMatches,
  isIcd10Code,
  loadDefaultRuleset,
  normalizeIcd10,
  type CompiledCondition,
  type CompiledRule,
  type CompiledRuleset,
  type MeatElement,
  type StructuredKind,
} from './ruleset.ts';
import type { SectionKind } from './sections.ts';
import { tokenize, type TokenList } from './tokens.ts';
import type {
  ConditionResult,
  ConditionSource,
  ElementResult,
  EncounterContext,
  Evidence,
  Mention,
  ScoreInput,
  ScoreResult,
} from './types.ts';

/** Evidence items kept per rule. Further matches add nothing to the verdict, only output size. */
const MAX_EVIDENCE_PER_RULE = 3;

interface MentionRecord {
  readonly first: number;
  readonly last: number;
  readonly sentence: number;
  readonly assertion: Assertion;
  readonly counted: boolean;
}

interface ConditionState {
  readonly condition: CompiledCondition;
  readonly mentions: MentionRecord[];
  /** Token indexes covered by mentions, to keep a mention's own words from being evidence. */
  readonly mentionTokens: Set<number>;
  readonly sources: Set<ConditionSource>;
  readonly codes: string[];
  /** Sentences, item sentences and sections that hold or follow a counted mention. */
  readonly sentences: Set<number>;
  readonly items: Set<number>;
  readonly sections: Set<number>;
  /** First sentences of the list items (see NoteIndex.sentenceItem) that contain a counted mention. */
  readonly listItems: Set<number>;
  readonly evidence: Map<string, Evidence[]>;
}

export function isCounted(assertion: Assertion): boolean {
  return (
    !assertion.negated &&
    !assertion.uncertain &&
    assertion.temporality === 'recent' &&
    assertion.experiencer === 'patient'
  );
}

function newState(condition: CompiledCondition): ConditionState {
  return {
    condition,
    mentions: [],
    mentionTokens: new Set(),
    sources: new Set(),
    codes: [],
    sentences: new Set(),
    items: new Set(),
    sections: new Set(),
    listItems: new Set(),
    evidence: new Map(),
  };
}

function stateFor(
  states: Map<number, ConditionState>,
  condition: CompiledCondition,
): ConditionState {
  let state = states.get(condition.index);
  if (state === undefined) {
    state = newState(condition);
    states.set(condition.index, state);
  }
  return state;
}

function findMentions(
  note: NoteIndex,
  ruleset: CompiledRuleset,
  states: Map<number, ConditionState>,
): Map<number, Set<number>> {
  const conditionsBySentence = new Map<number, Set<number>>();
  for (let s = 0; s < note.sentences.length; s++) {
    const hits = ruleset.conditionTerms.findAll(
      note.tokens,
      note.sentenceFirstToken[s] ?? 0,
      note.sentenceFirstToken[s + 1] ?? 0,
    );
    for (const hit of hits) {
      if (hit.value.length === 0) {
        continue;
      }
      const assertion = note.classify(hit.first, hit.last);
      const counted = isCounted(assertion);
      for (const index of hit.value) {
        const condition = ruleset.conditions[index];
        if (condition === undefined) {
          continue;
        }
        const state = stateFor(states, condition);
        state.mentions.push({ first: hit.first, last: hit.last, sentence: s, assertion, counted });
        for (let token = hit.first; token < hit.last; token++) {
          state.mentionTokens.add(token);
        }
        let present = conditionsBySentence.get(s);
        if (present === undefined) {
          present = new Set();
          conditionsBySentence.set(s, present);
        }
        present.add(index);
        if (counted) {
          state.sources.add('note');
        }
      }
    }
  }
  return conditionsBySentence;
}

/**
 * Finds the conditions that a short structured text, such as a problem-list entry or a
 * diagnosis description, names in an affirmed, current form about the patient. The entry is
 * classified like one note sentence, so "history of CHF" or "no COPD" names no condition.
 */
function affirmedConditionsIn(text: string, ruleset: CompiledRuleset): Set<number> {
  const found = new Set<number>();
  const tokens = tokenize(text);
  const count = tokens.words.length;
  for (const hit of ruleset.conditionTerms.findAll(tokens)) {
    const context = findContextTermsAround(ruleset.context, tokens, 0, count, hit.first, hit.last);
    const questioned = isQuestionedTarget(text, tokens.starts[hit.first] ?? 0);
    const assertion = classifyTokens(
      ruleset.context,
      context,
      hit.first,
      hit.last,
      undefined,
      questioned,
    );
    if (!isCounted(assertion)) {
      continue;
    }
    for (const index of hit.value) {
      found.add(index);
    }
  }
  return found;
}

function addStructuredSources(
  context: EncounterContext | undefined,
  ruleset: CompiledRuleset,
  states: Map<number, ConditionState>,
): number {
  let unmapped = 0;
  for (const entry of context?.diagnoses ?? []) {
    const code = typeof entry === 'string' ? entry : entry.code;
    const description = typeof entry === 'string' ? undefined : entry.description;
    const normalized = normalizeIcd10(code);
    let mapped = false;
    // A code without ICD-10 shape maps to nothing and is never copied into the result, because
    // the field may carry free text.
    const wellFormed = isIcd10Code(code);
    for (const condition of wellFormed ? ruleset.conditions : []) {
      if (condition.icd10.some((pattern) => codeMatches(normalized, pattern))) {
        const state = stateFor(states, condition);
        state.sources.add('diagnosis_code');
        state.codes.push(code.trim().toUpperCase());
        mapped = true;
      }
    }
    if (!mapped && description !== undefined) {
      for (const index of affirmedConditionsIn(description, ruleset)) {
        const condition = ruleset.conditions[index];
        if (condition !== undefined) {
          stateFor(states, condition).sources.add('diagnosis_description');
          mapped = true;
        }
      }
    }
    if (!mapped) {
      unmapped++;
    }
  }
  for (const problem of context?.problem_list ?? []) {
    for (const index of affirmedConditionsIn(problem, ruleset)) {
      const condition = ruleset.conditions[index];
      if (condition !== undefined) {
        stateFor(states, condition).sources.add('problem_list');
      }
    }
  }
  return unmapped;
}

/**
 * Marks the sentences near counted mentions. An item is the mention's sentence plus the
 * following sentences of the same section, stopping before a sentence that starts a new list
 * item or mentions another condition, and after `itemMaxSentences` sentences in all.
 */
function markProximity(
  note: NoteIndex,
  ruleset: CompiledRuleset,
  state: ConditionState,
  conditionsBySentence: ReadonlyMap<number, ReadonlySet<number>>,
): void {
  for (const mention of state.mentions) {
    if (!mention.counted) {
      continue;
    }
    const section = note.sentenceSection[mention.sentence] ?? 0;
    state.sentences.add(mention.sentence);
    state.sections.add(section);
    state.items.add(mention.sentence);
    const listItem = note.sentenceItem[mention.sentence] ?? -1;
    if (listItem >= 0) {
      state.listItems.add(listItem);
    }
    for (
      let s = mention.sentence + 1;
      s < note.sentences.length && s - mention.sentence < ruleset.itemMaxSentences;
      s++
    ) {
      if ((note.sentenceSection[s] ?? -1) !== section || note.sentenceStartsItem[s] === 1) {
        break;
      }
      const others = conditionsBySentence.get(s);
      if (others !== undefined && [...others].some((index) => index !== state.condition.index)) {
        break;
      }
      state.items.add(s);
    }
  }
}

function addEvidence(state: ConditionState, rule: CompiledRule, evidence: Evidence): void {
  let list = state.evidence.get(rule.id);
  if (list === undefined) {
    list = [];
    state.evidence.set(rule.id, list);
  }
  if (list.length < MAX_EVIDENCE_PER_RULE) {
    list.push(evidence);
  }
}

/** Sections where a numbered or bulleted list gives each problem its own item. */
const PROBLEM_LIST_SECTIONS: ReadonlySet<SectionKind> = new Set([
  'assessment',
  'plan',
  'assessment_and_plan',
  'impression',
]);

function isNearMention(
  note: NoteIndex,
  rule: CompiledRule,
  state: ConditionState,
  sentence: number,
): boolean {
  const sectionIndex = note.sentenceSection[sentence] ?? 0;
  const sectionKind = note.sectionKindOfSentence(sentence);
  // In an assessment and plan written as a list, evidence inside one problem's item belongs to
  // that problem only, so "Continue Lasix" under heart failure does not treat hypertension.
  const listItem = note.sentenceItem[sentence] ?? -1;
  if (listItem >= 0 && PROBLEM_LIST_SECTIONS.has(sectionKind) && !state.listItems.has(listItem)) {
    return false;
  }
  if (rule.sections.has(sectionKind)) {
    return true;
  }
  switch (rule.proximity) {
    case 'sentence':
      return state.sentences.has(sentence);
    case 'item':
      return state.items.has(sentence);
    case 'section':
      return state.sections.has(sectionIndex);
    case 'note':
      return true;
  }
}

function overlapsOwnMention(state: ConditionState, first: number, last: number): boolean {
  for (let token = first; token < last; token++) {
    if (state.mentionTokens.has(token)) {
      return true;
    }
  }
  return false;
}

interface MentionSpan {
  readonly first: number;
  readonly last: number;
  readonly conditionIndex: number;
}

/** Groups the mentions of every condition, counted or not, by sentence. */
function mentionsBySentence(
  states: ReadonlyMap<number, ConditionState>,
): Map<number, MentionSpan[]> {
  const bySentence = new Map<number, MentionSpan[]>();
  for (const state of states.values()) {
    for (const mention of state.mentions) {
      const list = bySentence.get(mention.sentence) ?? [];
      list.push({
        first: mention.first,
        last: mention.last,
        conditionIndex: state.condition.index,
      });
      bySentence.set(mention.sentence, list);
    }
  }
  return bySentence;
}

/**
 * Ranks how closely a mention attaches to the evidence tokens [first, last): lower is closer.
 * The rank counts the words between them, adds one when a comma or semicolon separates them,
 * and prefers a mention before the evidence on a tie, because status words usually follow the
 * condition ("CKD stage 3", "HTN, controlled").
 */
function attachmentRank(
  note: NoteIndex,
  mention: MentionSpan,
  first: number,
  last: number,
): number {
  if (mention.first < last && mention.last > first) {
    return 0;
  }
  const before = mention.last <= first;
  const gapFirst = before ? mention.last : last;
  const gapLast = before ? first : mention.first;
  const gapText = note.text.slice(
    note.tokens.ends[gapFirst - 1] ?? 0,
    note.tokens.starts[gapLast] ?? note.text.length,
  );
  const separated = /[,;]/.test(gapText) ? 1 : 0;
  return (gapLast - gapFirst + separated) * 2 + (before ? 0 : 1) + 1;
}

/**
 * Tells whether the condition is the one nearest to an assess term in a sentence that mentions
 * several conditions, so "stage 3" in "CKD stage 3, AKI" belongs to CKD only.
 */
function isNearestCondition(
  note: NoteIndex,
  mentions: readonly MentionSpan[] | undefined,
  conditionIndex: number,
  first: number,
  last: number,
): boolean {
  if (mentions === undefined || mentions.every((m) => m.conditionIndex === conditionIndex)) {
    return true;
  }
  let best = Number.POSITIVE_INFINITY;
  let bestOwn = Number.POSITIVE_INFINITY;
  for (const mention of mentions) {
    const rank = attachmentRank(note, mention, first, last);
    best = Math.min(best, rank);
    if (mention.conditionIndex === conditionIndex) {
      bestOwn = Math.min(bestOwn, rank);
    }
  }
  return bestOwn === best;
}

function collectTermEvidence(
  note: NoteIndex,
  ruleset: CompiledRuleset,
  counted: ReadonlyMap<number, ConditionState>,
  mentionSpans: ReadonlyMap<number, readonly MentionSpan[]>,
): void {
  const hits = ruleset.evidenceTerms.findEvery(note.tokens);
  for (const hit of hits) {
    const sentence = note.tokenSentence[hit.first] ?? 0;
    let assertion: Assertion | undefined;
    for (const rule of hit.value) {
      const state = counted.get(rule.conditionIndex);
      if (state === undefined || !isNearMention(note, rule, state, sentence)) {
        continue;
      }
      if (overlapsOwnMention(state, hit.first, hit.last)) {
        continue;
      }
      if (
        rule.element === 'assess' &&
        !isNearestCondition(
          note,
          mentionSpans.get(sentence),
          rule.conditionIndex,
          hit.first,
          hit.last,
        )
      ) {
        continue;
      }
      assertion ??= note.classify(hit.first, hit.last);
      const usable =
        (rule.countNegated || !assertion.negated) &&
        assertion.temporality !== 'hypothetical' &&
        !assertion.uncertain &&
        assertion.experiencer === 'patient';
      if (!usable) {
        continue;
      }
      const start = note.tokens.starts[hit.first] ?? 0;
      const end = note.tokens.ends[hit.last - 1] ?? start;
      addEvidence(state, rule, {
        rule_id: rule.id,
        span: [start, end],
        text: note.text.slice(start, end),
        section: note.sectionKindOfSentence(sentence),
      });
    }
  }
}

function collectMentionEvidence(note: NoteIndex, state: ConditionState): void {
  for (const element of MEAT_ELEMENTS) {
    for (const rule of state.condition.rules[element]) {
      if (rule.mentionInSections.size === 0) {
        continue;
      }
      for (const mention of state.mentions) {
        const section: SectionKind = note.sectionKindOfSentence(mention.sentence);
        if (mention.counted && rule.mentionInSections.has(section)) {
          const start = note.tokens.starts[mention.first] ?? 0;
          const end = note.tokens.ends[mention.last - 1] ?? start;
          addEvidence(state, rule, {
            rule_id: rule.id,
            span: [start, end],
            text: note.text.slice(start, end),
            section,
          });
        }
      }
    }
  }
}

function structuredNames(context: EncounterContext | undefined): Map<StructuredKind, TokenList[]> {
  const names = new Map<StructuredKind, TokenList[]>();
  const add = (kind: StructuredKind, name: string): void => {
    const list = names.get(kind) ?? [];
    list.push(tokenize(name));
    names.set(kind, list);
  };
  for (const lab of context?.labs ?? []) {
    add('labs', lab.name);
  }
  for (const vital of context?.vitals ?? []) {
    add('vitals', vital.name);
  }
  for (const medication of context?.medications ?? []) {
    add('medications', typeof medication === 'string' ? medication : medication.name);
  }
  for (const procedure of context?.procedures ?? []) {
    add('procedures', procedure);
  }
  return names;
}

function collectStructuredEvidence(
  state: ConditionState,
  names: ReadonlyMap<StructuredKind, readonly TokenList[]>,
): void {
  if (names.size === 0) {
    return;
  }
  for (const element of MEAT_ELEMENTS) {
    for (const rule of state.condition.rules[element]) {
      for (const kind of STRUCTURED_KINDS) {
        const dictionary = rule.structured.get(kind);
        if (dictionary === undefined) {
          continue;
        }
        for (const tokens of names.get(kind) ?? []) {
          // The evidence names the matched rule term, never the caller's whole entry, which
          // may contain free text such as a patient name.
          const hit = dictionary.findAll(tokens)[0];
          if (hit !== undefined) {
            addEvidence(state, rule, {
              rule_id: rule.id,
              structured: { kind, name: tokens.words.slice(hit.first, hit.last).join(' ') },
            });
          }
        }
      }
    }
  }
}

function elementResult(state: ConditionState, element: MeatElement): ElementResult {
  let weight = 0;
  const evidence: Evidence[] = [];
  for (const rule of state.condition.rules[element]) {
    const found = state.evidence.get(rule.id);
    if (found !== undefined && found.length > 0) {
      weight += rule.weight;
      evidence.push(...found);
    }
  }
  // A small tolerance keeps two rules of weight 0.5 from failing on floating-point rounding.
  return { met: weight >= 1 - 1e-9, evidence };
}

function conditionResult(note: NoteIndex, state: ConditionState): ConditionResult {
  const counted = state.sources.size > 0;
  const meat = {} as Record<MeatElement, ElementResult>;
  const missing: MeatElement[] = [];
  let completeness = 0;
  for (const element of MEAT_ELEMENTS) {
    const result = counted ? elementResult(state, element) : { met: false, evidence: [] };
    meat[element] = result;
    if (result.met) {
      completeness += state.condition.weights[element];
    } else if (counted) {
      missing.push(element);
    }
  }
  completeness = Math.round(completeness * 1000) / 1000;
  const order: ConditionSource[] = [
    'note',
    'diagnosis_code',
    'diagnosis_description',
    'problem_list',
  ];
  const sources = order.filter((source) => state.sources.has(source));
  const mentions: Mention[] = state.mentions.map((mention) => {
    const start = note.tokens.starts[mention.first] ?? 0;
    const end = note.tokens.ends[mention.last - 1] ?? start;
    return {
      span: [start, end],
      text: note.text.slice(start, end),
      section: note.sectionKindOfSentence(mention.sentence),
      assertion: mention.assertion,
      counted: mention.counted,
    };
  });
  return {
    condition_id: state.condition.id,
    name: state.condition.name,
    mentions,
    counted,
    source: sources[0] ?? 'none',
    sources,
    codes: state.codes,
    meat,
    missing,
    completeness: counted ? completeness : 0,
    estimated_value_at_risk_usd: counted
      ? Math.round(state.condition.valueUsd * (1 - completeness))
      : 0,
  };
}

/**
 * Scores one note against a compiled ruleset (the default rules when omitted). Runs in time
 * linear in the note length plus the size of the encounter context.
 */
export function scoreNote(
  input: ScoreInput,
  ruleset: CompiledRuleset = loadDefaultRuleset(),
): ScoreResult {
  if (typeof input.text !== 'string') {
    throw new TypeError('scoreNote: input.text must be a string');
  }
  const note = indexNote(input.text, ruleset.context);
  const states = new Map<number, ConditionState>();
  const conditionsBySentence = findMentions(note, ruleset, states);
  const unmappedCodeCount = addStructuredSources(input.context, ruleset, states);

  const counted = new Map<number, ConditionState>();
  for (const [index, state] of states) {
    if (state.sources.size > 0) {
      counted.set(index, state);
      markProximity(note, ruleset, state, conditionsBySentence);
    }
  }
  if (counted.size > 0) {
    collectTermEvidence(note, ruleset, counted, mentionsBySentence(states));
    const names = structuredNames(input.context);
    for (const state of counted.values()) {
      collectMentionEvidence(note, state);
      collectStructuredEvidence(state, names);
    }
  }

  const conditions = [...states.values()]
    .sort((a, b) => a.condition.index - b.condition.index)
    .map((state) => conditionResult(note, state));
  const findings = noteFindings(note, ruleset, conditions, unmappedCodeCount);

  const missingElements = { monitor: 0, evaluate: 0, assess: 0, treat: 0 };
  let completenessTotal = 0;
  let valueAtRisk = 0;
  let countedConditions = 0;
  for (const condition of conditions) {
    if (!condition.counted) {
      continue;
    }
    countedConditions++;
    completenessTotal += condition.completeness;
    valueAtRisk += condition.estimated_value_at_risk_usd;
    for (const element of condition.missing) {
      missingElements[element]++;
    }
  }
  return {
    ruleset_version: ruleset.version,
    context_rules_version: ruleset.contextVersion,
    conditions,
    note_findings: findings,
    summary: {
      word_count: note.tokens.words.length,
      sentence_count: note.sentences.length,
      sections: note.sections.map((section) => section.kind),
      conditions_counted: countedConditions,
      conditions_not_counted: conditions.length - countedConditions,
      mean_completeness:
        countedConditions === 0
          ? null
          : Math.round((completenessTotal / countedConditions) * 1000) / 1000,
      missing_elements: missingElements,
      estimated_value_at_risk_usd: valueAtRisk,
      value_basis: ruleset.valueBasis,
    },
  };
}

export { AFFIRMED_RECENT_PATIENT };
