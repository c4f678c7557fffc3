// Whole-ledger verification on the engine under test (SQLite, or PostgreSQL when DATABASE_URL
// is set). A clean ledger verifies; then each test changes the database directly with SQL, in
// its own database, and checks that the change is reported with the right kind and index.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canonicalJson } from '../../src/core/canonical.ts';
import { frontierRefs, nodeKey } from '../../src/core/merkle.ts';
import { systemClock } from '../../src/services/clock.ts';
import {
  LedgerVerifier,
  type LedgerFinding,
  type LedgerReport,
} from '../../src/services/ledger.ts';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from '../../src/storage/migrations.ts';
import { PgStore } from '../../src/storage/postgres/pg-store.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import type { Store } from '../../src/storage/store.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { runCli, runCliAsync } from '../helpers/cli.ts';
import {
  createTestDatabase,
  readAllRows,
  runSql,
  TEST_ENGINE,
  type StorageLocation,
} from '../helpers/database.ts';

const TENANT = 'ward-a';

/**
 * Builds this log, with checkpoints at sizes 1, 8 and 19:
 *
 *   index: 0       1  2   3  4   5  6   7       8  9  ...  14      15 16  17 18
 *   leaf:  tenant  c1 i1  c2 i2  c3 i3  export  c4 i4 ...  verify  c7 i7  c8 i8
 *
 * tenant is the tenant.create event, cN the certificate with chain sequence N, iN its
 * certificate.issue event, and export and verify are events appended directly. The first test
 * checks this layout, and the others look indexes and sizes up in the database.
 */
async function buildLedger(t: TestApp): Promise<void> {
  await t.services.tenants.create(TENANT);
  await t.services.log.publish(TENANT);
  const issue = async (count: number) => {
    for (let i = 0; i < count; i++) {
      await t.services.issuance.issue(
        TENANT,
        issueBody({ note_text: `Ledger note ${randomUUID()}: stable.` }) as never,
      );
    }
  };
  const audit = async (action: string) => {
    const event = {
      event_id: randomUUID(),
      occurred_at: new Date().toISOString(),
      action,
      outcome: 'success',
      actor_hash: null,
      object_type: null,
      object_id: null,
    };
    await t.services.store.appendAuditEvents(TENANT, [
      { ...event, event_json: canonicalJson(event) },
    ]);
  };
  await issue(3);
  await audit('bundle.export');
  await t.services.log.publish(TENANT);
  await issue(3);
  await audit('certificate.verify');
  await issue(2);
  await t.services.log.publish(TENANT);
}

/** Starts a fresh app and database with the ledger above. */
async function startLedger(): Promise<TestApp> {
  const t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' });
  try {
    await buildLedger(t);
  } catch (error) {
    await t.close();
    throw error;
  }
  return t;
}

function verify(t: TestApp, pageSize = 3): Promise<LedgerReport> {
  return t.services.ledger.verify(TENANT, { pageSize });
}

function sql(t: TestApp, text: string, params: (string | number | null)[] = []) {
  return runSql(t, text, params);
}

function describeFindings(report: LedgerReport): string {
  return JSON.stringify(report.findings, null, 1);
}

/** Returns the findings matching every given property. */
function matching(report: LedgerReport, wanted: Partial<LedgerFinding>): LedgerFinding[] {
  return report.findings.filter((finding) =>
    Object.entries(wanted).every(
      ([key, value]) =>
        JSON.stringify(finding[key as keyof LedgerFinding]) === JSON.stringify(value),
    ),
  );
}

function assertFinding(report: LedgerReport, wanted: Partial<LedgerFinding>): LedgerFinding {
  const found = matching(report, wanted);
  assert.equal(
    found.length,
    1,
    `expected one ${JSON.stringify(wanted)} in ${describeFindings(report)}`,
  );
  return found[0]!;
}

function kindsOf(report: LedgerReport): string[] {
  return [...new Set(report.findings.map((finding) => finding.kind))].sort();
}

async function certificateWithSequence(
  t: TestApp,
  sequence: number,
): Promise<Record<string, unknown>> {
  const [row] = await sql(
    t,
    'SELECT * FROM certificates WHERE tenant_id = ? AND chain_sequence = ?',
    [TENANT, sequence],
  );
  assert.ok(row, `no certificate with chain sequence ${sequence}`);
  return row;
}

/**
 * Inserts a copy of certificate 8 as chain sequence 9 with no log index, as a forger who
 * bypasses the service would, and returns its certificate id.
 */
