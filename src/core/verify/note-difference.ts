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
  for (let lf = bytes.indexOf(LF, 1); lf !== -1; lf = bytes.indexOf(LF, lf + 1)) {
    if (bytes[lf - 1] === CR) {
      return true;
    }
  }
  return false;
}

// The conversions copy the runs of bytes between line ends with indexOf and set, because a
// callback or a loop step per byte is slow on a note of several MiB.
function crlfToLf(bytes: Uint8Array): Uint8Array {
  const converted = new Uint8Array(bytes.length);
  let length = 0;
  let start = 0;
  for (let lf = bytes.indexOf(LF, 1); lf !== -1; lf = bytes.indexOf(LF, lf + 1)) {
    if (bytes[lf - 1] === CR) {
      converted.set(bytes.subarray(start, lf - 1), length);
      length += lf - 1 - start;
      start = lf;
    }
  }
  converted.set(bytes.subarray(start), length);
  length += bytes.length - start;
  return converted.subarray(0, length);
}

function lfToCrlf(bytes: Uint8Array): Uint8Array {
  const bareLineFeeds: number[] = [];
  for (let lf = bytes.indexOf(LF); lf !== -1; lf = bytes.indexOf(LF, lf + 1)) {
    if (bytes[lf - 1] !== CR) {
      bareLineFeeds.push(lf);
    }
  }
  const converted = new Uint8Array(bytes.length + bareLineFeeds.length);
  let length = 0;
  let start = 0;
  for (const lf of bareLineFeeds) {
    converted.set(bytes.subarray(start, lf), length);
    length += lf - start;
    converted[length++] = CR;
    start = lf;
  }
  converted.set(bytes.subarray(start), length);
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
  // A plain view, because subarray of a Node Buffer allocates another Buffer, which is slower.
  const bytes =
    typeof note === 'string'
      ? utf8Encode(note)
      : new Uint8Array(note.buffer, note.byteOffset, note.byteLength);
  const adjustments = [
    byteOrderMarkAdjustment(bytes),
    lineEndAdjustment(bytes),
    finalLineEndAdjustment(bytes),
  ].filter((adjustment): adjustment is Adjustment => adjustment !== undefined);

  // Each bit of a mask selects one adjustment, applied in the order above. The text for a mask
  // is the text for the mask without its highest bit, with that adjustment applied, so each
  // combination costs one adjustment. Masks with fewer bits come first, so the hint names the
  // fewest differences.
  const adjusted = new Map<number, Uint8Array>([[0, bytes]]);
  const masks = Array.from({ length: 2 ** adjustments.length - 1 }, (_, index) => index + 1);
  masks.sort((a, b) => bitCount(a) - bitCount(b) || a - b);
  for (const mask of [...masks].sort((a, b) => a - b)) {
    const highest = 31 - Math.clz32(mask);
    adjusted.set(mask, adjustments[highest]!.apply(adjusted.get(mask ^ (1 << highest))!));
  }

  for (const mask of masks) {
    if (sha256Hex(crypto, adjusted.get(mask)!) === expectedHash) {
      const differences = adjustments
        .filter((_, bit) => (mask & (1 << bit)) !== 0)
        .map((adjustment) => adjustment.difference);
      return (
        `The given text is the certified note except that ${joinDifferences(differences)}. ` +
        'The check compares bytes, so give the note exactly as it was certified.'
      );
    }
  }
  return undefined;
}

function bitCount(mask: number): number {
  let count = 0;
  for (let rest = mask; rest !== 0; rest &= rest - 1) {
    count += 1;
  }
  return count;
}

function joinDifferences(differences: string[]): string {
  if (differences.length === 1) {
    return differences[0]!;
  }
  return `${differences.slice(0, -1).join(', ')} and ${differences.at(-1)!}`;
}
