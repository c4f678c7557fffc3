// Merkle tree appends, proofs and proof verification, checked against a reference written in
// this file straight from the recursive definitions of RFC 9162 section 2.1 (MTH, PATH and
// PROOF). The reference hashes with node:crypto directly and does not use stored nodes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { toHex } from '../../src/core/encoding.ts';
import { MerkleError, MerkleErrorCode } from '../../src/core/errors.ts';
import {
  appendLeaf,
  appendLeaves,
  buildConsistencyProof,
  buildInclusionProof,
  consistencyProofRefs,
  emptyRoot,
  frontierRefs,
  inclusionProofRefs,
  leafHash,
  maxProofSize,
  MAX_TREE_SIZE,
  nodeHash,
  nodeKey,
  rootFromFrontier,
  verifyConsistency,
  verifyInclusion,
  type NodeRef,
  type NodeSource,
} from '../../src/core/merkle.ts';

const crypto = nodeCrypto;

// ---------------------------------------------------------------------------------------------
// Reference implementation of RFC 9162 section 2.1.

function sha256(...parts: Uint8Array[]): Uint8Array {
  const hash = createHash('sha256');
  for (const part of parts) {
    hash.update(part);
  }
  return new Uint8Array(hash.digest());
}

const referenceLeafHash = (data: Uint8Array) => sha256(Uint8Array.of(0x00), data);
const referenceNodeHash = (left: Uint8Array, right: Uint8Array) =>
  sha256(Uint8Array.of(0x01), left, right);

/** Returns the largest power of two smaller than n, for n > 1. */
function referenceSplit(n: number): number {
  let k = 1;
  while (k * 2 < n) {
    k *= 2;
  }
  return k;
}

/** Leaf hash of every leaf outside a sparse tree's marked indices. */
const DEFAULT_LEAF = referenceLeafHash(new TextEncoder().encode('default leaf'));

/**
 * MTH over leaf ranges [start, end) with memoization. A dense tree has a distinct leaf at every
 * index. A sparse tree has distinct leaves only at `marks` and DEFAULT_LEAF elsewhere, so a
 * power-of-two range without marks has a hash that depends only on its width. That lets the
 * reference compute roots and proofs of trees with up to 2^53 - 1 leaves.
 */
class ReferenceTree {
  readonly #leaf: (index: number) => Uint8Array;
  readonly #marks: readonly number[] | undefined;
  readonly #memo = new Map<string, Uint8Array>();
  readonly #uniform: Uint8Array[] = [DEFAULT_LEAF];

  private constructor(leaf: (index: number) => Uint8Array, marks?: readonly number[]) {
    this.#leaf = leaf;
    this.#marks = marks;
  }

  static dense(leaves: readonly Uint8Array[]): ReferenceTree {
    return new ReferenceTree((index) => leaves[index]!);
  }

  static sparse(marks: readonly number[]): ReferenceTree {
    return new ReferenceTree((index) => sparseLeaf(index, marks), marks);
  }

  /** MTH(D[start:end]). */
  mth(start: number, end: number): Uint8Array {
    const width = end - start;
    if (width === 0) {
      return sha256();
    }
    if (width === 1) {
      return this.#leaf(start);
    }
    const key = `${start}:${end}`;
    let hash = this.#memo.get(key);
    if (hash === undefined) {
      if (this.#marks !== undefined && this.#isUnmarkedPowerOfTwo(start, end)) {
        hash = this.#uniformHash(Math.round(Math.log2(width)));
      } else {
        const k = referenceSplit(width);
        hash = referenceNodeHash(this.mth(start, start + k), this.mth(start + k, end));
      }
      this.#memo.set(key, hash);
    }
    return hash;
  }

  /** PATH(m, D[start:end]) of section 2.1.3.1, with m relative to start. */
  path(m: number, start: number, end: number): Uint8Array[] {
    const n = end - start;
    if (n === 1) {
      return [];
    }
    const k = referenceSplit(n);
    if (m < k) {
      return [...this.path(m, start, start + k), this.mth(start + k, end)];
    }
    return [...this.path(m - k, start + k, end), this.mth(start, start + k)];
  }

  /** PROOF(m, D[n]) of section 2.1.4.1, defined for 0 < m <= n. */
  proof(m: number, n: number): Uint8Array[] {
    return this.#subproof(m, 0, n, true);
  }

  #subproof(m: number, start: number, end: number, b: boolean): Uint8Array[] {
    const n = end - start;
    if (m === n) {
      return b ? [] : [this.mth(start, end)];
    }
    const k = referenceSplit(n);
    if (m <= k) {
      return [...this.#subproof(m, start, start + k, b), this.mth(start + k, end)];
    }
    return [...this.#subproof(m - k, start + k, end, false), this.mth(start, start + k)];
  }

  #isUnmarkedPowerOfTwo(start: number, end: number): boolean {
    const width = end - start;
    const powerOfTwo = 2 ** Math.round(Math.log2(width)) === width;
    return powerOfTwo && !this.#marks!.some((mark) => mark >= start && mark < end);
  }

  #uniformHash(level: number): Uint8Array {
    while (this.#uniform.length <= level) {
      const below = this.#uniform[this.#uniform.length - 1]!;
      this.#uniform.push(referenceNodeHash(below, below));
    }
    return this.#uniform[level]!;
  }
}

function sparseLeaf(index: number, marks: readonly number[]): Uint8Array {
  return marks.includes(index)
    ? referenceLeafHash(new TextEncoder().encode(`leaf ${index}`))
    : DEFAULT_LEAF;
}

