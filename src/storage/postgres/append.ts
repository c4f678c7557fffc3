// Certificate batch append for PgStore. One transaction appends the items of one or more
// tenants, one group of items per tenant. It sends at most 15 statements whatever the number of
// tenants and items, pipelined in two round trips, and holds the chain head locks for those two:
//
//   1. BEGIN, bound the lock wait (SET LOCAL statement_timeout), create the missing log heads,
//      shorten the bound by the time that took, lock the chain heads and log heads, end the
//      bound, read the active keys, look up the idempotency keys.
//   2. Insert the keys, the certificates, the audit events and the log nodes (one multi-row
//      INSERT each), update the log heads and the chain heads (one UPDATE each), COMMIT.
//
// Each statement covers every tenant of the append, because its array parameters carry the
// tenant id of each row. For one tenant, some statements use another text with the same values
// (see tenant-sql.ts). One statement locks every tenant's chain head and then its log head, in
// tenant_id order, so transactions whose tenant sets overlap wait for each other and cannot
// deadlock.
//
// PostgreSQL applies lock_timeout to each lock a statement waits for, not to the statement. A
// session queued behind another waiter for the same row first waits for the row's tuple lock,
// which that waiter holds until it gives up. Then it waits for the holder, with a new timeout.
// Appends for one held tenant from several processes queue like that, so some failed only after
// twice the lock timeout. The lock phase therefore runs under a statement_timeout that bounds
// all of its lock waits together (see lock-wait.ts), and both timeouts raise HeadsLockedError.
//
// The items are sealed in between, in this process. Each round trip is one write on the socket
// (see pipeline.ts). The active keys and idempotency keys are read by statements of their own
// after the lock, not joined to it. A statement that waits for a row lock keeps the snapshot it
// started with for every row except those it locks, which FOR UPDATE returns in their latest
// committed version. Each statement after the lock takes a new snapshot under READ COMMITTED,
// which includes whatever the previous holder of a lock committed: a key rotation or an
// idempotency key.
//
// For small batches, most of PostgreSQL's cost is per statement and per commit, so its CPU per
// certificate falls with the number of certificates per transaction, whichever tenants they belong
// to. In bench/append.ts on a 2-core machine, durability off, one certificate for each of 50
// tenants in one transaction cost PostgreSQL 82 to 85 µs per certificate, 50 certificates of one
// tenant 47 µs, and a one-certificate transaction 402 to 502 µs (docs/benchmarks.md, "Several
// tenants in one transaction"). Those figures predate the joined lock statement.
import type pg from 'pg';
import { extendLog } from '../log-append.ts';
import type {
  AppendGroup,
  AppendItem,
  AppendResult,
  AuditEventRow,
  CertificateRow,
  LogHeadRow,
  Sealer,
} from '../store.ts';
import { toCertificate, type RawCertificate } from '../certificate-row.ts';
import { END_LOCK_WAIT, isLockWaitEnded, remainingLockWait, startLockWait } from './lock-wait.ts';
import { sendAuditEvents, sendLogExtensions } from './log-queries.ts';
import { sendTogether, settleInOrder } from './pipeline.ts';
import { tenantQuery, type TenantStatement } from './tenant-sql.ts';

interface ChainHead {
  chain_sequence: number;
  chain_hash: string | null;
}

/** A tenant's chain head and log head as the lock statement returns them. */
interface LockedHeads {
  tenant_id: string;
  chain_sequence: number;
  chain_hash: string | null;
  tree_size: number;
  frontier: string;
}

/**
 * Creates an empty log head for each tenant that has a chain head but no log head yet, in
 * tenant_id order, and returns the tenants that have a chain head. A tenant that is missing from
 * the result does not exist or was moved away, and the append fails. Tenants created through the
 * service get their log head with their creation event, so this inserts rows only for tenants
 * created before the log existed.
 *
 * An insert waits for another transaction that inserts the same log head. That wait counts
 * against the bound of the lock phase, so the lock statement after it gets only what is left.
 */
