// Assertion context in the ConText family of algorithms (Harkema et al., J Biomed Inform 2009).
// Within one sentence, a trigger term opens a scope forward, backward or both ways. A target
// mention inside an open scope takes the trigger's category. The scope ends at the sentence end,
// at a terminator term of the same category, or after a maximum number of words. A
// pseudo-trigger is a longer phrase that contains a trigger but does not carry its meaning
// ("no increase", "gram negative"), and because the longest phrase wins it hides that trigger.
// Section defaults apply when no trigger fires, so a mention in a family history section is
// about a family member unless a trigger in the sentence overrides the default.
import { SECTION_KINDS, type SectionKind } from './sections.ts';
import { PhraseDictionary, tokenize, type PhraseHit, type TokenList } from './tokens.ts';
import {
  expectArray,
  expectKnownKeys,
  expectNumber,
  expectObject,
  expectOneOf,
  expectString,
  expectStringArray,
  fail,
} from './validation.ts';

export const CONTEXT_CATEGORIES = [
  'negated',
  'uncertain',
  'historical',
  'hypothetical',
  'family_member',
  'other',
] as const;
export type ContextCategory = (typeof CONTEXT_CATEGORIES)[number];

export const DIRECTIONS = ['forward', 'backward', 'both'] as const;
export type Direction = (typeof DIRECTIONS)[number];

export type Temporality = 'recent' | 'historical' | 'hypothetical';
export type Experiencer = 'patient' | 'family_member' | 'other';

export interface Assertion {
  readonly negated: boolean;
  /** The mention is something to test for ("rule out sepsis", "evaluate for pneumonia"). */
  readonly uncertain: boolean;
  readonly temporality: Temporality;
  readonly experiencer: Experiencer;
}

export const AFFIRMED_RECENT_PATIENT: Assertion = {
  negated: false,
  uncertain: false,
  temporality: 'recent',
  experiencer: 'patient',
};

interface TriggerRole {
  readonly category: ContextCategory;
  readonly direction: Direction;
  readonly maxWords: number;
}

/** Every role that one phrase plays, merged because a phrase may appear in several lists. */
interface ContextTerm {
  readonly phrase: string;
  readonly triggers: TriggerRole[];
  readonly pseudoFor: Set<ContextCategory>;
  readonly terminates: Set<ContextCategory>;
}

interface SectionDefault {
  readonly temporality?: 'historical' | 'hypothetical';
  readonly experiencer?: 'family_member' | 'other';
}

export interface CompiledContextRules {
  readonly version: string;
  readonly dictionary: PhraseDictionary<ContextTerm>;
  readonly sectionDefaults: ReadonlyMap<SectionKind, SectionDefault>;
}

const TOP_LEVEL_FIELDS = [
  'ruleset_version',
  'description',
  'default_max_words',
  'section_defaults',
  'triggers',
  'pseudo_triggers',
  'terminators',
] as const;

/**
 * Validates context rules parsed from JSON and builds the phrase dictionary. Throws
 * RulesetValidationError naming the first invalid field.
 */
