// One pass over a note that builds everything scoring looks up: sections, sentences, word tokens,
// and the sentence and section of every token. Assertion context is computed per sentence on
// first use and cached, so each sentence is scanned for context phrases at most once unless a
// target overlaps one of its phrases.
import {
  classifyTokens,
  findContextTerms,
  findContextTermsAround,
  isQuestionedTarget,
  type Assertion,
  type CompiledContextRules,
  type SentenceContext,
} from './context.ts';
import { detectSections, type Section, type SectionKind } from './sections.ts';
import { splitSentences, type Sentence } from './sentences.ts';
import { tokenize, type TokenList } from './tokens.ts';

type ContextHits = SentenceContext;

export interface NoteIndex {
  readonly text: string;
  readonly sections: readonly Section[];
  readonly sentences: readonly Sentence[];
  readonly tokens: TokenList;
  /** First token of each sentence; sentence i spans tokens [sentenceFirstToken[i], sentenceFirstToken[i + 1]). */
  readonly sentenceFirstToken: Int32Array;
  readonly sentenceSection: Int32Array;
  readonly tokenSentence: Int32Array;
  /** True for sentences that begin with a list marker such as `2.`, `2)`, `-` or `#`. */
  readonly sentenceStartsItem: Uint8Array;
  /**
   * First sentence of the list item that contains each sentence, or -1 outside a list. An item runs
   * from a sentence with a list marker to the next one or to the end of its section.
   * NOTE: unnumbered text after the last item therefore belongs to that item.
   */
  readonly sentenceItem: Int32Array;
  sectionKindOfSentence(sentence: number): SectionKind;
  /** Classifies the token range [first, last), which must lie inside one sentence. */
  classify(first: number, last: number): Assertion;
}

const LIST_MARKER = /^(?:\d{1,2}\s*[.)]|[-*#\u2022])/;

/** Tells whether a context phrase overlaps the token range [first, last). */
function overlapsTarget(
  context: SentenceContext,
  maxPhraseWords: number,
  first: number,
  last: number,
): boolean {
  const { hits, hitFirsts } = context;
  let low = 0;
  let high = hitFirsts.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((hitFirsts[middle] ?? 0) < first - maxPhraseWords) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  for (let i = low; i < hits.length && (hitFirsts[i] ?? 0) < last; i++) {
    if ((hits[i]?.last ?? 0) > first) {
      return true;
    }
  }
  return false;
}

/** Builds the index of a note. Runs in time linear in the note length. */
export function indexNote(text: string, context: CompiledContextRules): NoteIndex {
  const sections = detectSections(text);
  const sentences = splitSentences(text, sections);
  const tokens = tokenize(text);
  const tokenCount = tokens.words.length;

  // Tokens between sentences (only separators) are assigned to the next sentence, so every token
  // has a sentence and sentence token ranges stay contiguous.
  const sentenceFirstToken = new Int32Array(sentences.length + 1);
  const tokenSentence = new Int32Array(tokenCount);
  let token = 0;
  for (let s = 0; s < sentences.length; s++) {
    sentenceFirstToken[s] = token;
    const end = sentences[s]?.end ?? 0;
    while (token < tokenCount && (tokens.ends[token] ?? 0) <= end) {
      tokenSentence[token] = s;
      token++;
    }
  }
  for (; token < tokenCount; token++) {
    tokenSentence[token] = Math.max(0, sentences.length - 1);
  }
  sentenceFirstToken[sentences.length] = tokenCount;

  const sentenceSection = new Int32Array(sentences.length);
  const sentenceStartsItem = new Uint8Array(sentences.length);
  const sentenceItem = new Int32Array(sentences.length).fill(-1);
  let section = 0;
  let itemStart = -1;
  for (let s = 0; s < sentences.length; s++) {
    const sentence = sentences[s];
    if (sentence === undefined) {
      continue;
    }
    while (section + 1 < sections.length && (sections[section + 1]?.start ?? 0) <= sentence.start) {
      section++;
      itemStart = -1;
    }
    sentenceSection[s] = section;
    sentenceStartsItem[s] = LIST_MARKER.test(text.slice(sentence.start, sentence.start + 4))
      ? 1
      : 0;
    if (sentenceStartsItem[s] === 1) {
      itemStart = s;
    }
    sentenceItem[s] = itemStart;
  }

  const contextCache = new Map<number, ContextHits>();
  const sentenceHits = (s: number): ContextHits => {
    let hits = contextCache.get(s);
    if (hits === undefined) {
      hits = findContextTerms(
        context,
        tokens,
        sentenceFirstToken[s] ?? 0,
        sentenceFirstToken[s + 1] ?? 0,
      );
      contextCache.set(s, hits);
    }
    return hits;
  };

  const sectionKindOfSentence = (s: number): SectionKind =>
    sections[sentenceSection[s] ?? 0]?.kind ?? 'preamble';

  return {
    text,
    sections,
    sentences,
    tokens,
    sentenceFirstToken,
    sentenceSection,
    tokenSentence,
    sentenceStartsItem,
    sentenceItem,
    sectionKindOfSentence,
    classify(first: number, last: number): Assertion {
      const s = tokenSentence[first] ?? 0;
      let hits: ContextHits = sentenceHits(s);
      if (overlapsTarget(hits, context.maxPhraseWords, first, last)) {
        hits = findContextTermsAround(
          context,
          tokens,
          sentenceFirstToken[s] ?? 0,
          sentenceFirstToken[s + 1] ?? 0,
          first,
          last,
        );
      }
      const questioned = isQuestionedTarget(text, tokens.starts[first] ?? 0);
      return classifyTokens(context, hits, first, last, sectionKindOfSentence(s), questioned);
    },
  };
}