async function insertUnloggedCertificate(t: TestApp): Promise<string> {
  const forgedId = randomUUID();
  await sql(
    t,
    `INSERT INTO certificates (tenant_id, chain_sequence, certificate_id, issued_at_utc,
      model_version, governance_policy_version, human_reviewed, chain_hash, previous_hash,
      key_id, signed_message, signature, log_index)
    SELECT tenant_id, 9, ?, issued_at_utc, model_version, governance_policy_version,
      human_reviewed, chain_hash, chain_hash, key_id, signed_message, signature, NULL
    FROM certificates WHERE tenant_id = ? AND chain_sequence = 8`,
    [forgedId, TENANT],
  );
  return forgedId;
}

/** Returns the log index of the certificate with the given chain sequence. */
async function logIndexOf(t: TestApp, sequence: number): Promise<number> {
  const row = await certificateWithSequence(t, sequence);
  assert.notEqual(row.log_index, null, `certificate ${sequence} has no log index`);
  return Number(row.log_index);
}

/** Returns the log index of the one audit event with the given action. */
async function eventLogIndexOf(t: TestApp, action: string): Promise<number> {
  const rows = await sql(
    t,
    'SELECT log_index FROM audit_events WHERE tenant_id = ? AND action = ?',
    [TENANT, action],
  );
  assert.equal(rows.length, 1, `expected one ${action} event`);
  return Number(rows[0]!.log_index);
}

async function headSize(t: TestApp): Promise<number> {
  const head = await t.services.store.getLogHead(TENANT);
  assert.ok(head, 'the tenant has no log head');
  return head.tree_size;
}

/** Returns the sizes of the stored checkpoints, smallest first. */
async function checkpointSizes(t: TestApp): Promise<number[]> {
  const rows = await sql(
    t,
    'SELECT tree_size FROM log_checkpoints WHERE tenant_id = ? ORDER BY tree_size',
    [TENANT],
  );
  return rows.map((row) => Number(row.tree_size));
}

/** Returns the size of the checkpoint published between the first and the last. */
async function middleCheckpointSize(t: TestApp): Promise<number> {
  const sizes = await checkpointSizes(t);
  assert.equal(sizes.length, 3, `checkpoint sizes ${sizes.join(', ')}`);
  return sizes[1]!;
}

