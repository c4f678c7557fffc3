// Sentence splitting with character offsets. A sentence ends at `.`, `?` or `!` followed by
// whitespace, a comma or the end of the text, at a line break, and at a comma glued to a capital
// letter or list number (`.,PLAN:` or `,2.  ...`), which is how transcribed corpora write line
// breaks. Section boundaries are always sentence boundaries.
import type { Section } from './sections.ts';

export interface Sentence {
  readonly start: number;
  readonly end: number;
}

// Titles that are followed by a capitalised name, so a period after them does not end a sentence.
const TITLE_ABBREVIATIONS: ReadonlySet<string> = new Set([
  'dr',
  'mr',
  'mrs',
  'ms',
  'st',
  'vs',
  'no',
  'approx',
  'fig',
]);

function isSpace(code: number): boolean {
  return code === 32 || code === 9 || code === 10 || code === 13;
}

function isUpper(code: number): boolean {
  return code >= 65 && code <= 90;
}

function isLower(code: number): boolean {
  return code >= 97 && code <= 122;
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

function isLetter(code: number): boolean {
  return isUpper(code) || isLower(code);
}

// Returns the word that ends right before `end` (letters only), lower-cased.
function wordBefore(text: string, end: number): string {
  let i = end;
  while (i > 0 && isLetter(text.charCodeAt(i - 1))) {
    i--;
  }
  return text.slice(i, end).toLowerCase();
}

/**
 * Tells whether the period at `index` ends a sentence. It does not when the next word starts
 * with a lower-case letter (abbreviations such as `b.i.d.` or `mg.`), after a title such as
 * `Dr.`, or when the text since `sentenceStart` is only a list number such as `1.`.
 */
function periodEndsSentence(text: string, index: number, sentenceStart: number): boolean {
  let next = index + 1;
  while (next < text.length && (isSpace(text.charCodeAt(next)) || text[next] === ',')) {
    next++;
  }
  if (next < text.length && isLower(text.charCodeAt(next))) {
    return false;
  }
  if (TITLE_ABBREVIATIONS.has(wordBefore(text, index))) {
    return false;
  }
  const sinceStart = index - sentenceStart <= 8 ? text.slice(sentenceStart, index) : '';
  if (/^[\s,]*(?:\d{1,2}|[A-Za-z])$/.test(sinceStart)) {
    return false;
  }
  return true;
}

// Returns the start of the list number closed by the `)` at `index`, or -1 when it is not one.
// A list number is one or two digits after whitespace or a comma, followed by whitespace.
function listNumberStart(text: string, index: number): number {
  const following = index + 1 < text.length ? text.charCodeAt(index + 1) : 32;
  if (!isSpace(following)) {
    return -1;
  }
  let start = index;
  while (start > 0 && index - start < 2 && isDigit(text.charCodeAt(start - 1))) {
    start--;
  }
  const before = start > 0 ? text.charCodeAt(start - 1) : 32;
  return start < index && (isSpace(before) || before === 44) ? start : -1;
}

function trimmed(text: string, start: number, end: number): Sentence | undefined {
  let s = start;
  let e = end;
  while (s < e && (isSpace(text.charCodeAt(s)) || text[s] === ',')) {
    s++;
  }
  while (e > s && (isSpace(text.charCodeAt(e - 1)) || text[e - 1] === ',')) {
    e--;
  }
  return e > s ? { start: s, end: e } : undefined;
}

// Characters that can end a sentence or mark a list item or a transcribed line break. The
// splitter jumps between them instead of visiting every character.
const BOUNDARY_CANDIDATE = /[.!?\n\r),]/g;

/**
 * Splits text into sentences in one pass. The boundaries of `sections` are honoured so that a
 * heading never shares a sentence with the text before it.
 */
export function splitSentences(text: string, sections: readonly Section[] = []): Sentence[] {
  const sentences: Sentence[] = [];
  // Sections are sorted and do not overlap, so their boundaries are already in order.
  const forced: number[] = [];
  for (const section of sections) {
    forced.push(section.start, section.bodyStart);
  }
  let forcedIndex = 0;
  let sentenceStart = 0;

  const emit = (end: number, nextStart: number): void => {
    const sentence = trimmed(text, sentenceStart, end);
    if (sentence !== undefined) {
      sentences.push(sentence);
    }
    sentenceStart = nextStart;
  };
  const emitForcedUpTo = (offset: number): void => {
    while (forcedIndex < forced.length && (forced[forcedIndex] ?? 0) <= offset) {
      const boundary = forced[forcedIndex] ?? 0;
      if (boundary > sentenceStart) {
        emit(boundary, boundary);
      }
      forcedIndex++;
    }
  };

  const pattern = BOUNDARY_CANDIDATE;
  pattern.lastIndex = 0;
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
    const i = match.index;
    emitForcedUpTo(i);
    const code = text.charCodeAt(i);
    if (code === 10 || code === 13) {
      emit(i, i + 1);
    } else if (code === 46 || code === 63 || code === 33) {
      // period, question mark, exclamation mark
      const following = i + 1 < text.length ? text.charCodeAt(i + 1) : 32;
      const atBoundary = isSpace(following) || following === 44;
      if (atBoundary && (code !== 46 || periodEndsSentence(text, i, sentenceStart))) {
        emit(i + 1, i + 1);
      }
    } else if (code === 41) {
      // A list marker such as `2)` starts a new item.
      const markerStart = listNumberStart(text, i);
      if (markerStart > sentenceStart) {
        emit(markerStart, markerStart);
      }
    } else if (code === 44 && i + 1 < text.length) {
      // A comma glued to a capital letter, or to a digit when no digit precedes it, is a line
      // break in transcribed text. Thousands separators such as 1,000 keep digits on both sides.
      const following = text.charCodeAt(i + 1);
      const previous = i > 0 ? text.charCodeAt(i - 1) : 32;
      if (isUpper(following) || (isDigit(following) && !isDigit(previous))) {
        emit(i, i + 1);
      }
    }
  }
  emitForcedUpTo(text.length);
  emit(text.length, text.length);
  return sentences;
}