/** Sides of the audit path from the leaf up: 'right' when the sibling is to the right. */
function referencePathSides(m: number, n: number): string[] {
  if (n === 1) {
    return [];
  }
  const k = referenceSplit(n);
  return m < k
    ? [...referencePathSides(m, k), 'right']
    : [...referencePathSides(m - k, n - k), 'left'];
}

// ---------------------------------------------------------------------------------------------
// Test data and helpers.

const hexList = (hashes: readonly Uint8Array[]) => hashes.map((hash) => toHex(hash));

function denseLeaves(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) =>
    referenceLeafHash(new TextEncoder().encode(`entry ${i}`)),
  );
}

/** Leaf range covered by a node. */
function refRange(ref: NodeRef): [number, number] {
  const start = ref.index * 2 ** ref.level;
  return [start, start + 2 ** ref.level];
}

/**
 * Builds a node source that serves only the listed refs and records which refs it served. A
 * request for any other node fails the test.
 */
function restrictedSource(
  allowed: readonly NodeRef[],
  lookup: (ref: NodeRef) => Uint8Array | undefined,
): { source: NodeSource; served: Set<string> } {
  const keys = new Set(allowed.map(nodeKey));
  const served = new Set<string>();
  const source = (ref: NodeRef) => {
    assert.ok(keys.has(nodeKey(ref)), `builder read node ${nodeKey(ref)}, which refs do not list`);
    served.add(nodeKey(ref));
    return lookup(ref);
  };
  return { source, served };
}

/** Asserts that every ref is a complete aligned subtree inside a tree of `size` leaves. */
function assertRefsInside(refs: readonly NodeRef[], size: number, label: string): void {
  for (const ref of refs) {
    assert.ok(Number.isSafeInteger(ref.level), `${label}: level ${ref.level}`);
    assert.ok(ref.level >= 0, `${label}: level ${ref.level}`);
    assert.ok(Number.isSafeInteger(ref.index), `${label}: index ${ref.index}`);
    assert.ok(ref.index >= 0, `${label}: index ${ref.index}`);
    assert.ok(refRange(ref)[1] <= size, `${label}: ref ${nodeKey(ref)} ends past ${size}`);
  }
  assert.equal(new Set(refs.map(nodeKey)).size, refs.length, `${label}: duplicate refs`);
}

/** Returns the stored nodes of a tree of `leaves`, as appends produce them. */
function storedNodes(leaves: readonly Uint8Array[]): Map<string, Uint8Array> {
  const { nodes } = appendLeaves(crypto, [], 0, leaves);
  return new Map(nodes.map((node) => [nodeKey(node), node.hash]));
}

/** Node lookup into stored nodes that returns only nodes complete at `size` leaves. */
function nodesAtSize(stored: Map<string, Uint8Array>, size: number) {
  return (ref: NodeRef) => (refRange(ref)[1] <= size ? stored.get(nodeKey(ref)) : undefined);
}

function flipByte(bytes: Uint8Array, position: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[position]! ^= 0x01;
  return copy;
}

/** Yields every proof that differs from `proof` in one byte, one element, or its length. */
function* proofMutations(proof: readonly Uint8Array[]): Generator<[string, Uint8Array[]]> {
  for (let i = 0; i < proof.length; i++) {
    for (let j = 0; j < proof[i]!.length; j++) {
      const mutated = [...proof];
      mutated[i] = flipByte(proof[i]!, j);
      yield [`byte ${j} of element ${i}`, mutated];
    }
    yield [`element ${i} removed`, proof.filter((_, k) => k !== i)];
    yield [`element ${i} duplicated`, [...proof.slice(0, i + 1), ...proof.slice(i)]];
    yield [`element ${i} zeroed`, proof.map((hash, k) => (k === i ? new Uint8Array(32) : hash))];
    yield [`element ${i} 31 bytes`, proof.map((hash, k) => (k === i ? hash.subarray(1) : hash))];
    if (i + 1 < proof.length) {
      const swapped = [...proof];
      [swapped[i], swapped[i + 1]] = [proof[i + 1]!, proof[i]!];
      yield [`elements ${i} and ${i + 1} swapped`, swapped];
    }
  }
  yield ['extra element at the end', [...proof, new Uint8Array(32)]];
  yield ['extra element at the start', [new Uint8Array(32), ...proof]];
}

/** Sparse marks for a proof in a tree of `size` leaves: the edges and the leaves in question. */
function marksFor(size: number, ...indices: number[]): number[] {
  const marks = new Set<number>([0, size - 1, Math.floor(size / 2)]);
  for (const index of indices) {
    for (const near of [index - 1, index, index + 1]) {
      if (near >= 0 && near < size) {
        marks.add(near);
      }
    }
  }
  return [...marks];
}

const LARGE_SIZES = [2 ** 31 + 1, 2 ** 32, 2 ** 40 + 5, 2 ** 52, 2 ** 52 + 3, MAX_TREE_SIZE];

/** Arbitrary (index, size) pairs over the whole supported range, edge sizes included. */
const largeLeafPosition = fc.oneof(
  fc
    .tuple(fc.maxSafeNat(), fc.maxSafeNat())
    .filter(([a, b]) => Math.max(a, b) > 0)
    .map(([a, b]) => {
      const size = Math.max(a, b);
      return { index: Math.min(a, b) === size ? size - 1 : Math.min(a, b), size };
    }),
  fc
    .tuple(fc.constantFrom(...LARGE_SIZES), fc.double({ min: 0, max: 1, noNaN: true }))
    .map(([size, fraction]) => ({ index: Math.min(size - 1, Math.floor(fraction * size)), size })),
);

