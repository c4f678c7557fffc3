// Explains a note_hash mismatch that comes from how a note file was saved rather than from its
// text: a UTF-8 byte order mark, CRLF or LF line ends, or a final line end. Editors and shell
// commands such as `echo` add or change these without showing them.
import { sha256Hex } from '../certificate.ts';
import type { CryptoProvider } from '../crypto.ts';
import { utf8Encode } from '../encoding.ts';

const BYTE_ORDER_MARK = [0xef, 0xbb, 0xbf];
const CR = 0x0d;
const LF = 0x0a;

/** One way to undo a difference in saving, with the sentence that names the difference. */
interface Adjustment {
  apply(bytes: Uint8Array): Uint8Array;
  difference: string;
}

/** Joins byte arrays. Spreading a large note into Uint8Array.of would overflow the stack. */
function concatBytes(...parts: ArrayLike<number>[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

function startsWithByteOrderMark(bytes: Uint8Array): boolean {
  return BYTE_ORDER_MARK.every((byte, index) => bytes[index] === byte);
}

function byteOrderMarkAdjustment(note: Uint8Array): Adjustment {
  if (startsWithByteOrderMark(note)) {
    return {
      apply: (bytes) => (startsWithByteOrderMark(bytes) ? bytes.subarray(3) : bytes),
      difference:
        'the given text starts with a UTF-8 byte order mark (BOM) that the certified note lacks',
    };
  }
  return {
    apply: (bytes) => concatBytes(BYTE_ORDER_MARK, bytes),
    difference:
      'the certified note starts with a UTF-8 byte order mark (BOM) that the given text lacks',
  };
}

function hasCrlf(bytes: Uint8Array): boolean {
  for (let index = 1; index < bytes.length; index++) {
    if (bytes[index] === LF && bytes[index - 1] === CR) {
      return true;
    }
  }
  return false;
}

function crlfToLf(bytes: Uint8Array): Uint8Array {
  return bytes.filter((byte, index) => !(byte === CR && bytes[index + 1] === LF));
}

function lfToCrlf(bytes: Uint8Array): Uint8Array {
  let bareLineFeeds = 0;
  for (let index = 0; index < bytes.length; index++) {
    if (bytes[index] === LF && bytes[index - 1] !== CR) {
      bareLineFeeds += 1;
    }
  }
  const converted = new Uint8Array(bytes.length + bareLineFeeds);
  let offset = 0;
  for (let index = 0; index < bytes.length; index++) {
    if (bytes[index] === LF && bytes[index - 1] !== CR) {
      converted[offset++] = CR;
    }
    converted[offset++] = bytes[index]!;
  }
  return converted;
}

/** Returns the line-end adjustment, or undefined for a note without line ends. */
function lineEndAdjustment(note: Uint8Array): Adjustment | undefined {
  if (hasCrlf(note)) {
    return {
      apply: crlfToLf,
      difference: 'the given text has CRLF line ends where the certified note has LF',
    };
  }
  if (note.includes(LF)) {
    return {
      apply: lfToCrlf,
      difference: 'the given text has LF line ends where the certified note has CRLF',
    };
  }
  return undefined;
}

function finalLineEndAdjustment(note: Uint8Array): Adjustment {
  if (note.at(-1) === LF) {
    return {
      apply: (bytes) => {
        if (bytes.at(-1) !== LF) {
          return bytes;
        }
        return bytes.subarray(0, bytes.at(-2) === CR ? -2 : -1);
      },
      difference: 'the given text ends with a line end that the certified note lacks',
    };
  }
  return {
    // The added line end follows the note's style after the other adjustments.
    apply: (bytes) => concatBytes(bytes, hasCrlf(bytes) ? [CR, LF] : [LF]),
    difference: 'the certified note ends with a line end that the given text lacks',
  };
}

/**
 * Returns a hint that names the saving differences which, once undone, give `note` the SHA-256
 * `expectedHash` (lower-case hex). Returns undefined when no combination of them explains the
 * mismatch. It hashes the note up to seven more times, so callers run it only after a mismatch.
 */
export function describeNoteDifference(
  crypto: CryptoProvider,
  note: string | Uint8Array,
  expectedHash: string,
): string | undefined {
  const bytes = typeof note === 'string' ? utf8Encode(note) : note;
  const adjustments = [
    byteOrderMarkAdjustment(bytes),
    lineEndAdjustment(bytes),
    finalLineEndAdjustment(bytes),
  ].filter((adjustment): adjustment is Adjustment => adjustment !== undefined);
  // Tries single adjustments before combinations, so the hint names the fewest differences.
  const subsets = Array.from({ length: 2 ** adjustments.length - 1 }, (_, index) => index + 1)
    .map((mask) => adjustments.filter((_, bit) => (mask & (1 << bit)) !== 0))
    .sort((a, b) => a.length - b.length);
  for (const subset of subsets) {
    const adjusted = subset.reduce((current, adjustment) => adjustment.apply(current), bytes);
    if (sha256Hex(crypto, adjusted) === expectedHash) {
      const differences = subset.map((adjustment) => adjustment.difference);
      return (
        `The given text is the certified note except that ${joinDifferences(differences)}. ` +
        'The check compares bytes, so give the note exactly as it was certified.'
      );
    }
  }
  return undefined;
}

function joinDifferences(differences: string[]): string {
  if (differences.length === 1) {
    return differences[0]!;
  }
  return `${differences.slice(0, -1).join(', ')} and ${differences.at(-1)!}`;
}
