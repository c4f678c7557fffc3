// `cdil audit export` and `cdil audit verify` run as real child processes against the database of
// a test service: the written file, exit statuses, pinned keys, time ranges and a log whose
// audit event row was deleted behind the service's back.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AuditEvent } from '../../src/core/audit-event.ts';
import {
  AUDIT_EXPORT_CHECKS,
  type AuditExportEntry,
  type AuditExportHeader,
  type AuditExportReport,
} from '../../src/core/audit-export.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { runCli } from '../helpers/cli.ts';
import { runSql } from '../helpers/database.ts';

interface Item {
  log_index: number;
  event: AuditEvent;
  event_json: string;
}

describe('cdil audit', () => {
  let t: TestApp;
  let dir: string;
  let env: Record<string, string>;
  let exportPath: string;

  const events = async (tenantId: string): Promise<Item[]> => {
    const response = await t.app.inject({
      method: 'GET',
      url: '/v1/audit-events?limit=500',
      headers: bearer(await t.token('auditor', tenantId)),
    });
    return response.json().items as Item[];
  };

  const readExport = (path: string) => {
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    return {
      header: JSON.parse(lines[0]!) as AuditExportHeader,
      entries: lines.slice(1).map((line) => JSON.parse(line) as AuditExportEntry),
      lines,
    };
  };

  before(async () => {
    t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' });
    dir = mkdtempSync(join(tmpdir(), 'cdil-audit-cli-'));
    env = { CDIL_DATA_DIR: t.dir, CDIL_LOG_LEVEL: 'warn', ...t.database.env };
    for (const tenantId of ['alice', 'bob', 'carol']) {
      await t.services.tenants.create(tenantId);
      const clinician = await t.token('clinician', tenantId);
      for (let i = 0; i < 5; i++) {
        await t.app.inject({
          method: 'POST',
          url: '/v1/clinical/documentation',
          headers: bearer(clinician),
          payload: issueBody({ note_text: `CLI note ${tenantId} ${i}.` }),
        });
        // Spread occurred_at so time ranges can separate events.
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    exportPath = join(dir, 'alice.jsonl');
  });
  after(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('export writes the whole log', () => {
    const result = runCli(['audit', 'export', '--tenant', 'alice', '--out', exportPath], env);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /6 audit events and 5 certificate leaves, leaves 0 to 10/);
    assert.equal(statSync(exportPath).mode & 0o777, 0o600);
    assert.equal(existsSync(`${exportPath}.partial`), false);
    const { header, entries } = readExport(exportPath);
    assert.equal(header.tree_size, 11);
    assert.deepEqual(header.range, { start: 0, end: 11, occurred_from: null, occurred_to: null });
    assert.deepEqual(
      entries.map((entry) => entry.log_index),
      Array.from({ length: 11 }, (_, i) => i),
    );
  });

  test('export is itself recorded', async () => {
    const recorded = (await events('alice')).filter((item) => item.event.action === 'audit.export');
    assert.equal(recorded.length, 1);
    assert.equal(recorded[0]!.event.channel, 'cli');
    assert.equal(recorded[0]!.event.object_id, '11');
    assert.equal(recorded[0]!.log_index, 11);
  });

  test('verify exits 0 naming every check', () => {
    const result = runCli(['audit', 'verify', exportPath], env);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^VALID {2}audit export of tenant alice, leaves 0 to 10 of 11/);
    for (const check of AUDIT_EXPORT_CHECKS) {
      assert.match(result.stdout, new RegExp(`PASS {2}${check} `), check);
    }
    assert.match(result.stdout, /log key in the export/);
  });

  test('pinned key inline and from file', async () => {
    const key = (await t.services.log.keyInfo('alice')).verifier_key;
    const inline = runCli(['audit', 'verify', exportPath, '--log-key', key], env);
    assert.equal(inline.status, 0, inline.stderr);
    assert.match(inline.stdout, /signed by a pinned log key/);
    const keyFile = join(dir, 'alice-log-key.txt');
    writeFileSync(keyFile, `# alice\n${key}\n`);
    const fromFile = runCli(['audit', 'verify', exportPath, '--log-key', keyFile], env);
    assert.equal(fromFile.status, 0, fromFile.stderr);
    const bobKey = (await t.services.log.keyInfo('bob')).verifier_key;
    const wrong = runCli(['audit', 'verify', exportPath, '--log-key', bobKey, '--json'], env);
    assert.equal(wrong.status, 1);
    const report = JSON.parse(wrong.stdout) as AuditExportReport;
    assert.equal(report.checks.find((check) => check.check === 'checkpoint')!.status, 'fail');
  });

  test('tampered export exits 1 naming the check', () => {
    const { lines, entries } = readExport(exportPath);
    const position = entries.findIndex(
      (entry) => entry.kind === 'audit_event' && entry.log_index > 0,
    );
    const edited = entries[position]!;
    edited.leaf_data = edited.leaf_data.replace('"channel":"http"', '"channel":"cli"');
    lines[position + 1] = JSON.stringify(edited);
    const tampered = join(dir, 'tampered.jsonl');
    writeFileSync(tampered, `${lines.join('\n')}\n`);
    const result = runCli(['audit', 'verify', tampered], env);
    assert.equal(result.status, 1);
    assert.match(result.stdout, /^INVALID /);
    assert.match(result.stdout, /FAIL {2}leaf_hash /);
    assert.match(result.stdout, new RegExp(`\\(leaf ${edited.log_index}\\): leaf_hash is not`));
  });

  test('unusable input exits 2', () => {
    const garbage = join(dir, 'garbage.jsonl');
    writeFileSync(garbage, 'not an export\n');
    const cases = [
      ['audit', 'verify', join(dir, 'missing.jsonl')],
      ['audit', 'verify', garbage],
      ['audit', 'verify', exportPath, '--log-key', join(dir, 'no-such-key.txt')],
      ['audit', 'export', '--tenant', 'alice', '--out', exportPath, '--from', 'last tuesday'],
    ];
    for (const args of cases) {
      const result = runCli(args, env);
      assert.equal(result.status, 2, args.join(' '));
      assert.match(result.stderr, /error/, args.join(' '));
    }
  });

  test('unknown tenant exits 2 without a file', () => {
    const out = join(dir, 'nobody.jsonl');
    const result = runCli(['audit', 'export', '--tenant', 'nobody', '--out', out], env);
    assert.equal(result.status, 2);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, 'error: tenant nobody not found\n');
    assert.equal(existsSync(out), false);
    assert.equal(existsSync(`${out}.partial`), false);
  });

  test('reversed time range exits 2 without a file', async () => {
    const eventsBefore = await events('carol');
    const out = join(dir, 'carol-reversed.jsonl');
    for (const [from, to] of [
      ['2026-03-02T00:00:00Z', '2026-03-01T00:00:00Z'],
      ['2026-03-01T00:00:00Z', '2026-03-01T00:00:00Z'],
    ]) {
      const result = runCli(
        ['audit', 'export', '--tenant', 'carol', '--out', out, '--from', from!, '--to', to!],
        env,
      );
      assert.equal(result.status, 2, result.stdout);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, /--from 2026-03-0\dT00:00:00\.000Z must be earlier than --to/);
      assert.equal(existsSync(out), false);
      assert.equal(existsSync(`${out}.partial`), false);
    }
    const eventsAfter = await events('carol');
    assert.equal(eventsAfter.length, eventsBefore.length);
    assert.equal(
      eventsAfter.filter((item) => item.event.action === 'audit.export').length,
      0,
      'no audit.export event is recorded',
    );
  });

  test('time range exports the leaves between matching events', async () => {
    const issued = (await events('bob')).filter(
      (item) => item.event.action === 'certificate.issue',
    );
    const from = issued[1]!.event.occurred_at;
    const to = issued[3]!.event.occurred_at;
    const out = join(dir, 'bob-range.jsonl');
    const result = runCli(
      ['audit', 'export', '--tenant', 'bob', '--out', out, '--from', from, '--to', to],
      env,
    );
    assert.equal(result.status, 0, result.stderr);
    const { header, entries } = readExport(out);
    assert.deepEqual(header.range, {
      start: issued[1]!.log_index,
      end: issued[2]!.log_index + 1,
      occurred_from: from,
      occurred_to: to,
    });
    // The certificate leaf between the two events is exported too.
    assert.deepEqual(
      entries.map((entry) => entry.kind),
      ['audit_event', 'certificate', 'audit_event'],
    );
    const verified = runCli(['audit', 'verify', out], env);
    assert.equal(verified.status, 0, verified.stdout);
    assert.match(verified.stdout, /Leaves outside that range were not exported/);
  });

  test('deleted event row is reported as a gap', async () => {
    const removed = (await events('carol')).find(
      (item) => item.event.action === 'certificate.issue',
    )!;
    await runSql(t, 'DELETE FROM audit_events WHERE tenant_id = ? AND log_index = ?', [
      'carol',
      removed.log_index,
    ]);
    const out = join(dir, 'carol.jsonl');
    const exported = runCli(['audit', 'export', '--tenant', 'carol', '--out', out], env);
    assert.equal(exported.status, 1);
    assert.match(
      exported.stderr,
      new RegExp(`1 leaves of the range have no stored row \\(first: ${removed.log_index}\\)`),
    );
    const verified = runCli(['audit', 'verify', out], env);
    assert.equal(verified.status, 1);
    assert.match(
      verified.stdout,
      new RegExp(
        `FAIL {2}completeness +1 leaves of the range are missing: ${removed.log_index}\\n`,
      ),
    );
    assert.match(verified.stdout, /PASS {2}inclusion_proof/);
  });

  test('edited event row fails its inclusion proof', async () => {
    const edited = (await events('carol')).find((item) => item.event.action === 'tenant.create')!;
    await runSql(
      t,
      'UPDATE audit_events SET event_json = ? WHERE tenant_id = ? AND log_index = ?',
      [
        edited.event_json.replace('"channel":"internal"', '"channel":"cli"'),
        'carol',
        edited.log_index,
      ],
    );
    const out = join(dir, 'carol-edited.jsonl');
    runCli(['audit', 'export', '--tenant', 'carol', '--out', out], env);
    const verified = runCli(['audit', 'verify', out], env);
    assert.equal(verified.status, 1);
    assert.match(verified.stdout, /FAIL {2}inclusion_proof +1 failure\n/);
    assert.match(
      verified.stdout,
      new RegExp(`\\(leaf ${edited.log_index}\\): the proof does not lead`),
    );
  });
});
