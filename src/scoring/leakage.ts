// Leakage attribution: splits each note's estimated value at risk across its documentation gaps
// (one gap per counted condition and missing MEAT element), so that summing over gaps, conditions
// or elements never counts a note's value twice. Amounts are whole cents, split by the largest
// remainder method, so the parts of a condition always add up to the condition's estimate.
import {
  MEAT_ELEMENTS,
  loadDefaultRuleset,
  type CompiledRuleset,
  type MeatElement,
} from './ruleset.ts';

/** The fields of a scoring result that attribution reads; full and redacted results both fit. */
export interface AttributableResult {
  readonly conditions: readonly {
    readonly condition_id: string;
    readonly name: string;
    readonly counted: boolean;
    readonly missing: readonly MeatElement[];
    readonly estimated_value_at_risk_usd: number;
  }[];
}

export interface GapAttribution {
  readonly condition_id: string;
  readonly element: MeatElement;
  readonly attributed_cents: number;
}

export interface NoteAttribution {
  readonly estimated_value_at_risk_cents: number;
  readonly gaps: readonly GapAttribution[];
}

/** Splits `total` into integer parts proportional to `weights`; the parts add up to `total`. */
export function splitByLargestRemainder(total: number, weights: readonly number[]): number[] {
  const weightSum = weights.reduce((sum, weight) => sum + weight, 0);
  if (weights.length === 0 || weightSum <= 0) {
    return weights.map(() => 0);
  }
  const exact = weights.map((weight) => (total * weight) / weightSum);
  const parts = exact.map((value) => Math.floor(value));
  let remainder = total - parts.reduce((sum, part) => sum + part, 0);
  const order = exact
    .map((value, index) => ({ index, fraction: value - Math.floor(value) }))
    .sort((a, b) => b.fraction - a.fraction || a.index - b.index);
  for (let k = 0; remainder > 0; k = (k + 1) % order.length, remainder--) {
    parts[order[k]!.index]! += 1;
  }
  return parts;
}

/**
 * Attributes a note's value at risk to its gaps. Each counted condition's estimate is split
 * across its missing elements in proportion to the ruleset's element weights for that condition.
 */
export function attributeNoteLeakage(
  result: AttributableResult,
  ruleset: CompiledRuleset = loadDefaultRuleset(),
): NoteAttribution {
  const gaps: GapAttribution[] = [];
  let total = 0;
  for (const condition of result.conditions) {
    const cents = Math.round(condition.estimated_value_at_risk_usd * 100);
    if (!condition.counted || cents <= 0 || condition.missing.length === 0) {
      total += condition.counted ? cents : 0;
      continue;
    }
    total += cents;
    const weights = ruleset.conditions.find(
      (entry) => entry.id === condition.condition_id,
    )?.weights;
    const shares = splitByLargestRemainder(
      cents,
      condition.missing.map((element) => weights?.[element] ?? 1),
    );
    condition.missing.forEach((element, index) => {
      gaps.push({
        condition_id: condition.condition_id,
        element,
        attributed_cents: shares[index] ?? 0,
      });
    });
  }
  return { estimated_value_at_risk_cents: total, gaps };
}

export interface LeakageByCondition {
  readonly condition_id: string;
  readonly name: string;
  /** Notes where the condition is counted and has a value at risk above zero. */
  readonly notes: number;
  readonly estimated_value_at_risk_usd: number;
}

export interface LeakageByElement {
  readonly element: MeatElement;
  readonly gaps: number;
  readonly attributed_usd: number;
}

export interface LeakageByGap {
  readonly condition_id: string;
  readonly element: MeatElement;
  readonly notes: number;
  readonly attributed_usd: number;
}

export interface LeakageReport {
  readonly notes: number;
  readonly notes_with_value_at_risk: number;
  readonly estimated_value_at_risk_usd: number;
  readonly by_condition: readonly LeakageByCondition[];
  readonly by_missing_element: readonly LeakageByElement[];
  readonly by_gap: readonly LeakageByGap[];
  readonly method: string;
}