const ENSURE_LOG_HEADS: TenantStatement = {
  single: {
    name: 'cdil_ensure_log_head',
    text: `WITH present AS (
        SELECT tenant_id FROM chain_heads WHERE tenant_id = ($1::text[])[1]
      ), created AS (
        INSERT INTO log_heads (tenant_id, tree_size, frontier)
        SELECT tenant_id, 0, '' FROM present ON CONFLICT (tenant_id) DO NOTHING
      )
      SELECT tenant_id FROM present`,
  },
  several: {
    name: 'cdil_ensure_log_heads',
    text: `WITH present AS (
        SELECT tenant_id FROM chain_heads WHERE tenant_id = ANY($1::text[])
      ), created AS (
        INSERT INTO log_heads (tenant_id, tree_size, frontier)
        SELECT tenant_id, 0, '' FROM present ORDER BY tenant_id ON CONFLICT (tenant_id) DO NOTHING
      )
      SELECT tenant_id FROM present`,
  },
};

// FOR UPDATE locks both rows of each joined row, the chain head first. ORDER BY applies before
// FOR UPDATE, so the tenants are locked in tenant_id order.
const LOCK_HEADS: TenantStatement = {
  single: {
    name: 'cdil_lock_heads',
    text: `SELECT c.tenant_id, c.chain_sequence, c.chain_hash, l.tree_size, l.frontier
      FROM chain_heads c JOIN log_heads l ON l.tenant_id = c.tenant_id
      WHERE c.tenant_id = ($1::text[])[1] FOR UPDATE`,
  },
  several: {
    name: 'cdil_lock_heads_several',
    text: `SELECT c.tenant_id, c.chain_sequence, c.chain_hash, l.tree_size, l.frontier
      FROM chain_heads c JOIN log_heads l ON l.tenant_id = c.tenant_id
      WHERE c.tenant_id = ANY($1::text[]) ORDER BY c.tenant_id FOR UPDATE`,
  },
};

/**
 * The multi-tenant lock that leaves out each tenant whose chain head or log head another
 * transaction has locked.
 */
const LOCK_AVAILABLE_HEADS: pg.QueryConfig = {
  name: 'cdil_lock_available_heads',
  text: `SELECT c.tenant_id, c.chain_sequence, c.chain_hash, l.tree_size, l.frontier
    FROM chain_heads c JOIN log_heads l ON l.tenant_id = c.tenant_id
    WHERE c.tenant_id = ANY($1::text[]) ORDER BY c.tenant_id FOR UPDATE SKIP LOCKED`,
};

/**
 * Maximum wait of a multi-tenant append, or of one with leaveOutLocked, for its tenants' heads.
 * Another append keeps a head locked for the milliseconds of its commit. A longer wait means
 * that a tenant is locked for long (a stalled process, an operator's lock). The append then
 * starts again without waiting for locked heads, so that one tenant does not stall the others.
 */
export const MULTI_TENANT_LOCK_WAIT_MS = 250;

/**
 * Raised when an append waited its whole bound for its tenants' chain heads and log heads:
 * MULTI_TENANT_LOCK_WAIT_MS for several tenants or with leaveOutLocked, and otherwise, or when
 * locked heads are skipped, the lock timeout. Nothing was stored.
 */
export class HeadsLockedError extends Error {
  override readonly name = 'HeadsLockedError';
}

const SELECT_ACTIVE_KEYS: TenantStatement = {
  single: {
    name: 'cdil_select_active_key',
    text: "SELECT tenant_id, key_id FROM signing_keys WHERE tenant_id = ($1::text[])[1] AND status = 'active'",
  },
  several: {
    name: 'cdil_select_active_keys',
    text: "SELECT tenant_id, key_id FROM signing_keys WHERE tenant_id = ANY($1::text[]) AND status = 'active'",
  },
};

// Not prepared by name: `c.*` would fail in a prepared statement after a migration adds a column.
// $1 and $2 are parallel arrays: the tenant id and the key of each (tenant, key) pair.
const SELECT_STORED_KEYS = {
  single: `SELECT k.tenant_id AS stored_tenant_id, k.idempotency_key AS stored_key,
      k.request_hash AS stored_request_hash, c.*
    FROM idempotency_keys k
    LEFT JOIN certificates c ON c.tenant_id = k.tenant_id AND c.certificate_id = k.certificate_id
    WHERE k.tenant_id = ($1::text[])[1] AND k.idempotency_key = ANY($2::text[])`,
  several: `SELECT k.tenant_id AS stored_tenant_id, k.idempotency_key AS stored_key,
      k.request_hash AS stored_request_hash, c.*
    FROM unnest($1::text[], $2::text[]) AS r (tenant_id, idempotency_key)
    JOIN idempotency_keys k ON k.tenant_id = r.tenant_id AND k.idempotency_key = r.idempotency_key
    LEFT JOIN certificates c ON c.tenant_id = k.tenant_id AND c.certificate_id = k.certificate_id`,
};

