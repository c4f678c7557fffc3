// Checks that a tenant's certificates appear in its Merkle log in chain order: walked in log
// order, each certificate should carry the next chain sequence and link to the chain hash of
// the certificate before it. The check keeps O(1) state per certificate walked, plus the
// anomalies it has seen, so whole-ledger verification can stream a log of any size through it.
//
// Two stored facts tell a moved certificate from a deleted one. The level-0 node at a log index
// records the leaf hash that was appended there, so an authentic certificate whose leaf hash
// differs from that node, and which does not follow the certificate before it, was moved. A
// sequence that the walk skipped and never meets elsewhere was deleted.

/** One certificate leaf in log order, as the ledger verifier read it. */
export interface ChainEntry {
  logIndex: number;
  /** Signed chain_sequence. */
  sequence: number;
  /** Signed previous_hash: the chain hash of the predecessor, or null for the first. */
  previousHash: string | null;
  /** Signed chain_hash. */
  chainHash: string;
  /** Whether the leaf hash of the stored signed bytes equals the stored level-0 node. */
  leafMatchesNode: boolean;
  /** Whether the signature over the stored signed bytes verifies with the tenant's key. */
  authentic: boolean;
}

/**
 * Position of a certificate in the chain, relative to the certificates before it in the log:
 * - `in_order`: it carries the next sequence and links to the chain hash before it.
 * - `after_gap`: it carries a later sequence than the next one. The skipped sequences count as
 *   deleted unless the walk meets them elsewhere.
 * - `link_broken`: it carries the next sequence but its previous_hash is not the chain hash of
 *   the certificate before it.
 * - `out_of_order`: it belongs at another place in the log.
 */
export type ChainPlacement = 'in_order' | 'after_gap' | 'out_of_order' | 'link_broken';

/** Chain sequences that no certificate in the log carries. */
export interface MissingSequences {
  first: number;
  count: number;
  /** Log index of the certificate found after the gap. */
  foundAtLogIndex: number;
}

export interface ChainOrderResult {
  missing: MissingSequences[];
  /** Whether more anomalies occurred than the check tracks, so `missing` may be incomplete. */
  truncated: boolean;
  /** Signed sequence of the last certificate in chain order, 0 when there is none. */
  lastSequence: number;
}

interface Link {
  sequence: number;
  chainHash: string | null;
}

const GENESIS: Link = { sequence: 0, chainHash: null };

function follows(previous: Link, entry: ChainEntry): boolean {
  return entry.sequence === previous.sequence + 1 && entry.previousHash === previous.chainHash;
}

/**
 * Places certificates, given one by one in log order, in their chain. Anomalies are tracked up
 * to `maxTracked` gaps and `maxTracked` misplaced sequences. Beyond that the result is marked
 * truncated, because a misplaced certificate that is no longer tracked can make a gap look like
 * a deletion.
 */
export class ChainOrderCheck {
  readonly #maxTracked: number;
  #lastInOrder: Link = GENESIS;
  #lastSeen: Link = GENESIS;
  readonly #gaps: MissingSequences[] = [];
  readonly #misplaced = new Set<number>();
  #truncated = false;

  constructor(maxTracked: number) {
    this.#maxTracked = maxTracked;
  }

  /** Places the next certificate leaf in log order. */
  place(entry: ChainEntry): ChainPlacement {
    const previous = this.#lastSeen;
    this.#lastSeen = { sequence: entry.sequence, chainHash: entry.chainHash };
    // A certificate with a valid signature whose leaf is not the one logged at its index, and
    // that does not follow its neighbour, was moved there from another index.
    if (!entry.leafMatchesNode && entry.authentic && !follows(previous, entry)) {
      this.#markMisplaced(entry.sequence);
      return 'out_of_order';
    }
    const last = this.#lastInOrder;
    if (entry.sequence === last.sequence + 1) {
      this.#lastInOrder = this.#lastSeen;
      return entry.previousHash === last.chainHash ? 'in_order' : 'link_broken';
    }
    if (entry.sequence > last.sequence + 1) {
      this.#recordGap({
        first: last.sequence + 1,
        count: entry.sequence - last.sequence - 1,
        foundAtLogIndex: entry.logIndex,
      });
      this.#lastInOrder = this.#lastSeen;
      return 'after_gap';
    }
    this.#markMisplaced(entry.sequence);
    return 'out_of_order';
  }

  /**
   * Records a certificate whose signed message could not be read, by its stored sequence, so
   * that its sequence does not count as deleted.
   */
  markPresent(sequence: number): void {
    this.#markMisplaced(sequence);
  }

  /** Returns the sequences that no certificate carried, with misplaced ones taken out. */
  finish(): ChainOrderResult {
    const misplaced = [...this.#misplaced].sort((a, b) => a - b);
    const missing: MissingSequences[] = [];
    for (const gap of this.#gaps) {
      const end = gap.first + gap.count;
      let next = gap.first;
      for (const sequence of misplaced) {
        if (sequence < next || sequence >= end) {
          continue;
        }
        if (sequence > next) {
          missing.push({
            first: next,
            count: sequence - next,
            foundAtLogIndex: gap.foundAtLogIndex,
          });
        }
        next = sequence + 1;
      }
      if (next < end) {
        missing.push({ first: next, count: end - next, foundAtLogIndex: gap.foundAtLogIndex });
      }
    }
    return { missing, truncated: this.#truncated, lastSequence: this.#lastInOrder.sequence };
  }

  #recordGap(gap: MissingSequences): void {
    if (this.#gaps.length >= this.#maxTracked) {
      this.#truncated = true;
      return;
    }
    this.#gaps.push(gap);
  }

  #markMisplaced(sequence: number): void {
    if (this.#misplaced.size >= this.#maxTracked) {
      this.#truncated = true;
      return;
    }
    this.#misplaced.add(sequence);
  }
}
