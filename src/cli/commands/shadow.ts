// `cdil shadow analyze`: scores a JSON Lines file of notes in this process, with the default
// ruleset and its value assumptions, and writes a report without note text. It opens no database
// and needs no server.
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';

interface AnalyzeOptions {
  out?: string;
  limit?: string;
  json?: boolean;
}

/** Progress shown while scoring: a bar on a terminal, a line every tenth of the way otherwise. */
interface Progress {
  update(done: number): void;
  stop(): void;
}

async function createProgress(total: number): Promise<Progress> {
  if (process.stderr.isTTY) {
    const { default: cliProgress } = await import('cli-progress');
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: 'scoring [{bar}] {percentage}% | {value}/{total} notes | ETA {eta}s',
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0);
    return { update: (done) => bar.update(done), stop: () => bar.stop() };
  }
  const step = Math.max(1, Math.ceil(total / 10));
  return {
    update: (done) => {
      if (done % step === 0 || done === total) {
        process.stderr.write(`scored ${done}/${total} notes\n`);
      }
    },
    stop: () => undefined,
  };
}

function parseLimit(text: string | undefined): number {
  if (text === undefined) {
    return Infinity;
  }
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1) {
    throw new Error(
      `--limit must be a positive whole number of notes, got ${JSON.stringify(text)}`,
    );
  }
  return limit;
}

/** Scores the notes file and returns the exit status. */
export async function runShadowAnalyze(file: string, options: AnalyzeOptions): Promise<number> {
  const limit = parseLimit(options.limit);
  const [
    { readNotesFile },
    { scoreNote },
    { CorpusAggregator, formatCorpusReport },
    { LeakageAggregator, centsToUsd },
    { loadDefaultRuleset },
    { defaultValueAssumptions, redactResult, VALUE_FORMULA },
    { sha256Hex },
    { nodeCrypto },
    { default: Value },
    { EncounterContextSchema },
  ] = await Promise.all([
    import('../notes-file.ts'),
    import('../../scoring/engine.ts'),
    import('../../scoring/report.ts'),
    import('../../scoring/leakage.ts'),
    import('../../scoring/ruleset.ts'),
    import('../../scoring/valuation.ts'),
    import('../../core/certificate.ts'),
    import('../../core/crypto-node.ts'),
    import('typebox/value'),
    import('../../server/shadow-schemas.ts'),
  ]);

  const notes = readNotesFile(file).slice(0, limit);
  const ruleset = loadDefaultRuleset();
  const corpus = new CorpusAggregator();
  const leakage = new LeakageAggregator();
  const perNote = [];
  const progress = await createProgress(notes.length);
  const started = performance.now();
  try {
    for (const [index, note] of notes.entries()) {
      if (note.context !== undefined && !Value.Check(EncounterContextSchema, note.context)) {
        const first = [...Value.Errors(EncounterContextSchema, note.context)][0];
        throw new Error(
          `note ${note.id}: invalid context at ${first?.instancePath || '/'}: ${first?.message ?? 'does not match the schema'}`,
        );
      }
      const result = scoreNote(
        note.context === undefined
          ? { text: note.text }
          : { text: note.text, context: note.context },
        ruleset,
      );
      corpus.add(note.id, result);
      const attribution = leakage.add(result, ruleset);
      perNote.push({
        note_id: note.id,
        note_hash: sha256Hex(nodeCrypto, note.text),
        estimated_value_at_risk_usd: result.summary.estimated_value_at_risk_usd,
        leakage: attribution.gaps.map((gap) => ({
          condition_id: gap.condition_id,
          element: gap.element,
          attributed_usd: centsToUsd(gap.attributed_cents),
        })),
        result: redactResult(result),
      });
      progress.update(index + 1);
    }
  } finally {
    progress.stop();
  }
  const seconds = (performance.now() - started) / 1000;

  const summary = corpus.report();
  const report = {
    format: 'cdil.shadow-report.v1',
    generated_at: new Date().toISOString(),
    notes_scored: notes.length,
    assumptions: { ...defaultValueAssumptions(ruleset), revision: 0, formula: VALUE_FORMULA },
    summary,
    leakage: leakage.report(),
    notes: perNote,
  };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatCorpusReport(summary)}\n`);
    process.stdout.write(
      `\nscored ${notes.length} notes in ${seconds.toFixed(2)} s (${Math.round(notes.length / Math.max(seconds, 1e-9))} notes/s, file reading excluded)\n`,
    );
  }
  if (options.out !== undefined) {
    writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);
    process.stderr.write(`report written to ${options.out}\n`);
  }
  return 0;
}

export function registerShadowCommand(program: Command): void {
  const shadow = program
    .command('shadow')
    .description('Shadow-mode MEAT scoring of clinical notes (no certificates are issued)');
  shadow
    .command('analyze')
    .description(
      'Score every note of a JSON Lines file (.jsonl or .jsonl.gz; one {"note_id", "text", "context"?} per line) and print a summary. The report holds hashes, offsets and scores, never note text.',
    )
    .argument('<notes>', 'path of the notes file')
    .option('--out <file>', 'write the full JSON report (summary, leakage, per-note results) here')
    .option('--limit <n>', 'score only the first n notes')
    .option('--json', 'print the full JSON report on stdout instead of the summary tables')
    .action(async (file: string, options: AnalyzeOptions) => {
      process.exitCode = await runShadowAnalyze(file, options);
    });
}
