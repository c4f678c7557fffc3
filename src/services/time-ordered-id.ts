import { randomFillSync } from 'node:crypto';

// Identifiers of certificates, audit events and shadow items are UUID version 7 (RFC 9562): 48
// bits of Unix time in milliseconds, then 74 random bits. Each is stored under a unique index.
// A random version 4 identifier puts every insert on a random leaf page of that index. Once the
// index outgrows the page cache, each insert then reads a leaf page and writes it back whole at
// commit, so issuance slowed down as the chain grew. Time-ordered identifiers go to the right
// edge of the index, where one page receives many inserts.

const IDS_PER_FILL = 256;
const RANDOM_BYTES_PER_ID = 10;
const pool = Buffer.alloc(IDS_PER_FILL * RANDOM_BYTES_PER_ID);
let poolOffset = pool.length;

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

/** Largest millisecond time that fits in the 48-bit field. */
const MAX_TIME_MS = 2 ** 48 - 1;

/**
 * A UUID version 7 string (lower-case hex with hyphens) whose time field is `timeMs`, a Unix
 * time in milliseconds. Its random bits come from a buffer refilled by the operating system's
 * secure generator every 256 identifiers.
 */
export function timeOrderedUuid(timeMs: number): string {
  if (!Number.isSafeInteger(timeMs) || timeMs < 0 || timeMs > MAX_TIME_MS) {
    throw new RangeError(
      `invalid UUID time ${timeMs}: expected an integer from 0 to ${MAX_TIME_MS} ms`,
    );
  }
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const offset = poolOffset;
  poolOffset += RANDOM_BYTES_PER_ID;
  // The high 16 bits and low 32 bits of the time, computed without 32-bit bitwise overflow.
  const high = Math.floor(timeMs / 2 ** 32);
  const low = timeMs % 2 ** 32;
  return (
    HEX[(high >>> 8) & 0xff]! +
    HEX[high & 0xff]! +
    HEX[(low >>> 24) & 0xff]! +
    HEX[(low >>> 16) & 0xff]! +
    '-' +
    HEX[(low >>> 8) & 0xff]! +
    HEX[low & 0xff]! +
    '-' +
    HEX[0x70 | (pool[offset]! & 0x0f)]! +
    HEX[pool[offset + 1]!]! +
    '-' +
    HEX[0x80 | (pool[offset + 2]! & 0x3f)]! +
    HEX[pool[offset + 3]!]! +
    '-' +
    HEX[pool[offset + 4]!]! +
    HEX[pool[offset + 5]!]! +
    HEX[pool[offset + 6]!]! +
    HEX[pool[offset + 7]!]! +
    HEX[pool[offset + 8]!]! +
    HEX[pool[offset + 9]!]!
  );
}