export function compileContextRules(raw: unknown, field = 'context'): CompiledContextRules {
  const root = expectObject(raw, field);
  expectKnownKeys(root, field, TOP_LEVEL_FIELDS);
  const version = expectString(root.ruleset_version, `${field}.ruleset_version`);
  const defaultMaxWords = expectNumber(
    root.default_max_words ?? 100,
    `${field}.default_max_words`,
    1,
    1000,
  );

  const terms = new Map<string, ContextTerm>();
  const termFor = (phrase: string): ContextTerm => {
    const key = phrase.toLowerCase();
    let term = terms.get(key);
    if (term === undefined) {
      term = { phrase: key, triggers: [], pseudoFor: new Set(), terminates: new Set() };
      terms.set(key, term);
    }
    return term;
  };

  expectArray(root.triggers, `${field}.triggers`).forEach((item, index) => {
    const path = `${field}.triggers[${index}]`;
    const group = expectObject(item, path);
    expectKnownKeys(group, path, ['category', 'direction', 'max_words', 'terms']);
    const category = expectOneOf(group.category, `${path}.category`, CONTEXT_CATEGORIES);
    const direction = expectOneOf(group.direction, `${path}.direction`, DIRECTIONS);
    const maxWords =
      group.max_words === undefined
        ? defaultMaxWords
        : expectNumber(group.max_words, `${path}.max_words`, 0, 1000);
    for (const phrase of expectStringArray(group.terms, `${path}.terms`)) {
      termFor(phrase).triggers.push({ category, direction, maxWords });
    }
  });

  const readCategoryGroups = (key: 'pseudo_triggers' | 'terminators'): void => {
    expectArray(root[key] ?? [], `${field}.${key}`).forEach((item, index) => {
      const path = `${field}.${key}[${index}]`;
      const group = expectObject(item, path);
      expectKnownKeys(group, path, ['categories', 'terms']);
      const categories = expectArray(group.categories, `${path}.categories`).map((value, i) =>
        expectOneOf(value, `${path}.categories[${i}]`, CONTEXT_CATEGORIES),
      );
      for (const phrase of expectStringArray(group.terms, `${path}.terms`)) {
        const term = termFor(phrase);
        for (const category of categories) {
          (key === 'pseudo_triggers' ? term.pseudoFor : term.terminates).add(category);
        }
      }
    });
  };
  readCategoryGroups('pseudo_triggers');
  readCategoryGroups('terminators');

  const sectionDefaults = new Map<SectionKind, SectionDefault>();
  const defaults = expectObject(root.section_defaults ?? {}, `${field}.section_defaults`);
  for (const [kind, value] of Object.entries(defaults)) {
    const path = `${field}.section_defaults.${kind}`;
    if (!(SECTION_KINDS as readonly string[]).includes(kind)) {
      fail(path, `unknown section kind, expected one of ${SECTION_KINDS.join(', ')}`);
    }
    const entry = expectObject(value, path);
    expectKnownKeys(entry, path, ['temporality', 'experiencer']);
    sectionDefaults.set(kind as SectionKind, {
      ...(entry.temporality === undefined
        ? {}
        : {
            temporality: expectOneOf(entry.temporality, `${path}.temporality`, [
              'historical',
              'hypothetical',
            ] as const),
          }),
      ...(entry.experiencer === undefined
        ? {}
        : {
            experiencer: expectOneOf(entry.experiencer, `${path}.experiencer`, [
              'family_member',
              'other',
            ] as const),
          }),
    });
  }

  const dictionary = new PhraseDictionary<ContextTerm>();
  for (const term of terms.values()) {
    try {
      dictionary.add(term.phrase, term);
    } catch (error) {
      fail(`${field}.terms`, (error as Error).message);
    }
  }
  return { version, dictionary, sectionDefaults };
}

/** A context phrase in a sentence, with the categories that an overlapping pseudo-trigger blocks. */
export interface ContextHit extends PhraseHit<ContextTerm> {
  readonly blocked?: ReadonlySet<ContextCategory>;
}

/**
 * Blocks each trigger role that overlaps a pseudo-trigger of its category. Phrases are found
 * with overlaps, so "there is no increase" yields the trigger "there is no" and the
 * pseudo-trigger "no increase", and the pseudo-trigger wins wherever the two share words.
 */
function applyPseudoTriggers(hits: PhraseHit<ContextTerm>[]): ContextHit[] {
  const pseudo = hits.filter((hit) => hit.value.pseudoFor.size > 0);
  if (pseudo.length === 0) {
    return hits;
  }
  return hits.map((hit) => {
    if (hit.value.triggers.length === 0) {
      return hit;
    }
    let blocked: Set<ContextCategory> | undefined;
    for (const other of pseudo) {
      if (other === hit || other.first >= hit.last || other.last <= hit.first) {
        continue;
      }
      for (const category of other.value.pseudoFor) {
        blocked ??= new Set();
        blocked.add(category);
      }
    }
    return blocked === undefined ? hit : { ...hit, blocked };
  });
}

/** Finds the context phrases of one sentence, given as a token range. */
export function findContextTerms(
  rules: CompiledContextRules,
  tokens: TokenList,
  first: number,
  last: number,
): ContextHit[] {
  return applyPseudoTriggers(rules.dictionary.findEvery(tokens, first, last));
}