// No ON CONFLICT: a key that exists although the lookup after the lock did not find it was
// inserted by a writer that bypassed the lock, and the unique violation aborts the append, which
// appendGroups's caller retries (see isKeyClaimedConcurrently).
const INSERT_IDEMPOTENCY_KEYS = {
  name: 'cdil_insert_idempotency_keys',
  text: `INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, certificate_id, created_at)
    SELECT tenant_id, idempotency_key, request_hash, certificate_id, $5
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
      AS k (tenant_id, idempotency_key, request_hash, certificate_id)`,
};

// One array parameter per column, so a batch of any size is one statement with one prepared plan.
const INSERT_CERTIFICATES = {
  name: 'cdil_insert_certificates',
  text: `INSERT INTO certificates (tenant_id, chain_sequence, certificate_id, issued_at_utc, model_version,
      governance_policy_version, human_reviewed, chain_hash, previous_hash, key_id, signed_message, signature,
      log_index, timestamp_token)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
      $7::integer[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::text[])`,
};

// array_position finds a tenant's first entry, so the tenant ids of one update must differ
// (see checkDistinctTenants).
const UPDATE_CHAIN_HEADS: TenantStatement = {
  single: {
    name: 'cdil_update_chain_head',
    text: `UPDATE chain_heads SET chain_sequence = ($2::bigint[])[1], chain_hash = ($3::text[])[1]
      WHERE tenant_id = ($1::text[])[1]`,
  },
  several: {
    name: 'cdil_update_chain_heads',
    text: `UPDATE chain_heads
      SET chain_sequence = ($2::bigint[])[array_position($1::text[], tenant_id)],
        chain_hash = ($3::text[])[array_position($1::text[], tenant_id)]
      WHERE tenant_id = ANY($1::text[])`,
  },
};

const UNIQUE_VIOLATION = '23505';

/**
 * Returns whether `error` is the unique violation of an idempotency key that another writer
 * inserted during the append. Retrying the append then replays or rejects that key's item.
 */
export function isKeyClaimedConcurrently(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error as { code?: unknown }).code === UNIQUE_VIOLATION &&
    (error as pg.DatabaseError).table === 'idempotency_keys'
  );
}

/** A stored idempotency key: the request hash it was first used with and its certificate. */
interface StoredKey {
  requestHash: string;
  /** Undefined when the key's certificate is missing, which makes every repeat a conflict. */
  row: CertificateRow | undefined;
}

/** An idempotency key to insert with a new certificate. */
interface KeyClaim {
  tenantId: string;
  key: string;
  requestHash: string;
  certificateId: string;
}

/** One tenant's state, read under the locks in round trip 1. */
interface LockedState {
  head: ChainHead;
  logHead: LogHeadRow;
  activeKeyId: string | undefined;
  storedKeys: Map<string, StoredKey>;
}

/** Everything round trip 2 writes for one tenant, and the result of each item in item order. */
interface SealedBatch {
  tenantId: string;
  results: AppendResult[];
  created: CertificateRow[];
  claims: KeyClaim[];
  auditEvents: AuditEventRow[];
  logHead: LogHeadRow;
  leaves: string[];
}

type StoredKeyRow = RawCertificate & {
  stored_tenant_id: string;
  stored_key: string;
  stored_request_hash: string;
};

/** Returns each tenant's stored keys by tenant id. */
function indexStoredKeys(rows: StoredKeyRow[]): Map<string, Map<string, StoredKey>> {
  const byTenant = new Map<string, Map<string, StoredKey>>();
  for (const row of rows) {
    const {
      stored_tenant_id: tenantId,
      stored_key: key,
      stored_request_hash: requestHash,
      ...certificate
    } = row;
    // The LEFT JOIN yields NULL certificate columns when the key's certificate is missing.
    const stored = certificate.certificate_id === null ? undefined : toCertificate(certificate);
    let keys = byTenant.get(tenantId);
    if (!keys) {
      keys = new Map();
      byTenant.set(tenantId, keys);
    }
    keys.set(key, { requestHash, row: stored });
  }
  return byTenant;
}

