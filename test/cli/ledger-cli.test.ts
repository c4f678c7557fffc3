// Text output of `cdil ledger verify`, which names the record each finding is about.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatLedgerReport } from '../../src/cli/commands/ledger.ts';
import type { LedgerFinding, LedgerReport } from '../../src/services/ledger-report.ts';

function reportWith(
  findings: LedgerFinding[],
  timestamps: { checked: number; withoutRoots: number } = { checked: 0, withoutRoots: 0 },
): LedgerReport {
  return {
    tenant_id: 'ward-a',
    ok: findings.length === 0,
    tree_size: 12,
    checked: {
      leaves: 12,
      certificates: 6,
      audit_events: 6,
      nodes: 20,
      checkpoints: 2,
      timestamp_tokens: timestamps.checked,
    },
    not_checked: {
      leaves_appended_during_run: 0,
      checkpoints_published_during_run: 0,
      timestamp_tokens_without_roots: timestamps.withoutRoots,
    },
    totals: {
      deleted: 0,
      inserted: 0,
      reordered: 0,
      edited: findings.filter((finding) => finding.kind === 'edited').length,
      checkpoint_mismatch: findings.filter((finding) => finding.kind === 'checkpoint_mismatch')
        .length,
      signature_invalid: 0,
      timestamp_invalid: findings.filter((finding) => finding.kind === 'timestamp_invalid').length,
    },
    findings,
    findings_truncated: false,
    started_at: '2026-03-01T00:00:00.000Z',
    duration_ms: 5,
  };
}

void describe('cdil ledger verify text output', () => {
  test('chain head finding names its sequence', () => {
    const text = formatLedgerReport(
      reportWith([
        {
          kind: 'edited',
          subject: 'head',
          chain_sequence: 5,
          detail: "the chain head's hash is not that of the certificate at sequence 5",
        },
      ]),
    );
    assert.doesNotMatch(text, /undefined/);
    assert.match(
      text,
      /^ {2}edited +chain head, sequence 5: the chain head's hash is not that of/m,
    );
  });

  test('log head finding names its size', () => {
    const text = formatLedgerReport(
      reportWith([
        {
          kind: 'checkpoint_mismatch',
          subject: 'head',
          tree_size: 12,
          detail: 'the stored head frontier differs from the tree rebuilt from the stored leaves',
        },
      ]),
    );
    assert.doesNotMatch(text, /undefined/);
    assert.match(text, /^ {2}checkpoint_mismatch +log head of size 12: the stored head/m);
  });

  test('checkpoint finding names its size', () => {
    const text = formatLedgerReport(
      reportWith([
        {
          kind: 'checkpoint_mismatch',
          subject: 'checkpoint',
          tree_size: 8,
          log_index: 3,
          detail: 'the signed root differs from the tree rebuilt from the stored leaves',
        },
      ]),
    );
    assert.match(text, /^ {2}checkpoint_mismatch +checkpoint of size 8: the signed root/m);
  });

  test('timestamp finding names its certificate', () => {
    const text = formatLedgerReport(
      reportWith(
        [
          {
            kind: 'timestamp_invalid',
            subject: 'certificate',
            certificate_id: '0b7c7a52-6a43-4c43-9b1e-3c1f8d1f2a10',
            chain_sequence: 4,
            log_index: 8,
            detail: 'certificate timestamp token is invalid: token cannot be read',
          },
        ],
        { checked: 3, withoutRoots: 0 },
      ),
    );
    assert.match(
      text,
      /^ {2}timestamp_invalid +certificate 0b7c7a52-6a43-4c43-9b1e-3c1f8d1f2a10, sequence 4, log index 8: certificate timestamp token is invalid/m,
    );
    assert.match(text, /^ {2}verified 3 timestamp tokens$/m);
    assert.doesNotMatch(text, /not verified/);
    assert.match(text, /^totals: timestamp_invalid 1$/m);
  });

  test('unverified timestamp tokens get a line', () => {
    const text = formatLedgerReport(reportWith([], { checked: 0, withoutRoots: 1 }));
    assert.match(
      text,
      /^ {2}not verified: 1 timestamp token, because no TSA roots were given \(--tsa-roots\)$/m,
    );
    assert.doesNotMatch(text, /verified 0/);
  });

  test('no timestamp lines without tokens', () => {
    const text = formatLedgerReport(reportWith([]));
    assert.doesNotMatch(text, /timestamp/);
  });
});
