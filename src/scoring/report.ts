// Aggregation of scoring results over a corpus of notes, and parsing of corpus JSON lines. Pure:
// the caller reads files and measures time.
import { MEAT_ELEMENTS, type MeatElement } from './ruleset.ts';
import type { EncounterContext, ScoreResult } from './types.ts';

/** One corpus line: `{ note_id, text, specialty?, context? }`. Other fields are ignored. */
export interface CorpusNote {
  readonly note_id: string;
  readonly specialty?: string;
  readonly text: string;
  readonly context?: EncounterContext;
}

/**
 * Parses one JSON line of a notes corpus. Returns undefined for a blank line and throws an
 * error naming the line number when the line is not valid JSON or has no string `text`.
 */
export function parseNoteLine(line: string, lineNumber: number): CorpusNote | undefined {
  if (line.trim() === '') {
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new Error(`line ${lineNumber}: invalid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null) {
    throw new Error(`line ${lineNumber}: expected a JSON object`);
  }
  const record = value as Record<string, unknown>;
  if (typeof record.text !== 'string') {
    throw new Error(`line ${lineNumber}: missing string field text`);
  }
  const id = record.note_id ?? record.id;
  return {
    note_id: typeof id === 'string' || typeof id === 'number' ? String(id) : String(lineNumber),
    text: record.text,
    ...(typeof record.specialty === 'string' ? { specialty: record.specialty } : {}),
    ...(typeof record.context === 'object' && record.context !== null
      ? { context: record.context }
      : {}),
  };
}

export interface ConditionSummary {
  readonly condition_id: string;
  readonly name: string;
  /** Notes with any mention, counted or not. */
  readonly notes_mentioned: number;
  readonly notes_counted: number;
  /** Notes where the condition was mentioned but never counted (negated, historical, ...). */
  readonly notes_not_counted: number;
  readonly element_met_rate: Readonly<Record<MeatElement, number>>;
  readonly mean_completeness: number | null;
  readonly fully_supported: number;
  readonly estimated_value_at_risk_usd: number;
}

export interface GapSummary {
  readonly condition_id: string;
  readonly element: MeatElement;
  readonly notes: number;
  /** Up to five note ids, in input order, for manual review. */
  readonly example_note_ids: readonly string[];
}

export interface CorpusReport {
  readonly ruleset_version: string;
  readonly context_rules_version: string;
  readonly notes: number;
  readonly notes_with_counted_condition: number;
  readonly counted_condition_instances: number;
  /** Share of counted condition instances with each element met. */
  readonly element_met_rate: Readonly<Record<MeatElement, number>>;
  readonly mean_completeness: number | null;
  readonly conditions: readonly ConditionSummary[];
  readonly top_gaps: readonly GapSummary[];
  readonly note_findings: Readonly<Record<string, number>>;
  readonly estimated_value_at_risk_usd: number;
  readonly value_basis: string;
}

interface ConditionTally {
  name: string;
  mentioned: number;
  counted: number;
  notCounted: number;
  met: Record<MeatElement, number>;
  completenessSum: number;
  fullySupported: number;
  value: number;
}

function emptyElements(): Record<MeatElement, number> {
  return { monitor: 0, evaluate: 0, assess: 0, treat: 0 };
}

function round(value: number, digits = 3): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** Accumulates scoring results note by note and produces a corpus report. */
export class CorpusAggregator {
  private notes = 0;
  private notesWithCounted = 0;
  private instances = 0;
  private completenessSum = 0;
  private valueAtRisk = 0;
  private readonly met = emptyElements();
  private readonly conditions = new Map<string, ConditionTally>();
  private readonly gaps = new Map<string, GapSummary & { example_note_ids: string[] }>();
  private readonly findings = new Map<string, number>();
  private rulesetVersion = '';
  private contextVersion = '';
  private valueBasis = '';

  /** Adds the result of one note. */
  add(noteId: string, result: ScoreResult): void {
    this.notes++;
    this.rulesetVersion = result.ruleset_version;
    this.contextVersion = result.context_rules_version;
    this.valueBasis = result.summary.value_basis;
    let anyCounted = false;
    for (const condition of result.conditions) {
      let tally = this.conditions.get(condition.condition_id);
      if (tally === undefined) {
        tally = {
          name: condition.name,
          mentioned: 0,
          counted: 0,
          notCounted: 0,
          met: emptyElements(),
          completenessSum: 0,
          fullySupported: 0,
          value: 0,
        };
        this.conditions.set(condition.condition_id, tally);
      }
      if (condition.mentions.length > 0) {
        tally.mentioned++;
      }
      if (!condition.counted) {
        tally.notCounted++;
        continue;
      }
      anyCounted = true;
      this.instances++;
      tally.counted++;
      tally.completenessSum += condition.completeness;
      this.completenessSum += condition.completeness;
      tally.value += condition.estimated_value_at_risk_usd;
      this.valueAtRisk += condition.estimated_value_at_risk_usd;
      if (condition.missing.length === 0) {
        tally.fullySupported++;
      }
      for (const element of MEAT_ELEMENTS) {
        if (condition.meat[element].met) {
          tally.met[element]++;
          this.met[element]++;
        }
      }
      for (const element of condition.missing) {
        const key = `${condition.condition_id}\u0000${element}`;
        let gap = this.gaps.get(key);
        if (gap === undefined) {
          gap = { condition_id: condition.condition_id, element, notes: 0, example_note_ids: [] };
          this.gaps.set(key, gap);
        }
        gap = { ...gap, notes: gap.notes + 1 };
        if (gap.example_note_ids.length < 5) {
          gap.example_note_ids.push(noteId);
        }
        this.gaps.set(key, gap);
      }
    }
    if (anyCounted) {
      this.notesWithCounted++;
    }
    for (const finding of result.note_findings) {
      this.findings.set(finding.rule_id, (this.findings.get(finding.rule_id) ?? 0) + 1);
    }
  }

  /** Builds the report. Conditions are sorted by counted notes, gaps by note count. */
  report(maxGaps = 15): CorpusReport {
    const rate = (met: Record<MeatElement, number>, total: number): Record<MeatElement, number> => {
      const rates = emptyElements();
      for (const element of MEAT_ELEMENTS) {
        rates[element] = total === 0 ? 0 : round(met[element] / total);
      }
      return rates;
    };
    const conditions = [...this.conditions.entries()]
      .map(([id, tally]) => ({
        condition_id: id,
        name: tally.name,
        notes_mentioned: tally.mentioned,
        notes_counted: tally.counted,
        notes_not_counted: tally.notCounted,
        element_met_rate: rate(tally.met, tally.counted),
        mean_completeness:
          tally.counted === 0 ? null : round(tally.completenessSum / tally.counted),
        fully_supported: tally.fullySupported,
        estimated_value_at_risk_usd: tally.value,
      }))
      .sort(
        (a, b) => b.notes_counted - a.notes_counted || a.condition_id.localeCompare(b.condition_id),
      );
    const gaps = [...this.gaps.values()]
      .sort(
        (a, b) =>
          b.notes - a.notes ||
          a.condition_id.localeCompare(b.condition_id) ||
          MEAT_ELEMENTS.indexOf(a.element) - MEAT_ELEMENTS.indexOf(b.element),
      )
      .slice(0, maxGaps);
    const findings: Record<string, number> = {};
    for (const key of [...this.findings.keys()].sort()) {
      findings[key] = this.findings.get(key) ?? 0;
    }
    return {
      ruleset_version: this.rulesetVersion,
      context_rules_version: this.contextVersion,
      notes: this.notes,
      notes_with_counted_condition: this.notesWithCounted,
      counted_condition_instances: this.instances,
      element_met_rate: rate(this.met, this.instances),
      mean_completeness: this.instances === 0 ? null : round(this.completenessSum / this.instances),
      conditions,
      top_gaps: gaps,
      note_findings: findings,
      estimated_value_at_risk_usd: this.valueAtRisk,
      value_basis: this.valueBasis,
    };
  }
}

/** Formats a corpus report as plain-text tables for a terminal. */
export function formatCorpusReport(report: CorpusReport): string {
  const percent = (value: number | null): string =>
    value === null ? '   -' : `${(value * 100).toFixed(0).padStart(3)}%`;
  const lines: string[] = [];
  lines.push(
    `ruleset ${report.ruleset_version}, context rules ${report.context_rules_version}`,
    `${report.notes} notes, ${report.notes_with_counted_condition} with at least one counted condition, ${report.counted_condition_instances} counted condition instances`,
    '',
    'condition                    mentioned counted not-counted monitor evaluate assess treat complete',
  );
  for (const condition of report.conditions) {
    lines.push(
      [
        condition.condition_id.padEnd(28),
        String(condition.notes_mentioned).padStart(9),
        String(condition.notes_counted).padStart(7),
        String(condition.notes_not_counted).padStart(11),
        percent(condition.element_met_rate.monitor).padStart(7),
        percent(condition.element_met_rate.evaluate).padStart(8),
        percent(condition.element_met_rate.assess).padStart(6),
        percent(condition.element_met_rate.treat).padStart(5),
        percent(condition.mean_completeness).padStart(8),
      ].join(' '),
    );
  }
  lines.push(
    '',
    `MEAT elements met over all counted instances: monitor ${percent(report.element_met_rate.monitor)}, evaluate ${percent(report.element_met_rate.evaluate)}, assess ${percent(report.element_met_rate.assess)}, treat ${percent(report.element_met_rate.treat)}; mean completeness ${percent(report.mean_completeness)}`,
    '',
    'most common gaps (condition, missing element, notes, example note ids):',
  );
  for (const gap of report.top_gaps) {
    lines.push(
      `  ${gap.condition_id.padEnd(28)} ${gap.element.padEnd(8)} ${String(gap.notes).padStart(5)}  ${gap.example_note_ids.join(', ')}`,
    );
  }
  lines.push('', 'note findings:');
  for (const [ruleId, count] of Object.entries(report.note_findings)) {
    lines.push(`  ${ruleId.padEnd(32)} ${String(count).padStart(5)}`);
  }
  lines.push(
    '',
    `estimated value at risk: ${report.estimated_value_at_risk_usd} USD (illustrative assumption, not payer data)`,
  );
  return lines.join('\n');
}
