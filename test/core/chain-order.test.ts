// The chain-order check on generated chains: deletions are reported as missing sequences, two
// swapped certificates as out of order at exactly their log indexes, and a changed link as
// a broken link.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ChainOrderCheck,
  type ChainEntry,
  type ChainPlacement,
} from '../../src/core/chain-order.ts';

/** A chain of `length` certificates, each at the log index of its sequence. */
function chain(length: number): ChainEntry[] {
  return Array.from({ length }, (_, i) => ({
    logIndex: i,
    sequence: i + 1,
    previousHash: i === 0 ? null : `hash-${i}`,
    chainHash: `hash-${i + 1}`,
    leafMatchesNode: true,
    authentic: true,
  }));
}

function placeAll(entries: readonly ChainEntry[], maxTracked = 1000) {
  const check = new ChainOrderCheck(maxTracked);
  const placements = entries.map((entry) => check.place(entry));
  return { placements, result: check.finish() };
}

/** Expands missing runs into the sequences they cover. */
function expand(runs: readonly { first: number; count: number }[]): number[] {
  return runs.flatMap((run) => Array.from({ length: run.count }, (_, i) => run.first + i));
}

test('a complete chain is in order', () => {
  const { placements, result } = placeAll(chain(20));
  assert.ok(placements.every((placement) => placement === 'in_order'));
  assert.deepEqual(result.missing, []);
  assert.equal(result.truncated, false);
  assert.equal(result.lastSequence, 20);
});

test('deleted certificates are missing sequences, and nothing is out of order', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 60 }),
      fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
      (length, keepFlags) => {
        const full = chain(length);
        const kept = full.filter((_, i) => keepFlags[i] || i === length - 1);
        const { placements, result } = placeAll(kept);
        assert.ok(!placements.includes('out_of_order'));
        assert.ok(!placements.includes('link_broken'));
        const deleted = full
          .filter((entry) => !kept.includes(entry))
          .map((entry) => entry.sequence);
        assert.deepEqual(expand(result.missing), deleted);
      },
    ),
  );
});

test('two swapped certificates are out of order at exactly their indexes', () => {
  fc.assert(
    fc.property(
      fc
        .integer({ min: 2, max: 40 })
        .chain((length) =>
          fc.tuple(
            fc.constant(length),
            fc.integer({ min: 0, max: length - 1 }),
            fc.integer({ min: 0, max: length - 1 }),
          ),
        ),
      ([length, first, second]) => {
        fc.pre(first !== second);
        const entries = chain(length);
        const a = entries[first]!;
        const b = entries[second]!;
        // The rows trade log indexes, so each leaf no longer matches the node logged there.
        entries[first] = { ...b, logIndex: first, leafMatchesNode: false };
        entries[second] = { ...a, logIndex: second, leafMatchesNode: false };
        const { placements, result } = placeAll(entries);
        const outOfOrder = placements.flatMap((placement, i) =>
          placement === 'out_of_order' ? [i] : [],
        );
        assert.deepEqual(outOfOrder, [Math.min(first, second), Math.max(first, second)]);
        assert.ok(!placements.includes('link_broken'));
        assert.deepEqual(result.missing, []);
      },
    ),
  );
});

test('a changed previous_hash is a broken link', () => {
  const entries = chain(5);
  entries[3] = { ...entries[3]!, previousHash: 'hash-other' };
  const { placements } = placeAll(entries);
  const expected: ChainPlacement[] = [
    'in_order',
    'in_order',
    'in_order',
    'link_broken',
    'in_order',
  ];
  assert.deepEqual(placements, expected);
});

test('an unreadable certificate keeps its sequence from counting as missing', () => {
  const entries = chain(5);
  const check = new ChainOrderCheck(10);
  for (const entry of entries) {
    if (entry.sequence === 3) {
      check.markPresent(3);
    } else {
      check.place(entry);
    }
  }
  assert.deepEqual(check.finish().missing, []);
});

test('a duplicate sequence is out of order', () => {
  const entries = chain(4);
  const duplicate = { ...entries[1]!, logIndex: 4 };
  const { placements, result } = placeAll([...entries, duplicate]);
  assert.equal(placements[4], 'out_of_order');
  assert.deepEqual(result.missing, []);
});

test('more anomalies than tracked mark the result truncated', () => {
  const entries = chain(30).filter((entry) => entry.sequence % 2 === 0);
  const { result } = placeAll(entries, 5);
  assert.equal(result.truncated, true);
  assert.equal(result.missing.length, 5);
});