function replayOutcome(stored: StoredKey, item: AppendItem): AppendResult {
  if (stored.requestHash !== item.requestHash) {
    return { kind: 'conflict' };
  }
  return stored.row ? { kind: 'replayed', row: stored.row } : { kind: 'conflict' };
}

/** Lists the distinct (tenant, idempotency key) pairs of the groups, as two parallel arrays. */
function idempotencyKeyColumns(groups: readonly AppendGroup<AppendItem>[]): [string[], string[]] {
  const tenantIds: string[] = [];
  const keys: string[] = [];
  for (const { tenantId, items } of groups) {
    const distinct = new Set<string>();
    for (const item of items) {
      if (item.idempotencyKey !== undefined) {
        distinct.add(item.idempotencyKey);
      }
    }
    for (const key of distinct) {
      tenantIds.push(tenantId);
      keys.push(key);
    }
  }
  return [tenantIds, keys];
}

/** Returns the error of an append that names tenants without a chain head. */
function noChainHead(tenantIds: readonly string[]): Error {
  return tenantIds.length === 1
    ? new Error(`tenant ${tenantIds[0]} has no chain head`)
    : new Error(`tenants ${tenantIds.join(', ')} have no chain head`);
}

/** Lock settings of one append attempt (see lockAndRead). */
interface LockOptions {
  skipLocked: boolean;
  /** Bound of the whole lock wait, in ms. */
  lockWaitMs: number;
}

/**
 * Round trip 1: begins the transaction, locks the chain heads and the log heads, and reads the
 * active keys and the stored idempotency keys when the items need them. Returns each tenant's
 * state by tenant id. The whole lock wait is bounded by `lockWaitMs`, and raises
 * HeadsLockedError when it runs out. With `skipLocked` it does not wait for locked heads: a
 * tenant whose chain head or log head another transaction has locked is skipped and has no
 * state. Throws when a tenant has no chain head.
 */
async function lockAndRead(
  client: pg.PoolClient,
  groups: readonly AppendGroup<AppendItem>[],
  options: LockOptions,
): Promise<Map<string, LockedState>> {
  const { skipLocked } = options;
  const tenantIds = groups.map((group) => group.tenantId);
  const [keyTenantIds, keys] = idempotencyKeyColumns(groups);
  const keyTenants = groups
    .filter((group) => group.items.some((item) => item.signingKeyId !== undefined))
    .map((group) => group.tenantId);
  // Held heads are skipped, or waited for within one bound.
  const waitMs = options.lockWaitMs;
  const sent = sendTogether(client, () => {
    const begun = client.query('BEGIN');
    const bounded = client.query(startLockWait(waitMs));
    const present = client.query<{ tenant_id: string }>(
      tenantQuery(ENSURE_LOG_HEADS, tenantIds.length, [tenantIds]),
    );
    const shortened = client.query(remainingLockWait(waitMs));
    const locked = client.query<LockedHeads>(
      skipLocked
        ? { ...LOCK_AVAILABLE_HEADS, values: [tenantIds] }
        : tenantQuery(LOCK_HEADS, tenantIds.length, [tenantIds]),
    );
    // Back to the session's setting, so that the writes and the COMMIT have no such limit.
    const restored = client.query(END_LOCK_WAIT);
    const activeKeys =
      keyTenants.length === 0
        ? undefined
        : client.query<{ tenant_id: string; key_id: string }>(
            tenantQuery(SELECT_ACTIVE_KEYS, keyTenants.length, [keyTenants]),
          );
    const storedKeys =
      keys.length === 0
        ? undefined
        : client.query<StoredKeyRow>(
            new Set(keyTenantIds).size === 1
              ? SELECT_STORED_KEYS.single
              : SELECT_STORED_KEYS.several,
            [keyTenantIds, keys],
          );
    return { begun, bounded, present, shortened, locked, restored, activeKeys, storedKeys };
  });
  const { begun, bounded, present, shortened, locked, restored, activeKeys, storedKeys } = sent;
  const statements: Promise<unknown>[] = [begun, bounded, present, shortened, locked, restored];
  for (const optional of [activeKeys, storedKeys]) {
    if (optional) {
      statements.push(optional);
    }
  }
  // Every reply is read and every rejection handled before the checks below.
  await Promise.allSettled(statements);
  try {
    await settleInOrder([begun, bounded, present, shortened, locked]);
  } catch (error) {
    if (isLockWaitEnded(error)) {
      throw new HeadsLockedError(
        `a chain head or log head stayed locked by another transaction for ${waitMs} ms`,
        { cause: error },
      );
    }
    throw error;
  }
  const presentIds = new Set((await present).rows.map((row) => row.tenant_id));
  const absent = tenantIds.filter((tenantId) => !presentIds.has(tenantId));
  if (absent.length > 0) {
    throw noChainHead(absent);
  }
  const heads = new Map((await locked).rows.map((row) => [row.tenant_id, row]));
  if (!skipLocked) {
    // The lock waited for every row, so a missing one was deleted meanwhile.
    const deleted = tenantIds.filter((tenantId) => !heads.has(tenantId));
    if (deleted.length > 0) {
      throw noChainHead(deleted);
    }
  }
  await settleInOrder(statements);
  const activeKeyIds = new Map(
    ((await activeKeys)?.rows ?? []).map((row) => [row.tenant_id, row.key_id]),
  );
  const storedByTenant = indexStoredKeys((await storedKeys)?.rows ?? []);
  const states = new Map<string, LockedState>();
  for (const tenantId of tenantIds) {
    const row = heads.get(tenantId);
    if (row === undefined) {
      continue;
    }
    states.set(tenantId, {
      head: { chain_sequence: row.chain_sequence, chain_hash: row.chain_hash },
      logHead: { tree_size: Number(row.tree_size), frontier: row.frontier },
      activeKeyId: activeKeyIds.get(tenantId),
      storedKeys: storedByTenant.get(tenantId) ?? new Map<string, StoredKey>(),
    });
  }
  return states;
}