describe('whole-ledger verification of a clean ledger', () => {
  let t: TestApp;
  before(async () => {
    t = await startLedger();
  });
  after(() => t.close());

  test('the test log interleaves audit events', async () => {
    const rows = await sql(
      t,
      `SELECT log_index, 'certificate' AS leaf, chain_sequence FROM certificates
        WHERE tenant_id = ?
      UNION ALL
      SELECT log_index, action AS leaf, NULL AS chain_sequence FROM audit_events
        WHERE tenant_id = ?
      ORDER BY log_index`,
      [TENANT, TENANT],
    );
    const layout = rows.map((row) =>
      row.leaf === 'certificate' ? `c${Number(row.chain_sequence)}` : String(row.leaf),
    );
    const issued = (sequence: number) => [`c${sequence}`, 'certificate.issue'];
    assert.deepEqual(layout, [
      'tenant.create',
      ...[1, 2, 3].flatMap(issued),
      'bundle.export',
      ...[4, 5, 6].flatMap(issued),
      'certificate.verify',
      ...[7, 8].flatMap(issued),
    ]);
    assert.deepEqual(
      rows.map((row) => Number(row.log_index)),
      layout.map((_, index) => index),
    );
    assert.equal(await headSize(t), 19);
    assert.deepEqual(await checkpointSizes(t), [1, 8, 19]);
  });

  test('every page size gives a clean report', async () => {
    for (const pageSize of [1, 2, 3, 4, 1000]) {
      const report = await verify(t, pageSize);
      assert.equal(report.ok, true, `page size ${pageSize}: ${describeFindings(report)}`);
      assert.equal(report.tree_size, 19);
      assert.deepEqual(report.checked, {
        leaves: 19,
        certificates: 8,
        // The tenant.create event, 8 certificate.issue events and 2 appended directly.
        audit_events: 11,
        // 19 leaves complete 19 level-0 nodes and 16 parents (9 + 4 + 2 + 1).
        nodes: 35,
        checkpoints: 3,
        // The test app has no TSA, so no token is stored.
        timestamp_tokens: 0,
      });
      assert.deepEqual(report.not_checked, {
        leaves_appended_during_run: 0,
        checkpoints_published_during_run: 0,
        timestamp_tokens_without_roots: 0,
      });
      assert.equal(
        Object.values(report.totals).reduce((sum, count) => sum + count, 0),
        0,
      );
      assert.equal(report.findings_truncated, false);
    }
  });

  test('progress reaches the head size page by page', async () => {
    const seen: number[] = [];
    await t.services.ledger.verify(TENANT, {
      pageSize: 4,
      onProgress: (progress) => {
        assert.equal(progress.leaves_total, 19);
        seen.push(progress.leaves_checked);
      },
    });
    assert.deepEqual(seen, [4, 8, 12, 16, 19]);
  });

  test('an unknown tenant is reported as not found', async () => {
    await assert.rejects(t.services.ledger.verify('nobody'), { code: 'TENANT_NOT_FOUND' });
  });

  test('leaves and checkpoints added during the run are left for a later run', async () => {
    // The first page read waits for a new certificate and checkpoint, so both arrive after the
    // run read the head. The certificate brings its certificate.issue event, so two leaves.
    let injected = false;
    const store = new Proxy(t.services.store, {
      get(target, name, receiver) {
        const value = Reflect.get(target, name, receiver) as unknown;
        if (name === 'listLogEntries' && !injected) {
          injected = true;
          return async (...args: Parameters<Store['listLogEntries']>) => {
            await t.services.issuance.issue(TENANT, issueBody() as never);
            await t.services.log.publish(TENANT);
            return target.listLogEntries(...args);
          };
        }
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const report = await new LedgerVerifier(store, systemClock).verify(TENANT, { pageSize: 3 });
    assert.equal(report.ok, true, describeFindings(report));
    assert.equal(report.tree_size, 19);
    assert.deepEqual(report.not_checked, {
      leaves_appended_during_run: 2,
      checkpoints_published_during_run: 1,
      timestamp_tokens_without_roots: 0,
    });
    const next = await verify(t);
    assert.equal(next.ok, true, describeFindings(next));
    assert.equal(next.tree_size, 21);
    assert.equal(next.checked.checkpoints, 4);
  });
});

describe('whole-ledger verification after direct database changes', () => {
  test('a deleted certificate row is a deleted leaf and a deleted sequence', async () => {
    const t = await startLedger();
    try {
      const deletedAt = await logIndexOf(t, 5);
      const nextAt = await logIndexOf(t, 6);
      await sql(t, 'DELETE FROM certificates WHERE tenant_id = ? AND log_index = ?', [
        TENANT,
        deletedAt,
      ]);
      const report = await verify(t);
      assert.equal(report.ok, false);
      assertFinding(report, { kind: 'deleted', subject: 'leaf', log_index: deletedAt });
      const chain = assertFinding(report, { kind: 'deleted', subject: 'certificate' });
      assert.equal(chain.chain_sequence, 5);
      assert.equal(chain.log_index, nextAt);
      // The stored node stands in for the missing leaf, so the checkpoints still match.
      assert.deepEqual(kindsOf(report), ['deleted']);
      assert.equal(report.totals.deleted, 2);
    } finally {
      await t.close();
    }
  });

  test('a deleted audit event row is a deleted leaf only', async () => {
    const t = await startLedger();
    try {
      // The certificate.issue event right after certificate 5 sits between two certificates.
      const deletedAt = (await logIndexOf(t, 5)) + 1;
      await sql(t, 'DELETE FROM audit_events WHERE tenant_id = ? AND log_index = ?', [
        TENANT,
        deletedAt,
      ]);
      const report = await verify(t);
      assertFinding(report, { kind: 'deleted', subject: 'leaf', log_index: deletedAt });
      // The certificates around the gap still follow each other in the chain.
      assert.deepEqual(kindsOf(report), ['deleted']);
      assert.equal(report.findings.length, 1, describeFindings(report));
    } finally {
      await t.close();
    }
  });

  test('a forged certificate row above the head is inserted', async () => {
    const t = await startLedger();
    try {
      const last = await certificateWithSequence(t, 8);
      const forgedAt = await headSize(t);
      const forgedId = randomUUID();
      const message = JSON.parse(String(last.signed_message)) as Record<string, unknown>;
      const forged = {
        ...message,
        certificate_id: forgedId,
        chain_sequence: 9,
        previous_hash: last.chain_hash,
      };
      await sql(
        t,
        `INSERT INTO certificates (tenant_id, chain_sequence, certificate_id, issued_at_utc,
          model_version, governance_policy_version, human_reviewed, chain_hash, previous_hash,
          key_id, signed_message, signature, log_index)
        VALUES (?, 9, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [
          TENANT,
          forgedId,
          String(last.issued_at_utc),
          String(last.model_version),
          String(last.governance_policy_version),
          Number(last.human_reviewed),
          String(last.chain_hash),
          String(last.chain_hash),
          String(last.key_id),
          canonicalJson(forged),
          String(last.signature),
          forgedAt,
        ],
      );
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'inserted', log_index: forgedAt });
      assert.equal(finding.certificate_id, forgedId);
      assert.equal(finding.subject, 'certificate');
      assert.deepEqual(kindsOf(report), ['inserted']);
    } finally {
      await t.close();
    }
  });

  test('a certificate row without a log index is inserted', async () => {
    const t = await startLedger();
    try {
      const forgedId = await insertUnloggedCertificate(t);
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'inserted', certificate_id: forgedId });
      assert.equal(finding.chain_sequence, 9);
      assert.match(finding.detail, /no log index/);
      assert.deepEqual(kindsOf(report), ['inserted']);

      // The endpoint runs in the server, which migrated at start-up, and appends nothing.
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/log/verification',
        headers: bearer(await t.token('auditor', TENANT)),
      });
      assert.equal(response.statusCode, 200, response.body);
      const overHttp = response.json<LedgerReport>();
      assertFinding(overHttp, { kind: 'inserted', certificate_id: forgedId });
      assert.deepEqual(kindsOf(overHttp), ['inserted']);
      assert.equal(await headSize(t), 19);
    } finally {
      await t.close();
    }
  });

  test('an audit event row at a negative log index is inserted', async () => {
    const t = await startLedger();
    try {
      const copiedAt = await eventLogIndexOf(t, 'bundle.export');
      const copyId = randomUUID();
      await sql(
        t,
        `INSERT INTO audit_events (tenant_id, log_index, event_id, occurred_at, action, outcome,
          actor_hash, object_type, object_id, event_json)
        SELECT tenant_id, -1, ?, occurred_at, action, outcome, actor_hash, object_type,
          object_id, event_json
        FROM audit_events WHERE tenant_id = ? AND log_index = ?`,
        [copyId, TENANT, copiedAt],
      );
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'inserted', log_index: -1 });
      assert.equal(finding.subject, 'audit_event');
      assert.equal(finding.event_id, copyId);
      assert.deepEqual(kindsOf(report), ['inserted']);
      assert.equal(report.findings.length, 1, describeFindings(report));
    } finally {
      await t.close();
    }
  });

  test('a run of negative log indexes is inserted', async () => {
    const t = await startLedger();
    try {
      for (const [logIndex, sequence] of [
        [-3, 1],
        [-2, 2],
      ] as const) {
        await sql(
          t,
          'UPDATE certificates SET log_index = ? WHERE tenant_id = ? AND chain_sequence = ?',
          [logIndex, TENANT, sequence],
        );
      }
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'inserted', log_index: -3 });
      assert.equal(finding.subject, 'leaf');
      assert.equal(finding.count, 2);
    } finally {
      await t.close();
    }
  });

  test('two certificates with swapped log positions are reordered', async () => {
    const t = await startLedger();
    try {
      const fourthAt = await logIndexOf(t, 4);
      const sixthAt = await logIndexOf(t, 6);
      const [middleSize, lastSize] = (await checkpointSizes(t)).slice(1);
      assert.ok(fourthAt >= middleSize!, 'both certificates lie above the middle checkpoint');
      // log_index is unique per tenant, so the swap goes through a free value.
      const move = (from: number, to: number) =>
        sql(t, 'UPDATE certificates SET log_index = ? WHERE tenant_id = ? AND log_index = ?', [
          to,
          TENANT,
          from,
        ]);
      await move(fourthAt, -1);
      await move(sixthAt, fourthAt);
      await move(-1, sixthAt);
      const report = await verify(t);
      const atFourth = assertFinding(report, { kind: 'reordered', log_index: fourthAt });
      assert.equal(atFourth.chain_sequence, 6);
      const atSixth = assertFinding(report, { kind: 'reordered', log_index: sixthAt });
      assert.equal(atSixth.chain_sequence, 4);
      assert.equal(report.totals.reordered, 2, describeFindings(report));
      // Both certificates are still present, so nothing counts as deleted or edited.
      assert.equal(report.totals.deleted, 0, describeFindings(report));
      assert.equal(report.totals.edited, 0, describeFindings(report));
      // The leaves no longer hash to the last signed root or to the head.
      assertFinding(report, {
        kind: 'checkpoint_mismatch',
        subject: 'checkpoint',
        tree_size: lastSize,
      });
      assertFinding(report, { kind: 'checkpoint_mismatch', subject: 'head', tree_size: lastSize });
      assert.equal(matching(report, { subject: 'checkpoint', tree_size: middleSize }).length, 0);
    } finally {
      await t.close();
    }
  });

  test('two certificates with swapped chain sequences are reordered', async () => {
    const t = await startLedger();
    try {
      const fourthAt = await logIndexOf(t, 4);
      const sixthAt = await logIndexOf(t, 6);
      // (tenant_id, chain_sequence) is the primary key, so the swap goes through a free value.
      await sql(
        t,
        'UPDATE certificates SET chain_sequence = -1 WHERE tenant_id = ? AND chain_sequence = 4',
        [TENANT],
      );
      await sql(
        t,
        'UPDATE certificates SET chain_sequence = 4 WHERE tenant_id = ? AND chain_sequence = 6',
        [TENANT],
      );
      await sql(
        t,
        'UPDATE certificates SET chain_sequence = 6 WHERE tenant_id = ? AND chain_sequence = -1',
        [TENANT],
      );
      const report = await verify(t);
      for (const logIndex of [fourthAt, sixthAt]) {
        const finding = assertFinding(report, { kind: 'reordered', log_index: logIndex });
        assert.deepEqual(finding.fields, ['chain_sequence']);
      }
      assert.deepEqual(kindsOf(report), ['reordered']);
    } finally {
      await t.close();
    }
  });

  test('an edited model_version column is edited', async () => {
    const t = await startLedger();
    try {
      const editedAt = await logIndexOf(t, 1);
      await sql(
        t,
        "UPDATE certificates SET model_version = 'scribe-9' WHERE tenant_id = ? AND log_index = ?",
        [TENANT, editedAt],
      );
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'edited', log_index: editedAt });
      assert.deepEqual(finding.fields, ['model_version']);
      assert.equal(finding.subject, 'certificate');
      assert.equal(report.findings.length, 1, describeFindings(report));
    } finally {
      await t.close();
    }
  });

  test('edited signed message bytes break the signature, the leaf and the checkpoints', async () => {
    const t = await startLedger();
    try {
      const row = await certificateWithSequence(t, 3);
      const editedAt = Number(row.log_index);
      const [firstSize, middleSize, lastSize] = await checkpointSizes(t);
      // The edited leaf lies under the middle checkpoint but not under the first.
      assert.ok(editedAt >= firstSize!, `log index ${editedAt}, first checkpoint ${firstSize}`);
      assert.ok(editedAt < middleSize!, `log index ${editedAt}, middle checkpoint ${middleSize}`);
      const message = String(row.signed_message);
      const changed = message.replace('"model_version":"2026.11"', '"model_version":"2026.12"');
      assert.notEqual(changed, message);
      await sql(
        t,
        'UPDATE certificates SET signed_message = ? WHERE tenant_id = ? AND log_index = ?',
        [changed, TENANT, editedAt],
      );
      const report = await verify(t);
      assertFinding(report, { kind: 'signature_invalid', log_index: editedAt });
      const leaf = matching(report, { kind: 'edited', log_index: editedAt });
      assert.ok(
        leaf.some((finding) => finding.fields === undefined),
        `leaf hash finding at ${editedAt} in ${describeFindings(report)}`,
      );
      assert.ok(
        leaf.some((finding) => JSON.stringify(finding.fields) === '["model_version"]'),
        `column finding at ${editedAt} in ${describeFindings(report)}`,
      );
      for (const size of [middleSize, lastSize]) {
        assertFinding(report, {
          kind: 'checkpoint_mismatch',
          subject: 'checkpoint',
          tree_size: size,
        });
      }
      assert.equal(matching(report, { subject: 'checkpoint', tree_size: firstSize }).length, 0);
      assert.equal(report.totals.reordered, 0, describeFindings(report));
    } finally {
      await t.close();
    }
  });

  test('a chain head moved back is an edited head', async () => {
    const t = await startLedger();
    try {
      const [first] = await sql(
        t,
        'SELECT chain_hash FROM certificates WHERE tenant_id = ? AND chain_sequence = 1',
        [TENANT],
      );
      await sql(
        t,
        'UPDATE chain_heads SET chain_sequence = 1, chain_hash = ? WHERE tenant_id = ?',
        [String(first!.chain_hash), TENANT],
      );
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'edited', subject: 'head' });
      assert.equal(finding.chain_sequence, 1);
      assert.equal(report.findings.length, 1, describeFindings(report));

      await sql(t, 'UPDATE chain_heads SET chain_hash = ? WHERE tenant_id = ?', [
        'a'.repeat(64),
        TENANT,
      ]);
      assertFinding(await verify(t), { kind: 'edited', subject: 'head' });
    } finally {
      await t.close();
    }
  });

  test('an audit event column edited apart from its JSON is edited', async () => {
    const t = await startLedger();
    try {
      const editedAt = await eventLogIndexOf(t, 'bundle.export');
      await sql(
        t,
        "UPDATE audit_events SET outcome = 'rejected', occurred_at = '2020-01-01T00:00:00.000Z' WHERE tenant_id = ? AND log_index = ?",
        [TENANT, editedAt],
      );
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'edited', log_index: editedAt });
      assert.equal(finding.subject, 'audit_event');
      assert.match(finding.detail, /outcome, occurred_at/);
      assert.equal(report.findings.length, 1, describeFindings(report));
    } finally {
      await t.close();
    }
  });

  test('an edited audit event is edited', async () => {
    const t = await startLedger();
    try {
      // The bundle.export event is the last leaf under the middle checkpoint.
      const editedAt = await eventLogIndexOf(t, 'bundle.export');
      const [firstSize, middleSize, lastSize] = await checkpointSizes(t);
      assert.equal(editedAt, middleSize! - 1);
      const [event] = await sql(
        t,
        'SELECT event_id, event_json FROM audit_events WHERE tenant_id = ? AND log_index = ?',
        [TENANT, editedAt],
      );
      const changed = String(event!.event_json).replace(
        '"outcome":"success"',
        '"outcome":"failure"',
      );
      assert.notEqual(changed, event!.event_json);
      await sql(t, 'UPDATE audit_events SET event_json = ? WHERE tenant_id = ? AND log_index = ?', [
        changed,
        TENANT,
        editedAt,
      ]);
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'edited', log_index: editedAt });
      assert.equal(finding.subject, 'audit_event');
      assert.equal(finding.event_id, event!.event_id);
      for (const size of [middleSize, lastSize]) {
        assertFinding(report, {
          kind: 'checkpoint_mismatch',
          subject: 'checkpoint',
          tree_size: size,
        });
      }
      assertFinding(report, { kind: 'checkpoint_mismatch', subject: 'head', tree_size: lastSize });
      assert.equal(matching(report, { subject: 'checkpoint', tree_size: firstSize }).length, 0);
      assert.deepEqual(kindsOf(report), ['checkpoint_mismatch', 'edited']);
      assert.equal(report.totals.edited, 1);
    } finally {
      await t.close();
    }
  });

  test('an edited log node hash is edited', async () => {
    const t = await startLedger();
    try {
      const editedAt = await logIndexOf(t, 5);
      await sql(
        t,
        'UPDATE log_nodes SET hash = ? WHERE tenant_id = ? AND level = 0 AND node_index = ?',
        ['ab'.repeat(32), TENANT, editedAt],
      );
      const report = await verify(t);
      const leaf = assertFinding(report, {
        kind: 'edited',
        log_index: editedAt,
        subject: 'certificate',
      });
      assert.match(leaf.detail, /level-0 node/);
      // The parent over this leaf and its sibling no longer hashes from its stored children.
      const parent = { level: 1, index: Math.floor(editedAt / 2) };
      assertFinding(report, { kind: 'edited', subject: 'node', node: parent });
      // The leaves are intact, so the rebuilt tree still matches every checkpoint and the head.
      assert.deepEqual(kindsOf(report), ['edited']);
    } finally {
      await t.close();
    }
  });

  test('an edited internal node is edited', async () => {
    const t = await startLedger();
    try {
      await sql(
        t,
        'UPDATE log_nodes SET hash = ? WHERE tenant_id = ? AND level = 2 AND node_index = 1',
        ['cd'.repeat(32), TENANT],
      );
      const report = await verify(t);
      assertFinding(report, { kind: 'edited', subject: 'node', node: { level: 2, index: 1 } });
      assertFinding(report, { kind: 'edited', subject: 'node', node: { level: 3, index: 0 } });
      assert.deepEqual(kindsOf(report), ['edited']);
    } finally {
      await t.close();
    }
  });

  test('a rolled-back head leaves inserted leaves and a larger checkpoint', async () => {
    const t = await startLedger();
    try {
      // Roll back to just before certificate 6: above the middle checkpoint, below the last.
      const rolledBackSize = await logIndexOf(t, 6);
      const treeSize = await headSize(t);
      const [, middleSize, lastSize] = await checkpointSizes(t);
      assert.ok(rolledBackSize > middleSize!, `size ${rolledBackSize}, middle ${middleSize}`);
      assert.ok(rolledBackSize < lastSize!, `size ${rolledBackSize}, last checkpoint ${lastSize}`);
      // A consistent rollback: the frontier of that size from the stored nodes.
      const refs = frontierRefs(rolledBackSize);
      const nodes = await t.services.store.getLogNodes(TENANT, refs);
      const byKey = new Map(
        nodes.map((node) => [nodeKey({ level: node.level, index: node.node_index }), node.hash]),
      );
      const frontier = refs.map((ref) => byKey.get(nodeKey(ref))!).join('');
      await sql(t, 'UPDATE log_heads SET tree_size = ?, frontier = ? WHERE tenant_id = ?', [
        rolledBackSize,
        frontier,
        TENANT,
      ]);
      const report = await verify(t);
      assert.equal(report.tree_size, rolledBackSize);
      const inserted = assertFinding(report, { kind: 'inserted', log_index: rolledBackSize });
      assert.equal(inserted.count, treeSize - rolledBackSize);
      assertFinding(report, {
        kind: 'checkpoint_mismatch',
        subject: 'checkpoint',
        tree_size: lastSize,
      });
      assert.deepEqual(kindsOf(report), ['checkpoint_mismatch', 'inserted']);
      assert.equal(report.findings.length, 2, describeFindings(report));
    } finally {
      await t.close();
    }
  });

  test('a checkpoint with an altered signature is signature_invalid', async () => {
    const t = await startLedger();
    try {
      const size = await middleCheckpointSize(t);
      const [row] = await sql(
        t,
        'SELECT note FROM log_checkpoints WHERE tenant_id = ? AND tree_size = ?',
        [TENANT, size],
      );
      // Flip one character of the signature line.
      const note = String(row!.note);
      const lines = note.split('\n');
      const signature = lines[lines.length - 2]!;
      const position = signature.length - 5;
      lines[lines.length - 2] =
        signature.slice(0, position) +
        (signature[position] === 'A' ? 'B' : 'A') +
        signature.slice(position + 1);
      await sql(t, 'UPDATE log_checkpoints SET note = ? WHERE tenant_id = ? AND tree_size = ?', [
        lines.join('\n'),
        TENANT,
        size,
      ]);
      const report = await verify(t);
      assertFinding(report, { kind: 'signature_invalid', subject: 'checkpoint', tree_size: size });
      assert.deepEqual(kindsOf(report), ['signature_invalid']);
    } finally {
      await t.close();
    }
  });
});

describe('whole-ledger verification over HTTP and the command line', () => {
  let t: TestApp;
  before(async () => {
    t = await startLedger();
  });
  after(() => t.close());

  const cliEnv = () => ({ CDIL_DATA_DIR: t.dir, ...t.database.env });

  test('an auditor gets the report over HTTP', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/log/verification',
      headers: bearer(await t.token('auditor', TENANT)),
    });
    assert.equal(response.statusCode, 200, response.body);
    const report = response.json<LedgerReport>();
    assert.equal(report.ok, true);
    assert.equal(report.tenant_id, TENANT);
    assert.equal(report.checked.leaves, await headSize(t));
    assert.deepEqual(report.findings, []);
  });

  test('the command exits 0 on a clean ledger', async () => {
    const leaves = await headSize(t);
    const result = runCli(['ledger', 'verify', '--tenant', TENANT], cliEnv());
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^CLEAN {2}ledger of tenant ward-a, ${leaves} leaves`));
    const json = runCli(['ledger', 'verify', '--tenant', TENANT, '--json'], cliEnv());
    assert.equal(json.status, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as LedgerReport).checked.certificates, 8);
  });

  test('the command shows progress on stderr for a large log', async () => {
    const tenant = 'ward-large';
    await t.services.tenants.create(tenant);
    // The tenant.create event is leaf 0, so 9,999 appended events make 10,000 leaves: ten
    // pages of the default 1,000 leaves, and a progress line after each.
    const leaves = 10_000;
    for (let appended = 1; appended < leaves; appended += 2500) {
      const events = Array.from({ length: Math.min(2500, leaves - appended) }, (_, i) => {
        const event = {
          event_id: randomUUID(),
          occurred_at: new Date().toISOString(),
          action: 'certificate.verify',
          outcome: 'success',
          actor_hash: null,
          object_type: 'batch',
          object_id: String(appended + i),
        };
        return { ...event, event_json: canonicalJson(event) };
      });
      await t.services.store.appendAuditEvents(tenant, events);
    }
    await t.services.log.publish(tenant);
    const result = await runCliAsync(['ledger', 'verify', '--tenant', tenant, '--json'], cliEnv());
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout) as LedgerReport;
    assert.equal(report.tree_size, leaves);
    assert.equal(report.checked.audit_events, leaves);
    assert.equal(report.checked.checkpoints, 1);
    const lines = result.stderr.trim().split('\n');
    assert.ok(lines.length >= 10, result.stderr);
    assert.equal(lines[lines.length - 1], `verified ${leaves}/${leaves} leaves`);
  });

  test('the command exits 2 for an unknown tenant', () => {
    const result = runCli(['ledger', 'verify', '--tenant', 'nobody'], cliEnv());
    assert.equal(result.status, 2);
    assert.match(result.stderr, /tenant not found/);
  });

  test('the report lists findings over HTTP and the command exits 1', async () => {
    const editedAt = await logIndexOf(t, 7);
    await sql(
      t,
      "UPDATE certificates SET governance_policy_version = 'policy-8' WHERE tenant_id = ? AND log_index = ?",
      [TENANT, editedAt],
    );
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/log/verification',
      headers: bearer(await t.token('auditor', TENANT)),
    });
    const report = response.json<LedgerReport>();
    assert.equal(report.ok, false);
    const finding = assertFinding(report, { kind: 'edited', log_index: editedAt });
    assert.deepEqual(finding.fields, ['governance_policy_version']);

    const result = runCli(['ledger', 'verify', '--tenant', TENANT], cliEnv());
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stdout, /^FINDINGS/);
    assert.match(
      result.stdout,
      new RegExp(
        `edited +certificate [0-9a-f-]{36}, sequence 7, log index ${editedAt}: stored columns differ`,
      ),
    );
    // The report names the changed column, never its stored or signed value.
    assert.doesNotMatch(result.stdout, /policy-8/);
  });
});

