// Scores every note of a JSON-lines corpus (.jsonl or .jsonl.gz) in shadow mode and prints notes
// per condition, MEAT completeness per element, the most common gaps and throughput.
//
//   node --import tsx scripts/shadow-corpus.ts [FILE] [--out report.json] [--limit N] [--json]
//
// FILE defaults to <reference data>/mtsamples/notes.jsonl.gz, where the reference data folder is
// $CDIL_REFERENCE_DATA or ../shared/data next to the repository.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { scoreNote } from '../src/scoring/engine.ts';
import { CorpusAggregator, formatCorpusReport, parseNoteLine } from '../src/scoring/report.ts';
import { loadDefaultRuleset } from '../src/scoring/ruleset.ts';

const repositoryRoot = resolve(import.meta.dirname, '..');
const referenceData = resolve(
  repositoryRoot,
  process.env.CDIL_REFERENCE_DATA ?? join('..', 'shared', 'data'),
);

const args = process.argv.slice(2);
function option(name: string): string | undefined {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}
const optionValues = new Set(['--out', '--limit'].map((name) => option(name)));
const file = resolve(
  args.find((arg) => !arg.startsWith('--') && !optionValues.has(arg)) ??
    join(referenceData, 'mtsamples', 'notes.jsonl.gz'),
);
const out = option('--out');
const limitText = option('--limit');
const limit = limitText === undefined ? Infinity : Number(limitText);
if (!Number.isInteger(limit) && limit !== Infinity) {
  console.error(`invalid --limit ${limitText}: expected a whole number of notes`);
  process.exit(2);
}

let raw: Buffer;
try {
  raw = readFileSync(file);
} catch (error) {
  console.error(
    `cannot read ${file}: ${(error as Error).message}. Pass a .jsonl or .jsonl.gz file or set CDIL_REFERENCE_DATA.`,
  );
  process.exit(1);
}
// Gzip files start with the bytes 1f 8b, whatever their name.
const content = (raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw).toString('utf8');

const ruleset = loadDefaultRuleset();
const aggregator = new CorpusAggregator();
const lines = content.split('\n');
let scored = 0;
let characters = 0;
let scoringMs = 0;
for (let index = 0; index < lines.length && scored < limit; index++) {
  const note = parseNoteLine(lines[index] ?? '', index + 1);
  if (note === undefined) {
    continue;
  }
  const started = performance.now();
  const result = scoreNote(note.context === undefined ? { text: note.text } : note, ruleset);
  scoringMs += performance.now() - started;
  aggregator.add(note.note_id, result);
  scored++;
  characters += note.text.length;
}

const report = aggregator.report();
const throughput = {
  notes: scored,
  characters,
  scoring_ms: Math.round(scoringMs),
  notes_per_second: scoringMs === 0 ? null : Math.round(scored / (scoringMs / 1000)),
  megabytes_per_second:
    scoringMs === 0 ? null : Math.round((characters / 1e6 / (scoringMs / 1000)) * 10) / 10,
};
if (args.includes('--json')) {
  console.log(JSON.stringify({ ...report, throughput }, null, 2));
} else {
  console.log(formatCorpusReport(report));
  console.log(
    `\nthroughput: ${throughput.notes} notes, ${throughput.characters} characters in ${throughput.scoring_ms} ms of scoring: ${throughput.notes_per_second} notes/s, ${throughput.megabytes_per_second} MB/s (one core, file reading excluded)`,
  );
}
if (out !== undefined) {
  writeFileSync(out, `${JSON.stringify({ ...report, throughput }, null, 2)}\n`);
  console.log(`report written to ${out}`);
}
