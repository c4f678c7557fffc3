// Extends a tenant's Merkle log by a batch of leaves, the part of an append that is the same on
// both engines. It reads nothing but the head row: the frontier contains every hash a new leaf can
// merge with, so an append costs O(log n) hashing and creates about two node rows per leaf.
import { nodeCrypto } from '../core/crypto-node.ts';
import { fromHex, toHex, utf8Encode } from '../core/encoding.ts';
import { appendLeaves, leafHash } from '../core/merkle.ts';
import type { LogHeadRow, LogNodeRow } from './store.ts';

const HASH_HEX_LENGTH = 64;

export interface LogExtension {
  head: LogHeadRow;
  nodes: LogNodeRow[];
  /** Index of the first appended leaf. */
  firstIndex: number;
}

export function decodeFrontier(frontier: string): Uint8Array[] {
  const hashes: Uint8Array[] = [];
  for (let at = 0; at < frontier.length; at += HASH_HEX_LENGTH) {
    hashes.push(fromHex(frontier.slice(at, at + HASH_HEX_LENGTH)));
  }
  return hashes;
}

/** Appends one leaf per text (its UTF-8 bytes are the leaf data) after `head`. */
export function extendLog(head: LogHeadRow, leafTexts: readonly string[]): LogExtension {
  const appended = appendLeaves(
    nodeCrypto,
    decodeFrontier(head.frontier),
    head.tree_size,
    leafTexts.map((text) => leafHash(nodeCrypto, utf8Encode(text))),
  );
  return {
    head: { tree_size: appended.size, frontier: appended.frontier.map(toHex).join('') },
    nodes: appended.nodes.map((node) => ({
      level: node.level,
      node_index: node.index,
      hash: toHex(node.hash),
    })),
    firstIndex: head.tree_size,
  };
}

export const EMPTY_LOG_HEAD: LogHeadRow = { tree_size: 0, frontier: '' };