// ---------------------------------------------------------------------------------------------

// Leaves of the RFC 6962 reference test data. The roots and proofs below were computed with a
// separate recursive implementation of RFC 9162 section 2.1 in Python (hashlib).
const KNOWN_LEAVES = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map((hex) => Uint8Array.from(Buffer.from(hex, 'hex')));

const KNOWN_ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

const KNOWN_INCLUSION = [
  {
    index: 2,
    size: 7,
    proof: [
      '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
      'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
      '837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e',
    ],
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];

const KNOWN_CONSISTENCY = [
  {
    oldSize: 3,
    newSize: 7,
    proof: [
      '0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7',
      '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
      'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
      '837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e',
    ],
  },
  {
    oldSize: 4,
    newSize: 7,
    proof: ['837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e'],
  },
  {
    oldSize: 6,
    newSize: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];

const knownLeafHashes = KNOWN_LEAVES.map((data) => leafHash(crypto, data));
const knownNodes = storedNodes(knownLeafHashes);

void describe('Merkle hashes and roots', () => {
  test('empty and one-leaf roots by hand', () => {
    // SHA-256 of the empty string, and SHA-256 of the single byte 0x00 (an empty leaf).
    const emptyHex = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    const emptyLeafHex = '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d';
    assert.equal(toHex(emptyRoot(crypto)), emptyHex);
    assert.equal(toHex(rootFromFrontier(crypto, [])), emptyHex);
    assert.equal(toHex(sha256(Uint8Array.of(0x00))), emptyLeafHex);
    assert.equal(toHex(leafHash(crypto, new Uint8Array(0))), emptyLeafHex);

    const { frontier, nodes } = appendLeaf(crypto, [], 0, leafHash(crypto, new Uint8Array(0)));
    assert.equal(toHex(rootFromFrontier(crypto, frontier)), emptyLeafHex);
    assert.deepEqual(
      nodes.map((node) => [node.level, node.index, toHex(node.hash)]),
      [[0, 0, emptyLeafHex]],
    );
  });

  test('leaf and node hashes use RFC 9162 prefixes', () => {
    const data = Uint8Array.of(1, 2, 3);
    assert.equal(toHex(leafHash(crypto, data)), toHex(sha256(Uint8Array.of(0, 1, 2, 3))));
    const left = sha256(Uint8Array.of(7));
    const right = sha256(Uint8Array.of(8));
    assert.equal(
      toHex(nodeHash(crypto, left, right)),
      toHex(sha256(Uint8Array.of(1), left, right)),
    );
  });

  test('leaf hashes around the scratch buffer size', () => {
    // Inputs up to 4096 bytes are assembled in one reused buffer, longer ones in their own.
    const data = new Uint8Array(9000);
    for (let i = 0; i < data.length; i++) {
      data[i] = (i * 31 + 7) & 0xff;
    }
    const hashes: Uint8Array[] = [];
    const lengths = [0, 1, 63, 64, 65, 127, 128, 4094, 4095, 4096, 4097, 9000, 3];
    for (const length of lengths) {
      hashes.push(leafHash(crypto, data.subarray(0, length)));
    }
    // Each result is checked after all calls, so a result that shares the reused buffer
    // would show the bytes of a later call.
    lengths.forEach((length, i) => {
      assert.equal(
        toHex(hashes[i]!),
        toHex(referenceLeafHash(data.subarray(0, length))),
        `length ${length}`,
      );
    });
  });

  test('node hashes stay intact after later calls', () => {
    const leaves = Array.from({ length: 6 }, (_, i) => referenceLeafHash(Uint8Array.of(i)));
    const nodes = [];
    for (let i = 0; i + 1 < leaves.length; i++) {
      nodes.push(nodeHash(crypto, leaves[i]!, leaves[i + 1]!));
    }
    nodes.forEach((node, i) => {
      assert.equal(toHex(node), toHex(referenceNodeHash(leaves[i]!, leaves[i + 1]!)), `node ${i}`);
    });
    // A caller's input is never changed.
    assert.equal(toHex(leaves[0]!), toHex(referenceLeafHash(Uint8Array.of(0))));
  });

  test('known-answer roots for eight leaves', () => {
    const reference = ReferenceTree.dense(KNOWN_LEAVES.map(referenceLeafHash));
    let frontier: Uint8Array[] = [];
    for (let size = 0; size <= KNOWN_LEAVES.length; size++) {
      assert.equal(toHex(rootFromFrontier(crypto, frontier)), KNOWN_ROOTS[size], `size ${size}`);
      assert.equal(toHex(reference.mth(0, size)), KNOWN_ROOTS[size], `reference size ${size}`);
      if (size < KNOWN_LEAVES.length) {
        frontier = appendLeaf(crypto, frontier, size, knownLeafHashes[size]!).frontier;
      }
    }
  });

  test('known-answer inclusion proofs', () => {
    for (const { index, size, proof } of KNOWN_INCLUSION) {
      const built = buildInclusionProof(crypto, index, size, knownNodes);
      assert.deepEqual(hexList(built), proof, `index ${index} size ${size}`);
      const root = Uint8Array.from(Buffer.from(KNOWN_ROOTS[size]!, 'hex'));
      assert.ok(verifyInclusion(crypto, knownLeafHashes[index]!, index, size, built, root));
    }
  });

  test('known-answer consistency proofs', () => {
    for (const { oldSize, newSize, proof } of KNOWN_CONSISTENCY) {
      const built = buildConsistencyProof(crypto, oldSize, newSize, knownNodes);
      assert.deepEqual(hexList(built), proof, `${oldSize} to ${newSize}`);
      const oldRoot = Uint8Array.from(Buffer.from(KNOWN_ROOTS[oldSize]!, 'hex'));
      const newRoot = Uint8Array.from(Buffer.from(KNOWN_ROOTS[newSize]!, 'hex'));
      assert.ok(verifyConsistency(crypto, oldSize, newSize, oldRoot, newRoot, built));
    }
  });
});

void describe('appendLeaf', () => {
  test('stores each newly complete node', () => {
    const leaves = denseLeaves(300);
    const reference = ReferenceTree.dense(leaves);
    let frontier: Uint8Array[] = [];
    const seen = new Set<string>();
    for (let size = 0; size < leaves.length; size++) {
      const result = appendLeaf(crypto, frontier, size, leaves[size]!);
      assert.equal(result.size, size + 1);

      // Appending leaf n completes node (L, floor(n / 2^L)) for L = 0 up to the number of
      // trailing one bits of n, and no other node.
      let trailingOnes = 0;
      while (Math.floor(size / 2 ** trailingOnes) % 2 === 1) {
        trailingOnes += 1;
      }
      const expected = Array.from({ length: trailingOnes + 1 }, (_, level) =>
        nodeKey({ level, index: Math.floor(size / 2 ** level) }),
      );
      assert.deepEqual(result.nodes.map(nodeKey), expected, `append at size ${size}`);
      for (const node of result.nodes) {
        const [start, end] = refRange(node);
        assert.equal(toHex(node.hash), toHex(reference.mth(start, end)), `node ${nodeKey(node)}`);
        assert.ok(!seen.has(nodeKey(node)), `node ${nodeKey(node)} stored twice`);
        seen.add(nodeKey(node));
      }

      const refs = frontierRefs(size + 1);
      assert.deepEqual(
        hexList(result.frontier),
        refs.map((ref) => toHex(reference.mth(...refRange(ref)))),
        `frontier at size ${size + 1}`,
      );
      assert.equal(
        toHex(rootFromFrontier(crypto, result.frontier)),
        toHex(reference.mth(0, size + 1)),
        `root at size ${size + 1}`,
      );
      frontier = result.frontier;
    }
    // 300 leaves have 300 + 150 + 75 + 37 + 18 + 9 + 4 + 2 + 1 complete subtrees.
    assert.equal(seen.size, 596);
  });

  test('batch append equals single appends', () => {
    const leaves = denseLeaves(64);
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 64 }), { maxLength: 6 }),
        fc.integer({ min: 0, max: 64 }),
        (cuts, start) => {
          const base = appendLeaves(crypto, [], 0, leaves.slice(0, start));
          const rest = leaves.slice(start);
          const bounds = [...new Set([0, ...cuts.filter((cut) => cut <= rest.length)])].sort(
            (a, b) => a - b,
          );
          bounds.push(rest.length);
          let state = { size: base.size, frontier: base.frontier };
          const batchNodes: string[] = [];
          for (let i = 0; i + 1 < bounds.length; i++) {
            const batch = appendLeaves(
              crypto,
              state.frontier,
              state.size,
              rest.slice(bounds[i], bounds[i + 1]),
            );
            batchNodes.push(...batch.nodes.map((node) => `${nodeKey(node)}=${toHex(node.hash)}`));
            state = batch;
          }
          let single = { size: base.size, frontier: base.frontier };
          const singleNodes: string[] = [];
          for (const leaf of rest) {
            const next = appendLeaf(crypto, single.frontier, single.size, leaf);
            singleNodes.push(...next.nodes.map((node) => `${nodeKey(node)}=${toHex(node.hash)}`));
            single = next;
          }
          assert.equal(state.size, single.size);
          assert.deepEqual(hexList(state.frontier), hexList(single.frontier));
          assert.deepEqual(batchNodes, singleNodes);
        },
      ),
      { numRuns: 100 },
    );
  });

  test('does not modify the given frontier', () => {
    const leaves = denseLeaves(3);
    const { frontier } = appendLeaves(crypto, [], 0, leaves);
    const before = hexList(frontier);
    appendLeaf(crypto, frontier, 3, denseLeaves(4)[3]!);
    assert.deepEqual(hexList(frontier), before);
  });

  test('appends at large sizes', () => {
    for (const size of [2 ** 31 - 1, 2 ** 32 - 1, 2 ** 40 + 5, 2 ** 52 + 3, MAX_TREE_SIZE - 1]) {
      // The appended leaf at index `size` is DEFAULT_LEAF, so every mark lies below it.
      const reference = ReferenceTree.sparse(marksFor(size, size - 1));
      const frontier = frontierRefs(size).map((ref) => reference.mth(...refRange(ref)));
      const result = appendLeaf(crypto, frontier, size, DEFAULT_LEAF);
      assert.equal(result.size, size + 1);
      assert.equal(
        toHex(rootFromFrontier(crypto, result.frontier)),
        toHex(reference.mth(0, size + 1)),
        `root at size ${size + 1}`,
      );
      for (const node of result.nodes) {
        const [start, end] = refRange(node);
        assert.equal(toHex(node.hash), toHex(reference.mth(start, end)), `node ${nodeKey(node)}`);
      }
    }
  });

  test('rejects invalid arguments', () => {
    const leaf = denseLeaves(1)[0]!;
    const hash = new Uint8Array(32);
    const cases: Array<[string, () => unknown]> = [
      ['frontier too short', () => appendLeaf(crypto, [], 1, leaf)],
      ['frontier too long', () => appendLeaf(crypto, [hash, hash], 2, leaf)],
      ['frontier hash of 31 bytes', () => appendLeaf(crypto, [new Uint8Array(31)], 1, leaf)],
      ['leaf of 33 bytes', () => appendLeaf(crypto, [], 0, new Uint8Array(33))],
      ['negative size', () => appendLeaf(crypto, [], -1, leaf)],
      ['fractional size', () => appendLeaf(crypto, [hash], 1.5, leaf)],
      ['unsafe size', () => appendLeaf(crypto, [], 2 ** 53, leaf)],
      ['full tree', () => appendLeaf(crypto, Array(53).fill(hash), MAX_TREE_SIZE, leaf)],
      [
        'batch past the maximum',
        () => appendLeaves(crypto, Array(52).fill(hash), 2 ** 53 - 2, [leaf, leaf]),
      ],
      ['rootFromFrontier with 31 bytes', () => rootFromFrontier(crypto, [new Uint8Array(31)])],
    ];
    for (const [label, call] of cases) {
      assert.throws(call, (error: unknown) => {
        assert.ok(error instanceof MerkleError, label);
        assert.equal(error.code, MerkleErrorCode.INVALID_ARGUMENT, label);
        return true;
      });
    }
  });
});

