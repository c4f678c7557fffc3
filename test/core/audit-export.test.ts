// Offline verification of audit exports. A real export is made through the service stack on the
// engine under test. Each case alters it the way an attacker or a damaged copy would, then checks
// that the report names the failed check and nothing else.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  verifyAuditExport,
  type AuditExportCheckName,
  type AuditExportEntry,
  type AuditExportHeader,
  type AuditExportReport,
} from '../../src/core/audit-export.ts';
import {
  createVerifierKey,
  formatCheckpoint,
  formatVerifierKey,
  signNote,
} from '../../src/core/checkpoint.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { toBase64, toHex, utf8Encode } from '../../src/core/encoding.ts';
import { AuditError } from '../../src/core/errors.ts';
import {
  appendLeaves,
  buildInclusionProof,
  leafHash,
  nodeKey,
  rootFromFrontier,
} from '../../src/core/merkle.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { generateEd25519Key } from '../helpers/ed25519.ts';

describe('audit export verification', () => {
  let t: TestApp;
  let exported: string[];
  let publishedKey: string;

  before(async () => {
    t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' });
    await t.services.tenants.create('alice');
    const clinician = await t.token('clinician', 'alice');
    const auditor = await t.token('auditor', 'alice');
    for (let i = 0; i < 6; i++) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/clinical/documentation',
        headers: bearer(clinician),
        payload: issueBody({ note_text: `Export note ${i}.` }),
      });
      const id = response.json().certificate.certificate_id as string;
      await t.app.inject({
        method: 'POST',
        url: `/v1/certificates/${id}/verify`,
        headers: bearer(auditor),
        payload: {},
      });
    }
    await t.app.inject({ method: 'GET', url: '/v1/audit-events', headers: bearer(clinician) });
    exported = [];
    await t.services.auditExport.export('alice', {}, (line) => {
      exported.push(line);
      return Promise.resolve();
    });
    publishedKey = (await t.services.log.keyInfo('alice')).verifier_key;
  });
  after(() => t.close());

  const copy = () => [...exported];
  const header = (lines: string[]) => JSON.parse(lines[0]!) as AuditExportHeader;
  const entry = (lines: string[], position: number) =>
    JSON.parse(lines[position]!) as AuditExportEntry;
  /** Line position of the n-th audit event entry, counting from 0. */
  const eventLine = (lines: string[], n: number): number => {
    let seen = 0;
    for (let position = 1; position < lines.length; position++) {
      if (entry(lines, position).kind === 'audit_event' && seen++ === n) {
        return position;
      }
    }
    throw new Error(`the export has no audit event number ${n}`);
  };
  const verify = (lines: string[], trustedLogKeys?: string[]) =>
    verifyAuditExport(nodeCrypto, `${lines.join('\n')}\n`, { trustedLogKeys });
  const failed = (report: AuditExportReport): AuditExportCheckName[] =>
    report.checks.filter((check) => check.status === 'fail').map((check) => check.check);
  const check = (report: AuditExportReport, name: AuditExportCheckName) =>
    report.checks.find((candidate) => candidate.check === name)!;

  test('untouched export is valid', () => {
    const report = verify(copy());
    assert.equal(report.valid, true, JSON.stringify(report.checks, null, 2));
    assert.equal(report.covers_whole_log, true);
    assert.equal(report.log_key_source, 'export');
    assert.equal(report.certificates, 6);
    // tenant.create, six issuances, six verifications, one rejection.
    assert.equal(report.audit_events, 14);
    assert.equal(report.tree_size, 20);
    assert.match(report.summary, /pin the tenant key/);
  });

  test('pinned published key verifies', () => {
    const report = verify(copy(), [publishedKey]);
    assert.equal(report.valid, true);
    assert.equal(report.log_key_source, 'pinned');
    assert.match(check(report, 'checkpoint').detail, /pinned log key/);
  });

  test('edited event fails leaf_hash', () => {
    const lines = copy();
    const position = eventLine(lines, 3);
    const edited = entry(lines, position);
    edited.leaf_data = edited.leaf_data.replace('"outcome":"success"', '"outcome":"failure"');
    lines[position] = JSON.stringify(edited);
    const report = verify(lines);
    assert.deepEqual(failed(report), ['leaf_hash']);
    assert.match(check(report, 'leaf_hash').failures[0]!, new RegExp(`leaf ${edited.log_index}`));
  });

  test('edited event with new hash fails inclusion_proof', () => {
    const lines = copy();
    const position = eventLine(lines, 3);
    const edited = entry(lines, position);
    edited.leaf_data = edited.leaf_data.replace('"outcome":"success"', '"outcome":"failure"');
    edited.leaf_hash = toHex(leafHash(nodeCrypto, utf8Encode(edited.leaf_data)));
    lines[position] = JSON.stringify(edited);
    const report = verify(lines);
    assert.deepEqual(failed(report), ['inclusion_proof']);
  });

  test('removed event fails completeness only', () => {
    const lines = copy();
    const position = eventLine(lines, 5);
    const removed = entry(lines, position).log_index;
    lines.splice(position, 1);
    const report = verify(lines);
    assert.deepEqual(failed(report), ['completeness']);
    assert.match(check(report, 'completeness').detail, new RegExp(`missing: ${removed}$`));
    assert.equal(check(report, 'inclusion_proof').status, 'pass');
  });

  test('truncated export fails completeness', () => {
    const lines = copy().slice(0, -2);
    const report = verify(lines);
    assert.deepEqual(failed(report), ['completeness']);
    assert.match(check(report, 'completeness').detail, /^2 leaves/);
  });

  test('event relabelled as certificate fails certificate_leaf', () => {
    const lines = copy();
    const position = eventLine(lines, 2);
    const relabelled = { ...entry(lines, position), kind: 'certificate', certificate_id: 'x' };
    lines[position] = JSON.stringify(relabelled);
    const report = verify(lines);
    assert.deepEqual(failed(report), ['certificate_leaf']);
  });

  test('edited proof fails inclusion_proof', () => {
    const lines = copy();
    const position = eventLine(lines, 1);
    const edited = entry(lines, position);
    edited.inclusion_proof[0] = toBase64(new Uint8Array(32).fill(9));
    lines[position] = JSON.stringify(edited);
    const report = verify(lines);
    assert.deepEqual(failed(report), ['inclusion_proof']);
  });

  test('duplicated line fails index_order', () => {
    const lines = copy();
    lines.splice(4, 0, lines[4]!);
    const report = verify(lines);
    assert.deepEqual(failed(report), ['index_order']);
  });

  test('swapped lines fail index_order', () => {
    const lines = copy();
    [lines[3], lines[4]] = [lines[4]!, lines[3]!];
    const report = verify(lines);
    assert.ok(failed(report).includes('index_order'));
    assert.equal(report.valid, false);
  });

  test('malformed lines fail entry_format', () => {
    const lines = copy();
    lines[2] = 'not json';
    lines[5] = JSON.stringify({ ...entry(lines, 5), leaf_hash: 'ABC' });
    const report = verify(lines);
    assert.ok(failed(report).includes('entry_format'));
    assert.equal(check(report, 'entry_format').failures.length, 2);
  });

  test('unknown fields are rejected', () => {
    const lines = copy();
    lines[3] = JSON.stringify({ ...entry(lines, 3), note: 'reviewed by the auditor' });
    const report = verify(lines);
    // The rejected line is not counted, so its leaf is also missing from the range.
    assert.deepEqual(failed(report), ['entry_format', 'completeness']);
    assert.match(check(report, 'entry_format').failures[0]!, /line 4: unknown fields note/);

    const extraHeader = copy();
    extraHeader[0] = JSON.stringify({ ...header(extraHeader), comment: 'x' });
    assert.throws(() => verify(extraHeader), /header is invalid: unknown fields comment/);

    const extraRange = copy();
    const head = header(extraRange);
    extraRange[0] = JSON.stringify({ ...head, range: { ...head.range, step: 2 } });
    assert.throws(() => verify(extraRange), /unknown fields range\.step/);
  });

  test('checkpoint signed by another key fails', () => {
    const lines = copy();
    const head = header(lines);
    const attacker = generateEd25519Key();
    const body = head.checkpoint.slice(0, head.checkpoint.indexOf('\n\n') + 1);
    head.checkpoint = signNote(
      nodeCrypto,
      body,
      `cdil.local/tenants/alice`,
      attacker.sign,
      attacker.publicKey,
    );
    lines[0] = JSON.stringify(head);
    const report = verify(lines);
    assert.deepEqual(failed(report), ['checkpoint']);
    assert.equal(check(report, 'inclusion_proof').status, 'skipped');
  });

  test('rebuilt and re-signed log passes only unpinned', () => {
    // The attacker drops one event, renumbers the rest, rebuilds the tree and signs it with a
    // key of their own, which they also put in the header.
    const lines = copy();
    lines.splice(eventLine(lines, 4), 1);
    const entries = lines.slice(1).map((_, i) => entry(lines, i + 1));
    const hashes = entries.map((item) => leafHash(nodeCrypto, utf8Encode(item.leaf_data)));

    const tree = appendLeaves(nodeCrypto, [], 0, hashes);
    const nodes = new Map(tree.nodes.map((node) => [nodeKey(node), node.hash]));
    const attacker = generateEd25519Key();
    const origin = 'cdil.local/tenants/alice';
    const head = header(lines);
    head.tree_size = hashes.length;
    head.range.end = hashes.length;
    head.log_key = formatVerifierKey(createVerifierKey(nodeCrypto, origin, attacker.publicKey));
    head.checkpoint = signNote(
      nodeCrypto,
      formatCheckpoint({
        origin,
        size: hashes.length,
        rootHash: rootFromFrontier(nodeCrypto, tree.frontier),
        extensions: [],
      }),
      origin,
      attacker.sign,
      attacker.publicKey,
    );

    const forged = [
      JSON.stringify(head),
      ...entries.map((item, i) =>
        JSON.stringify({
          ...item,
          log_index: i,
          leaf_hash: toHex(hashes[i]!),
          inclusion_proof: buildInclusionProof(nodeCrypto, i, hashes.length, nodes).map(toBase64),
        }),
      ),
    ];

    const unpinned = verify(forged);
    assert.equal(unpinned.valid, true);
    assert.equal(unpinned.log_key_source, 'export');
    const pinned = verify(forged, [publishedKey]);
    assert.deepEqual(failed(pinned), ['checkpoint']);
  });

  test('range past the checkpoint fails checkpoint', () => {
    const lines = copy();
    const head = header(lines);
    head.range.end = head.tree_size + 3;
    lines[0] = JSON.stringify(head);
    const report = verify(lines);
    assert.deepEqual(failed(report), ['checkpoint', 'completeness']);
  });

  test('narrowed range is reported as partial', () => {
    const lines = copy().slice(0, 8);
    const head = header(lines);
    head.range.end = entry(lines, 7).log_index + 1;
    lines[0] = JSON.stringify(head);
    const report = verify(lines);
    assert.equal(report.valid, true);
    assert.equal(report.covers_whole_log, false);
    assert.match(report.summary, /range itself is not signed/);
  });

  test('unusable input raises AuditError', () => {
    const cases: [string, string][] = [
      ['', 'AUDIT_EXPORT_UNUSABLE'],
      ['garbage\n', 'AUDIT_EXPORT_UNUSABLE'],
      [`${JSON.stringify({ format: 'cdil.audit-export.v1' })}\n`, 'AUDIT_EXPORT_UNUSABLE'],
    ];
    for (const [text, code] of cases) {
      assert.throws(
        () => verifyAuditExport(nodeCrypto, text),
        (error: unknown) => error instanceof AuditError && error.code === code,
        JSON.stringify(text),
      );
    }
    assert.throws(
      () => verifyAuditExport(nodeCrypto, `${exported.join('\n')}\n`, { trustedLogKeys: ['x'] }),
      (error: unknown) => error instanceof AuditError && error.code === 'AUDIT_LOG_KEY_INVALID',
    );
  });
});