export const LEAKAGE_METHOD =
  "Each counted condition's estimated value at risk is split across its missing MEAT elements in proportion to the element weights, in whole cents by the largest remainder method. Per condition, per element and per gap totals therefore each add up to the batch total, and no note is counted more than once.";

const toUsd = (cents: number): number => Math.round(cents) / 100;

/** Accumulates note attributions into totals per condition, per missing element and per gap. */
export class LeakageAggregator {
  #notes = 0;
  #notesWithValue = 0;
  #totalCents = 0;
  readonly #conditions = new Map<string, { name: string; notes: number; cents: number }>();
  readonly #elements = new Map<MeatElement, { gaps: number; cents: number }>();
  readonly #gaps = new Map<
    string,
    { condition_id: string; element: MeatElement; notes: number; cents: number }
  >();

  /** Adds one note and returns its attribution. */
  add(
    result: AttributableResult,
    ruleset: CompiledRuleset = loadDefaultRuleset(),
  ): NoteAttribution {
    const attribution = attributeNoteLeakage(result, ruleset);
    this.#notes++;
    this.#totalCents += attribution.estimated_value_at_risk_cents;
    if (attribution.estimated_value_at_risk_cents > 0) {
      this.#notesWithValue++;
    }
    for (const condition of result.conditions) {
      if (!condition.counted || condition.estimated_value_at_risk_usd <= 0) {
        continue;
      }
      const entry = this.#conditions.get(condition.condition_id) ?? {
        name: condition.name,
        notes: 0,
        cents: 0,
      };
      entry.notes++;
      entry.cents += Math.round(condition.estimated_value_at_risk_usd * 100);
      this.#conditions.set(condition.condition_id, entry);
    }
    for (const gap of attribution.gaps) {
      const element = this.#elements.get(gap.element) ?? { gaps: 0, cents: 0 };
      element.gaps++;
      element.cents += gap.attributed_cents;
      this.#elements.set(gap.element, element);
      const key = `${gap.condition_id}\u0000${gap.element}`;
      const entry = this.#gaps.get(key) ?? {
        condition_id: gap.condition_id,
        element: gap.element,
        notes: 0,
        cents: 0,
      };
      entry.notes++;
      entry.cents += gap.attributed_cents;
      this.#gaps.set(key, entry);
    }
    return attribution;
  }

  /** Builds the report; conditions and gaps are sorted by value, largest first. */
  report(): LeakageReport {
    return {
      notes: this.#notes,
      notes_with_value_at_risk: this.#notesWithValue,
      estimated_value_at_risk_usd: toUsd(this.#totalCents),
      by_condition: [...this.#conditions.entries()]
        .map(([id, entry]) => ({
          condition_id: id,
          name: entry.name,
          notes: entry.notes,
          estimated_value_at_risk_usd: toUsd(entry.cents),
        }))
        .sort(
          (a, b) =>
            b.estimated_value_at_risk_usd - a.estimated_value_at_risk_usd ||
            a.condition_id.localeCompare(b.condition_id),
        ),
      by_missing_element: MEAT_ELEMENTS.map((element) => {
        const entry = this.#elements.get(element) ?? { gaps: 0, cents: 0 };
        return { element, gaps: entry.gaps, attributed_usd: toUsd(entry.cents) };
      }),
      by_gap: [...this.#gaps.values()]
        .map((entry) => ({
          condition_id: entry.condition_id,
          element: entry.element,
          notes: entry.notes,
          attributed_usd: toUsd(entry.cents),
        }))
        .sort(
          (a, b) =>
            b.attributed_usd - a.attributed_usd ||
            a.condition_id.localeCompare(b.condition_id) ||
            MEAT_ELEMENTS.indexOf(a.element) - MEAT_ELEMENTS.indexOf(b.element),
        ),
      method: LEAKAGE_METHOD,
    };
  }
}

export { toUsd as centsToUsd };