void describe('inclusion proofs', () => {
  const leaves = denseLeaves(300);
  const reference = ReferenceTree.dense(leaves);
  const stored = storedNodes(leaves);

  test('sizes 1 to 300 match the reference', () => {
    for (let size = 1; size <= 300; size++) {
      const root = reference.mth(0, size);
      let longest = 0;
      for (let index = 0; index < size; index++) {
        const label = `index ${index} size ${size}`;
        const refs = inclusionProofRefs(index, size);
        assertRefsInside(refs, size, label);
        // A source with only the listed refs makes the builder fail on any other node.
        const source = new Map(refs.map((ref) => [nodeKey(ref), stored.get(nodeKey(ref))!]));
        const proof = buildInclusionProof(crypto, index, size, source);
        assert.equal(hexList(proof).join(), hexList(reference.path(index, 0, size)).join(), label);
        assert.ok(verifyInclusion(crypto, leaves[index]!, index, size, proof, root), label);
        longest = Math.max(longest, proof.length);
      }
      assert.equal(maxProofSize(size).inclusionHashes, longest, `longest proof at size ${size}`);
    }
  });

  test('random large sizes match the sparse reference', () => {
    fc.assert(
      fc.property(largeLeafPosition, ({ index, size }) => {
        const reference = ReferenceTree.sparse(marksFor(size, index));
        const refs = inclusionProofRefs(index, size);
        assertRefsInside(refs, size, `index ${index} size ${size}`);
        // At most one proof element covers an incomplete range, tiled by at most log2 n nodes.
        assert.ok(refs.length <= 2 * maxProofSize(size).inclusionHashes);
        const { source, served } = restrictedSource(refs, (ref) => reference.mth(...refRange(ref)));
        const proof = buildInclusionProof(crypto, index, size, source);
        assert.equal(served.size, refs.length, 'a listed ref was not read');
        assert.deepEqual(hexList(proof), hexList(reference.path(index, 0, size)));
        const leaf = sparseLeaf(index, marksFor(size, index));
        assert.ok(verifyInclusion(crypto, leaf, index, size, proof, reference.mth(0, size)));
      }),
      { numRuns: 200 },
    );
  });

  test('named large sizes match the sparse reference', () => {
    for (const size of LARGE_SIZES) {
      const indices = [0, 1, Math.floor(size / 2), size - 2, size - 1];
      const marks = marksFor(size, ...indices);
      const reference = ReferenceTree.sparse(marks);
      for (const index of indices) {
        const label = `index ${index} size ${size}`;
        const refs = inclusionProofRefs(index, size);
        assertRefsInside(refs, size, label);
        const { source, served } = restrictedSource(refs, (ref) => reference.mth(...refRange(ref)));
        const proof = buildInclusionProof(crypto, index, size, source);
        assert.equal(served.size, refs.length, 'a listed ref was not read');
        assert.deepEqual(hexList(proof), hexList(reference.path(index, 0, size)), label);
        const leaf = sparseLeaf(index, marks);
        const root = reference.mth(0, size);
        assert.ok(verifyInclusion(crypto, leaf, index, size, proof, root), label);
      }
    }
  });

  test('every proof mutation fails', () => {
    for (const [index, size] of [
      [0, 1],
      [0, 8],
      [5, 13],
      [6, 7],
      [12, 13],
      [200, 300],
    ] as const) {
      const root = reference.mth(0, size);
      const leaf = leaves[index]!;
      const proof = buildInclusionProof(crypto, index, size, nodesAtSize(stored, size));
      assert.ok(verifyInclusion(crypto, leaf, index, size, proof, root));
      for (const [label, mutated] of proofMutations(proof)) {
        assert.equal(
          verifyInclusion(crypto, leaf, index, size, mutated, root),
          false,
          `index ${index} size ${size}: ${label}`,
        );
      }
      for (let j = 0; j < 32; j++) {
        const message = `index ${index} size ${size}: byte ${j}`;
        assert.equal(
          verifyInclusion(crypto, flipByte(leaf, j), index, size, proof, root),
          false,
          message,
        );
        assert.equal(
          verifyInclusion(crypto, leaf, index, size, proof, flipByte(root, j)),
          false,
          message,
        );
      }
    }
  });

  test('wrong index fails', () => {
    for (const size of [2, 7, 8, 13, 64, 300]) {
      const root = reference.mth(0, size);
      for (let index = 0; index < size; index += Math.max(1, Math.floor(size / 16))) {
        const proof = buildInclusionProof(crypto, index, size, nodesAtSize(stored, size));
        for (let other = 0; other < size + 2; other++) {
          if (other !== index) {
            assert.equal(
              verifyInclusion(crypto, leaves[index]!, other, size, proof, root),
              false,
              `proof of ${index} as ${other} in size ${size}`,
            );
          }
        }
      }
    }
  });

  test('wrong size fails against its root', () => {
    for (const [index, size] of [
      [0, 3],
      [2, 7],
      [4, 5],
      [12, 13],
      [31, 32],
      [100, 257],
    ] as const) {
      const proof = buildInclusionProof(crypto, index, size, nodesAtSize(stored, size));
      for (let other = 0; other <= 300; other++) {
        if (other === size) {
          continue;
        }
        const label = `proof for size ${size} checked as size ${other}`;
        assert.equal(
          verifyInclusion(crypto, leaves[index]!, index, other, proof, reference.mth(0, other)),
          false,
          label,
        );
        // Against the original root, only a size that gives the same path shape can pass,
        // because the verifier combines the same hashes in the same order.
        const sameShape =
          index < other &&
          referencePathSides(index, other).join() === referencePathSides(index, size).join();
        assert.equal(
          verifyInclusion(crypto, leaves[index]!, index, other, proof, reference.mth(0, size)),
          sameShape,
          `${label} against the original root`,
        );
      }
    }
  });

  test('malformed input returns false', () => {
    const size = 13;
    const index = 5;
    const leaf = leaves[index]!;
    const root = reference.mth(0, size);
    const proof = buildInclusionProof(crypto, index, size, nodesAtSize(stored, size));
    const cases: Array<[string, unknown[]]> = [
      ['index equal to size', [leaf, size, size, proof, root]],
      ['negative index', [leaf, -1, size, proof, root]],
      ['fractional index', [leaf, 5.5, size, proof, root]],
      ['NaN index', [leaf, NaN, size, proof, root]],
      ['index as string', [leaf, '5', size, proof, root]],
      ['size 0', [leaf, 0, 0, [], emptyRoot(crypto)]],
      ['size 2^53', [leaf, index, 2 ** 53, proof, root]],
      ['infinite size', [leaf, index, Infinity, proof, root]],
      ['proof not an array', [leaf, index, size, 'proof', root]],
      ['proof null', [leaf, index, size, null, root]],
      ['proof element a string', [leaf, index, size, proof.map(toHex), root]],
      ['sparse proof array', [leaf, index, size, new Array(proof.length), root]],
      ['leaf of 31 bytes', [leaf.subarray(1), index, size, proof, root]],
      ['root of 33 bytes', [leaf, index, size, proof, Uint8Array.of(0, ...root)]],
      ['root undefined', [leaf, index, size, proof, undefined]],
    ];
    for (const [label, args] of cases) {
      const call = verifyInclusion as (...values: unknown[]) => boolean;
      assert.equal(call(crypto, ...args), false, label);
    }
  });

  test('builder rejects bad index and missing nodes', () => {
    assert.throws(() => inclusionProofRefs(5, 5), { code: MerkleErrorCode.INVALID_ARGUMENT });
    assert.throws(() => inclusionProofRefs(0, 0), { code: MerkleErrorCode.INVALID_ARGUMENT });
    assert.throws(() => buildInclusionProof(crypto, -1, 5, stored), {
      code: MerkleErrorCode.INVALID_ARGUMENT,
    });
    assert.throws(
      () => buildInclusionProof(crypto, 0, 5, new Map()),
      (error: unknown) => {
        assert.ok(error instanceof MerkleError);
        assert.equal(error.code, MerkleErrorCode.NODE_NOT_FOUND);
        assert.match(error.message, /node \d+\/\d+ \(leaves \d+ to \d+\) not found/);
        return true;
      },
    );
    const truncated = new Map([...stored].map(([key, hash]) => [key, hash.subarray(1)]));
    assert.throws(() => buildInclusionProof(crypto, 0, 5, truncated), {
      code: MerkleErrorCode.INVALID_ARGUMENT,
    });
  });
});

