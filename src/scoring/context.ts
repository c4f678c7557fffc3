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
  /** Largest max_words of any trigger role: no scope reaches further than this. */
  readonly maxScopeWords: number;
  /** Word count of the longest phrase. */
  readonly maxPhraseWords: number;
  /** Words on each side of a target that classification looks at: maxScopeWords + maxPhraseWords. */
  readonly windowWords: number;
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
  let maxScopeWords = 0;
  for (const term of terms.values()) {
    try {
      dictionary.add(term.phrase, term);
    } catch (error) {
      fail(`${field}.terms`, (error as Error).message);
    }
    for (const role of term.triggers) {
      maxScopeWords = Math.max(maxScopeWords, role.maxWords);
    }
  }
  const maxPhraseWords = dictionary.maxPhraseWords;
  return {
    version,
    dictionary,
    sectionDefaults,
    maxScopeWords,
    maxPhraseWords,
    windowWords: maxScopeWords + maxPhraseWords,
  };
}

/** A context phrase in a sentence, with the categories that an overlapping pseudo-trigger blocks. */
export interface ContextHit extends PhraseHit<ContextTerm> {
  readonly blocked?: ReadonlySet<ContextCategory>;
}

/** Index of the first element of the ascending `values` that is at least `key`. */
function lowerBound(values: ArrayLike<number>, key: number): number {
  let low = 0;
  let high = values.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((values[middle] ?? 0) < key) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return low;
}

/**
 * Blocks each trigger role that overlaps a pseudo-trigger of its category. Phrases are found
 * with overlaps, so "there is no increase" yields the trigger "there is no" and the
 * pseudo-trigger "no increase", and the pseudo-trigger wins wherever the two share words.
 * Hits must be sorted by first token. Only pseudo-triggers that start within one phrase length
 * before a trigger can overlap it, so the cost is linear in the number of hits.
 */
