// Whole-ledger verification on the engine under test (SQLite, or PostgreSQL when DATABASE_URL
// is set). A clean ledger verifies; then each test changes the database directly with SQL, in
// its own database, and checks that the change is reported with the right kind and index.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { canonicalJson } from '../../src/core/canonical.ts';
import { frontierRefs, nodeKey } from '../../src/core/merkle.ts';
import { systemClock } from '../../src/services/clock.ts';
import {
  LedgerVerifier,
  type LedgerFinding,
  type LedgerReport,
} from '../../src/services/ledger.ts';
import type { Store } from '../../src/storage/store.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { runCli, runCliAsync } from '../helpers/cli.ts';
import { runSql } from '../helpers/database.ts';

const TENANT = 'ward-a';

/**
 * Builds this log, with checkpoints at sizes 0, 4 and 10:
 *
 *   index: 0  1  2  3      4  5  6  7      8  9
 *   leaf:  c1 c2 c3 event  c4 c5 c6 event  c7 c8   (cN: certificate with chain sequence N)
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

async function certificateAt(t: TestApp, logIndex: number): Promise<Record<string, unknown>> {
  const [row] = await sql(t, 'SELECT * FROM certificates WHERE tenant_id = ? AND log_index = ?', [
    TENANT,
    logIndex,
  ]);
  assert.ok(row, `no certificate at log index ${logIndex}`);
  return row;
}

describe('whole-ledger verification of a clean ledger', () => {
  let t: TestApp;
  before(async () => {
    t = await startLedger();
  });
  after(() => t.close());

  test('every page size gives a clean report', async () => {
    for (const pageSize of [1, 2, 3, 4, 1000]) {
      const report = await verify(t, pageSize);
      assert.equal(report.ok, true, `page size ${pageSize}: ${describeFindings(report)}`);
      assert.equal(report.tree_size, 10);
      assert.deepEqual(report.checked, {
        leaves: 10,
        certificates: 8,
        audit_events: 2,
        // 10 leaves complete 10 level-0 nodes and 8 parents (5 + 2 + 1).
        nodes: 18,
        checkpoints: 3,
      });
      assert.deepEqual(report.not_checked, {
        leaves_appended_during_run: 0,
        checkpoints_published_during_run: 0,
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
        assert.equal(progress.leaves_total, 10);
        seen.push(progress.leaves_checked);
      },
    });
    assert.deepEqual(seen, [4, 8, 10]);
  });

  test('an unknown tenant is reported as not found', async () => {
    await assert.rejects(t.services.ledger.verify('nobody'), { code: 'TENANT_NOT_FOUND' });
  });

  test('leaves and checkpoints added during the run are left for a later run', async () => {
    // The first page read waits for a new certificate and checkpoint, so both arrive after the
    // run read the head.
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
    assert.equal(report.tree_size, 10);
    assert.deepEqual(report.not_checked, {
      leaves_appended_during_run: 1,
      checkpoints_published_during_run: 1,
    });
    const next = await verify(t);
    assert.equal(next.ok, true, describeFindings(next));
    assert.equal(next.tree_size, 11);
    assert.equal(next.checked.checkpoints, 4);
  });
});

describe('whole-ledger verification after direct database changes', () => {
  test('a deleted certificate row is a deleted leaf and a deleted sequence', async () => {
    const t = await startLedger();
    try {
      await sql(t, 'DELETE FROM certificates WHERE tenant_id = ? AND log_index = 5', [TENANT]);
      const report = await verify(t);
      assert.equal(report.ok, false);
      assertFinding(report, { kind: 'deleted', subject: 'leaf', log_index: 5 });
      const chain = assertFinding(report, { kind: 'deleted', subject: 'certificate' });
      assert.equal(chain.chain_sequence, 5);
      assert.equal(chain.log_index, 6);
      // The stored node stands in for the missing leaf, so the checkpoints still match.
      assert.deepEqual(kindsOf(report), ['deleted']);
      assert.equal(report.totals.deleted, 2);
    } finally {
      await t.close();
    }
  });

  test('a forged certificate row above the head is inserted', async () => {
    const t = await startLedger();
    try {
      const last = await certificateAt(t, 9);
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
        VALUES (?, 9, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 10)`,
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
        ],
      );
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'inserted', log_index: 10 });
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
      const forgedId = randomUUID();
      await sql(
        t,
        `INSERT INTO certificates (tenant_id, chain_sequence, certificate_id, issued_at_utc,
          model_version, governance_policy_version, human_reviewed, chain_hash, previous_hash,
          key_id, signed_message, signature, log_index)
        SELECT tenant_id, 9, ?, issued_at_utc, model_version, governance_policy_version,
          human_reviewed, chain_hash, chain_hash, key_id, signed_message, signature, NULL
        FROM certificates WHERE tenant_id = ? AND log_index = 9`,
        [forgedId, TENANT],
      );
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'inserted', certificate_id: forgedId });
      assert.equal(finding.chain_sequence, 9);
      assert.deepEqual(kindsOf(report), ['inserted']);
    } finally {
      await t.close();
    }
  });

  test('two certificates with swapped log positions are reordered', async () => {
    const t = await startLedger();
    try {
      // log_index is unique per tenant, so the swap goes through a free value.
      await sql(t, 'UPDATE certificates SET log_index = -1 WHERE tenant_id = ? AND log_index = 4', [
        TENANT,
      ]);
      await sql(t, 'UPDATE certificates SET log_index = 4 WHERE tenant_id = ? AND log_index = 6', [
        TENANT,
      ]);
      await sql(t, 'UPDATE certificates SET log_index = 6 WHERE tenant_id = ? AND log_index = -1', [
        TENANT,
      ]);
      const report = await verify(t);
      assert.equal(assertFinding(report, { kind: 'reordered', log_index: 4 }).chain_sequence, 6);
      assert.equal(assertFinding(report, { kind: 'reordered', log_index: 6 }).chain_sequence, 4);
      assert.equal(report.totals.reordered, 2, describeFindings(report));
      // Both certificates are still present, so nothing counts as deleted or edited.
      assert.equal(report.totals.deleted, 0, describeFindings(report));
      assert.equal(report.totals.edited, 0, describeFindings(report));
      // The leaves no longer hash to the signed root of size 10 or to the head.
      assertFinding(report, { kind: 'checkpoint_mismatch', subject: 'checkpoint', tree_size: 10 });
      assertFinding(report, { kind: 'checkpoint_mismatch', subject: 'head', tree_size: 10 });
      assert.equal(matching(report, { subject: 'checkpoint', tree_size: 4 }).length, 0);
    } finally {
      await t.close();
    }
  });

  test('two certificates with swapped chain sequences are reordered', async () => {
    const t = await startLedger();
    try {
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
      for (const logIndex of [4, 6]) {
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
      await sql(
        t,
        "UPDATE certificates SET model_version = 'scribe-9' WHERE tenant_id = ? AND log_index = 1",
        [TENANT],
      );
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'edited', log_index: 1 });
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
      const row = await certificateAt(t, 2);
      const message = String(row.signed_message);
      const changed = message.replace('"model_version":"2026.11"', '"model_version":"2026.12"');
      assert.notEqual(changed, message);
      await sql(
        t,
        'UPDATE certificates SET signed_message = ? WHERE tenant_id = ? AND log_index = 2',
        [changed, TENANT],
      );
      const report = await verify(t);
      assertFinding(report, { kind: 'signature_invalid', log_index: 2 });
      const leaf = matching(report, { kind: 'edited', log_index: 2 });
      assert.ok(
        leaf.some((finding) => finding.fields === undefined),
        `leaf hash finding at 2 in ${describeFindings(report)}`,
      );
      assert.ok(
        leaf.some((finding) => JSON.stringify(finding.fields) === '["model_version"]'),
        `column finding at 2 in ${describeFindings(report)}`,
      );
      assertFinding(report, { kind: 'checkpoint_mismatch', subject: 'checkpoint', tree_size: 4 });
      assertFinding(report, { kind: 'checkpoint_mismatch', subject: 'checkpoint', tree_size: 10 });
      assert.equal(matching(report, { subject: 'checkpoint', tree_size: 0 }).length, 0);
      assert.equal(report.totals.reordered, 0, describeFindings(report));
    } finally {
      await t.close();
    }
  });

  test('an edited audit event is edited', async () => {
    const t = await startLedger();
    try {
      const [event] = await sql(
        t,
        'SELECT event_id, event_json FROM audit_events WHERE tenant_id = ? AND log_index = 3',
        [TENANT],
      );
      const changed = String(event!.event_json).replace(
        '"outcome":"success"',
        '"outcome":"failure"',
      );
      await sql(t, 'UPDATE audit_events SET event_json = ? WHERE tenant_id = ? AND log_index = 3', [
        changed,
        TENANT,
      ]);
      const report = await verify(t);
      const finding = assertFinding(report, { kind: 'edited', log_index: 3 });
      assert.equal(finding.subject, 'audit_event');
      assert.equal(finding.event_id, event!.event_id);
      assertFinding(report, { kind: 'checkpoint_mismatch', subject: 'checkpoint', tree_size: 4 });
      assert.deepEqual(kindsOf(report), ['checkpoint_mismatch', 'edited']);
      assert.equal(report.totals.edited, 1);
    } finally {
      await t.close();
    }
  });

  test('an edited log node hash is edited', async () => {
    const t = await startLedger();
    try {
      await sql(
        t,
        'UPDATE log_nodes SET hash = ? WHERE tenant_id = ? AND level = 0 AND node_index = 5',
        ['ab'.repeat(32), TENANT],
      );
      const report = await verify(t);
      const leaf = assertFinding(report, { kind: 'edited', log_index: 5, subject: 'certificate' });
      assert.match(leaf.detail, /level-0 node/);
      // The parent over leaves 4 and 5 no longer hashes from its stored children.
      assertFinding(report, { kind: 'edited', subject: 'node', node: { level: 1, index: 2 } });
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

  test('a head rolled back to size 6 leaves inserted leaves and a larger checkpoint', async () => {
    const t = await startLedger();
    try {
      // A consistent rollback: the frontier of size 6 from the stored nodes.
      const refs = frontierRefs(6);
      const nodes = await t.services.store.getLogNodes(TENANT, refs);
      const byKey = new Map(
        nodes.map((node) => [nodeKey({ level: node.level, index: node.node_index }), node.hash]),
      );
      const frontier = refs.map((ref) => byKey.get(nodeKey(ref))!).join('');
      await sql(t, 'UPDATE log_heads SET tree_size = 6, frontier = ? WHERE tenant_id = ?', [
        frontier,
        TENANT,
      ]);
      const report = await verify(t);
      assert.equal(report.tree_size, 6);
      const inserted = assertFinding(report, { kind: 'inserted', log_index: 6 });
      assert.equal(inserted.count, 4);
      assertFinding(report, { kind: 'checkpoint_mismatch', subject: 'checkpoint', tree_size: 10 });
      assert.deepEqual(kindsOf(report), ['checkpoint_mismatch', 'inserted']);
      assert.equal(report.findings.length, 2, describeFindings(report));
    } finally {
      await t.close();
    }
  });

  test('a checkpoint signed by another key is signature_invalid', async () => {
    const t = await startLedger();
    try {
      const [row] = await sql(
        t,
        'SELECT note FROM log_checkpoints WHERE tenant_id = ? AND tree_size = 4',
        [TENANT],
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
      await sql(t, 'UPDATE log_checkpoints SET note = ? WHERE tenant_id = ? AND tree_size = 4', [
        lines.join('\n'),
        TENANT,
      ]);
      const report = await verify(t);
      assertFinding(report, { kind: 'signature_invalid', subject: 'checkpoint', tree_size: 4 });
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
    assert.equal(report.checked.leaves, 10);
    assert.deepEqual(report.findings, []);
  });

  test('the command exits 0 on a clean ledger', () => {
    const result = runCli(['ledger', 'verify', '--tenant', TENANT], cliEnv());
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^CLEAN {2}ledger of tenant ward-a, 10 leaves/);
    const json = runCli(['ledger', 'verify', '--tenant', TENANT, '--json'], cliEnv());
    assert.equal(json.status, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as LedgerReport).checked.certificates, 8);
  });

  test('the command shows progress on stderr for a large log', async () => {
    const tenant = 'ward-large';
    await t.services.tenants.create(tenant);
    for (let batch = 0; batch < 4; batch++) {
      const events = Array.from({ length: 2500 }, (_, i) => {
        const event = {
          event_id: randomUUID(),
          occurred_at: new Date().toISOString(),
          action: 'certificate.verify',
          outcome: 'success',
          actor_hash: null,
          object_type: 'batch',
          object_id: `${batch}-${i}`,
        };
        return { ...event, event_json: canonicalJson(event) };
      });
      await t.services.store.appendAuditEvents(tenant, events);
    }
    await t.services.log.publish(tenant);
    const result = await runCliAsync(['ledger', 'verify', '--tenant', tenant, '--json'], cliEnv());
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout) as LedgerReport;
    assert.equal(report.checked.audit_events, 10_000);
    assert.equal(report.checked.checkpoints, 1);
    const lines = result.stderr.trim().split('\n');
    assert.ok(lines.length >= 10, result.stderr);
    assert.equal(lines[lines.length - 1], 'verified 10000/10000 leaves');
  });

  test('the command exits 2 for an unknown tenant', () => {
    const result = runCli(['ledger', 'verify', '--tenant', 'nobody'], cliEnv());
    assert.equal(result.status, 2);
    assert.match(result.stderr, /tenant not found/);
  });

  test('the report lists findings over HTTP and the command exits 1', async () => {
    await sql(
      t,
      "UPDATE certificates SET governance_policy_version = 'policy-8' WHERE tenant_id = ? AND log_index = 8",
      [TENANT],
    );
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/log/verification',
      headers: bearer(await t.token('auditor', TENANT)),
    });
    const report = response.json<LedgerReport>();
    assert.equal(report.ok, false);
    const finding = assertFinding(report, { kind: 'edited', log_index: 8 });
    assert.deepEqual(finding.fields, ['governance_policy_version']);

    const result = runCli(['ledger', 'verify', '--tenant', TENANT], cliEnv());
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stdout, /^FINDINGS/);
    assert.match(
      result.stdout,
      /edited +certificate [0-9a-f-]{36}, sequence 7, log index 8: stored columns differ/,
    );
    // The report names the changed column, never its stored or signed value.
    assert.doesNotMatch(result.stdout, /policy-8/);
  });
});
