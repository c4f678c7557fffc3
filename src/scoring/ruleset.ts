// Loading, validation and compilation of MEAT rule files. A rule file is JSON with a
// `ruleset_version`; rules/meat-rules.json is the default. Compilation builds the phrase
// dictionaries once, so scoring a note never parses or rebuilds rules.
import contextRulesJson from './rules/context-rules.json' with { type: 'json' };
import meatRulesJson from './rules/meat-rules.json' with { type: 'json' };
import { compileContextRules, type CompiledContextRules } from './context.ts';
import { SECTION_KINDS, type SectionKind } from './sections.ts';
import { PhraseDictionary, normalizePhrase } from './tokens.ts';
import {
  RulesetValidationError,
  expectArray,
  expectBoolean,
  expectKnownKeys,
  expectNumber,
  expectObject,
  expectOneOf,
  expectString,
  expectStringArray,
  fail,
} from './validation.ts';

export { RulesetValidationError } from './validation.ts';

export const MEAT_ELEMENTS = ['monitor', 'evaluate', 'assess', 'treat'] as const;
export type MeatElement = (typeof MEAT_ELEMENTS)[number];

/**
 * How close an evidence term must be to a counted mention of its condition. `sentence` means the
 * same sentence and `section` the same section. `item` means the mention's sentence and the
 * following sentences of the same section, up to the next list item, the next mention of another
 * condition or the item sentence limit. `note` means anywhere in the note.
 */
export const PROXIMITIES = ['sentence', 'item', 'section', 'note'] as const;
export type Proximity = (typeof PROXIMITIES)[number];

export const STRUCTURED_KINDS = ['labs', 'vitals', 'medications', 'procedures'] as const;
export type StructuredKind = (typeof STRUCTURED_KINDS)[number];

export interface CompiledRule {
  readonly id: string;
  readonly element: MeatElement;
  readonly conditionIndex: number;
  readonly weight: number;
  readonly proximity: Proximity;
  /** Sections where a term counts wherever it appears, regardless of proximity. */
  readonly sections: ReadonlySet<SectionKind>;
  /** Sections where a counted mention of the condition is itself the evidence. */
  readonly mentionInSections: ReadonlySet<SectionKind>;
  /** Negated terms still count, for status words such as "not controlled". */
  readonly countNegated: boolean;
  readonly structured: ReadonlyMap<StructuredKind, PhraseDictionary<true>>;
  readonly structuredNames: ReadonlyMap<StructuredKind, readonly string[]>;
}

/** An ICD-10 code prefix, or an inclusive range of prefixes of equal length, without dots. */
export interface CodePattern {
  readonly from: string;
  readonly to: string;
}

export interface CompiledCondition {
  readonly index: number;
  readonly id: string;
  readonly name: string;
  readonly icd10: readonly CodePattern[];
  readonly valueUsd: number;
  readonly valueBasis: string;
  readonly weights: Readonly<Record<MeatElement, number>>;
  readonly rules: Readonly<Record<MeatElement, readonly CompiledRule[]>>;
  readonly terms: PhraseDictionary<true>;
}

export interface NoteRules {
  readonly shortNote: { readonly ruleId: string; readonly minWords: number };
  readonly requiredSections: readonly {
    readonly ruleId: string;
    readonly anyOf: ReadonlySet<SectionKind>;
    readonly label: string;
  }[];
  readonly vaguePlan: {
    readonly ruleId: string;
    readonly sections: ReadonlySet<SectionKind>;
    readonly minWords: number;
    readonly vagueTerms: PhraseDictionary<true>;
  };
  readonly uncountedHistory: { readonly ruleId: string; readonly detail: string };
}

export interface CompiledRuleset {
  readonly version: string;
  readonly contextVersion: string;
  readonly valueBasis: string;
  readonly context: CompiledContextRules;
  readonly conditions: readonly CompiledCondition[];
  /** Condition terms mapped to condition indexes. Exclusion phrases map to an empty list. */
  readonly conditionTerms: PhraseDictionary<readonly number[]>;
  /** Evidence terms of every rule of every condition. */
  readonly evidenceTerms: PhraseDictionary<readonly CompiledRule[]>;
  readonly itemMaxSentences: number;
  readonly noteRules: NoteRules;
}

