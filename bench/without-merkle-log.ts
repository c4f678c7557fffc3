// Preload for `bench/issuance.ts --without-merkle-log`: replaces the SQLite Merkle log append of
// a single server process with a per-tenant leaf counter. Certificates and audit events still
// get log indexes and are stored as usual, but no leaf is hashed, no node row is written and
// the log head row is not updated. Issuance throughput with and without this preload then
// shows what the Merkle log itself costs. Never load it outside a benchmark: the database it
// leaves has no log, so checkpoints and proofs are wrong.
import type { LogExtension } from '../src/storage/log-append.ts';
import { SqliteLogTables } from '../src/storage/sqlite/log-tables.ts';
import type { LogHeadRow } from '../src/storage/store.ts';

const sizes = new Map<string, number>();
const storedHead = Object.getOwnPropertyDescriptor(SqliteLogTables.prototype, 'head')!
  .value as SqliteLogTables['head'];

SqliteLogTables.prototype.head = function head(this: SqliteLogTables, tenantId: string) {
  const size = sizes.get(tenantId) ?? storedHead.call(this, tenantId).tree_size;
  return { tree_size: size, frontier: '' };
};

SqliteLogTables.prototype.extend = function extend(
  tenantId: string,
  head: LogHeadRow,
  leafTexts: readonly string[],
): LogExtension {
  const size = head.tree_size + leafTexts.length;
  sizes.set(tenantId, size);
  return { head: { tree_size: size, frontier: '' }, nodes: [], firstIndex: head.tree_size };
};