/**
 * Finds the context phrases of a sentence outside a target range. The target's own words must
 * not take part in a phrase: in "no acute distress" with the target "acute distress", the
 * phrase "no acute" would otherwise be a trigger that overlaps the target.
 */
export function findContextTermsAround(
  rules: CompiledContextRules,
  tokens: TokenList,
  sentenceFirst: number,
  sentenceLast: number,
  targetFirst: number,
  targetLast: number,
): ContextHit[] {
  return applyPseudoTriggers([
    ...rules.dictionary.findEvery(tokens, sentenceFirst, targetFirst),
    ...rules.dictionary.findEvery(tokens, targetLast, sentenceLast),
  ]);
}

function isTerminated(
  hits: readonly ContextHit[],
  category: ContextCategory,
  gapFirst: number,
  gapLast: number,
): boolean {
  for (const hit of hits) {
    if (hit.first >= gapFirst && hit.last <= gapLast && hit.value.terminates.has(category)) {
      return true;
    }
  }
  return false;
}

/** Tells whether a trigger of `category` in the sentence has the target token range in scope. */
function inScope(
  hits: readonly ContextHit[],
  category: ContextCategory,
  targetFirst: number,
  targetLast: number,
): boolean {
  for (const hit of hits) {
    if (hit.value.pseudoFor.has(category) || hit.blocked?.has(category) === true) {
      continue;
    }
    for (const role of hit.value.triggers) {
      if (role.category !== category) {
        continue;
      }
      const before = hit.last <= targetFirst;
      const after = hit.first >= targetLast;
      if (before && role.direction !== 'backward') {
        const gap = targetFirst - hit.last;
        if (gap <= role.maxWords && !isTerminated(hits, category, hit.last, targetFirst)) {
          return true;
        }
      }
      if (after && role.direction !== 'forward') {
        const gap = hit.first - targetLast;
        if (gap <= role.maxWords && !isTerminated(hits, category, targetLast, hit.first)) {
          return true;
        }
      }
    }
  }
  return false;
}

/**
 * Classifies a target mention, given as a token range, using the context phrases of its sentence
 * and the kind of section it appears in.
 */
export function classifyTokens(
  rules: CompiledContextRules,
  sentenceHits: readonly ContextHit[],
  targetFirst: number,
  targetLast: number,
  sectionKind: SectionKind | undefined,
): Assertion {
  const defaults = sectionKind === undefined ? undefined : rules.sectionDefaults.get(sectionKind);
  const negated = inScope(sentenceHits, 'negated', targetFirst, targetLast);
  const uncertain = inScope(sentenceHits, 'uncertain', targetFirst, targetLast);

  let temporality: Temporality = defaults?.temporality ?? 'recent';
  if (inScope(sentenceHits, 'hypothetical', targetFirst, targetLast)) {
    temporality = 'hypothetical';
  } else if (inScope(sentenceHits, 'historical', targetFirst, targetLast)) {
    temporality = 'historical';
  }

  let experiencer: Experiencer = defaults?.experiencer ?? 'patient';
  if (inScope(sentenceHits, 'family_member', targetFirst, targetLast)) {
    experiencer = 'family_member';
  } else if (inScope(sentenceHits, 'other', targetFirst, targetLast)) {
    experiencer = 'other';
  }
  return { negated, uncertain, temporality, experiencer };
}

/**
 * Classifies the character span [start, end) of `sentence`, treating the whole string as one
 * sentence. Tokens that only partly overlap the span are included.
 */
export function classifySpan(
  rules: CompiledContextRules,
  sentence: string,
  start: number,
  end: number,
  sectionKind?: SectionKind,
): Assertion {
  const tokens = tokenize(sentence);
  let first = 0;
  while (first < tokens.words.length && (tokens.ends[first] ?? 0) <= start) {
    first++;
  }
  let last = first;
  while (last < tokens.words.length && (tokens.starts[last] ?? 0) < end) {
    last++;
  }
  const hits = findContextTermsAround(rules, tokens, 0, tokens.words.length, first, last);
  return classifyTokens(rules, hits, first, last, sectionKind);
}
