// Certificate batch append for PgStore. A batch sends at most 13 statements whatever its size,
// in two pipelined groups, so it pays two round trips while the chain head is locked:
//
//   1. BEGIN, lock the chain head, create and lock the log head, read the active key, look up
//      the batch's idempotency keys.
//   2. Insert the keys, the certificates, the audit events and the log nodes (one multi-row
//      INSERT each), update the chain head and the log head, COMMIT.
//
// The items are sealed in between, in this process. Each group is one write on the socket (see
// pipeline.ts). The reads of group 1 are separate statements, not one join, because a statement
// that waits for a row lock keeps the snapshot it started with for every other table. Each
// statement after the lock takes a new snapshot under READ COMMITTED, which includes whatever
// the previous holder of the lock committed: a key rotation or an idempotency key.
import type pg from 'pg';
import { extendLog } from '../log-append.ts';
import type { AppendItem, AppendResult, AuditEventRow, CertificateRow, Sealer } from '../store.ts';
import { toCertificate, type RawCertificate } from '../certificate-row.ts';
import { lockLogHead, sendAuditEvents, sendLogExtension } from './log-queries.ts';
import { sendTogether, settleInOrder } from './pipeline.ts';

interface ChainHead {
  chain_sequence: number;
  chain_hash: string | null;
}

const LOCK_CHAIN_HEAD = {
  name: 'cdil_lock_chain_head',
  text: 'SELECT chain_sequence, chain_hash FROM chain_heads WHERE tenant_id = $1 FOR UPDATE',
};

const SELECT_ACTIVE_KEY = {
  name: 'cdil_select_active_key',
  text: "SELECT key_id FROM signing_keys WHERE tenant_id = $1 AND status = 'active'",
};

// Not prepared by name: `c.*` would fail in a prepared statement after a migration adds a column.
const SELECT_STORED_KEYS = `SELECT k.idempotency_key AS stored_key, k.request_hash AS stored_request_hash, c.*
  FROM idempotency_keys k
  LEFT JOIN certificates c ON c.tenant_id = k.tenant_id AND c.certificate_id = k.certificate_id
  WHERE k.tenant_id = $1 AND k.idempotency_key = ANY($2::text[])`;

