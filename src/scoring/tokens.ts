// Word tokens and a phrase dictionary keyed by first word. Matching walks the tokens once and
// checks only the phrases that start with the current word. The cost therefore grows with note
// length and not with the number of phrases, which a single V8 alternation regex of several
// hundred phrases does not guarantee.

/** Word tokens of a text: alphanumeric runs, lower-cased, with character offsets. */
export interface TokenList {
  readonly words: readonly string[];
  readonly starts: readonly number[];
  readonly ends: readonly number[];
  /**
   * 1 when only whitespace, hyphens, slashes or apostrophes separate token i from token i-1,
   * so a phrase may continue across that gap. Any other punctuation breaks a phrase.
   */
  readonly joinable: Uint8Array;
}

function isWordChar(code: number): boolean {
  return (
    (code >= 48 && code <= 57) || // 0-9
    (code >= 65 && code <= 90) || // A-Z
    (code >= 97 && code <= 122) || // a-z
    (code >= 0xc0 && code <= 0x24f && code !== 0xd7 && code !== 0xf7) // Latin-1 and Latin Extended letters
  );
}

function isJoinGapChar(code: number): boolean {
  // space, tab, newline, carriage return, hyphen, slash, apostrophe, right single quote
  return (
    code === 32 ||
    code === 9 ||
    code === 10 ||
    code === 13 ||
    code === 45 ||
    code === 47 ||
    code === 39 ||
    code === 0x2019
  );
}

/** Splits text into word tokens in one pass. */
export function tokenize(text: string): TokenList {
  const length = text.length;
  // Lower-casing the whole text once is much faster than once per token. It is only valid when
  // it keeps every offset, which a few characters such as U+0130 break by changing length.
  const lower = text.toLowerCase();
  const sameOffsets = lower.length === length;
  const words: string[] = [];
  const starts: number[] = [];
  const ends: number[] = [];
  const joinable = new Uint8Array((length >> 1) + 1);
  let i = 0;
  let previousEnd = -1;
  while (i < length) {
    if (!isWordChar(text.charCodeAt(i))) {
      i++;
      continue;
    }
    const start = i;
    while (i < length && isWordChar(text.charCodeAt(i))) {
      i++;
    }
    let join = previousEnd >= 0 ? 1 : 0;
    for (let j = previousEnd; join === 1 && j < start; j++) {
      if (!isJoinGapChar(text.charCodeAt(j))) {
        join = 0;
      }
    }
    joinable[words.length] = join;
    words.push(sameOffsets ? lower.slice(start, i) : text.slice(start, i).toLowerCase());
    starts.push(start);
    ends.push(i);
    previousEnd = i;
  }
  return { words, starts, ends, joinable: joinable.subarray(0, words.length) };
}

/** Splits a dictionary phrase into the lower-case words that the tokenizer would produce. */
export function phraseWords(phrase: string): string[] {
  return tokenize(phrase).words.slice();
}

/** Returns the words of a phrase joined by single spaces, for use as a lookup key. */
export function normalizePhrase(phrase: string): string {
  return phraseWords(phrase).join(' ');
}

interface DictionaryEntry<T> {
  readonly words: readonly string[];
  readonly value: T;
}

/** One phrase occurrence, as a half-open token range. */
export interface PhraseHit<T> {
  readonly first: number;
  readonly last: number;
  readonly value: T;
}

/**
 * Maps phrases to values and finds them in token lists. At each position the longest phrase
 * wins and matches never overlap, which is what lets a pseudo-trigger such as "no increase"
 * hide the trigger "no" that it contains.
 */
export class PhraseDictionary<T> {
  private readonly byFirstWord = new Map<string, DictionaryEntry<T>[]>();
  private longestPhraseWords = 0;

  /** Adds a phrase. A phrase with no word characters is rejected because it can never match. */
  add(phrase: string, value: T): void {
    const words = phraseWords(phrase);
    const first = words[0];
    if (first === undefined) {
      throw new Error(`phrase ${JSON.stringify(phrase)} contains no letters or digits`);
    }
    let entries = this.byFirstWord.get(first);
    if (entries === undefined) {
      entries = [];
      this.byFirstWord.set(first, entries);
    }
    entries.push({ words, value });
    this.longestPhraseWords = Math.max(this.longestPhraseWords, words.length);
    // Longest first, so the first full match at a position is the longest one.
    entries.sort((a, b) => b.words.length - a.words.length);
  }

  /** Word count of the longest phrase added so far. */
  get maxPhraseWords(): number {
    return this.longestPhraseWords;
  }

  get size(): number {
    let count = 0;
    for (const entries of this.byFirstWord.values()) {
      count += entries.length;
    }
    return count;
  }

  /** Finds non-overlapping phrase hits in tokens [from, to), scanning left to right. */
  findAll(tokens: TokenList, from = 0, to = tokens.words.length): PhraseHit<T>[] {
    const hits: PhraseHit<T>[] = [];
    let i = from;
    while (i < to) {
      const hit = this.matchAt(tokens, i, to);
      if (hit === undefined) {
        i++;
        continue;
      }
      hits.push(hit);
      i = hit.last;
    }
    return hits;
  }

  /**
   * Finds every phrase occurrence in tokens [from, to), overlapping ones included, so that a
   * phrase such as "metoprolol" still counts inside a longer phrase "metoprolol succinate".
   */
  findEvery(tokens: TokenList, from = 0, to = tokens.words.length): PhraseHit<T>[] {
    const hits: PhraseHit<T>[] = [];
    for (let i = from; i < to; i++) {
      const word = tokens.words[i];
      const entries = word === undefined ? undefined : this.byFirstWord.get(word);
      if (entries === undefined) {
        continue;
      }
      for (const entry of entries) {
        if (this.matchesEntry(tokens, i, to, entry)) {
          hits.push({ first: i, last: i + entry.words.length, value: entry.value });
        }
      }
    }
    return hits;
  }

  private matchesEntry(
    tokens: TokenList,
    i: number,
    to: number,
    entry: DictionaryEntry<T>,
  ): boolean {
    if (i + entry.words.length > to) {
      return false;
    }
    for (let k = 1; k < entry.words.length; k++) {
      if (tokens.joinable[i + k] !== 1 || tokens.words[i + k] !== entry.words[k]) {
        return false;
      }
    }
    return true;
  }

  /** Returns the longest phrase that starts at token i and ends at or before token `to`. */
  matchAt(tokens: TokenList, i: number, to: number): PhraseHit<T> | undefined {
    const word = tokens.words[i];
    if (word === undefined) {
      return undefined;
    }
    const entries = this.byFirstWord.get(word);
    if (entries === undefined) {
      return undefined;
    }
    for (const entry of entries) {
      if (this.matchesEntry(tokens, i, to, entry)) {
        return { first: i, last: i + entry.words.length, value: entry.value };
      }
    }
    return undefined;
  }

  /** Tells whether any phrase occurs in the given text, for short strings such as drug names. */
  occursIn(text: string): boolean {
    const tokens = tokenize(text);
    for (let i = 0; i < tokens.words.length; i++) {
      if (this.matchAt(tokens, i, tokens.words.length) !== undefined) {
        return true;
      }
    }
    return false;
  }
}
