// Revenue assumptions applied to scoring results, and removal of note text from results. Pure:
// the caller loads a tenant's assumptions and decides what to store.
import { loadDefaultRuleset, type CompiledRuleset } from './ruleset.ts';
import type { ConditionResult, Evidence, Mention, ScoreResult, ScoreSummary } from './types.ts';

export const VALUE_FORMULA =
  'estimated_value_at_risk_usd = round(condition_values_usd[condition] * (1 - completeness)) for each counted condition; a note sums its conditions';

/** The dollar figure per condition that scoring multiplies by the share of missing evidence. */
export interface ValueAssumptions {
  readonly currency: 'USD';
  /** Free-text statement of where the figures come from. */
  readonly basis: string;
  /** Value per condition id, in USD; every condition of the ruleset has an entry. */
  readonly condition_values_usd: Readonly<Record<string, number>>;
}

/** Returns the assumptions written in the ruleset file (`value_usd` and `value_assumptions.basis`). */
export function defaultValueAssumptions(
  ruleset: CompiledRuleset = loadDefaultRuleset(),
): ValueAssumptions {
  const values: Record<string, number> = {};
  for (const condition of ruleset.conditions) {
    values[condition.id] = condition.valueUsd;
  }
  return { currency: 'USD', basis: ruleset.valueBasis, condition_values_usd: values };
}

/**
 * Recomputes the value at risk of every counted condition and of the note with the given
 * per-condition values. A condition missing from `values` keeps the engine's figure.
 */
export function applyValueAssumptions(
  result: ScoreResult,
  assumptions: ValueAssumptions,
): ScoreResult {
  let total = 0;
  const conditions = result.conditions.map((condition): ConditionResult => {
    const value = assumptions.condition_values_usd[condition.condition_id];
    if (!condition.counted || value === undefined) {
      total += condition.estimated_value_at_risk_usd;
      return condition;
    }
    const atRisk = Math.round(value * (1 - condition.completeness));
    total += atRisk;
    return { ...condition, estimated_value_at_risk_usd: atRisk };
  });
  const summary: ScoreSummary = {
    ...result.summary,
    estimated_value_at_risk_usd: total,
    value_basis: assumptions.basis,
  };
  return { ...result, conditions, summary };
}

export type RedactedMention = Omit<Mention, 'text'>;
export type RedactedEvidence = Omit<Evidence, 'text'>;

export interface RedactedElementResult {
  readonly met: boolean;
  readonly evidence: readonly RedactedEvidence[];
}

export interface RedactedConditionResult extends Omit<ConditionResult, 'mentions' | 'meat'> {
  readonly mentions: readonly RedactedMention[];
  readonly meat: Readonly<Record<keyof ConditionResult['meat'], RedactedElementResult>>;
}

/** A scoring result without any text copied from the note. Spans still locate each match. */
export interface RedactedScoreResult extends Omit<ScoreResult, 'conditions'> {
  readonly conditions: readonly RedactedConditionResult[];
}

function redactEvidence(evidence: readonly Evidence[]): RedactedEvidence[] {
  return evidence.map((item) => {
    const copy: { -readonly [K in keyof Evidence]?: Evidence[K] } = { rule_id: item.rule_id };
    if (item.span !== undefined) {
      copy.span = item.span;
    }
    if (item.section !== undefined) {
      copy.section = item.section;
    }
    if (item.structured !== undefined) {
      copy.structured = item.structured;
    }
    return copy as RedactedEvidence;
  });
}

/**
 * Removes the `text` of every mention and evidence item, so the result can be stored or returned
 * without note text. Note findings carry only rule wording, condition names and diagnosis codes.
 */
export function redactResult(result: ScoreResult): RedactedScoreResult {
  return {
    ...result,
    conditions: result.conditions.map((condition) => ({
      ...condition,
      mentions: condition.mentions.map((mention) => ({
        span: mention.span,
        section: mention.section,
        assertion: mention.assertion,
        counted: mention.counted,
      })),
      meat: {
        monitor: {
          met: condition.meat.monitor.met,
          evidence: redactEvidence(condition.meat.monitor.evidence),
        },
        evaluate: {
          met: condition.meat.evaluate.met,
          evidence: redactEvidence(condition.meat.evaluate.evidence),
        },
        assess: {
          met: condition.meat.assess.met,
          evidence: redactEvidence(condition.meat.assess.evidence),
        },
        treat: {
          met: condition.meat.treat.met,
          evidence: redactEvidence(condition.meat.treat.evidence),
        },
      },
    })),
  };
}