void describe('consistency proofs', () => {
  const leaves = denseLeaves(300);
  const reference = ReferenceTree.dense(leaves);
  const stored = storedNodes(leaves);

  const referenceProof = (oldSize: number, newSize: number) =>
    oldSize === 0 ? [] : reference.proof(oldSize, newSize);

  test('sizes 0 to 300 match the reference', () => {
    for (let newSize = 0; newSize <= 300; newSize++) {
      const newRoot = reference.mth(0, newSize);
      let longest = 0;
      for (let oldSize = 0; oldSize <= newSize; oldSize++) {
        const label = `${oldSize} to ${newSize}`;
        const refs = consistencyProofRefs(oldSize, newSize);
        assertRefsInside(refs, newSize, label);
        const source = new Map(refs.map((ref) => [nodeKey(ref), stored.get(nodeKey(ref))!]));
        const proof = buildConsistencyProof(crypto, oldSize, newSize, source);
        const expected = referenceProof(oldSize, newSize);
        assert.equal(hexList(proof).join(), hexList(expected).join(), label);
        const oldRoot = reference.mth(0, oldSize);
        assert.ok(verifyConsistency(crypto, oldSize, newSize, oldRoot, newRoot, proof), label);
        longest = Math.max(longest, proof.length);
      }
      assert.equal(maxProofSize(newSize).consistencyHashes, longest, `longest at ${newSize}`);
    }
  });

  test('random large sizes match the sparse reference', () => {
    fc.assert(
      fc.property(largeLeafPosition, ({ index, size }) => {
        const oldSize = index + 1;
        const marks = marksFor(size, index, oldSize);
        const reference = ReferenceTree.sparse(marks);
        const refs = consistencyProofRefs(oldSize, size);
        assertRefsInside(refs, size, `${oldSize} to ${size}`);
        assert.ok(refs.length <= 2 * maxProofSize(size).consistencyHashes);
        const { source, served } = restrictedSource(refs, (ref) => reference.mth(...refRange(ref)));
        const proof = buildConsistencyProof(crypto, oldSize, size, source);
        assert.equal(served.size, refs.length, 'a listed ref was not read');
        assert.deepEqual(hexList(proof), hexList(reference.proof(oldSize, size)));
        const oldRoot = reference.mth(0, oldSize);
        const newRoot = reference.mth(0, size);
        assert.ok(verifyConsistency(crypto, oldSize, size, oldRoot, newRoot, proof));
      }),
      { numRuns: 200 },
    );
  });

  test('named large sizes match the sparse reference', () => {
    for (const newSize of LARGE_SIZES) {
      const oldSizes = [1, 2, 2 ** 20 - 1, Math.floor(newSize / 2), newSize - 1, newSize];
      const reference = ReferenceTree.sparse(marksFor(newSize, ...oldSizes.map((m) => m - 1)));
      for (const oldSize of oldSizes) {
        const label = `${oldSize} to ${newSize}`;
        const refs = consistencyProofRefs(oldSize, newSize);
        assertRefsInside(refs, newSize, label);
        const { source, served } = restrictedSource(refs, (ref) => reference.mth(...refRange(ref)));
        const proof = buildConsistencyProof(crypto, oldSize, newSize, source);
        assert.equal(served.size, refs.length, `${label}: a listed ref was not read`);
        assert.deepEqual(hexList(proof), hexList(reference.proof(oldSize, newSize)), label);
        const oldRoot = reference.mth(0, oldSize);
        const newRoot = reference.mth(0, newSize);
        assert.ok(verifyConsistency(crypto, oldSize, newSize, oldRoot, newRoot, proof), label);
      }
    }
  });

  test('every proof mutation fails', () => {
    for (const [oldSize, newSize] of [
      [1, 2],
      [3, 7],
      [4, 7],
      [6, 8],
      [7, 8],
      [150, 300],
      [255, 256],
      [256, 300],
    ] as const) {
      const oldRoot = reference.mth(0, oldSize);
      const newRoot = reference.mth(0, newSize);
      const proof = buildConsistencyProof(crypto, oldSize, newSize, nodesAtSize(stored, newSize));
      assert.ok(verifyConsistency(crypto, oldSize, newSize, oldRoot, newRoot, proof));
      for (const [label, mutated] of proofMutations(proof)) {
        assert.equal(
          verifyConsistency(crypto, oldSize, newSize, oldRoot, newRoot, mutated),
          false,
          `${oldSize} to ${newSize}: ${label}`,
        );
      }
      for (let j = 0; j < 32; j++) {
        const label = `${oldSize} to ${newSize}: root byte ${j}`;
        const badOld = flipByte(oldRoot, j);
        const badNew = flipByte(newRoot, j);
        assert.equal(
          verifyConsistency(crypto, oldSize, newSize, badOld, newRoot, proof),
          false,
          label,
        );
        assert.equal(
          verifyConsistency(crypto, oldSize, newSize, oldRoot, badNew, proof),
          false,
          label,
        );
      }
    }
  });

  test('wrong sizes fail against their roots', () => {
    for (const [oldSize, newSize] of [
      [1, 2],
      [3, 7],
      [4, 7],
      [6, 8],
      [100, 257],
    ] as const) {
      const proof = buildConsistencyProof(crypto, oldSize, newSize, nodesAtSize(stored, newSize));
      const proofHex = hexList(proof).join();
      for (let other = 1; other <= 300; other++) {
        // A different pair of sizes can pass only if its own proof is the same list of hashes.
        if (other !== oldSize && other <= newSize) {
          const sameProof = hexList(referenceProof(other, newSize)).join() === proofHex;
          assert.equal(
            verifyConsistency(
              crypto,
              other,
              newSize,
              reference.mth(0, other),
              reference.mth(0, newSize),
              proof,
            ),
            sameProof,
            `proof from ${oldSize} checked from ${other} to ${newSize}`,
          );
        }
        if (other !== newSize && other >= oldSize) {
          const sameProof = hexList(referenceProof(oldSize, other)).join() === proofHex;
          assert.equal(
            verifyConsistency(
              crypto,
              oldSize,
              other,
              reference.mth(0, oldSize),
              reference.mth(0, other),
              proof,
            ),
            sameProof,
            `proof to ${newSize} checked from ${oldSize} to ${other}`,
          );
        }
      }
    }
  });

  test('empty old tree and equal sizes', () => {
    const root = reference.mth(0, 10);
    const empty = emptyRoot(crypto);
    assert.ok(verifyConsistency(crypto, 0, 10, empty, root, []));
    assert.ok(verifyConsistency(crypto, 0, 0, empty, empty, []));
    assert.equal(verifyConsistency(crypto, 0, 10, root, root, []), false, 'old root not empty');
    assert.equal(verifyConsistency(crypto, 0, 10, empty, root, [root]), false, 'proof not empty');
    assert.ok(verifyConsistency(crypto, 10, 10, root, root, []));
    assert.equal(verifyConsistency(crypto, 10, 10, root, empty, []), false, 'roots differ');
    assert.equal(verifyConsistency(crypto, 10, 10, root, root, [root]), false, 'proof not empty');
    assert.deepEqual(consistencyProofRefs(0, 10), []);
    assert.deepEqual(consistencyProofRefs(10, 10), []);
    assert.deepEqual(buildConsistencyProof(crypto, 10, 10, new Map()), []);
  });

  test('malformed input returns false', () => {
    const oldRoot = reference.mth(0, 3);
    const newRoot = reference.mth(0, 7);
    const proof = buildConsistencyProof(crypto, 3, 7, nodesAtSize(stored, 7));
    const cases: Array<[string, unknown[]]> = [
      ['old size larger than new size', [7, 3, newRoot, oldRoot, proof]],
      ['negative old size', [-1, 7, oldRoot, newRoot, proof]],
      ['fractional new size', [3, 7.5, oldRoot, newRoot, proof]],
      ['NaN old size', [NaN, 7, oldRoot, newRoot, proof]],
      ['new size 2^53', [3, 2 ** 53, oldRoot, newRoot, proof]],
      ['sizes as strings', ['3', '7', oldRoot, newRoot, proof]],
      ['empty proof', [3, 7, oldRoot, newRoot, []]],
      ['proof not an array', [3, 7, oldRoot, newRoot, {}]],
      ['sparse proof array', [3, 7, oldRoot, newRoot, new Array(proof.length)]],
      [
        'proof element of 31 bytes',
        [3, 7, oldRoot, newRoot, [proof[0]!.subarray(1), ...proof.slice(1)]],
      ],
      ['old root of 31 bytes', [3, 7, oldRoot.subarray(1), newRoot, proof]],
      ['new root null', [3, 7, oldRoot, null, proof]],
    ];
    for (const [label, args] of cases) {
      const call = verifyConsistency as (...values: unknown[]) => boolean;
      assert.equal(call(crypto, ...args), false, label);
    }
  });

  test('builder rejects bad sizes and missing nodes', () => {
    assert.throws(() => consistencyProofRefs(8, 7), { code: MerkleErrorCode.INVALID_ARGUMENT });
    assert.throws(() => consistencyProofRefs(-1, 7), { code: MerkleErrorCode.INVALID_ARGUMENT });
    assert.throws(() => buildConsistencyProof(crypto, 3, 2 ** 53, stored), {
      code: MerkleErrorCode.INVALID_ARGUMENT,
    });
    assert.throws(() => buildConsistencyProof(crypto, 3, 7, new Map()), {
      code: MerkleErrorCode.NODE_NOT_FOUND,
    });
  });
});