describe('whole-ledger verification command on the stored database', () => {
  /** Opens the location's database with only the given migrations applicable. */
  function openAt(location: StorageLocation, migrations: typeof MIGRATIONS): Store {
    return location.database.url === undefined
      ? new SqliteStore(join(location.dir, 'cdil.sqlite'), { migrations })
      : new PgStore(location.database.url, { migrations, poolSize: 2 });
  }

  test('command reports unlogged row without writing', async () => {
    const t = await startLedger();
    try {
      const forgedId = await insertUnloggedCertificate(t);
      // The test server's rate limiter writes its counters on a timer; stop it first.
      await t.services.rateLimiter.close();
      const before = await readAllRows(t);
      const result = await runCliAsync(['ledger', 'verify', '--tenant', TENANT, '--json'], {
        CDIL_DATA_DIR: t.dir,
        ...t.database.env,
      });
      assert.equal(result.status, 1, result.stderr);
      const report = JSON.parse(result.stdout) as LedgerReport;
      const finding = assertFinding(report, { kind: 'inserted', certificate_id: forgedId });
      assert.equal(finding.subject, 'certificate');
      assert.equal(finding.chain_sequence, 9);
      assert.match(finding.detail, /no log index/);
      assert.deepEqual(kindsOf(report), ['inserted']);
      assert.equal(report.tree_size, 19);
      assert.equal(await headSize(t), 19);
      assert.deepEqual(await readAllRows(t), before);
    } finally {
      await t.close();
    }
  });

  test('command exits 2 on an older schema', async () => {
    const location: StorageLocation = {
      dir: mkdtempSync(join(tmpdir(), 'cdil-test-')),
      database: await createTestDatabase(),
    };
    try {
      const olderVersion = LATEST_SCHEMA_VERSION - 1;
      const older = openAt(location, MIGRATIONS.slice(0, olderVersion));
      try {
        assert.equal((await older.migrate()).current, olderVersion);
      } finally {
        await older.close();
      }
      const result = await runCliAsync(['ledger', 'verify', '--tenant', TENANT], {
        CDIL_DATA_DIR: location.dir,
        ...location.database.env,
      });
      assert.equal(result.status, 2, result.stdout);
      assert.match(
        result.stderr,
        new RegExp(`schema version ${olderVersion} is older .*run \`cdil migrate\` first`),
      );
      const reopened = openAt(location, []);
      try {
        assert.equal(await reopened.schemaVersion(), olderVersion);
      } finally {
        await reopened.close();
      }
    } finally {
      await location.database.drop();
      rmSync(location.dir, { recursive: true, force: true });
    }
  });

  test(
    'command leaves a missing SQLite file absent',
    { skip: TEST_ENGINE === 'postgres' && 'the database is PostgreSQL' },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'cdil-test-'));
      try {
        const result = await runCliAsync(['ledger', 'verify', '--tenant', TENANT], {
          CDIL_DATA_DIR: dir,
        });
        assert.equal(result.status, 2, result.stdout);
        assert.match(result.stderr, /cdil\.sqlite does not exist/);
        assert.equal(existsSync(join(dir, 'cdil.sqlite')), false);
        assert.equal(existsSync(join(dir, 'secrets.json')), false);

        // A data folder that does not exist is not created either.
        const missing = join(dir, 'missing');
        const absent = await runCliAsync(['ledger', 'verify', '--tenant', TENANT], {
          CDIL_DATA_DIR: missing,
        });
        assert.equal(absent.status, 2, absent.stdout);
        assert.equal(existsSync(missing), false);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
