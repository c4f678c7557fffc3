// Throughput of shadow-mode scoring on one core, in process. It measures notes per second over
// the real corpus, time per note for synthetic notes of 1, 10 and 100 KB built by repeating real
// note text, which shows whether time grows linearly with note length, and the time of one
// 200 KB sentence dense with mentions and triggers.
//
//   node --import tsx bench/scoring.ts [--rounds N]
//
// The corpus is <reference data>/mtsamples/notes.jsonl.gz, where the reference data folder is
// $CDIL_REFERENCE_DATA or ../shared/data next to the repository. Wall time is affected by other
// processes on the machine, so process CPU time is reported too.
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { scoreNote } from '../src/scoring/engine.ts';
import { parseNoteLine } from '../src/scoring/report.ts';
import { loadDefaultRuleset } from '../src/scoring/ruleset.ts';

const repositoryRoot = resolve(import.meta.dirname, '..');
const referenceData = resolve(
  repositoryRoot,
  process.env.CDIL_REFERENCE_DATA ?? join('..', 'shared', 'data'),
);
const roundsIndex = process.argv.indexOf('--rounds');
const rounds = roundsIndex >= 0 ? Number(process.argv[roundsIndex + 1]) : 5;

const file = join(referenceData, 'mtsamples', 'notes.jsonl.gz');
const texts = gunzipSync(readFileSync(file))
  .toString('utf8')
  .split('\n')
  .map((line, index) => parseNoteLine(line, index + 1))
  .filter((note) => note !== undefined)
  .map((note) => note.text);
const ruleset = loadDefaultRuleset();

interface Timing {
  wallMs: number;
  cpuMs: number;
}

function measure(run: () => void): Timing {
  const cpuStart = process.cpuUsage();
  const wallStart = performance.now();
  run();
  const wallMs = performance.now() - wallStart;
  const cpu = process.cpuUsage(cpuStart);
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000 };
}

function best(timings: Timing[]): Timing {
  return timings.reduce((a, b) => (b.wallMs < a.wallMs ? b : a));
}

console.log(
  `node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, load average ${loadavg()
    .map((value) => value.toFixed(2))
    .join(' ')}`,
);

// Warm-up lets the JIT compile the hot paths before timing.
for (const text of texts.slice(0, 500)) {
  scoreNote({ text }, ruleset);
}

const corpusCharacters = texts.reduce((sum, text) => sum + text.length, 0);
const corpusTimings: Timing[] = [];
for (let round = 0; round < rounds; round++) {
  corpusTimings.push(
    measure(() => {
      for (const text of texts) {
        scoreNote({ text }, ruleset);
      }
    }),
  );
}
const corpus = best(corpusTimings);
console.log(
  `corpus: ${texts.length} notes, ${(corpusCharacters / 1e6).toFixed(1)} MB, best of ${rounds} rounds: ` +
    `${Math.round(texts.length / (corpus.wallMs / 1000))} notes/s wall, ` +
    `${Math.round(texts.length / (corpus.cpuMs / 1000))} notes/s CPU time ` +
    `(${((corpus.wallMs * 1000) / texts.length).toFixed(0)} us per note)`,
);

// Synthetic notes: real notes concatenated in corpus order until the target size, then cut.
function syntheticNote(bytes: number): string {
  let text = '';
  for (let index = 0; text.length < bytes; index++) {
    text += `${texts[index % texts.length] ?? ''}\n`;
  }
  return text.slice(0, bytes);
}

const sizes = [1_000, 10_000, 100_000];
const perNoteMs: number[] = [];
for (const size of sizes) {
  const text = syntheticNote(size);
  const repetitions = Math.max(5, Math.round(2_000_000 / size));
  const timing = best(
    Array.from({ length: rounds }, () =>
      measure(() => {
        for (let i = 0; i < repetitions; i++) {
          scoreNote({ text }, ruleset);
        }
      }),
    ),
  );
  perNoteMs.push(timing.wallMs / repetitions);
}
const base = perNoteMs[0] ?? 1;
for (const [index, size] of sizes.entries()) {
  const ms = perNoteMs[index] ?? 0;
  console.log(
    `synthetic ${String(size / 1000).padStart(3)} KB: ${ms.toFixed(3)} ms per note, ` +
      `${(ms / base).toFixed(1)}x the 1 KB time for ${size / (sizes[0] ?? 1)}x the length`,
  );
}

// One long sentence with a mention or a negation trigger in every word: the shape where each
// mention once rescanned its whole sentence, so time grew with the square of the length.
const denseText = 'hypertension diabetes sepsis no '.repeat(8000).slice(0, 200_000);
const dense = best(
  Array.from({ length: rounds }, () => measure(() => scoreNote({ text: denseText }, ruleset))),
);
console.log(
  `dense 200 KB sentence: ${dense.wallMs.toFixed(1)} ms wall, ${dense.cpuMs.toFixed(1)} ms CPU`,
);