/**
 * Decides each item's outcome in item order and seals the new certificates after the tenant's
 * locked head, as appending the items one at a time would. An item whose key is stored, or
 * repeats a key of an earlier item of the group, is replayed or a conflict, and an item for a key
 * that is not active gets `key_inactive`. Each certificate's log leaf is followed by its audit
 * event's. Throws when `seal` returns a certificate of another tenant.
 */
function sealBatch<T extends AppendItem>(
  group: AppendGroup<T>,
  state: LockedState,
  seal: Sealer<T>,
): SealedBatch {
  const { tenantId, items } = group;
  let sequence = state.head.chain_sequence;
  let previousHash = state.head.chain_hash;
  const known = state.storedKeys;
  const batch: SealedBatch = {
    tenantId,
    results: [],
    created: [],
    claims: [],
    auditEvents: [],
    logHead: state.logHead,
    leaves: [],
  };
  for (const item of items) {
    const key = item.idempotencyKey;
    const stored = key === undefined ? undefined : known.get(key);
    if (stored) {
      batch.results.push(replayOutcome(stored, item));
      continue;
    }
    if (item.signingKeyId !== undefined && item.signingKeyId !== state.activeKeyId) {
      batch.results.push({ kind: 'key_inactive', activeKeyId: state.activeKeyId });
      continue;
    }
    const row = seal(item, { sequence: sequence + 1, previousHash });
    if (row.tenant_id !== tenantId) {
      throw new Error(
        `sealer returned a certificate for tenant ${row.tenant_id} in the group of tenant ${tenantId}`,
      );
    }
    row.log_index = state.logHead.tree_size + batch.leaves.length;
    row.timestamp_token ??= null;
    batch.leaves.push(row.signed_message);
    if (item.auditEvent) {
      const event = item.auditEvent(row);
      batch.auditEvents.push({
        ...event,
        tenant_id: tenantId,
        log_index: state.logHead.tree_size + batch.leaves.length,
      });
      batch.leaves.push(event.event_json);
    }
    if (key !== undefined) {
      // The key is stored with the request hash the claim inserts, so a repeat later in the group
      // compares as it would against the stored row.
      const requestHash = item.requestHash ?? '';
      known.set(key, { requestHash, row });
      batch.claims.push({ tenantId, key, requestHash, certificateId: row.certificate_id });
    }
    batch.created.push(row);
    batch.results.push({ kind: 'created', row });
    sequence = row.chain_sequence;
    previousHash = row.chain_hash;
  }
  return batch;
}