const ICD10_PATTERN = /^[A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?$/;

/** Uppercases an ICD-10 code and removes dots and spaces, so `i50.9` becomes `I509`. */
/**
 * Tells whether a caller's code has ICD-10 shape: a letter, a digit, a digit or letter, then
 * optionally a dot and up to four digits or letters ("I10", "I50.22", "M1A.0", "E1165").
 */
export function isIcd10Code(code: string): boolean {
  return ICD10_PATTERN.test(code.trim().toUpperCase());
}

export function normalizeIcd10(code: string): string {
  return code.toUpperCase().replace(/[.\s]/g, '');
}

function parseCodePattern(value: string, field: string): CodePattern {
  const parts = value.split('-').map((part) => part.trim().toUpperCase());
  for (const part of parts) {
    if (!ICD10_PATTERN.test(part)) {
      fail(field, `${JSON.stringify(value)} is not an ICD-10 code, prefix or range like E08-E13`);
    }
  }
  const from = normalizeIcd10(parts[0] ?? '');
  const to = normalizeIcd10(parts[1] ?? parts[0] ?? '');
  if (parts.length > 2 || from.length !== to.length || from > to) {
    fail(field, `range ${JSON.stringify(value)} must have two codes of equal length, low first`);
  }
  return { from, to };
}

/** Tells whether a normalized code falls in a pattern. */
export function codeMatches(code: string, pattern: CodePattern): boolean {
  const prefix = code.slice(0, pattern.from.length);
  return prefix.length === pattern.from.length && prefix >= pattern.from && prefix <= pattern.to;
}

// Dictionary key of a phrase: its words, so `A-fib` and `a fib` share one entry.
function phraseKey(term: string, field: string): string {
  const key = normalizePhrase(term);
  if (key === '') {
    fail(field, `${JSON.stringify(term)} contains no letters or digits`);
  }
  return key;
}

function sectionSet(value: unknown, field: string): Set<SectionKind> {
  const kinds = expectArray(value ?? [], field).map((item, index) =>
    expectOneOf(item, `${field}[${index}]`, SECTION_KINDS),
  );
  return new Set(kinds);
}

function termDictionary(terms: readonly string[], field: string): PhraseDictionary<true> {
  const dictionary = new PhraseDictionary<true>();
  terms.forEach((term, index) => {
    try {
      dictionary.add(term, true);
    } catch (error) {
      fail(`${field}[${index}]`, (error as Error).message);
    }
  });
  return dictionary;
}

const RULE_FIELDS = [
  'id',
  'terms',
  'proximity',
  'sections',
  'mention_in_sections',
  'structured',
  'weight',
  'count_negated',
] as const;

interface RuleSource {
  readonly rule: CompiledRule;
  readonly terms: readonly string[];
}

function compileRule(
  raw: unknown,
  field: string,
  element: MeatElement,
  conditionIndex: number,
): RuleSource {
  const record = expectObject(raw, field);
  expectKnownKeys(record, field, RULE_FIELDS);
  const id = expectString(record.id, `${field}.id`);
  const terms = record.terms === undefined ? [] : expectStringArray(record.terms, `${field}.terms`);
  const structured = new Map<StructuredKind, PhraseDictionary<true>>();
  const structuredNames = new Map<StructuredKind, readonly string[]>();
  if (record.structured !== undefined) {
    const path = `${field}.structured`;
    const entries = expectObject(record.structured, path);
    expectKnownKeys(entries, path, STRUCTURED_KINDS);
    for (const kind of STRUCTURED_KINDS) {
      if (entries[kind] !== undefined) {
        const names = expectStringArray(entries[kind], `${path}.${kind}`);
        structured.set(kind, termDictionary(names, `${path}.${kind}`));
        structuredNames.set(kind, names);
      }
    }
  }
  const mentionInSections = sectionSet(record.mention_in_sections, `${field}.mention_in_sections`);
  if (terms.length === 0 && structured.size === 0 && mentionInSections.size === 0) {
    fail(field, 'a rule needs terms, structured names or mention_in_sections');
  }
  const rule: CompiledRule = {
    id,
    element,
    conditionIndex,
    weight:
      record.weight === undefined ? 1 : expectNumber(record.weight, `${field}.weight`, 0.01, 1),
    proximity:
      record.proximity === undefined
        ? 'item'
        : expectOneOf(record.proximity, `${field}.proximity`, PROXIMITIES),
    sections: sectionSet(record.sections, `${field}.sections`),
    mentionInSections,
    countNegated:
      record.count_negated === undefined
        ? false
        : expectBoolean(record.count_negated, `${field}.count_negated`),
    structured,
    structuredNames,
  };
  return { rule, terms };
}

function compileWeights(
  raw: unknown,
  field: string,
  fallback?: Record<MeatElement, number>,
): Record<MeatElement, number> {
  if (raw === undefined && fallback !== undefined) {
    return fallback;
  }
  const record = expectObject(raw, field);
  expectKnownKeys(record, field, MEAT_ELEMENTS);
  const weights = {} as Record<MeatElement, number>;
  for (const element of MEAT_ELEMENTS) {
    weights[element] = expectNumber(record[element], `${field}.${element}`, 0, 1);
  }
  const total = MEAT_ELEMENTS.reduce((sum, element) => sum + weights[element], 0);
  if (Math.abs(total - 1) > 1e-6) {
    fail(field, `weights must add up to 1, got ${total}`);
  }
  return weights;
}

function compileNoteRules(raw: unknown, field: string): NoteRules {
  const record = expectObject(raw, field);
  expectKnownKeys(record, field, [
    'short_note',
    'required_sections',
    'vague_plan',
    'uncounted_history',
  ]);
  const shortNote = expectObject(record.short_note, `${field}.short_note`);
  const vaguePlan = expectObject(record.vague_plan, `${field}.vague_plan`);
  const history = expectObject(record.uncounted_history, `${field}.uncounted_history`);
  return {
    shortNote: {
      ruleId: expectString(shortNote.rule_id, `${field}.short_note.rule_id`),
      minWords: expectNumber(shortNote.min_words, `${field}.short_note.min_words`, 0, 100000),
    },
    requiredSections: expectArray(record.required_sections, `${field}.required_sections`).map(
      (item, index) => {
        const path = `${field}.required_sections[${index}]`;
        const entry = expectObject(item, path);
        expectKnownKeys(entry, path, ['rule_id', 'any_of', 'label']);
        const anyOf = sectionSet(entry.any_of, `${path}.any_of`);
        if (anyOf.size === 0) {
          fail(`${path}.any_of`, 'expected at least one section kind');
        }
        return {
          ruleId: expectString(entry.rule_id, `${path}.rule_id`),
          anyOf,
          label: expectString(entry.label, `${path}.label`),
        };
      },
    ),
    vaguePlan: {
      ruleId: expectString(vaguePlan.rule_id, `${field}.vague_plan.rule_id`),
      sections: sectionSet(vaguePlan.sections, `${field}.vague_plan.sections`),
      minWords: expectNumber(vaguePlan.min_words, `${field}.vague_plan.min_words`, 0, 100000),
      vagueTerms: termDictionary(
        expectStringArray(vaguePlan.vague_terms, `${field}.vague_plan.vague_terms`),
        `${field}.vague_plan.vague_terms`,
      ),
    },
    uncountedHistory: {
      ruleId: expectString(history.rule_id, `${field}.uncounted_history.rule_id`),
      detail: expectString(history.detail, `${field}.uncounted_history.detail`),
    },
  };
}

const TOP_LEVEL_FIELDS = [
  'ruleset_version',
  'description',
  'value_assumptions',
  'element_weights',
  'item_max_sentences',
  'note_rules',
  'shared_rules',
  'conditions',
] as const;

const CONDITION_FIELDS = [
  'id',
  'name',
  'terms',
  'exclude_terms',
  'icd10',
  'value_usd',
  'value_basis',
  'element_weights',
  'use_shared_rules',
  'meat',
] as const;

/**
 * Validates a MEAT rule file and its context rules, both parsed from JSON, and compiles them.
 * Throws RulesetValidationError naming the first invalid field.
 */
export function compileRuleset(
  raw: unknown,
  contextRaw: unknown = contextRulesJson,
): CompiledRuleset {
  const root = expectObject(raw, 'ruleset');
  expectKnownKeys(root, 'ruleset', TOP_LEVEL_FIELDS);
  const version = expectString(root.ruleset_version, 'ruleset.ruleset_version');
  const assumptions = expectObject(root.value_assumptions, 'ruleset.value_assumptions');
  const valueBasis = expectString(assumptions.basis, 'ruleset.value_assumptions.basis');
  const defaultWeights = compileWeights(root.element_weights, 'ruleset.element_weights');
  const itemMaxSentences = expectNumber(
    root.item_max_sentences ?? 4,
    'ruleset.item_max_sentences',
    1,
    50,
  );
  const noteRules = compileNoteRules(root.note_rules, 'ruleset.note_rules');
  const context = compileContextRules(contextRaw);

  const shared = expectObject(root.shared_rules ?? {}, 'ruleset.shared_rules');
  expectKnownKeys(shared, 'ruleset.shared_rules', MEAT_ELEMENTS);

  const conditionTerms = new Map<string, number[]>();
  const evidenceTerms = new Map<string, CompiledRule[]>();
  const conditions: CompiledCondition[] = [];
  const conditionIds = new Set<string>();
  const ruleIds = new Set<string>();

  const rawConditions = expectArray(root.conditions, 'ruleset.conditions');
  if (rawConditions.length === 0) {
    fail('ruleset.conditions', 'expected at least one condition');
  }
  rawConditions.forEach((item, index) => {
    const path = `ruleset.conditions[${index}]`;
    const record = expectObject(item, path);
    expectKnownKeys(record, path, CONDITION_FIELDS);
    const id = expectString(record.id, `${path}.id`);
    if (conditionIds.has(id)) {
      fail(`${path}.id`, `duplicate condition id ${JSON.stringify(id)}`);
    }
    conditionIds.add(id);
    const terms = expectStringArray(record.terms, `${path}.terms`);
    const excluded = expectStringArray(record.exclude_terms ?? [], `${path}.exclude_terms`, true);
    terms.forEach((term, termIndex) => {
      const key = phraseKey(term, `${path}.terms[${termIndex}]`);
      const list = conditionTerms.get(key) ?? [];
      if (!list.includes(index)) {
        list.push(index);
      }
      conditionTerms.set(key, list);
    });
    excluded.forEach((term, termIndex) => {
      const key = phraseKey(term, `${path}.exclude_terms[${termIndex}]`);
      if (!conditionTerms.has(key)) {
        conditionTerms.set(key, []);
      }
    });
    const icd10 = expectStringArray(record.icd10, `${path}.icd10`).map((code, codeIndex) =>
      parseCodePattern(code, `${path}.icd10[${codeIndex}]`),
    );

    const meat = expectObject(record.meat, `${path}.meat`);
    expectKnownKeys(meat, `${path}.meat`, MEAT_ELEMENTS);
    const useShared =
      record.use_shared_rules === undefined
        ? true
        : expectBoolean(record.use_shared_rules, `${path}.use_shared_rules`);
    const rules = {} as Record<MeatElement, CompiledRule[]>;
    for (const element of MEAT_ELEMENTS) {
      const sources: RuleSource[] = [];
      expectArray(meat[element] ?? [], `${path}.meat.${element}`).forEach((rule, ruleIndex) => {
        sources.push(compileRule(rule, `${path}.meat.${element}[${ruleIndex}]`, element, index));
      });
      if (useShared) {
        expectArray(shared[element] ?? [], `ruleset.shared_rules.${element}`).forEach(
          (rule, ruleIndex) => {
            sources.push(
              compileRule(rule, `ruleset.shared_rules.${element}[${ruleIndex}]`, element, index),
            );
          },
        );
      }
      for (const source of sources) {
        const key = `${id}\u0000${source.rule.id}`;
        if (ruleIds.has(key) && !source.rule.id.startsWith('shared.')) {
          fail(`${path}.meat.${element}`, `duplicate rule id ${JSON.stringify(source.rule.id)}`);
        }
        ruleIds.add(key);
        for (const term of source.terms) {
          const key = phraseKey(term, `${path}.meat.${element}`);
          const list = evidenceTerms.get(key) ?? [];
          list.push(source.rule);
          evidenceTerms.set(key, list);
        }
      }
      rules[element] = sources.map((source) => source.rule);
    }

    conditions.push({
      index,
      id,
      name: expectString(record.name, `${path}.name`),
      icd10,
      valueUsd: expectNumber(record.value_usd, `${path}.value_usd`, 0, 10_000_000),
      valueBasis:
        record.value_basis === undefined
          ? valueBasis
          : expectString(record.value_basis, `${path}.value_basis`),
      weights: compileWeights(record.element_weights, `${path}.element_weights`, defaultWeights),
      rules,
      terms: termDictionary(terms, `${path}.terms`),
    });
  });

  const conditionDictionary = new PhraseDictionary<readonly number[]>();
  for (const [term, indexes] of conditionTerms) {
    conditionDictionary.add(term, indexes);
  }
  const evidenceDictionary = new PhraseDictionary<readonly CompiledRule[]>();
  for (const [term, rules] of evidenceTerms) {
    evidenceDictionary.add(term, rules);
  }
  return {
    version,
    contextVersion: context.version,
    valueBasis,
    context,
    conditions,
    conditionTerms: conditionDictionary,
    evidenceTerms: evidenceDictionary,
    itemMaxSentences,
    noteRules,
  };
}

/** Parses JSON text and compiles it as a MEAT rule file. */
export function parseRuleset(jsonText: string, contextJsonText?: string): CompiledRuleset {
  const parse = (text: string, field: string): unknown => {
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new RulesetValidationError(field, `not valid JSON: ${(error as Error).message}`);
    }
  };
  return contextJsonText === undefined
    ? compileRuleset(parse(jsonText, 'ruleset'))
    : compileRuleset(parse(jsonText, 'ruleset'), parse(contextJsonText, 'context'));
}

let defaultRuleset: CompiledRuleset | undefined;
let defaultContextRules: CompiledContextRules | undefined;

/** Returns the compiled default rules from rules/meat-rules.json, compiled on first use. */
export function loadDefaultRuleset(): CompiledRuleset {
  defaultRuleset ??= compileRuleset(meatRulesJson);
  return defaultRuleset;
}

/** Returns the compiled default context rules from rules/context-rules.json. */
export function loadDefaultContextRules(): CompiledContextRules {
  defaultContextRules ??= defaultRuleset?.context ?? compileContextRules(contextRulesJson);
  return defaultContextRules;
}