void describe('maxProofSize', () => {
  const zeroSource = () => new Uint8Array(32);

  test('bytes are 32 per hash', () => {
    for (const size of [0, 1, 2, 3, 4, 5, 1000, MAX_TREE_SIZE]) {
      const max = maxProofSize(size);
      assert.equal(max.inclusionBytes, 32 * max.inclusionHashes, `size ${size}`);
      assert.equal(max.consistencyBytes, 32 * max.consistencyHashes, `size ${size}`);
    }
    // The exhaustive proof tests above compare the hash counts with the longest proofs.
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((size) => maxProofSize(size).consistencyHashes),
      [0, 0, 1, 2, 3, 4],
    );
  });

  test('large sizes reach the maximum', () => {
    for (const size of [1000, 10 ** 6, 10 ** 9, ...LARGE_SIZES]) {
      const max = maxProofSize(size);
      // The last leaf of the left half of the tree has the longest audit path, and the old size
      // that ends just before that leaf gives the longest consistency proof.
      const half = 2 ** (Math.ceil(Math.log2(size)) - 1);
      const longestPath = buildInclusionProof(crypto, half - 1, size, zeroSource).length;
      assert.equal(longestPath, max.inclusionHashes, `inclusion at size ${size}`);
      const longestConsistency = buildConsistencyProof(crypto, half - 1, size, zeroSource).length;
      assert.equal(longestConsistency, max.consistencyHashes, `consistency at size ${size}`);
      fc.assert(
        fc.property(fc.double({ min: 0, max: 1, noNaN: true }), (fraction) => {
          const index = Math.min(size - 1, Math.floor(fraction * size));
          const inclusion = buildInclusionProof(crypto, index, size, zeroSource);
          const consistency = buildConsistencyProof(crypto, index + 1, size, zeroSource);
          return (
            inclusion.length <= max.inclusionHashes && consistency.length <= max.consistencyHashes
          );
        }),
        { numRuns: 50 },
      );
    }
  });
});
