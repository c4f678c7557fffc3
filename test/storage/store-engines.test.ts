// Storage contract on the engine under test (SQLite, or PostgreSQL when DATABASE_URL is set):
// schema upgrades from version 1, chains appended by several stores at once, idempotency and
// tenant races, concurrent migrations, key rotation and revocation races, and shared
// rate-limit counters.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from '../../src/storage/migrations.ts';
import { certificateQuery } from '../../src/storage/certificate-query.ts';
import { EMPTY_LOG_HEAD, extendLog } from '../../src/storage/log-append.ts';
import { PgStore } from '../../src/storage/postgres/pg-store.ts';
import { OPTIMIZE_EVERY_APPENDS, SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import {
  AuditEventExistsError,
  StoreBusyError,
  StoreUnavailableError,
  TenantExistsError,
  type AppendGroup,
  type AppendItem,
  type AppendResult,
  type CertificateRow,
  type ChainLink,
  type NewAuditEvent,
  type NewShadowItem,
  type NewSigningKey,
  type SigningKeyRow,
  type Store,
  type WarningLogger,
} from '../../src/storage/store.ts';
import {
  TEST_ENGINE,
  createTestDatabase,
  runSql,
  waitForLockWait,
  type StorageLocation,
} from '../helpers/database.ts';

interface TestItem extends AppendItem {
  certificateId: string;
}

/** Creates a data folder and database that several stores can open at once. */
async function createLocation(): Promise<StorageLocation & { remove(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'cdil-store-test-'));
  const database = await createTestDatabase();
  return {
    dir,
    database,
    remove: async () => {
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function openStore(location: StorageLocation, migrations?: readonly Migration[]): Store {
  const options = migrations === undefined ? {} : { migrations };
  return location.database.url === undefined
    ? new SqliteStore(join(location.dir, 'cdil.sqlite'), options)
    : new PgStore(location.database.url, { ...options, poolSize: 4 });
}

/** Builds a stand-in audit event whose leaf text names its id. */
function auditEvent(action = 'test.event'): NewAuditEvent {
  const eventId = randomUUID();
  return {
    event_id: eventId,
    occurred_at: new Date().toISOString(),
    action,
    outcome: 'success',
    actor_hash: null,
    object_type: null,
    object_id: null,
    event_json: `{"event_id":"${eventId}"}`,
  };
}

async function createTenant(
  store: Store,
  tenantId: string,
  creationEvent?: NewAuditEvent,
): Promise<void> {
  const now = new Date().toISOString();
  await store.createTenant(
    {
      tenant_id: tenantId,
      created_at: now,
      phi_policy: 'flag',
      hmac_secret_sealed: 'sealed',
      timestamp_policy: 'best_effort',
      timestamp_certificates: false,
    },
    {
      tenant_id: tenantId,
      key_id: `${tenantId}-key`,
      algorithm: 'ES256',
      status: 'active',
      valid_from: now,
      valid_until: null,
      public_key_pem: 'public',
      private_key_sealed: 'sealed',
      created_at: now,
    },
    creationEvent,
  );
}

/** Seals a stand-in certificate whose chain hash commits to its id and predecessor. */
function seal(tenantId: string) {
  return (item: TestItem, link: ChainLink): CertificateRow => ({
    tenant_id: tenantId,
    chain_sequence: link.sequence,
    certificate_id: item.certificateId,
    issued_at_utc: new Date().toISOString(),
    model_version: 'model-1',
    governance_policy_version: 'policy-1',
    human_reviewed: link.sequence % 2 === 0,
    chain_hash: createHash('sha256')
      .update(`${link.previousHash ?? ''}|${item.certificateId}`)
      .digest('hex'),
    previous_hash: link.previousHash,
    key_id: `${tenantId}-key`,
    signed_message: `{"certificate_id":"${item.certificateId}"}`,
    signature: 'signature',
  });
}

function newItem(extra: Partial<TestItem> = {}): TestItem {
  return { certificateId: randomUUID(), ...extra };
}

/** An item of a multi-tenant append, which names its tenant so that one sealer serves all groups. */
interface GroupItem extends TestItem {
  tenantId: string;
}

function newGroupItem(tenantId: string, extra: Partial<TestItem> = {}): GroupItem {
  return { ...newItem(extra), tenantId };
}

function sealGroupItem(item: GroupItem, link: ChainLink): CertificateRow {
  return seal(item.tenantId)(item, link);
}

function newKey(tenantId: string, keyId: string): NewSigningKey {
  return {
    tenant_id: tenantId,
    key_id: keyId,
    algorithm: 'ES256',
    public_key_pem: 'public',
    private_key_sealed: 'sealed',
  };
}

const now = () => new Date();

function activeKeys(keys: SigningKeyRow[]): SigningKeyRow[] {
  return keys.filter((key) => key.status === 'active');
}

/** Walks a chain from sequence 1 and returns its certificate ids in order. */
async function walkChain(store: Store, tenantId: string): Promise<string[]> {
  const ids: string[] = [];
  let previous: string | null = null;
  for (let sequence = 1; ; sequence++) {
    const row = await store.getCertificateBySequence(tenantId, sequence);
    if (!row) {
      return ids;
    }
    assert.equal(row.chain_sequence, sequence);
    assert.equal(row.previous_hash, previous, `link at sequence ${sequence}`);
    assert.equal(
      row.chain_hash,
      createHash('sha256')
        .update(`${previous ?? ''}|${row.certificate_id}`)
        .digest('hex'),
    );
    previous = row.chain_hash;
    ids.push(row.certificate_id);
  }
}

function shadowItem(tenantId: string, itemId: string, certificateId: string): NewShadowItem {
  return {
    item: {
      tenant_id: tenantId,
      item_id: itemId,
      created_at: '2026-03-01T10:00:00.000Z',
      source: 'analyze',
      batch_id: null,
      note_hash: 'a'.repeat(64),
      note_ref_hash: null,
      certificate_id: certificateId,
      certificate_note_match: true,
      ruleset_version: 'rules-1',
      context_rules_version: 'context-1',
      assumptions_revision: 1,
      conditions_counted: 1,
      mean_completeness: 1 / 3,
      estimated_value_at_risk_usd: 4200,
      has_deficit: true,
      result_json: '{}',
    },
    conditions: [
      {
        condition_id: 'copd',
        counted: true,
        mentioned: true,
        completeness: 1 / 3,
        met: { monitor: true, evaluate: false, assess: false, treat: true },
        estimated_value_at_risk_usd: 4200,
      },
    ],
    gaps: [{ condition_id: 'copd', element: 'evaluate', attributed_cents: 210_000 }],
    findings: [{ rule_id: 'rule-1', kind: 'missing' }],
  };
}

describe(`storage on ${TEST_ENGINE}`, () => {
  let location: Awaited<ReturnType<typeof createLocation>>;
  let stores: Store[];

  before(async () => {
    location = await createLocation();
    const first = openStore(location);
    await first.migrate();
    stores = [first, openStore(location), openStore(location)];
  });
  after(async () => {
    for (const store of stores) {
      await store.close();
    }
    await location.remove();
  });

  test('store reports its engine and answers ping', async () => {
    assert.equal(stores[0]!.engine, TEST_ENGINE);
    await stores[0]!.ping();
  });

  test('concurrent appends from three stores form one chain', async () => {
    const tenantId = 'chain-race';
    await createTenant(stores[0]!, tenantId);
    const appends = [];
    for (let round = 0; round < 15; round++) {
      for (const store of stores) {
        const batch = [newItem(), newItem(), newItem()];
        appends.push(
          store.appendCertificates(tenantId, batch, seal(tenantId)).then((results) => {
            assert.deepEqual(
              results.map((result) => result.kind),
              ['created', 'created', 'created'],
            );
            return batch.map((item) => item.certificateId);
          }),
        );
      }
    }
    const acknowledged = (await Promise.all(appends)).flat();
    const chain = await walkChain(stores[1]!, tenantId);
    assert.equal(chain.length, 135);
    assert.equal(new Set(chain).size, chain.length, 'duplicate certificate in chain');
    assert.deepEqual([...chain].sort(), [...acknowledged].sort());
    for (const batchStart of [0, 3, 6]) {
      // Each batch is appended in item order, so its three ids stay adjacent in the chain.
      const ids = acknowledged.slice(batchStart, batchStart + 3);
      const at = chain.indexOf(ids[0]!);
      assert.deepEqual(chain.slice(at, at + 3), ids);
    }
  });

  test('one idempotency key sent to three stores creates one certificate', async () => {
    const tenantId = 'idem-race';
    await createTenant(stores[0]!, tenantId);
    const outcomes = await Promise.all(
      stores.map((store) =>
        store.appendCertificates(
          tenantId,
          [newItem({ idempotencyKey: 'key-1', requestHash: 'hash-1' })],
          seal(tenantId),
        ),
      ),
    );
    const kinds = outcomes.map((results) => results[0]!.kind).sort();
    assert.deepEqual(kinds, ['created', 'replayed', 'replayed']);
    const ids = new Set(
      outcomes.map((results) => {
        const result = results[0]!;
        return 'row' in result ? result.row.certificate_id : undefined;
      }),
    );
    assert.equal(ids.size, 1);
    const conflict = await stores[2]!.appendCertificates(
      tenantId,
      [newItem({ idempotencyKey: 'key-1', requestHash: 'other-hash' })],
      seal(tenantId),
    );
    assert.deepEqual(conflict, [{ kind: 'conflict' }]);
    assert.equal((await walkChain(stores[0]!, tenantId)).length, 1);
  });

  test('repeated key within one batch is replayed', async () => {
    const tenantId = 'idem-batch';
    await createTenant(stores[0]!, tenantId);
    const results = await stores[1]!.appendCertificates(
      tenantId,
      [
        newItem({ idempotencyKey: 'k', requestHash: 'h' }),
        newItem({ idempotencyKey: 'k', requestHash: 'h' }),
        newItem({ idempotencyKey: 'k', requestHash: 'x' }),
      ],
      seal(tenantId),
    );
    assert.deepEqual(
      results.map((result) => result.kind),
      ['created', 'replayed', 'conflict'],
    );
    assert.equal((await walkChain(stores[0]!, tenantId)).length, 1);
  });

  test('mixed batch keeps item order and outcomes', async () => {
    const tenantId = 'idem-mixed';
    await createTenant(stores[0]!, tenantId);
    const [first] = await stores[0]!.appendCertificates(
      tenantId,
      [newItem({ idempotencyKey: 'stored', requestHash: 'h1' })],
      seal(tenantId),
    );
    assert.equal(first?.kind, 'created');
    const storedRow = first.kind === 'created' ? first.row : undefined;

    const items = [
      newItem(),
      newItem({ idempotencyKey: 'stored', requestHash: 'h1' }),
      newItem({ idempotencyKey: 'new', requestHash: 'h2' }),
      newItem({ idempotencyKey: 'stored', requestHash: 'other' }),
      newItem({ idempotencyKey: 'new', requestHash: 'h2' }),
      newItem({ idempotencyKey: 'new', requestHash: 'other' }),
      newItem(),
    ];
    const results = await stores[1]!.appendCertificates(tenantId, items, seal(tenantId));
    assert.deepEqual(
      results.map((result) => result.kind),
      ['created', 'replayed', 'created', 'conflict', 'replayed', 'conflict', 'created'],
    );
    assert.deepEqual(results[1], { kind: 'replayed', row: storedRow });
    const newKeyRow = results[2]?.kind === 'created' ? results[2].row : undefined;
    assert.deepEqual(results[4], { kind: 'replayed', row: newKeyRow });

    const created = results.flatMap((result) => (result.kind === 'created' ? [result.row] : []));
    assert.deepEqual(
      created.map((row) => row.chain_sequence),
      [2, 3, 4],
    );
    assert.deepEqual(
      created.map((row) => row.certificate_id),
      [items[0]!.certificateId, items[2]!.certificateId, items[6]!.certificateId],
    );
    for (const row of created) {
      assert.deepEqual(
        await stores[2]!.getCertificateBySequence(tenantId, row.chain_sequence),
        row,
      );
    }
    assert.equal((await walkChain(stores[0]!, tenantId)).length, 4);

    const replay = await stores[2]!.appendCertificates(
      tenantId,
      [newItem({ idempotencyKey: 'new', requestHash: 'h2' })],
      seal(tenantId),
    );
    assert.deepEqual(replay, [{ kind: 'replayed', row: created[1] }]);
  });

  test('batch of 600 stores each row unchanged', async () => {
    const tenantId = 'large-batch';
    await createTenant(stores[0]!, tenantId);
    // Text that array literals and JSON must escape: quotes, backslashes, braces, commas,
    // the word NULL, empty-looking values and characters outside ASCII.
    const awkward = [
      '"quoted"',
      'back\\slash\\',
      '{a,b}',
      'NULL',
      ' ',
      'caf\u00e9 \u{1f9ea}',
      "it's",
    ];
    const items = Array.from({ length: 600 }, (_, i) =>
      newItem(i % 3 === 0 ? { idempotencyKey: `large-${i}`, requestHash: 'h' } : {}),
    );
    const sealPlain = seal(tenantId);
    const results = await stores[0]!.appendCertificates(tenantId, items, (item, link) => {
      const row = sealPlain(item, link);
      const text = awkward[link.sequence % awkward.length]!;
      return {
        ...row,
        model_version: text,
        signed_message: JSON.stringify({ text, n: link.sequence }),
      };
    });
    assert.equal(results.length, 600);
    assert.ok(results.every((result) => result.kind === 'created'));
    const page = await stores[1]!.queryCertificates(tenantId, {}, 0, 600);
    assert.equal(page.length, 600);
    page.forEach((row, i) => {
      const result = results[i]!;
      assert.deepEqual(row, result.kind === 'created' ? result.row : undefined, `row ${i + 1}`);
    });
    assert.equal((await walkChain(stores[2]!, tenantId)).length, 600);
  });

  test('failed batch leaves no rows and head', async () => {
    const tenantId = 'failed-batch';
    await createTenant(stores[0]!, tenantId);
    const [first] = await stores[0]!.appendCertificates(tenantId, [newItem()], seal(tenantId));
    assert.equal(first?.kind, 'created');
    const takenId = first.kind === 'created' ? first.row.certificate_id : '';

    // The third certificate reuses an existing id, so the insert violates its unique index.
    const items = [
      newItem({ idempotencyKey: 'lost-1', requestHash: 'h' }),
      newItem(),
      newItem({ certificateId: takenId }),
    ];
    await assert.rejects(stores[1]!.appendCertificates(tenantId, items, seal(tenantId)));

    assert.deepEqual(await walkChain(stores[0]!, tenantId), [takenId]);
    const keys = await runSql(
      location,
      'SELECT idempotency_key FROM idempotency_keys WHERE tenant_id = ?',
      [tenantId],
    );
    assert.deepEqual(keys, []);
    // The same store and connections still append, from the unchanged chain head.
    const retry = await stores[1]!.appendCertificates(
      tenantId,
      [newItem({ idempotencyKey: 'lost-1', requestHash: 'h' })],
      seal(tenantId),
    );
    assert.equal(retry[0]?.kind === 'created' && retry[0].row.chain_sequence, 2);
  });

  test('append to unknown tenant rejects', async () => {
    await assert.rejects(
      stores[0]!.appendCertificates('no-such-tenant', [newItem()], seal('no-such-tenant')),
      /tenant no-such-tenant has no chain head/,
    );
    // The connection that failed is usable again.
    await createTenant(stores[0]!, 'after-unknown');
    const [result] = await stores[0]!.appendCertificates(
      'after-unknown',
      [newItem()],
      seal('after-unknown'),
    );
    assert.equal(result?.kind, 'created');
  });

  test('concurrent tenant creation raises TenantExistsError once', async () => {
    const outcomes = await Promise.allSettled(
      stores.map((store) => createTenant(store, 'same-tenant')),
    );
    const fulfilled = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    const rejected = outcomes.filter((outcome) => outcome.status === 'rejected');
    assert.equal(fulfilled.length, 1);
    assert.equal(rejected.length, 2);
    for (const outcome of rejected) {
      assert.ok(outcome.reason instanceof TenantExistsError, String(outcome.reason));
    }
    assert.equal((await stores[0]!.listKeys('same-tenant')).length, 1);
  });

  test('query filters on human review and keeps chain order', async () => {
    const tenantId = 'query';
    await createTenant(stores[0]!, tenantId);
    await stores[0]!.appendCertificates(
      tenantId,
      Array.from({ length: 6 }, () => newItem()),
      seal(tenantId),
    );
    const reviewed = await stores[1]!.queryCertificates(tenantId, { humanReviewed: true }, 0, 10);
    assert.deepEqual(
      reviewed.map((row) => row.chain_sequence),
      [2, 4, 6],
    );
    assert.ok(reviewed.every((row) => row.human_reviewed === true));
    const page = await stores[1]!.queryCertificates(tenantId, {}, 2, 3);
    assert.deepEqual(
      page.map((row) => row.chain_sequence),
      [3, 4, 5],
    );
  });

  test('concurrent rotations leave one active key', async () => {
    const tenantId = 'rotate-race';
    await createTenant(stores[0]!, tenantId);
    await stores[0]!.appendCertificates(tenantId, [newItem()], seal(tenantId));
    const rotations = await Promise.all(
      stores.flatMap((store, i) =>
        [0, 1].map((j) => store.rotateSigningKey(tenantId, newKey(tenantId, `k-${i}-${j}`), now)),
      ),
    );
    const keys = await stores[1]!.listKeys(tenantId);
    assert.equal(keys.length, 7);
    assert.equal(activeKeys(keys).length, 1);
    // Serialized rotations each replaced a different key, and the validity windows follow each
    // other without a gap or an overlap.
    const previousIds = rotations.map((rotation) => rotation?.previous.key_id);
    assert.equal(new Set(previousIds).size, 6);
    const ordered = [...keys].sort((a, b) => Date.parse(a.valid_from) - Date.parse(b.valid_from));
    for (const [i, key] of ordered.entries()) {
      const next = ordered[i + 1];
      if (next) {
        assert.equal(key.status, 'retired', key.key_id);
        assert.equal(key.valid_until, next.valid_from, key.key_id);
      } else {
        assert.equal(key.status, 'active');
        assert.equal(key.valid_until, null);
      }
    }
  });

  test('rotation instant follows the latest issuance', async () => {
    const tenantId = 'rotate-after';
    await createTenant(stores[0]!, tenantId);
    // A certificate from a host whose clock runs an hour ahead.
    const ahead = new Date(Date.now() + 3_600_000).toISOString();
    const sealAhead = (item: TestItem, link: ChainLink) => ({
      ...seal(tenantId)(item, link),
      issued_at_utc: ahead,
    });
    await stores[0]!.appendCertificates(tenantId, [newItem()], sealAhead);
    const rotation = await stores[1]!.rotateSigningKey(tenantId, newKey(tenantId, 'next'), now);
    assert.ok(rotation);
    assert.ok(rotation.previous.valid_until! > ahead, rotation.previous.valid_until!);
    assert.equal(rotation.current.valid_from, rotation.previous.valid_until);
    assert.equal(rotation.current.status, 'active');
    assert.equal(
      await stores[0]!.rotateSigningKey('no-such-tenant', newKey('x', 'y'), now),
      undefined,
    );
  });

  test('append rejects items of an inactive key', async () => {
    const tenantId = 'stale-key';
    await createTenant(stores[0]!, tenantId);
    const oldKey = `${tenantId}-key`;
    const [first] = await stores[0]!.appendCertificates(
      tenantId,
      [newItem({ signingKeyId: oldKey, idempotencyKey: 'k1', requestHash: 'h1' })],
      seal(tenantId),
    );
    assert.equal(first?.kind, 'created');
    await stores[1]!.rotateSigningKey(tenantId, newKey(tenantId, 'fresh'), now);
    const results = await stores[2]!.appendCertificates(
      tenantId,
      [
        newItem({ signingKeyId: oldKey }),
        newItem({ signingKeyId: 'fresh' }),
        newItem({ signingKeyId: oldKey, idempotencyKey: 'k1', requestHash: 'h1' }),
      ],
      seal(tenantId),
    );
    assert.deepEqual(
      results.map((result) => result.kind),
      ['key_inactive', 'created', 'replayed'],
    );
    assert.deepEqual(results[0], { kind: 'key_inactive', activeKeyId: 'fresh' });
    assert.equal((await walkChain(stores[0]!, tenantId)).length, 2);
  });

  test('schema allows one active key per tenant', async () => {
    const tenantId = 'two-active';
    await createTenant(stores[0]!, tenantId);
    await assert.rejects(
      runSql(
        location,
        `INSERT INTO signing_keys (tenant_id, key_id, algorithm, status, valid_from, public_key_pem, private_key_sealed, created_at)
         VALUES (?, 'second', 'ES256', 'active', ?, 'public', 'sealed', ?)`,
        [tenantId, new Date().toISOString(), new Date().toISOString()],
      ),
      /unique/i,
    );
    assert.equal(activeKeys(await stores[0]!.listKeys(tenantId)).length, 1);
  });

  test('revocation outcomes', async () => {
    const tenantId = 'revoke';
    await createTenant(stores[0]!, tenantId);
    const first = `${tenantId}-key`;
    const store = stores[1]!;
    assert.deepEqual(
      await store.revokeSigningKey('no-such-tenant', first, { reason: 'superseded' }, now),
      { kind: 'tenant_not_found' },
    );
    assert.deepEqual(
      await store.revokeSigningKey(tenantId, 'no-such-key', { reason: 'superseded' }, now),
      { kind: 'key_not_found' },
    );

    const refused = await store.revokeSigningKey(
      tenantId,
      first,
      { reason: 'key_compromise' },
      now,
    );
    assert.equal(refused.kind, 'active_key');
    assert.equal(activeKeys(await store.listKeys(tenantId))[0]?.key_id, first);

    const revoked = await store.revokeSigningKey(
      tenantId,
      first,
      { reason: 'key_compromise', replacement: newKey(tenantId, 'second') },
      now,
    );
    assert.equal(revoked.kind, 'revoked');
    assert.ok(revoked.kind === 'revoked');
    assert.equal(revoked.key.status, 'revoked');
    assert.equal(revoked.key.revocation_reason, 'key_compromise');
    assert.equal(revoked.key.revoked_at, revoked.key.valid_until);
    assert.equal(revoked.replacement?.key_id, 'second');
    assert.equal(revoked.replacement?.valid_from, revoked.key.valid_until);

    const again = await store.revokeSigningKey(tenantId, first, { reason: 'superseded' }, now);
    assert.equal(again.kind, 'already_revoked');

    const rotation = await store.rotateSigningKey(tenantId, newKey(tenantId, 'third'), now);
    const retired = await store.revokeSigningKey(
      tenantId,
      'second',
      { reason: 'cessation_of_operation', replacement: newKey(tenantId, 'unused') },
      now,
    );
    assert.ok(retired.kind === 'revoked');
    assert.equal(retired.replacement, undefined, 'a retired key is revoked without rotation');
    assert.equal(retired.key.valid_until, rotation?.previous.valid_until);
    assert.equal(retired.key.revocation_reason, 'cessation_of_operation');
    assert.ok(!Number.isNaN(Date.parse(retired.key.revoked_at!)), retired.key.revoked_at!);

    const keys = await stores[0]!.listKeys(tenantId);
    assert.deepEqual(
      keys.map((key) => [key.key_id, key.status]),
      [
        [first, 'revoked'],
        ['second', 'revoked'],
        ['third', 'active'],
      ],
    );
    const stored = keys.find((key) => key.key_id === 'second')!;
    assert.equal(stored.revoked_at, retired.key.revoked_at);
    assert.equal(stored.revocation_reason, 'cessation_of_operation');
  });

  test('concurrent revocations rotate once', async () => {
    const tenantId = 'revoke-race';
    await createTenant(stores[0]!, tenantId);
    const outcomes = await Promise.all(
      stores.map((store, i) =>
        store.revokeSigningKey(
          tenantId,
          `${tenantId}-key`,
          { reason: 'key_compromise', replacement: newKey(tenantId, `replacement-${i}`) },
          now,
        ),
      ),
    );
    assert.deepEqual(outcomes.map((outcome) => outcome.kind).sort(), [
      'already_revoked',
      'already_revoked',
      'revoked',
    ]);
    const keys = await stores[0]!.listKeys(tenantId);
    assert.equal(keys.length, 2);
    assert.equal(activeKeys(keys).length, 1);
  });

  test('key and limit changes store their event', async () => {
    const tenantId = 'audited';
    await createTenant(stores[0]!, tenantId, auditEvent('tenant.create'));
    const store = stores[1]!;
    const eventIds = async () =>
      (await store.listAuditEvents(tenantId, {}, -1, 100)).map((row) => row.event_id);

    const rotation = auditEvent('key.rotate');
    assert.ok(await store.rotateSigningKey(tenantId, newKey(tenantId, 'k2'), now, rotation));
    const revocation = auditEvent('key.revoke');
    const revoked = await store.revokeSigningKey(
      tenantId,
      'k2',
      { reason: 'key_compromise', replacement: newKey(tenantId, 'k3') },
      now,
      revocation,
    );
    assert.equal(revoked.kind, 'revoked');
    const limit = auditEvent('tenant.set_rate_limit');
    assert.equal(await store.setTenantRateLimit(tenantId, 9, limit), true);
    const stored = await eventIds();
    assert.equal(stored.length, 4, 'tenant.create and three change events');
    assert.deepEqual(stored.slice(1), [rotation.event_id, revocation.event_id, limit.event_id]);
    assert.equal((await store.getLogHead(tenantId))?.tree_size, 4);

    // A change that is not made stores no event.
    const notMade = [
      await store.revokeSigningKey(tenantId, 'k2', { reason: 'superseded' }, now, auditEvent()),
      await store.revokeSigningKey(tenantId, 'nope', { reason: 'superseded' }, now, auditEvent()),
      await store.revokeSigningKey(tenantId, 'k3', { reason: 'superseded' }, now, auditEvent()),
    ];
    assert.deepEqual(
      notMade.map((result) => result.kind),
      ['already_revoked', 'key_not_found', 'active_key'],
    );
    assert.equal(await store.setTenantRateLimit('no-such-tenant', 1, auditEvent()), false);
    assert.equal(
      await store.rotateSigningKey('no-such-tenant', newKey('x', 'y'), now, auditEvent()),
      undefined,
    );
    assert.equal((await eventIds()).length, 4);
  });

  test('change fails with its event and stores nothing', async () => {
    const tenantId = 'audited-dup';
    const created = auditEvent('tenant.create');
    await createTenant(stores[0]!, tenantId, created);
    const store = stores[2]!;
    // An event whose id is already stored cannot be appended, so the change must not be kept.
    const duplicate = () => ({ ...auditEvent(), event_id: created.event_id });
    await assert.rejects(
      store.rotateSigningKey(tenantId, newKey(tenantId, 'dup-2'), now, duplicate()),
      AuditEventExistsError,
    );
    await assert.rejects(
      store.revokeSigningKey(
        tenantId,
        `${tenantId}-key`,
        { reason: 'key_compromise', replacement: newKey(tenantId, 'dup-3') },
        now,
        duplicate(),
      ),
      AuditEventExistsError,
    );
    await assert.rejects(store.setTenantRateLimit(tenantId, 5, duplicate()), AuditEventExistsError);
    assert.deepEqual(
      (await store.listKeys(tenantId)).map((key) => [key.key_id, key.status]),
      [[`${tenantId}-key`, 'active']],
    );
    assert.equal((await store.getTenant(tenantId))?.rate_limit_per_minute, null);
    assert.equal((await store.getLogHead(tenantId))?.tree_size, 1);
  });

  test('rate-limit counters add up across stores', async () => {
    const tenantId = 'limits';
    await createTenant(stores[0]!, tenantId);
    const window1 = '2026-03-01T10:00:00.000Z';
    const window2 = '2026-03-01T10:01:00.000Z';
    const totals = await Promise.all(
      stores.flatMap((store) =>
        Array.from({ length: 5 }, () =>
          store.syncRateLimitCounters(window1, [{ tenantId, count: 2 }]),
        ),
      ),
    );
    const seen = totals.map((rows) => rows[0]!.total).sort((a, b) => a - b);
    assert.deepEqual(
      seen,
      Array.from({ length: 15 }, (_, i) => 2 * (i + 1)),
      'each sync returns the running total including its own count',
    );

    const read = await stores[0]!.syncRateLimitCounters(window1, [
      { tenantId, count: 0 },
      { tenantId: 'no-such-tenant', count: 5 },
    ]);
    assert.deepEqual(read, [{ tenantId, total: 30, limitPerMinute: null }]);
    const empty = await stores[1]!.syncRateLimitCounters(window2, [{ tenantId, count: 0 }]);
    assert.deepEqual(empty, [{ tenantId, total: 0, limitPerMinute: null }]);
    const rowsIn = async (window: string) =>
      (
        await runSql(
          location,
          'SELECT request_count FROM rate_limit_counters WHERE tenant_id = ? AND window_start = ?',
          [tenantId, window],
        )
      ).length;
    assert.equal(await rowsIn(window2), 0, 'a read-only sync writes no row');

    assert.equal(await stores[2]!.setTenantRateLimit(tenantId, 7), true);
    assert.equal(await stores[2]!.setTenantRateLimit('no-such-tenant', 7), false);
    assert.equal((await stores[0]!.getTenant(tenantId))?.rate_limit_per_minute, 7);
    const limited = await stores[0]!.syncRateLimitCounters(window2, [{ tenantId, count: 3 }]);
    assert.deepEqual(limited, [{ tenantId, total: 3, limitPerMinute: 7 }]);
    assert.equal(await stores[2]!.setTenantRateLimit(tenantId, null), true);
    assert.equal((await stores[0]!.getTenant(tenantId))?.rate_limit_per_minute, null);

    assert.equal(await stores[1]!.pruneRateLimitCounters(window2), 1);
    assert.equal(await rowsIn(window1), 0);
    assert.equal(await rowsIn(window2), 1);
  });

  test('audit events and certificates share one dense log', async () => {
    const tenantId = 'audit-log';
    const created = auditEvent('tenant.create');
    await createTenant(stores[0]!, tenantId, created);
    const withEvents = [0, 1, 2].map(() => {
      const event = auditEvent('certificate.issue');
      return newItem({ auditEvent: () => event });
    });
    const appends: Promise<unknown>[] = [
      stores[1]!.appendCertificates(tenantId, withEvents, seal(tenantId)),
    ];
    for (let round = 0; round < 10; round++) {
      for (const store of stores) {
        appends.push(store.appendAuditEvents(tenantId, [auditEvent(), auditEvent()]));
      }
    }
    await Promise.all(appends);
    const head = await stores[2]!.getLogHead(tenantId);
    assert.equal(head!.tree_size, 1 + 6 + 60);
    const entries = await stores[2]!.listLogEntries(tenantId, 0, head!.tree_size);
    assert.deepEqual(
      entries.map((entry) => entry.log_index),
      Array.from({ length: head!.tree_size }, (_, i) => i),
    );
    assert.equal(entries[0]!.id, created.event_id);
    // Each certificate leaf is followed by its issuance event.
    for (const [position, entry] of entries.entries()) {
      if (entry.kind === 'certificate') {
        const next = entries[position + 1]!;
        assert.equal(next.kind, 'audit_event');
        const stored = await stores[0]!.listAuditEvents(tenantId, {}, next.log_index - 1, 1);
        assert.equal(stored[0]!.action, 'certificate.issue');
      }
    }
    const issued = await stores[0]!.listAuditEvents(
      tenantId,
      { action: 'certificate.issue' },
      -1,
      10,
    );
    assert.equal(issued.length, 3);
  });

  test('repeated audit event id stores nothing', async () => {
    const tenantId = 'audit-repeat';
    await createTenant(stores[0]!, tenantId);
    const stored = auditEvent('request.rejected');
    const [row] = await stores[0]!.appendAuditEvents(tenantId, [stored]);
    const headBefore = await stores[1]!.getLogHead(tenantId);
    const fresh = auditEvent('request.rejected');
    // As a retry after a lost reply: the same event again, here with another one.
    await assert.rejects(
      stores[1]!.appendAuditEvents(tenantId, [fresh, stored]),
      (error: unknown) => error instanceof AuditEventExistsError,
    );
    assert.deepEqual(await stores[2]!.getLogHead(tenantId), headBefore);
    assert.equal(await stores[2]!.getAuditEvent(fresh.event_id), undefined);
    assert.deepEqual(await stores[2]!.getAuditEvent(stored.event_id), row);
    assert.equal(await stores[2]!.getAuditEvent(randomUUID()), undefined);
  });

  test('concurrent assumption writes get distinct revisions', async () => {
    const tenantId = 'assumptions';
    await createTenant(stores[0]!, tenantId);
    const written = await Promise.all(
      stores.map((store, i) =>
        store.putShadowAssumptions(tenantId, `{"n":${i}}`, '2026-03-01T00:00:00.000Z'),
      ),
    );
    assert.deepEqual(written.map((row) => row.revision).sort(), [1, 2, 3]);
    const current = await stores[0]!.getShadowAssumptions(tenantId);
    assert.equal(current?.revision, 3);
  });
});

describe(`schema upgrade on ${TEST_ENGINE}`, () => {
  test('version 1 data survives migration to latest', async () => {
    const location = await createLocation();
    try {
      const old = openStore(location, MIGRATIONS.slice(0, 1));
      const first = await old.migrate();
      assert.equal(first.current, 1);
      // Rows as the version 1 code wrote them: the current store code expects the latest schema.
      await runSql(
        location,
        'INSERT INTO tenants (tenant_id, created_at, phi_policy, hmac_secret_sealed) VALUES (?, ?, ?, ?)',
        ['legacy', '2026-01-01T00:00:00Z', 'flag', 'sealed'],
      );
      await runSql(
        location,
        `INSERT INTO signing_keys (tenant_id, key_id, algorithm, status, valid_from, valid_until,
           public_key_pem, private_key_sealed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [
          'legacy',
          'legacy-key',
          'ES256',
          'active',
          '2026-01-01T00:00:00Z',
          null,
          'public',
          'sealed',
          '2026-01-01T00:00:00Z',
        ],
      );
      await runSql(
        location,
        'INSERT INTO chain_heads (tenant_id, chain_sequence, chain_hash) VALUES (?, 0, NULL)',
        ['legacy'],
      );
      const legacyRow = seal('legacy')(newItem(), { sequence: 1, previousHash: null });
      await runSql(
        location,
        `INSERT INTO certificates (tenant_id, chain_sequence, certificate_id, issued_at_utc, model_version,
           governance_policy_version, human_reviewed, chain_hash, previous_hash, key_id, signed_message, signature)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [
          legacyRow.tenant_id,
          legacyRow.chain_sequence,
          legacyRow.certificate_id,
          legacyRow.issued_at_utc,
          legacyRow.model_version,
          legacyRow.governance_policy_version,
          legacyRow.human_reviewed ? 1 : 0,
          legacyRow.chain_hash,
          legacyRow.previous_hash,
          legacyRow.key_id,
          legacyRow.signed_message,
          legacyRow.signature,
        ],
      );
      await runSql(
        location,
        'INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, certificate_id, created_at) VALUES (?, ?, ?, ?, ?)',
        ['legacy', 'legacy-key', 'legacy-hash', legacyRow.certificate_id, '2026-01-01T00:00:00Z'],
      );
      await runSql(
        location,
        'UPDATE chain_heads SET chain_sequence = 1, chain_hash = ? WHERE tenant_id = ?',
        [legacyRow.chain_hash, 'legacy'],
      );
      const shadowTables = await runSql(
        location,
        'SELECT 1 AS found FROM schema_migrations WHERE version = 2',
      );
      assert.equal(shadowTables.length, 0);
      await old.close();

      const store = openStore(location);
      try {
        const report = await store.migrate();
        assert.equal(report.current, LATEST_SCHEMA_VERSION);
        assert.deepEqual(
          report.applied,
          MIGRATIONS.slice(1).map((migration) => `${migration.version} ${migration.name}`),
        );
        assert.deepEqual((await store.migrate()).applied, []);

        const tenant = await store.getTenant('legacy');
        assert.equal(tenant?.phi_policy, 'flag');
        assert.equal(tenant?.timestamp_policy, 'best_effort');
        assert.equal(tenant?.timestamp_certificates, false);
        const chain = await walkChain(store, 'legacy');
        assert.equal(chain.length, 1);
        // The certificate from before the log existed became its first leaf at start-up.
        const legacy = await store.getCertificate('legacy', legacyRow.certificate_id);
        assert.equal(legacy?.log_index, 0);
        assert.equal((await store.getLogHead('legacy'))?.tree_size, 1);
        const replay = await store.appendCertificates(
          'legacy',
          [newItem({ idempotencyKey: 'legacy-key', requestHash: 'legacy-hash' })],
          seal('legacy'),
        );
        assert.equal(replay[0]?.kind, 'replayed');
        await store.appendCertificates('legacy', [newItem()], seal('legacy'));
        assert.equal((await walkChain(store, 'legacy')).length, 2);

        await store.insertShadowItems([shadowItem('legacy', 'item-1', chain[0]!)]);
        const item = await store.getShadowItem('legacy', 'item-1');
        assert.equal(item?.mean_completeness, 1 / 3);
        assert.equal(item?.certificate_note_match, true);
        assert.equal(item?.has_deficit, true);
        const aggregate = await store.aggregateShadowItems('legacy', {});
        assert.equal(aggregate.items, 1);
        assert.equal(aggregate.completeness_sum, 1 / 3);
        assert.deepEqual(aggregate.met, { monitor: 1, evaluate: 0, assess: 0, treat: 1 });
        assert.deepEqual(aggregate.gaps, [
          { condition_id: 'copd', element: 'evaluate', items: 1, attributed_cents: 210_000 },
        ]);
        assert.deepEqual(await store.listLinkedCertificateIds('legacy', {}, 10), [chain[0]]);
        const assumptions = await store.putShadowAssumptions('legacy', '{}', 'now');
        assert.equal(assumptions.revision, 1);

        assert.equal((await store.getTenant('legacy'))?.rate_limit_per_minute, null);
        const [legacyKey] = await store.listKeys('legacy');
        assert.equal(legacyKey?.revoked_at, null);
        const rotation = await store.rotateSigningKey('legacy', newKey('legacy', 'next'), now);
        assert.equal(rotation?.previous.key_id, 'legacy-key');
        assert.equal(rotation?.previous.status, 'retired');
        assert.equal(activeKeys(await store.listKeys('legacy'))[0]?.key_id, 'next');
      } finally {
        await store.close();
      }
    } finally {
      await location.remove();
    }
  });

  test('concurrent migrations apply each version once', async () => {
    const location = await createLocation();
    const stores = [openStore(location), openStore(location), openStore(location)];
    try {
      const reports = await Promise.all(stores.map((store) => store.migrate()));
      const applied = reports.flatMap((report) => report.applied);
      assert.equal(applied.length, MIGRATIONS.length);
      assert.ok(reports.every((report) => report.current === LATEST_SCHEMA_VERSION));
      const versions = await runSql(location, 'SELECT version FROM schema_migrations');
      assert.equal(versions.length, MIGRATIONS.length);
    } finally {
      for (const store of stores) {
        await store.close();
      }
      await location.remove();
    }
  });
});

describe(`read-only store on ${TEST_ENGINE}`, () => {
  function openReadOnly(location: StorageLocation): Store {
    return location.database.url === undefined
      ? new SqliteStore(join(location.dir, 'cdil.sqlite'), { readOnly: true })
      : new PgStore(location.database.url, { poolSize: 2, readOnly: true });
  }

  test('schema version is 0 before migration', async () => {
    const location = await createLocation();
    const store = openStore(location);
    try {
      assert.equal(await store.schemaVersion(), 0);
      await store.migrate();
      assert.equal(await store.schemaVersion(), LATEST_SCHEMA_VERSION);
    } finally {
      await store.close();
      await location.remove();
    }
  });

  test('read-only store reads and rejects writes', async () => {
    const location = await createLocation();
    const writable = openStore(location);
    const readOnly = openReadOnly(location);
    try {
      await writable.migrate();
      await runSql(
        location,
        'INSERT INTO tenants (tenant_id, created_at, phi_policy, hmac_secret_sealed) VALUES (?, ?, ?, ?)',
        ['read-only', '2026-01-01T00:00:00Z', 'flag', 'sealed'],
      );
      assert.equal(await readOnly.schemaVersion(), LATEST_SCHEMA_VERSION);
      assert.equal((await readOnly.getTenant('read-only'))?.rate_limit_per_minute, null);
      await assert.rejects(readOnly.setTenantRateLimit('read-only', 5), /read.?only/i);
      assert.equal((await writable.getTenant('read-only'))?.rate_limit_per_minute, null);
    } finally {
      await readOnly.close();
      await writable.close();
      await location.remove();
    }
  });
});

describe('SQLite planner statistics', { skip: TEST_ENGINE !== 'sqlite' && 'SQLite only' }, () => {
  test('issued_at range page uses its index', async () => {
    const location = await createLocation();
    const store = openStore(location);
    try {
      await store.migrate();
      await createTenant(store, 'planner');
      // One certificate per second, so a one-second window selects one certificate.
      const start = Date.parse('2026-01-01T00:00:00.000Z');
      const at = (sequence: number) => new Date(start + sequence * 1000).toISOString();
      const sealPlain = seal('planner');
      const sealTimed = (item: TestItem, link: ChainLink): CertificateRow => ({
        ...sealPlain(item, link),
        issued_at_utc: at(link.sequence),
      });
      for (let appended = 0; appended < OPTIMIZE_EVERY_APPENDS; appended += 1000) {
        const batch = Array.from({ length: 1000 }, () => newItem());
        await store.appendCertificates('planner', batch, sealTimed);
      }

      const filter = { issuedFrom: at(9000), issuedTo: at(9001) };
      const { sql, params } = certificateQuery('planner', filter, 0, 50);
      const plan = await runSql(location, `EXPLAIN QUERY PLAN ${sql}`, params);
      const details = plan.map((row) => String(row['detail'])).join(' / ');
      assert.match(details, /USING INDEX certificates_issued/);
      const page = await store.queryCertificates('planner', filter, 0, 50);
      assert.deepEqual(
        page.map((row) => row.chain_sequence),
        [9000],
      );
    } finally {
      await store.close();
      await location.remove();
    }
  });
});

/** Waits until some session of the test database waits for a row or table lock. */
/** Creates a logger that keeps the warning lines a store writes. */
function captureWarnings(): {
  logger: WarningLogger;
  lines: { details: object; message: string }[];
} {
  const lines: { details: object; message: string }[] = [];
  return { logger: { warn: (details, message) => lines.push({ details, message }) }, lines };
}

/** How an operation ended: the error it raised, or undefined, and the ms it took. */
interface TimedOutcome {
  error: unknown;
  elapsed: number;
}

/** Runs `operation` and resolves with how it ended and how long it took. Never rejects. */
function timed(operation: () => Promise<unknown>): Promise<TimedOutcome> {
  const started = Date.now();
  return operation().then(
    () => ({ error: undefined, elapsed: Date.now() - started }),
    (error: unknown) => ({ error, elapsed: Date.now() - started }),
  );
}

/**
 * Starts `first`, waits until it waits for a lock, then starts `second`, which queues behind it
 * as a second process's request would, and resolves with how both ended.
 */
async function queuedBehindLock(
  location: StorageLocation,
  first: () => Promise<unknown>,
  second: () => Promise<unknown>,
): Promise<TimedOutcome[]> {
  const firstOutcome = timed(first);
  await waitForLockWait(location, 1);
  const secondOutcome = timed(second);
  await waitForLockWait(location, 2);
  return Promise.all([firstOutcome, secondOutcome]);
}

/** Returns the SQL text of the first argument of a `pg` query call, whitespace collapsed. */
function statementText(config: unknown): string {
  const text = typeof config === 'string' ? config : (config as { text?: unknown }).text;
  return String(text).replace(/\s+/g, ' ').trim();
}

/**
 * Runs `work` while every `pg.Client` query is recorded, and returns the SQL texts in the order
 * they were issued. The store's pool creates `pg.Client` connections, so its queries are counted.
 */
async function recordStatements(work: () => Promise<void>): Promise<string[]> {
  const sent: string[] = [];
  const prototype = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = prototype.query;
  prototype.query = function (this: unknown, ...args: unknown[]) {
    sent.push(statementText(args[0]));
    return original.apply(this, args);
  };
  try {
    await work();
  } finally {
    prototype.query = original;
  }
  return sent;
}

describe(
  'PostgreSQL append statements',
  { skip: TEST_ENGINE !== 'postgres' && 'needs DATABASE_URL' },
  () => {
    test('statement count independent of batch and tenants', async () => {
      const location = await createLocation();
      const store = openStore(location);
      try {
        await store.migrate();
        const tenantId = 'statements';
        await createTenant(store, tenantId);
        const bySize = new Map<number, string[]>();
        for (const size of [1, 16, 64]) {
          // Every item uses each feature that adds a statement: a key, the active key, an event.
          const items = Array.from({ length: size }, (_, i) =>
            newItem({
              idempotencyKey: `key-${size}-${i}`,
              requestHash: 'hash',
              signingKeyId: `${tenantId}-key`,
              auditEvent: () => auditEvent('certificate.issue'),
            }),
          );
          let results: AppendResult[] = [];
          const sent = await recordStatements(async () => {
            results = await store.appendCertificates(tenantId, items, seal(tenantId));
          });
          assert.equal(results.length, size);
          assert.ok(
            results.every((result) => result.kind === 'created'),
            results.map((result) => result.kind).join(', '),
          );
          bySize.set(size, sent);
        }
        const single = bySize.get(1)!;
        assert.deepEqual(bySize.get(16), single, 'batch of 16 against batch of 1');
        assert.deepEqual(bySize.get(64), single, 'batch of 64 against batch of 1');
        // BEGIN, lock wait bound, log head insert, bound shortened by the insert's wait, head
        // lock, bound reset, active key, key lookup, 4 inserts, 2 head updates, COMMIT.
        assert.equal(single.length, 15, single.join('\n'));
        assert.equal((await walkChain(store, tenantId)).length, 1 + 16 + 64);
        assert.equal((await store.getLogHead(tenantId))?.tree_size, 2 * (1 + 16 + 64));

        // As many statements append for several tenants at once, none of which has a log head
        // yet. The text of some differs between one tenant and several (see tenant-sql.ts).
        const byTenants = new Map<number, string[]>();
        const tenantIds = Array.from({ length: 50 }, (_, i) => `statements-${i}`);
        for (const id of tenantIds) {
          await createTenant(store, id);
        }
        for (const tenants of [1, 5, 50]) {
          const groups = tenantIds.slice(0, tenants).map((id) => ({
            tenantId: id,
            items: [0, 1].map((i) =>
              newGroupItem(id, {
                idempotencyKey: `key-${tenants}-${i}`,
                requestHash: 'hash',
                signingKeyId: `${id}-key`,
                auditEvent: () => auditEvent('certificate.issue'),
              }),
            ),
          }));
          let results: AppendResult[][] = [];
          const sent = await recordStatements(async () => {
            results = await store.appendCertificateGroups(groups, sealGroupItem);
          });
          assert.equal(results.length, tenants);
          const kinds = results.flat().map((result) => result.kind);
          assert.deepEqual(kinds, Array<string>(2 * tenants).fill('created'), kinds.join(', '));
          byTenants.set(tenants, sent);
        }
        assert.deepEqual(byTenants.get(1), single, 'one group against appendCertificates');
        // The same statements, with the shorter lock wait bound of several tenants.
        assert.equal(byTenants.get(5)!.length, single.length, byTenants.get(5)!.join('\n'));
        assert.deepEqual(byTenants.get(50), byTenants.get(5), '50 tenants against 5');
        for (const [i, id] of tenantIds.entries()) {
          // Tenant i took part in the appends for 1, 5 and 50 tenants that included it.
          const appends = [1, 5, 50].filter((tenants) => i < tenants).length;
          assert.equal((await walkChain(store, id)).length, 2 * appends, id);
          assert.equal((await store.getLogHead(id))?.tree_size, 4 * appends, id);
        }
      } finally {
        await store.close();
        await location.remove();
      }
    });
  },
);

describe(
  'PostgreSQL idempotency',
  { skip: TEST_ENGINE !== 'postgres' && 'needs DATABASE_URL' },
  () => {
    test('key taken during an append is replayed', async () => {
      const location = await createLocation();
      const store = openStore(location);
      try {
        await store.migrate();
        await createTenant(store, 'bypass');
        const [first] = await store.appendCertificates('bypass', [newItem()], seal('bypass'));
        assert.equal(first?.kind, 'created');
        const storedId = first.kind === 'created' ? first.row.certificate_id : '';
        let results: AppendResult[];
        // Another connection claims the key in an open transaction, standing in for a writer that
        // ignores the chain head lock. The store cannot see the uncommitted key when it looks it
        // up, so its own insert waits on that row until the other transaction commits.
        const rival = new pg.Client({ connectionString: location.database.url });
        await rival.connect();
        try {
          await rival.query('BEGIN');
          await rival.query(
            'INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, certificate_id, created_at) VALUES ($1, $2, $3, $4, $5)',
            ['bypass', 'late', 'same', storedId, 'now'],
          );
          const pending = store.appendCertificates(
            'bypass',
            [newItem({ idempotencyKey: 'late', requestHash: 'same' })],
            seal('bypass'),
          );
          await waitForLockWait(location);
          await rival.query('COMMIT');
          results = await pending;
        } finally {
          await rival.end();
        }
        assert.equal(results[0]?.kind, 'replayed');
        assert.equal(results[0]?.kind === 'replayed' && results[0].row.certificate_id, storedId);
        assert.equal((await walkChain(store, 'bypass')).length, 1);
      } finally {
        await store.close();
        await location.remove();
      }
    });

    test('key taken mid-batch keeps chain contiguous', async () => {
      const location = await createLocation();
      const store = openStore(location);
      try {
        await store.migrate();
        await createTenant(store, 'bypass');
        const [first] = await store.appendCertificates('bypass', [newItem()], seal('bypass'));
        const storedId = first?.kind === 'created' ? first.row.certificate_id : '';
        const items = [
          newItem({ idempotencyKey: 'before', requestHash: 'h' }),
          newItem({ idempotencyKey: 'late', requestHash: 'other' }),
          newItem({ idempotencyKey: 'after', requestHash: 'h' }),
        ];
        let results: AppendResult[];
        const rival = new pg.Client({ connectionString: location.database.url });
        await rival.connect();
        try {
          await rival.query('BEGIN');
          await rival.query(
            'INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, certificate_id, created_at) VALUES ($1, $2, $3, $4, $5)',
            ['bypass', 'late', 'same', storedId, 'now'],
          );
          const pending = store.appendCertificates('bypass', items, seal('bypass'));
          await waitForLockWait(location);
          await rival.query('COMMIT');
          results = await pending;
        } finally {
          await rival.end();
        }
        // The rival's key has another request hash, so its item is a conflict, and the two
        // other items take the next two places in the chain.
        assert.deepEqual(
          results.map((result) => result.kind),
          ['created', 'conflict', 'created'],
        );
        const chain = await walkChain(store, 'bypass');
        assert.deepEqual(chain, [storedId, items[0]!.certificateId, items[2]!.certificateId]);
        const keys = await runSql(
          location,
          'SELECT idempotency_key, certificate_id FROM idempotency_keys ORDER BY idempotency_key',
        );
        assert.deepEqual(keys, [
          { idempotency_key: 'after', certificate_id: items[2]!.certificateId },
          { idempotency_key: 'before', certificate_id: items[0]!.certificateId },
          { idempotency_key: 'late', certificate_id: storedId },
        ]);
      } finally {
        await store.close();
        await location.remove();
      }
    });
  },
);

/** Seals as sealGroupItem does, with a fixed issue time, so equal items give equal rows. */
function sealFixed(item: GroupItem, link: ChainLink): CertificateRow {
  return { ...sealGroupItem(item, link), issued_at_utc: '2026-03-01T10:00:00.000Z' };
}

/** Builds the issuance event of a certificate from its row alone, so equal rows give equal events. */
function fixedIssueEvent(row: CertificateRow): NewAuditEvent {
  const eventId = `${row.certificate_id}-issued`;
  return {
    event_id: eventId,
    occurred_at: row.issued_at_utc,
    action: 'certificate.issue',
    outcome: 'success',
    actor_hash: null,
    object_type: 'certificate',
    object_id: row.certificate_id,
    event_json: `{"event_id":"${eventId}","sequence":${row.chain_sequence}}`,
  };
}

/** Returns the rows every append writes, of all tenants, in a fixed order. */
async function readAppendTables(location: StorageLocation): Promise<Record<string, unknown[]>> {
  const queries: Record<string, string> = {
    certificates: 'SELECT * FROM certificates ORDER BY tenant_id, chain_sequence',
    chain_heads: 'SELECT * FROM chain_heads ORDER BY tenant_id',
    log_heads: 'SELECT * FROM log_heads ORDER BY tenant_id',
    log_nodes: 'SELECT * FROM log_nodes ORDER BY tenant_id, level, node_index',
    audit_events: 'SELECT * FROM audit_events ORDER BY tenant_id, log_index',
    // created_at is the time of the append, which differs between two databases.
    idempotency_keys: `SELECT tenant_id, idempotency_key, request_hash, certificate_id
      FROM idempotency_keys ORDER BY tenant_id, idempotency_key`,
  };
  const tables: Record<string, unknown[]> = {};
  for (const [table, sql] of Object.entries(queries)) {
    tables[table] = await runSql(location, sql);
  }
  return tables;
}

/**
 * Checks the tenant's log against its stored leaves: indexes dense from 0, the head equal to the
 * head recomputed from the leaves, and each certificate leaf followed by an audit event leaf.
 * Returns the number of leaves.
 */
async function checkLog(store: Store, tenantId: string): Promise<number> {
  const head = await store.getLogHead(tenantId);
  assert.ok(head, `log head of ${tenantId}`);
  const entries = await store.listLogEntries(tenantId, 0, head.tree_size);
  assert.deepEqual(
    entries.map((entry) => entry.log_index),
    Array.from({ length: head.tree_size }, (_, i) => i),
    `log indexes of ${tenantId}`,
  );
  const recomputed = extendLog(
    EMPTY_LOG_HEAD,
    entries.map((entry) => entry.data),
  );
  assert.deepEqual(head, recomputed.head, `log head of ${tenantId} against its leaves`);
  for (const [position, entry] of entries.entries()) {
    if (entry.kind === 'certificate') {
      assert.equal(entries[position + 1]?.kind, 'audit_event', `leaf after ${entry.id}`);
    }
  }
  return head.tree_size;
}

describe(`multi-tenant append on ${TEST_ENGINE}`, () => {
  test('groups equal appending each alone', async () => {
    const grouped = await createLocation();
    const alone = await createLocation();
    const groupedStore = openStore(grouped);
    const aloneStore = openStore(alone);
    try {
      const tenantIds = ['group-0', 'group-1', 'group-2', 'group-3', 'group-4'];
      const stored = newGroupItem('group-1', { idempotencyKey: 'stored', requestHash: 'h1' });
      for (const store of [groupedStore, aloneStore]) {
        await store.migrate();
        for (const tenantId of tenantIds) {
          await createTenant(store, tenantId);
        }
        // group-1 has a chain and a log before the append, and one stored key.
        await store.appendCertificates(
          'group-1',
          [stored, newGroupItem('group-1', { certificateId: 'group-1-first' })].map((item) => ({
            ...item,
            auditEvent: fixedIssueEvent,
          })),
          sealFixed,
        );
        await store.rotateSigningKey('group-2', newKey('group-2', 'group-2-next'), now);
      }
      const item = (tenantId: string, extra: Partial<TestItem> = {}) =>
        newGroupItem(tenantId, { auditEvent: fixedIssueEvent, ...extra });
      // Not in tenant order, and with an empty group.
      const groups: AppendGroup<GroupItem>[] = [
        { tenantId: 'group-3', items: [] },
        {
          tenantId: 'group-1',
          items: [
            item('group-1', { idempotencyKey: 'stored', requestHash: 'h1' }),
            item('group-1', { idempotencyKey: 'stored', requestHash: 'other' }),
            item('group-1', { idempotencyKey: 'shared', requestHash: 'h2' }),
            item('group-1', { idempotencyKey: 'shared', requestHash: 'h2' }),
            item('group-1'),
          ],
        },
        {
          tenantId: 'group-4',
          // Keys belong to a tenant, so group-1's keys are new for group-4.
          items: [
            item('group-4', { idempotencyKey: 'shared', requestHash: 'h3' }),
            item('group-4', { idempotencyKey: 'stored', requestHash: 'h1' }),
            item('group-4'),
          ],
        },
        { tenantId: 'group-0', items: [item('group-0'), item('group-0'), item('group-0')] },
        {
          tenantId: 'group-2',
          items: [
            item('group-2', { signingKeyId: 'group-2-key' }),
            item('group-2', { signingKeyId: 'group-2-next' }),
          ],
        },
      ];

      const groupedResults = await groupedStore.appendCertificateGroups(groups, sealFixed);
      const aloneResults: AppendResult[][] = [];
      for (const group of groups) {
        aloneResults.push(
          await aloneStore.appendCertificates(group.tenantId, group.items, sealFixed),
        );
      }

      assert.deepEqual(groupedResults, aloneResults);
      assert.deepEqual(
        groupedResults.map((results) => results.map((result) => result.kind)),
        [
          [],
          ['replayed', 'conflict', 'created', 'replayed', 'created'],
          ['created', 'created', 'created'],
          ['created', 'created', 'created'],
          ['key_inactive', 'created'],
        ],
      );
      assert.deepEqual(groupedResults[1]![0], {
        kind: 'replayed',
        row: await groupedStore.getCertificate('group-1', stored.certificateId),
      });
      assert.deepEqual(groupedResults[4]![0], {
        kind: 'key_inactive',
        activeKeyId: 'group-2-next',
      });
      const groupedTables = await readAppendTables(grouped);
      const aloneTables = await readAppendTables(alone);
      for (const table of Object.keys(aloneTables)) {
        assert.deepEqual(groupedTables[table], aloneTables[table], table);
      }
      // group-3 appended nothing, and the append created its empty log as an append alone does.
      assert.deepEqual(await groupedStore.getLogHead('group-3'), EMPTY_LOG_HEAD);
      assert.deepEqual(await walkChain(groupedStore, 'group-1'), [
        stored.certificateId,
        'group-1-first',
        groups[1]!.items[2]!.certificateId,
        groups[1]!.items[4]!.certificateId,
      ]);
      for (const tenantId of ['group-0', 'group-1', 'group-2', 'group-4']) {
        const certificates = (await walkChain(groupedStore, tenantId)).length;
        assert.equal(await checkLog(groupedStore, tenantId), 2 * certificates, tenantId);
      }
    } finally {
      await groupedStore.close();
      await aloneStore.close();
      await grouped.remove();
      await alone.remove();
    }
  });

  test('overlapping groups in opposite orders', async () => {
    const location = await createLocation();
    const first = openStore(location);
    const second = openStore(location);
    try {
      await first.migrate();
      const tenantIds = Array.from({ length: 10 }, (_, i) => `overlap-${i}`);
      for (const tenantId of tenantIds) {
        await createTenant(first, tenantId);
      }
      // The first store appends for tenants 0 to 7 in that order and the second for 9 down to
      // 2, so tenants 2 to 7 are in both. Four appends run at once per store.
      const forward = tenantIds.slice(0, 8);
      const backward = tenantIds.slice(2).reverse();
      const created = new Map<string, string[]>(tenantIds.map((id) => [id, []]));
      const run = async (store: Store, order: string[], worker: string) => {
        for (let round = 0; round < 6; round++) {
          const groups = order.map((tenantId) => ({
            tenantId,
            items: [0, 1].map((i) =>
              newGroupItem(tenantId, {
                idempotencyKey: `${worker}-${round}-${i}`,
                requestHash: 'h',
                auditEvent: () => auditEvent('certificate.issue'),
              }),
            ),
          }));
          const results = await store.appendCertificateGroups(groups, sealGroupItem);
          for (const [g, group] of groups.entries()) {
            let kinds = results[g]!.map((result) => result.kind);
            if (kinds[0] === 'tenant_locked') {
              // PostgreSQL leaves out a tenant another append holds; it is appended alone.
              const [alone] = await store.appendCertificateGroups([group], sealGroupItem);
              kinds = alone!.map((result) => result.kind);
            }
            assert.deepEqual(kinds, ['created', 'created'], `${worker} ${group.tenantId}`);
            created.get(group.tenantId)!.push(...group.items.map((item) => item.certificateId));
          }
        }
      };
      await Promise.all([
        ...[0, 1, 2, 3].map((w) => run(first, forward, `forward-${w}`)),
        ...[0, 1, 2, 3].map((w) => run(second, backward, `backward-${w}`)),
      ]);
      for (const tenantId of tenantIds) {
        const chain = await walkChain(first, tenantId);
        const acknowledged = created.get(tenantId)!;
        assert.deepEqual([...chain].sort(), [...acknowledged].sort(), tenantId);
        assert.equal(await checkLog(second, tenantId), 2 * chain.length, tenantId);
      }
      assert.equal(created.get('overlap-0')!.length, 4 * 6 * 2);
      assert.equal(created.get('overlap-5')!.length, 2 * 4 * 6 * 2);
    } finally {
      await first.close();
      await second.close();
      await location.remove();
    }
  });

  test('missing tenant stores nothing', async () => {
    const location = await createLocation();
    const store = openStore(location);
    try {
      await store.migrate();
      await createTenant(store, 'present-a');
      await createTenant(store, 'present-b');
      await store.appendCertificates(
        'present-a',
        [newItem({ auditEvent: () => auditEvent('certificate.issue') })],
        seal('present-a'),
      );
      const before = await readAppendTables(location);
      const groups = [
        {
          tenantId: 'present-a',
          items: [newGroupItem('present-a', { idempotencyKey: 'k', requestHash: 'h' })],
        },
        { tenantId: 'no-such-tenant', items: [newGroupItem('no-such-tenant')] },
        // present-b has no log head yet, and the failed append must not leave one.
        {
          tenantId: 'present-b',
          items: [newGroupItem('present-b', { auditEvent: () => auditEvent() })],
        },
      ];
      await assert.rejects(
        store.appendCertificateGroups(groups, sealGroupItem),
        /tenant no-such-tenant has no chain head/,
      );
      assert.deepEqual(await readAppendTables(location), before);
      assert.equal(await store.getLogHead('present-b'), undefined);

      // The other groups append once the missing tenant is left out.
      const results = await store.appendCertificateGroups([groups[0]!, groups[2]!], sealGroupItem);
      assert.deepEqual(
        results.map((group) => group.map((result) => result.kind)),
        [['created'], ['created']],
      );
      assert.equal((await walkChain(store, 'present-a')).length, 2);
      assert.equal((await walkChain(store, 'present-b')).length, 1);
    } finally {
      await store.close();
      await location.remove();
    }
  });

  test('invalid groups store nothing', async () => {
    const location = await createLocation();
    const store = openStore(location);
    try {
      await store.migrate();
      await createTenant(store, 'checked-a');
      await createTenant(store, 'checked-b');
      const before = await readAppendTables(location);
      await assert.rejects(
        store.appendCertificateGroups(
          [
            { tenantId: 'checked-a', items: [newGroupItem('checked-a')] },
            { tenantId: 'checked-b', items: [newGroupItem('checked-b')] },
            { tenantId: 'checked-a', items: [newGroupItem('checked-a')] },
          ],
          sealGroupItem,
        ),
        (error: unknown) => error instanceof TypeError && /checked-a/.test(error.message),
      );
      // A sealer that returns another tenant's certificate would put it in the wrong chain.
      await assert.rejects(
        store.appendCertificateGroups(
          [
            { tenantId: 'checked-a', items: [newGroupItem('checked-a')] },
            { tenantId: 'checked-b', items: [newGroupItem('checked-a')] },
          ],
          sealGroupItem,
        ),
        /sealer returned a certificate for tenant checked-a in the group of tenant checked-b/,
      );
      assert.deepEqual(await readAppendTables(location), before);
      assert.deepEqual(await store.appendCertificateGroups([], sealGroupItem), []);
    } finally {
      await store.close();
      await location.remove();
    }
  });
});

describe(
  'PostgreSQL multi-tenant append',
  { skip: TEST_ENGINE !== 'postgres' && 'needs DATABASE_URL' },
  () => {
    test('key taken during a multi-tenant append', async () => {
      const location = await createLocation();
      const store = openStore(location);
      try {
        await store.migrate();
        await createTenant(store, 'claim-a');
        await createTenant(store, 'claim-b');
        const [first] = await store.appendCertificates('claim-b', [newItem()], seal('claim-b'));
        const storedId = first?.kind === 'created' ? first.row.certificate_id : '';
        const groups = [
          { tenantId: 'claim-a', items: [newGroupItem('claim-a'), newGroupItem('claim-a')] },
          {
            tenantId: 'claim-b',
            items: [newGroupItem('claim-b', { idempotencyKey: 'late', requestHash: 'same' })],
          },
        ];
        let results: AppendResult[][];
        // As in the single-tenant case above: the rival's uncommitted key makes the append's
        // insert wait and then fail, and the retry appends both groups again from their heads.
        const rival = new pg.Client({ connectionString: location.database.url });
        await rival.connect();
        try {
          await rival.query('BEGIN');
          await rival.query(
            'INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, certificate_id, created_at) VALUES ($1, $2, $3, $4, $5)',
            ['claim-b', 'late', 'same', storedId, 'now'],
          );
          const pending = store.appendCertificateGroups(groups, sealGroupItem);
          await waitForLockWait(location);
          await rival.query('COMMIT');
          results = await pending;
        } finally {
          await rival.end();
        }
        assert.deepEqual(
          results.map((group) => group.map((result) => result.kind)),
          [['created', 'created'], ['replayed']],
        );
        assert.equal(
          results[1]![0]?.kind === 'replayed' && results[1]![0].row.certificate_id,
          storedId,
        );
        assert.deepEqual(
          await walkChain(store, 'claim-a'),
          groups[0]!.items.map((item) => item.certificateId),
        );
        assert.deepEqual(await walkChain(store, 'claim-b'), [storedId]);
      } finally {
        await store.close();
        await location.remove();
      }
    });

    test('locked tenant left out of a batch', async () => {
      const location = await createLocation();
      const store = new PgStore(location.database.url!, { poolSize: 2 });
      const rival = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        for (const tenant of ['skip-a', 'skip-b', 'skip-c']) {
          await createTenant(store, tenant);
        }
        await rival.connect();
        for (const table of ['chain_heads', 'log_heads']) {
          // skip-a's chain head is held the first time, skip-c's log head the second.
          const held = table === 'chain_heads' ? 'skip-a' : 'skip-c';
          await rival.query('BEGIN');
          if (table === 'log_heads') {
            // A log head row exists once the tenant's log has an entry.
            await store.appendCertificateGroups(
              [{ tenantId: held, items: [newGroupItem(held)] }],
              sealGroupItem,
            );
          }
          await rival.query(`SELECT 1 FROM ${table} WHERE tenant_id = $1 FOR UPDATE`, [held]);
          const groups = ['skip-a', 'skip-b', 'skip-c'].map((tenantId) => ({
            tenantId,
            items: [newGroupItem(tenantId), newGroupItem(tenantId)],
          }));
          const started = Date.now();
          const results = await store.appendCertificateGroups(groups, sealGroupItem);
          const elapsed = Date.now() - started;
          await rival.query('ROLLBACK');
          assert.ok(elapsed < 5_000, `the append waited ${elapsed} ms for the held ${table} row`);
          for (const [index, group] of groups.entries()) {
            const kinds = results[index]!.map((result) => result.kind);
            const expected = group.tenantId === held ? 'tenant_locked' : 'created';
            assert.deepEqual(kinds, [expected, expected], `${table}: ${group.tenantId}`);
          }
          const [alone] = await store.appendCertificateGroups(
            [groups.find((group) => group.tenantId === held)!],
            sealGroupItem,
          );
          assert.deepEqual(
            alone!.map((result) => result.kind),
            ['created', 'created'],
          );
        }
        // Every chain stayed unbroken: walkChain fails on a gap or a fork.
        assert.equal((await walkChain(store, 'skip-a')).length, 4);
        assert.equal((await walkChain(store, 'skip-b')).length, 4);
        assert.equal((await walkChain(store, 'skip-c')).length, 5);
      } finally {
        await rival.end();
        await store.close();
        await location.remove();
      }
    });

    test('lock held too long fails as busy', async () => {
      const location = await createLocation();
      const store = new PgStore(location.database.url!, { poolSize: 2, lockTimeoutMs: 300 });
      const rival = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        await createTenant(store, 'held-a');
        await rival.connect();
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'held-a' FOR UPDATE");
        await assert.rejects(
          store.appendCertificateGroups(
            [{ tenantId: 'held-a', items: [newGroupItem('held-a')] }],
            sealGroupItem,
          ),
          (error: unknown) => error instanceof StoreBusyError && /300 ms/.test(error.message),
        );
        await rival.query('ROLLBACK');
        const [results] = await store.appendCertificateGroups(
          [{ tenantId: 'held-a', items: [newGroupItem('held-a')] }],
          sealGroupItem,
        );
        assert.equal(results?.[0]?.kind, 'created');
      } finally {
        await rival.end();
        await store.close();
        await location.remove();
      }
    });

    test('append queued behind a waiter fails in time', async () => {
      // PostgreSQL applies lock_timeout to each lock it waits for. The first waiter for a held
      // row waits for the holder. The next one waits for the row's tuple lock, which the first
      // waiter holds until it gives up, and then for the holder with a new timeout.
      const lockTimeoutMs = 2_000;
      const location = await createLocation();
      const store = new PgStore(location.database.url!, { poolSize: 4, lockTimeoutMs });
      const rival = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        // With a creation event, as the service creates tenants, the tenant has a log head.
        await createTenant(store, 'queue-a', auditEvent('tenant.create'));
        await rival.connect();
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'queue-a' FOR UPDATE");
        const append = () =>
          store.appendCertificateGroups(
            [{ tenantId: 'queue-a', items: [newGroupItem('queue-a')] }],
            sealGroupItem,
          );
        const outcomes = await queuedBehindLock(location, append, append);
        await rival.query('ROLLBACK');
        for (const [index, { error, elapsed }] of outcomes.entries()) {
          assert.ok(error instanceof StoreBusyError, `append ${index + 1}: ${String(error)}`);
          // Without one bound for the whole wait the second append fails after about twice
          // the lock timeout.
          assert.ok(
            elapsed < lockTimeoutMs * 1.5,
            `append ${index + 1} failed after ${elapsed} ms`,
          );
        }
        const [results] = await store.appendCertificateGroups(
          [{ tenantId: 'queue-a', items: [newGroupItem('queue-a')] }],
          sealGroupItem,
        );
        assert.equal(results?.[0]?.kind, 'created');
      } finally {
        await rival.end();
        await store.close();
        await location.remove();
      }
    });

    test('chain head and log head waits share one bound', async () => {
      const lockTimeoutMs = 2_000;
      const location = await createLocation();
      const store = new PgStore(location.database.url!, { poolSize: 2, lockTimeoutMs });
      const chainHolder = new pg.Client({ connectionString: location.database.url });
      const logHolder = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        // The creation event gives the tenant a log head row to hold.
        await createTenant(store, 'both-a', auditEvent('tenant.create'));
        await chainHolder.connect();
        await logHolder.connect();
        await chainHolder.query('BEGIN');
        await chainHolder.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'both-a' FOR UPDATE");
        await logHolder.query('BEGIN');
        await logHolder.query("SELECT 1 FROM log_heads WHERE tenant_id = 'both-a' FOR UPDATE");
        const failed = timed(() =>
          store.appendCertificateGroups(
            [{ tenantId: 'both-a', items: [newGroupItem('both-a')] }],
            sealGroupItem,
          ),
        );
        await waitForLockWait(location);
        // The chain head is released after three quarters of the timeout, and the log head
        // stays held.
        await new Promise((resolve) => setTimeout(resolve, lockTimeoutMs * 0.75));
        await chainHolder.query('ROLLBACK');
        const { error, elapsed } = await failed;
        await logHolder.query('ROLLBACK');
        assert.ok(error instanceof StoreBusyError, String(error));
        assert.ok(elapsed < lockTimeoutMs * 1.4, `the append failed after ${elapsed} ms`);
        const [results] = await store.appendCertificateGroups(
          [{ tenantId: 'both-a', items: [newGroupItem('both-a')] }],
          sealGroupItem,
        );
        assert.equal(results?.[0]?.kind, 'created');
        assert.equal((await walkChain(store, 'both-a')).length, 1);
      } finally {
        await chainHolder.end();
        await logHolder.end();
        await store.close();
        await location.remove();
      }
    });

    test('first append of a tenant without log head waits one bound', async () => {
      // A tenant created without a creation event has no log head row, as a tenant created
      // before the Merkle log existed. Its first append inserts one and then waits for the held
      // chain head. A second append waits for that insert, which ends only when the first
      // append gives up, and then for the chain head.
      const lockTimeoutMs = 2_000;
      const location = await createLocation();
      const store = new PgStore(location.database.url!, { poolSize: 4, lockTimeoutMs });
      const rival = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        await createTenant(store, 'old-a');
        assert.equal(await store.getLogHead('old-a'), undefined);
        await rival.connect();
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'old-a' FOR UPDATE");
        const append = () =>
          store.appendCertificateGroups(
            [{ tenantId: 'old-a', items: [newGroupItem('old-a')] }],
            sealGroupItem,
          );
        const outcomes = await queuedBehindLock(location, append, append);
        await rival.query('ROLLBACK');
        for (const [index, { error, elapsed }] of outcomes.entries()) {
          assert.ok(error instanceof StoreBusyError, `append ${index + 1}: ${String(error)}`);
          // Without one bound for the insert and the lock, the second append fails after about
          // twice the lock timeout.
          assert.ok(
            elapsed < lockTimeoutMs * 1.5,
            `append ${index + 1} failed after ${elapsed} ms`,
          );
        }
        const [results] = await store.appendCertificateGroups(
          [{ tenantId: 'old-a', items: [newGroupItem('old-a')] }],
          sealGroupItem,
        );
        assert.equal(results?.[0]?.kind, 'created');
        assert.equal((await walkChain(store, 'old-a')).length, 1);
        assert.equal((await store.getLogHead('old-a'))?.tree_size, 1);
      } finally {
        await rival.end();
        await store.close();
        await location.remove();
      }
    });

    test('audit append on a held log head fails in time', async () => {
      const lockTimeoutMs = 2_000;
      const location = await createLocation();
      const store = new PgStore(location.database.url!, { poolSize: 4, lockTimeoutMs });
      const rival = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        // log-a has a log head from its creation event, log-b gets its first one from the
        // audit append, which then waits for the rival's uncommitted insert of that row.
        await createTenant(store, 'log-a', auditEvent('tenant.create'));
        await createTenant(store, 'log-b');
        await rival.connect();
        for (const [tenantId, hold] of [
          ['log-a', "SELECT 1 FROM log_heads WHERE tenant_id = 'log-a' FOR UPDATE"],
          [
            'log-b',
            "INSERT INTO log_heads (tenant_id, tree_size, frontier) VALUES ('log-b', 0, '')",
          ],
        ] as const) {
          await rival.query('BEGIN');
          await rival.query(hold);
          const events = [auditEvent(), auditEvent()];
          const outcomes = await queuedBehindLock(
            location,
            () => store.appendAuditEvents(tenantId, [events[0]!]),
            () => store.appendAuditEvents(tenantId, [events[1]!]),
          );
          await rival.query('ROLLBACK');
          for (const [index, { error, elapsed }] of outcomes.entries()) {
            const name = `${tenantId} append ${index + 1}`;
            assert.ok(error instanceof StoreBusyError, `${name}: ${String(error)}`);
            assert.match(error.message, /log head .* stayed locked .* 2000 ms/, name);
            assert.ok(elapsed < lockTimeoutMs * 1.5, `${name} failed after ${elapsed} ms`);
          }
          for (const event of events) {
            assert.equal(await store.getAuditEvent(event.event_id), undefined);
          }
          // Once the row is free, the same events are stored.
          const stored = await store.appendAuditEvents(tenantId, events);
          assert.deepEqual(
            stored.map((row) => row.event_id),
            events.map((event) => event.event_id),
          );
        }
        assert.equal((await store.getLogHead('log-a'))?.tree_size, 3);
        assert.equal((await store.getLogHead('log-b'))?.tree_size, 2);
      } finally {
        await rival.end();
        await store.close();
        await location.remove();
      }
    });

    test('key change on a held chain head fails in time', async () => {
      const lockTimeoutMs = 2_000;
      const location = await createLocation();
      const store = new PgStore(location.database.url!, { poolSize: 4, lockTimeoutMs });
      const rival = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        await createTenant(store, 'keys-a', auditEvent('tenant.create'));
        await rival.connect();
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'keys-a' FOR UPDATE");
        const outcomes = await queuedBehindLock(
          location,
          () => store.rotateSigningKey('keys-a', newKey('keys-a', 'keys-a-2'), () => new Date()),
          () =>
            store.revokeSigningKey(
              'keys-a',
              'keys-a-key',
              { reason: 'key_compromise', replacement: newKey('keys-a', 'keys-a-3') },
              () => new Date(),
            ),
        );
        await rival.query('ROLLBACK');
        for (const [index, { error, elapsed }] of outcomes.entries()) {
          const name = index === 0 ? 'rotation' : 'revocation';
          assert.ok(error instanceof StoreBusyError, `${name}: ${String(error)}`);
          assert.match(error.message, /chain head of tenant keys-a stayed locked .* 2000 ms/, name);
          assert.ok(elapsed < lockTimeoutMs * 1.5, `${name} failed after ${elapsed} ms`);
        }
        assert.deepEqual(
          (await store.listKeys('keys-a')).map((key) => [key.key_id, key.status]),
          [['keys-a-key', 'active']],
        );
        const rotated = await store.rotateSigningKey(
          'keys-a',
          newKey('keys-a', 'keys-a-2'),
          () => new Date(),
        );
        assert.equal(rotated?.current.key_id, 'keys-a-2');
      } finally {
        await rival.end();
        await store.close();
        await location.remove();
      }
    });

    test('key change on a held log head stores nothing', async () => {
      const lockTimeoutMs = 2_000;
      const location = await createLocation();
      const store = new PgStore(location.database.url!, { poolSize: 4, lockTimeoutMs });
      const rival = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        await createTenant(store, 'keys-b', auditEvent('tenant.create'));
        await rival.connect();
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM log_heads WHERE tenant_id = 'keys-b' FOR UPDATE");
        // The revocation waits for the chain head, which the rotation keeps locked while it
        // waits for the log head. Then the revocation waits for the log head, and both of its
        // waits share one bound.
        const outcomes = await queuedBehindLock(
          location,
          () =>
            store.rotateSigningKey(
              'keys-b',
              newKey('keys-b', 'keys-b-2'),
              () => new Date(),
              auditEvent('key.rotate'),
            ),
          () =>
            store.revokeSigningKey(
              'keys-b',
              'keys-b-key',
              { reason: 'key_compromise', replacement: newKey('keys-b', 'keys-b-3') },
              () => new Date(),
              auditEvent('key.revoke'),
            ),
        );
        const limit = await timed(() =>
          store.setTenantRateLimit('keys-b', 3, auditEvent('tenant.set_rate_limit')),
        );
        await rival.query('ROLLBACK');
        for (const [name, { error, elapsed }] of [
          ['rotation', outcomes[0]!],
          ['revocation', outcomes[1]!],
          ['rate limit', limit],
        ] as const) {
          assert.ok(error instanceof StoreBusyError, `${name}: ${String(error)}`);
          assert.match(error.message, /log head of tenant keys-b stayed locked .* 2000 ms/, name);
          assert.ok(elapsed < lockTimeoutMs * 1.5, `${name} failed after ${elapsed} ms`);
        }
        assert.deepEqual(
          (await store.listKeys('keys-b')).map((key) => [key.key_id, key.status]),
          [['keys-b-key', 'active']],
        );
        assert.equal((await store.getTenant('keys-b'))?.rate_limit_per_minute, null);
        assert.equal((await store.getLogHead('keys-b'))?.tree_size, 1);

        const rotation = auditEvent('key.rotate');
        const rotated = await store.rotateSigningKey(
          'keys-b',
          newKey('keys-b', 'keys-b-2'),
          () => new Date(),
          rotation,
        );
        assert.equal(rotated?.current.key_id, 'keys-b-2');
        assert.equal((await store.getAuditEvent(rotation.event_id))?.log_index, 1);
      } finally {
        await rival.end();
        await store.close();
        await location.remove();
      }
    });

    test('full pool fails as busy', async () => {
      const location = await createLocation();
      // One connection, which an append keeps while it waits for a locked chain head.
      const store = new PgStore(location.database.url!, {
        poolSize: 1,
        connectTimeoutMs: 300,
        lockTimeoutMs: 5_000,
      });
      const rival = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        await createTenant(store, 'pool-a');
        await rival.connect();
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'pool-a' FOR UPDATE");
        const appended = store
          .appendCertificateGroups(
            [{ tenantId: 'pool-a', items: [newGroupItem('pool-a')] }],
            sealGroupItem,
          )
          .then(
            (results) => ({ results, error: undefined as unknown }),
            (error: unknown) => ({ results: undefined, error }),
          );
        await waitForLockWait(location);
        const operations: [string, () => Promise<unknown>][] = [
          ['getTenant', () => store.getTenant('pool-a')],
          [
            'appendCertificates',
            () => store.appendCertificates('pool-a', [newItem()], seal('pool-a')),
          ],
        ];
        for (const [name, operation] of operations) {
          await assert.rejects(operation(), (error: unknown) => {
            assert.ok(error instanceof StoreBusyError, `${name}: ${String(error)}`);
            assert.match(
              error.message,
              /all 1 PostgreSQL connections of the pool stayed in use for 300 ms/,
            );
            assert.equal(
              (error.cause as Error).message,
              'timeout exceeded when trying to connect',
              name,
            );
            return true;
          });
        }
        await rival.query('ROLLBACK');
        const { results, error } = await appended;
        assert.equal(error, undefined);
        assert.equal(results?.[0]?.[0]?.kind, 'created');
        assert.equal((await store.getTenant('pool-a'))?.tenant_id, 'pool-a');
      } finally {
        await rival.end();
        await store.close();
        await location.remove();
      }
    });

    test('terminated connection does not end the process', async () => {
      const location = await createLocation();
      const warnings = captureWarnings();
      const store = new PgStore(location.database.url!, { poolSize: 2, logger: warnings.logger });
      const rival = new pg.Client({ connectionString: location.database.url });
      try {
        await store.migrate();
        await createTenant(store, 'cut-a');
        await rival.connect();
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'cut-a' FOR UPDATE");
        const pending = store.appendCertificateGroups(
          [{ tenantId: 'cut-a', items: [newGroupItem('cut-a')] }],
          sealGroupItem,
        );
        // Handled from now on: the append may fail before the statement below returns.
        const failed = assert.rejects(pending, (error: unknown) => {
          assert.ok(error instanceof StoreUnavailableError, String(error));
          assert.equal((error.cause as { code?: unknown }).code, '57P01');
          return true;
        });
        await waitForLockWait(location);
        // Ends the waiting session as a server restart or an operator would.
        await runSql(
          location,
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        );
        await failed;
        assert.equal(warnings.lines.length, 1, JSON.stringify(warnings.lines));
        assert.match(warnings.lines[0]!.message, /connection failed while in use/);
        await rival.query('ROLLBACK');
        const [results] = await store.appendCertificateGroups(
          [{ tenantId: 'cut-a', items: [newGroupItem('cut-a')] }],
          sealGroupItem,
        );
        assert.equal(results?.[0]?.kind, 'created');
        assert.equal((await walkChain(store, 'cut-a')).length, 1);
      } finally {
        await rival.end();
        await store.close();
        await location.remove();
      }
    });

    test('terminated idle connection is logged once', async () => {
      const location = await createLocation();
      const warnings = captureWarnings();
      const store = new PgStore(location.database.url!, { poolSize: 2, logger: warnings.logger });
      const processWarnings: string[] = [];
      const collect = (warning: Error) => processWarnings.push(warning.message);
      process.on('warning', collect);
      try {
        // Leaves one idle connection in the pool.
        await store.ping();
        await runSql(
          location,
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cdil'",
        );
        for (let attempt = 0; attempt < 200 && warnings.lines.length === 0; attempt++) {
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        // A failed client can emit 'error' twice: once for the server's message, once on close.
        await new Promise((resolve) => setTimeout(resolve, 100));
        assert.equal(warnings.lines.length, 1, JSON.stringify(warnings.lines));
        assert.match(warnings.lines[0]!.message, /^idle PostgreSQL connection failed/);
        assert.equal((warnings.lines[0]!.details as { code?: unknown }).code, '57P01');
        assert.deepEqual(processWarnings, []);
        // The pool opens a new connection for the next query.
        await store.ping();
      } finally {
        process.off('warning', collect);
        await store.close();
        await location.remove();
      }
    });

    test('session ended inside a transaction', async () => {
      const location = await createLocation();
      const store = new PgStore(location.database.url!, {
        poolSize: 2,
        logger: captureWarnings().logger,
      });
      try {
        await store.migrate();
        await createTenant(store, 'ended-a');
        // Sealing runs between the two round trips of an append, while the transaction is idle
        // on the server. Blocking there, another process ends the session, as the server does
        // for a transaction idle longer than idle_in_transaction_session_timeout.
        const sealed = seal('ended-a');
        const terminate = `
          const pg = require('pg');
          const client = new pg.Client({ connectionString: process.env.TARGET_URL });
          client.connect()
            .then(() => client.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'"))
            .then((result) => { process.stdout.write(String(result.rowCount)); return client.end(); });`;
        let terminated = '';
        await assert.rejects(
          store.appendCertificates('ended-a', [newItem()], (item, link) => {
            const child = spawnSync(process.execPath, ['-e', terminate], {
              env: { ...process.env, TARGET_URL: location.database.url },
              encoding: 'utf8',
            });
            terminated = child.stdout;
            return sealed(item, link);
          }),
          (error: unknown) => {
            assert.ok(error instanceof StoreUnavailableError, String(error));
            return true;
          },
        );
        assert.equal(terminated, '1');
        assert.equal((await walkChain(store, 'ended-a')).length, 0);
        const [result] = await store.appendCertificates('ended-a', [newItem()], seal('ended-a'));
        assert.equal(result?.kind, 'created');
      } finally {
        await store.close();
        await location.remove();
      }
    });

    test('statement error is not a connection failure', async () => {
      const location = await createLocation();
      const store = openStore(location);
      try {
        await store.migrate();
        await createTenant(store, 'moved');
        await runSql(location, 'ALTER TABLE tenants RENAME TO tenants_moved');
        await assert.rejects(store.getTenant('moved'), (error: unknown) => {
          assert.ok(!(error instanceof StoreUnavailableError), String(error));
          assert.equal((error as { code?: unknown }).code, '42P01');
          return true;
        });
      } finally {
        await store.close();
        await location.remove();
      }
    });
  },
);