/** Builds the column arrays of INSERT_CERTIFICATES, in column order. */
function certificateColumns(rows: readonly CertificateRow[]): unknown[][] {
  return [
    rows.map((row) => row.tenant_id),
    rows.map((row) => row.chain_sequence),
    rows.map((row) => row.certificate_id),
    rows.map((row) => row.issued_at_utc),
    rows.map((row) => row.model_version),
    rows.map((row) => row.governance_policy_version),
    rows.map((row) => (row.human_reviewed ? 1 : 0)),
    rows.map((row) => row.chain_hash),
    rows.map((row) => row.previous_hash),
    rows.map((row) => row.key_id),
    rows.map((row) => row.signed_message),
    rows.map((row) => row.signature),
    rows.map((row) => row.log_index ?? null),
    rows.map((row) => row.timestamp_token ?? null),
  ];
}

/**
 * Round trip 2: issues the inserts, the head updates and COMMIT for the tenants that got new
 * certificates, without awaiting them, and returns their promises. When no tenant got one, it
 * writes nothing and only commits.
 */
function sendWrites(client: pg.PoolClient, batches: readonly SealedBatch[]): Promise<unknown>[] {
  const sent: Promise<unknown>[] = [];
  const writing = batches.filter((batch) => batch.created.length > 0);
  if (writing.length > 0) {
    const claims = writing.flatMap((batch) => batch.claims);
    if (claims.length > 0) {
      sent.push(
        client.query({
          ...INSERT_IDEMPOTENCY_KEYS,
          values: [
            claims.map((claim) => claim.tenantId),
            claims.map((claim) => claim.key),
            claims.map((claim) => claim.requestHash),
            claims.map((claim) => claim.certificateId),
            new Date().toISOString(),
          ],
        }),
      );
    }
    const lastRows = writing.map((batch) => batch.created.at(-1)!);
    sent.push(
      client.query({
        ...INSERT_CERTIFICATES,
        values: certificateColumns(writing.flatMap((batch) => batch.created)),
      }),
      ...sendAuditEvents(
        client,
        writing.flatMap((batch) => batch.auditEvents),
      ),
      ...sendLogExtensions(
        client,
        writing.map((batch) => ({
          tenantId: batch.tenantId,
          extension: extendLog(batch.logHead, batch.leaves),
        })),
      ),
      client.query(
        tenantQuery(UPDATE_CHAIN_HEADS, writing.length, [
          writing.map((batch) => batch.tenantId),
          lastRows.map((row) => row.chain_sequence),
          lastRows.map((row) => row.chain_hash),
        ]),
      ),
    );
  }
  sent.push(client.query('COMMIT'));
  return sent;
}

/**
 * Appends each group's items to its tenant's chain and log, all in one transaction on `client`,
 * from BEGIN to COMMIT, and returns the results per group in group order. The tenant ids of
 * `groups` must differ (see checkDistinctTenants). After an error the transaction may still be
 * open, so the caller rolls it back, and nothing of any group is stored. When another writer
 * inserted one of the idempotency keys meanwhile, the error satisfies isKeyClaimedConcurrently,
 * and the append can be retried.
 */
export async function appendGroups<T extends AppendItem>(
  client: pg.PoolClient,
  groups: readonly AppendGroup<T>[],
  seal: Sealer<T>,
  options: LockOptions,
): Promise<AppendResult[][]> {
  const states = await lockAndRead(client, groups, options);
  const batches: SealedBatch[] = [];
  const results = groups.map((group): AppendResult[] => {
    const state = states.get(group.tenantId);
    if (state === undefined) {
      return group.items.map(() => ({ kind: 'tenant_locked' }));
    }
    const batch = sealBatch(group, state, seal);
    batches.push(batch);
    return batch.results;
  });
  // After a failed statement the server aborts the transaction, so the COMMIT at the end of the
  // round trip rolls back instead, and settleInOrder throws the first statement's error.
  await settleInOrder(sendTogether(client, () => sendWrites(client, batches)));
  return results;
}
