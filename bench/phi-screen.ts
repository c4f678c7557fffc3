// Measures PHI screen throughput over the MTSamples corpus and the time for one 100 KB note,
// for screenForPhi and, in the same run, for the full-text reference in test/helpers.
// Run: node --import tsx bench/phi-screen.ts
// The corpus is read from $CDIL_REFERENCE_DATA/mtsamples/notes.jsonl.gz, where
// CDIL_REFERENCE_DATA defaults to ../shared/data relative to the repository root.
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

import { screenForPhi } from '../src/services/phi-screen.ts';
import type { PhiScreenResult } from '../src/services/phi-screen.ts';
import { screenForPhiReference } from '../test/helpers/phi-screen-reference.ts';

const CORPUS_PASSES = 5;
const LARGE_NOTE_BYTES = 100_000;
const LARGE_NOTE_RUNS = 50;

const repoRoot = fileURLToPath(new URL('../', import.meta.url));
const dataDir = resolve(repoRoot, process.env['CDIL_REFERENCE_DATA'] ?? '../shared/data');
const corpusPath = resolve(dataDir, 'mtsamples/notes.jsonl.gz');

function loadNotes(): string[] {
  if (!existsSync(corpusPath)) {
    console.error(
      `reference corpus not found at ${corpusPath}; set CDIL_REFERENCE_DATA to the data folder`,
    );
    process.exit(1);
  }
  const lines = gunzipSync(readFileSync(corpusPath)).toString('utf8').split('\n');
  return lines
    .filter((line) => line.trim() !== '')
    .map((line) => (JSON.parse(line) as { text: string }).text);
}

function percentile(sorted: number[], fraction: number): number {
  const index = Math.min(sorted.length - 1, Math.floor(sorted.length * fraction));
  return sorted[index] ?? Number.NaN;
}

/** Concatenates corpus notes and cuts the text to `bytes` characters (1 byte each in ASCII). */
function buildLargeNote(notes: string[], bytes: number): string {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i += 1) {
    const note = notes[i % notes.length] ?? '';
    parts.push(note);
    size += Buffer.byteLength(note) + 1;
  }
  return parts.join('\n').slice(0, bytes);
}

type Screen = (text: string) => PhiScreenResult;

/** Screens the corpus and a large note with `screen` and prints the timings. */
function measure(name: string, screen: Screen, notes: string[], largeNote: string): void {
  // One untimed pass lets V8 compile the regular expressions.
  let flaggedNotes = 0;
  for (const note of notes) {
    if (screen(note).total > 0) {
      flaggedNotes += 1;
    }
  }

  const perNoteMs: number[] = [];
  const corpusStart = performance.now();
  for (let pass = 0; pass < CORPUS_PASSES; pass += 1) {
    for (const note of notes) {
      const started = performance.now();
      screen(note);
      perNoteMs.push(performance.now() - started);
    }
  }
  const corpusSeconds = (performance.now() - corpusStart) / 1000;
  perNoteMs.sort((a, b) => a - b);

  screen(largeNote);
  const largeMs: number[] = [];
  for (let run = 0; run < LARGE_NOTE_RUNS; run += 1) {
    const started = performance.now();
    screen(largeNote);
    largeMs.push(performance.now() - started);
  }
  largeMs.sort((a, b) => a - b);

  const screenedNotes = notes.length * CORPUS_PASSES;
  console.log(`${name}: ${flaggedNotes} notes flagged`);
  console.log(
    `  throughput over ${CORPUS_PASSES} passes: ` +
      `${(screenedNotes / corpusSeconds).toFixed(0)} notes/s, ` +
      `${((corpusBytes * CORPUS_PASSES) / 1e6 / corpusSeconds).toFixed(1)} MB/s`,
  );
  console.log(
    `  per note: median ${(percentile(perNoteMs, 0.5) * 1000).toFixed(1)} us, ` +
      `p99 ${(percentile(perNoteMs, 0.99) * 1000).toFixed(1)} us, ` +
      `max ${(percentile(perNoteMs, 1) * 1000).toFixed(0)} us`,
  );
  console.log(
    `  ${(Buffer.byteLength(largeNote) / 1000).toFixed(0)} KB note over ${LARGE_NOTE_RUNS} runs: ` +
      `median ${percentile(largeMs, 0.5).toFixed(2)} ms, max ${percentile(largeMs, 1).toFixed(2)} ms`,
  );
}

const notes = loadNotes();
const corpusBytes = notes.reduce((sum, note) => sum + Buffer.byteLength(note), 0);
const largeNote = buildLargeNote(notes, LARGE_NOTE_BYTES);

console.log(`node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}`);
console.log(
  `corpus: ${notes.length} notes, ${(corpusBytes / 1e6).toFixed(1)} MB, ` +
    `mean ${(corpusBytes / notes.length / 1000).toFixed(1)} KB per note`,
);
measure('reference (every pattern over the whole text)', screenForPhiReference, notes, largeNote);
measure('screenForPhi', screenForPhi, notes, largeNote);