// No ON CONFLICT: a key that exists although the lookup after the lock did not find it was
// inserted by a writer that bypassed the lock, and the unique violation aborts the append, which
// appendBatch's caller retries (see isKeyClaimedConcurrently).
const INSERT_IDEMPOTENCY_KEYS = {
  name: 'cdil_insert_idempotency_keys',
  text: `INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, certificate_id, created_at)
    SELECT $1, idempotency_key, request_hash, certificate_id, $5
    FROM unnest($2::text[], $3::text[], $4::text[]) AS k (idempotency_key, request_hash, certificate_id)`,
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

const UPDATE_CHAIN_HEAD = {
  name: 'cdil_update_chain_head',
  text: 'UPDATE chain_heads SET chain_sequence = $1, chain_hash = $2 WHERE tenant_id = $3',
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
  key: string;
  requestHash: string;
  certificateId: string;
}

/** The state read under the locks in group 1. */
interface LockedState {
  head: ChainHead;
  logHead: { tree_size: number; frontier: string };
  activeKeyId: string | undefined;
  storedKeys: Map<string, StoredKey>;
}

/** Everything group 2 writes, and the result of each item in item order. */
interface SealedBatch {
  results: AppendResult[];
  created: CertificateRow[];
  claims: KeyClaim[];
  auditEvents: AuditEventRow[];
  leaves: string[];
}

type StoredKeyRow = RawCertificate & { stored_key: string; stored_request_hash: string };

function indexStoredKeys(rows: StoredKeyRow[]): Map<string, StoredKey> {
  const stored = new Map<string, StoredKey>();
  for (const { stored_key: key, stored_request_hash: requestHash, ...certificate } of rows) {
    // The LEFT JOIN yields NULL certificate columns when the key's certificate is missing.
    const row = certificate.certificate_id === null ? undefined : toCertificate(certificate);
    stored.set(key, { requestHash, row });
  }
  return stored;
}

function replayOutcome(stored: StoredKey, item: AppendItem): AppendResult {
  if (stored.requestHash !== item.requestHash) {
    return { kind: 'conflict' };
  }
  return stored.row ? { kind: 'replayed', row: stored.row } : { kind: 'conflict' };
}

/**
 * Group 1: begins the transaction, locks the chain head and the log head, and reads the active
 * key and the stored idempotency keys when the items need them.
 */
async function lockAndRead(
  client: pg.PoolClient,
  tenantId: string,
  items: readonly AppendItem[],
): Promise<LockedState> {
  const keys = [
    ...new Set(
      items.flatMap((item) => (item.idempotencyKey === undefined ? [] : [item.idempotencyKey])),
    ),
  ];
  const needsActiveKey = items.some((item) => item.signingKeyId !== undefined);
  const sent = sendTogether(client, () => {
    const begun = client.query('BEGIN');
    const locked = client.query<ChainHead>({ ...LOCK_CHAIN_HEAD, values: [tenantId] });
    const logHead = lockLogHead(client, tenantId);
    const activeKey = needsActiveKey
      ? client.query<{ key_id: string }>({ ...SELECT_ACTIVE_KEY, values: [tenantId] })
      : undefined;
    const storedKeys =
      keys.length === 0
        ? undefined
        : client.query<StoredKeyRow>(SELECT_STORED_KEYS, [tenantId, keys]);
    return { begun, locked, logHead, activeKey, storedKeys };
  });
  const { begun, locked, logHead, activeKey, storedKeys } = sent;
  const group: Promise<unknown>[] = [begun, locked, logHead];
  for (const optional of [activeKey, storedKeys]) {
    if (optional) {
      group.push(optional);
    }
  }
  // Every reply is read and every rejection handled before the checks below.
  await Promise.allSettled(group);
  await settleInOrder([begun, locked]);
  const head = (await locked).rows[0];
  if (!head) {
    // Reported before the other statements' errors: for a tenant that does not exist, the log
    // head insert fails on its foreign key.
    throw new Error(`tenant ${tenantId} has no chain head`);
  }
  await settleInOrder(group);
  return {
    head,
    logHead: await logHead,
    activeKeyId: (await activeKey)?.rows[0]?.key_id,
    storedKeys: indexStoredKeys((await storedKeys)?.rows ?? []),
  };
}

/**
 * Decides each item's outcome in item order and seals the new certificates after the locked
 * head, as appending the items one at a time would. An item whose key is stored, or repeats a
 * key of an earlier item of the batch, is replayed or a conflict, and an item for a key that is
 * not active gets `key_inactive`. Each certificate's log leaf is followed by its audit event's.
 */
function sealBatch<T extends AppendItem>(
  tenantId: string,
  items: readonly T[],
  state: LockedState,
  seal: Sealer<T>,
): SealedBatch {
  let sequence = state.head.chain_sequence;
  let previousHash = state.head.chain_hash;
  const known = state.storedKeys;
  const batch: SealedBatch = { results: [], created: [], claims: [], auditEvents: [], leaves: [] };
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
      // The key is stored with the request hash the claim inserts, so a repeat later in the batch
      // compares as it would against the stored row.
      const requestHash = item.requestHash ?? '';
      known.set(key, { requestHash, row });
      batch.claims.push({ key, requestHash, certificateId: row.certificate_id });
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
 * Group 2: issues the batch's inserts, the head updates and COMMIT without awaiting them, and
 * returns their promises. A batch that creates nothing writes nothing and only commits.
 */
function sendWrites(
  client: pg.PoolClient,
  tenantId: string,
  state: LockedState,
  batch: SealedBatch,
): Promise<unknown>[] {
  const sent: Promise<unknown>[] = [];
  const last = batch.created.at(-1);
  if (last) {
    const now = new Date().toISOString();
    if (batch.claims.length > 0) {
      sent.push(
        client.query({
          ...INSERT_IDEMPOTENCY_KEYS,
          values: [
            tenantId,
            batch.claims.map((claim) => claim.key),
            batch.claims.map((claim) => claim.requestHash),
            batch.claims.map((claim) => claim.certificateId),
            now,
          ],
        }),
      );
    }
    sent.push(
      client.query({ ...INSERT_CERTIFICATES, values: certificateColumns(batch.created) }),
      ...sendAuditEvents(client, tenantId, batch.auditEvents),
      ...sendLogExtension(client, tenantId, extendLog(state.logHead, batch.leaves)),
      client.query({
        ...UPDATE_CHAIN_HEAD,
        values: [last.chain_sequence, last.chain_hash, tenantId],
      }),
    );
  }
  sent.push(client.query('COMMIT'));
  return sent;
}

/**
 * Appends `items` to the tenant's chain and log in one transaction on `client`, from BEGIN to
 * COMMIT. After an error the transaction may still be open, so the caller rolls it back. When
 * another writer inserted one of the batch's idempotency keys meanwhile, the error satisfies
 * isKeyClaimedConcurrently. Nothing is stored then, and the append can be retried.
 */
export async function appendBatch<T extends AppendItem>(
  client: pg.PoolClient,
  tenantId: string,
  items: readonly T[],
  seal: Sealer<T>,
): Promise<AppendResult[]> {
  const state = await lockAndRead(client, tenantId, items);
  const batch = sealBatch(tenantId, items, state, seal);
  // After a failed statement the server aborts the transaction, so the COMMIT at the end of the
  // group rolls back instead, and settleInOrder throws the first statement's error.
  await settleInOrder(sendTogether(client, () => sendWrites(client, tenantId, state, batch)));
  return batch.results;
}
