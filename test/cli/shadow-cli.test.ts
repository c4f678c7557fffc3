import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { GAP_NOTES, GAP_NOTE_VALUES } from '../helpers/shadow.ts';

const SAMPLES = resolve(import.meta.dirname, '..', '..', 'samples', 'notes.jsonl');

describe('cdil shadow analyze', () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-shadow-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('--help lists the options', () => {
    const result = runCli(['shadow', 'analyze', '--help']);
    assert.equal(result.status, 0);
    for (const option of ['--out', '--limit', '--json']) {
      assert.ok(result.stdout.includes(option), option);
    }
  });

  test('scores the sample notes into a report without note text', () => {
    const out = join(dir, 'report.json');
    const result = runCli(['shadow', 'analyze', SAMPLES, '--out', out, '--limit', '10']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /10 notes/);
    assert.match(result.stderr, /scored 10\/10 notes/);
    const text = readFileSync(out, 'utf8');
    const report = JSON.parse(text);
    assert.equal(report.format, 'cdil.shadow-report.v1');
    assert.equal(report.notes_scored, 10);
    assert.equal(report.summary.notes, 10);
    assert.equal(report.notes.length, 10);
    assert.match(report.notes[0].note_hash, /^[0-9a-f]{64}$/);
    assert.ok(!text.includes('"text"'), 'a text field in the report');
    const firstNote = JSON.parse(readFileSync(SAMPLES, 'utf8').split('\n')[0]!).text as string;
    for (const fragment of firstNote.match(/[A-Za-z ,]{40}/g)!.slice(0, 5)) {
      assert.ok(!text.includes(fragment), `note text found: ${fragment}`);
    }
  });

  test('reads gzip and structured context, and sums leakage', () => {
    const file = join(dir, 'notes.jsonl.gz');
    const lines = GAP_NOTES.map((text, index) => JSON.stringify({ note_id: `n${index}`, text }));
    lines.push(
      JSON.stringify({
        note_id: 'coded',
        text: 'PLAN: Continue current management.',
        context: { diagnoses: ['I50.22'] },
      }),
    );
    writeFileSync(file, gzipSync(lines.join('\n')));
    const result = runCli(['shadow', 'analyze', file, '--json']);
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout);
    assert.equal(report.notes_scored, 4);
    assert.deepEqual(
      report.notes
        .slice(0, 3)
        .map((note: { estimated_value_at_risk_usd: number }) => note.estimated_value_at_risk_usd),
      GAP_NOTE_VALUES,
    );
    assert.equal(report.notes[3].result.conditions[0].source, 'diagnosis_code');
    const total = report.notes.reduce(
      (sum: number, note: { estimated_value_at_risk_usd: number }) =>
        sum + note.estimated_value_at_risk_usd,
      0,
    );
    assert.equal(report.leakage.estimated_value_at_risk_usd, total);
    assert.equal(report.summary.estimated_value_at_risk_usd, total);
  });

  test('invalid context fails with the note id', () => {
    const file = join(dir, 'bad.jsonl');
    writeFileSync(
      file,
      JSON.stringify({ note_id: 'x7', text: 'ASSESSMENT: COPD.', context: { labs: 'BNP' } }),
    );
    const result = runCli(['shadow', 'analyze', file]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /note x7: invalid context at \/labs/);
  });

  test('missing file and bad limit fail', () => {
    assert.equal(runCli(['shadow', 'analyze', join(dir, 'none.jsonl')]).status, 1);
    const badLimit = runCli(['shadow', 'analyze', SAMPLES, '--limit', '0']);
    assert.equal(badLimit.status, 1);
    assert.match(badLimit.stderr, /--limit must be a positive whole number/);
  });
});