function applyPseudoTriggers(hits: PhraseHit<ContextTerm>[], maxPhraseWords: number): ContextHit[] {
  const pseudo = hits.filter((hit) => hit.value.pseudoFor.size > 0);
  if (pseudo.length === 0) {
    return hits;
  }
  const pseudoFirsts = pseudo.map((hit) => hit.first);
  return hits.map((hit) => {
    if (hit.value.triggers.length === 0) {
      return hit;
    }
    let blocked: Set<ContextCategory> | undefined;
    for (
      let i = lowerBound(pseudoFirsts, hit.first - maxPhraseWords);
      i < pseudo.length && (pseudo[i]?.first ?? 0) < hit.last;
      i++
    ) {
      const other = pseudo[i];
      if (other === undefined || other === hit || other.last <= hit.first) {
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

/** Terminators of one category, sorted by first token, for gap queries in logarithmic time. */
interface TerminatorIndex {
  readonly firsts: Int32Array;
  /** suffixMinLast[i] is the smallest `last` among terminators i and after. */
  readonly suffixMinLast: Int32Array;
}

/**
 * The context phrases of one sentence (or of a window of it), sorted by first token, with an
 * index of terminators per category. Build it with indexContextHits.
 */
export interface SentenceContext {
  readonly hits: readonly ContextHit[];
  readonly hitFirsts: Int32Array;
  readonly terminators: ReadonlyMap<ContextCategory, TerminatorIndex>;
}

/** Sorts context hits and indexes their terminators. Runs in O(h log h) for h hits. */
export function indexContextHits(hits: readonly ContextHit[]): SentenceContext {
  const sorted = [...hits].sort((a, b) => a.first - b.first || a.last - b.last);
  const terminators = new Map<ContextCategory, TerminatorIndex>();
  for (const category of CONTEXT_CATEGORIES) {
    const ofCategory = sorted.filter((hit) => hit.value.terminates.has(category));
    if (ofCategory.length === 0) {
      continue;
    }
    const firsts = Int32Array.from(ofCategory, (hit) => hit.first);
    const suffixMinLast = new Int32Array(ofCategory.length);
    let minimum = Number.MAX_SAFE_INTEGER;
    for (let i = ofCategory.length - 1; i >= 0; i--) {
      minimum = Math.min(minimum, ofCategory[i]?.last ?? minimum);
      suffixMinLast[i] = minimum;
    }
    terminators.set(category, { firsts, suffixMinLast });
  }
  return { hits: sorted, hitFirsts: Int32Array.from(sorted, (hit) => hit.first), terminators };
}

/** Finds the context phrases of one sentence, given as a token range. */
export function findContextTerms(
  rules: CompiledContextRules,
  tokens: TokenList,
  first: number,
  last: number,
): SentenceContext {
  return indexContextHits(
    applyPseudoTriggers(rules.dictionary.findEvery(tokens, first, last), rules.maxPhraseWords),
  );
}

/**
 * Finds the context phrases around a target range, within the scan window of the rules and
 * inside the sentence [sentenceFirst, sentenceLast). The target's own words must not take part
 * in a phrase: in "no acute distress" with the target "acute distress", the phrase "no acute"
 * would otherwise be a trigger that overlaps the target. The window keeps the cost per target
 * constant however long the sentence is.
 */
export function findContextTermsAround(
  rules: CompiledContextRules,
  tokens: TokenList,
  sentenceFirst: number,
  sentenceLast: number,
  targetFirst: number,
  targetLast: number,
): SentenceContext {
  const from = Math.max(sentenceFirst, targetFirst - rules.windowWords);
  const to = Math.min(sentenceLast, targetLast + rules.windowWords);
  return indexContextHits(
    applyPseudoTriggers(
      [
        ...rules.dictionary.findEvery(tokens, from, targetFirst),
        ...rules.dictionary.findEvery(tokens, targetLast, to),
      ],
      rules.maxPhraseWords,
    ),
  );
}

/** Tells whether a terminator of `category` lies wholly inside the token gap [gapFirst, gapLast). */
function isTerminated(
  context: SentenceContext,
  category: ContextCategory,
  gapFirst: number,
  gapLast: number,
): boolean {
  const index = context.terminators.get(category);
  if (index === undefined) {
    return false;
  }
  const i = lowerBound(index.firsts, gapFirst);
  return i < index.firsts.length && (index.suffixMinLast[i] ?? gapLast + 1) <= gapLast;
}

/**
 * Tells whether a trigger of `category` in the sentence has the target token range in scope.
 * Only hits within the scan window of the target are visited, because no trigger reaches
 * further than `rules.maxScopeWords`.
 */
function inScope(
  rules: CompiledContextRules,
  context: SentenceContext,
  category: ContextCategory,
  targetFirst: number,
  targetLast: number,
): boolean {
  const { hits, hitFirsts } = context;
  for (
    let i = lowerBound(hitFirsts, targetFirst - rules.windowWords);
    i < hits.length && (hitFirsts[i] ?? 0) <= targetLast + rules.maxScopeWords;
    i++
  ) {
    const hit = hits[i];
    if (hit === undefined) {
      continue;
    }
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
        if (gap <= role.maxWords && !isTerminated(context, category, hit.last, targetFirst)) {
          return true;
        }
      }
      if (after && role.direction !== 'forward') {
        const gap = hit.first - targetLast;
        if (gap <= role.maxWords && !isTerminated(context, category, targetLast, hit.first)) {
          return true;
        }
      }
    }
  }
  return false;
}

/**
 * Tells whether a question mark stands directly before the target at `targetStart`, as in
 * "? pneumonia" or "?CHF", which marks the diagnosis as uncertain. A question mark glued to the
 * previous word ("Does he have CHF? Pneumonia ...") ends a question instead and does not count.
 */
export function isQuestionedTarget(text: string, targetStart: number): boolean {
  let i = targetStart - 1;
  while (i >= 0 && targetStart - i <= 2 && (text[i] === ' ' || text[i] === '\t')) {
    i--;
  }
  if (i < 0 || text[i] !== '?') {
    return false;
  }
  return i === 0 || !/[\p{L}\p{N}]/u.test(text[i - 1] ?? '');
}

/**
 * Classifies a target mention, given as a token range, using the context phrases of its sentence
 * and the kind of section it appears in. `questioned` marks a target preceded by a lone question
 * mark (see isQuestionedTarget), which makes it uncertain.
 */
export function classifyTokens(
  rules: CompiledContextRules,
  context: SentenceContext,
  targetFirst: number,
  targetLast: number,
  sectionKind: SectionKind | undefined,
  questioned = false,
): Assertion {
  const defaults = sectionKind === undefined ? undefined : rules.sectionDefaults.get(sectionKind);
  const test = (category: ContextCategory): boolean =>
    inScope(rules, context, category, targetFirst, targetLast);
  const negated = test('negated');
  const uncertain = questioned || test('uncertain');

  let temporality: Temporality = defaults?.temporality ?? 'recent';
  if (test('hypothetical')) {
    temporality = 'hypothetical';
  } else if (test('historical')) {
    temporality = 'historical';
  }

  let experiencer: Experiencer = defaults?.experiencer ?? 'patient';
  if (test('family_member')) {
    experiencer = 'family_member';
  } else if (test('other')) {
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
  const context = findContextTermsAround(rules, tokens, 0, tokens.words.length, first, last);
  const questioned = isQuestionedTarget(sentence, tokens.starts[first] ?? start);
  return classifyTokens(rules, context, first, last, sectionKind, questioned);
}
