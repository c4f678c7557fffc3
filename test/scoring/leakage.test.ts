import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { scoreNote } from '../../src/scoring/engine.ts';
import {
  LeakageAggregator,
  attributeNoteLeakage,
  splitByLargestRemainder,
} from '../../src/scoring/leakage.ts';
import { projectRoi } from '../../src/scoring/roi.ts';
import {
  applyValueAssumptions,
  defaultValueAssumptions,
  redactResult,
} from '../../src/scoring/valuation.ts';
import { GAP_NOTES, ROI_INPUTS } from '../helpers/shadow.ts';

describe('splitByLargestRemainder', () => {
  test('parts add up to the total', () => {
    for (const [total, weights] of [
      [11300, [1, 1, 1]],
      [1, [0.25, 0.25, 0.25]],
      [0, [1, 2]],
      [99999, [0.1, 0.3, 0.6]],
    ] as [number, number[]][]) {
      const parts = splitByLargestRemainder(total, weights);
      assert.equal(
        parts.reduce((sum, part) => sum + part, 0),
        total,
        `${total} over ${weights.join(',')}`,
      );
      assert.ok(parts.every((part) => Number.isInteger(part) && part >= 0));
    }
  });

  test('remainder goes to the largest fractions first', () => {
    assert.deepEqual(splitByLargestRemainder(11300, [1, 1, 1]), [3767, 3767, 3766]);
  });
});

describe('leakage attribution', () => {
  test("each note's gaps add up to its estimate", () => {
    for (const text of GAP_NOTES) {
      const result = scoreNote({ text });
      const attribution = attributeNoteLeakage(result);
      const gapCents = attribution.gaps.reduce((sum, gap) => sum + gap.attributed_cents, 0);
      assert.equal(
        attribution.estimated_value_at_risk_cents,
        result.summary.estimated_value_at_risk_usd * 100,
      );
      assert.equal(gapCents, attribution.estimated_value_at_risk_cents, text.slice(0, 40));
      for (const condition of result.conditions) {
        const own = attribution.gaps
          .filter((gap) => gap.condition_id === condition.condition_id)
          .reduce((sum, gap) => sum + gap.attributed_cents, 0);
        assert.equal(own, condition.estimated_value_at_risk_usd * 100, condition.condition_id);
      }
    }
  });

  test('one gap per counted condition and missing element', () => {
    const result = scoreNote({ text: GAP_NOTES[0]! });
    const attribution = attributeNoteLeakage(result);
    const expected = result.conditions.flatMap((condition) =>
      condition.estimated_value_at_risk_usd > 0
        ? condition.missing.map((element) => `${condition.condition_id}.${element}`)
        : [],
    );
    assert.deepEqual(
      attribution.gaps.map((gap) => `${gap.condition_id}.${gap.element}`),
      expected,
    );
  });

  test('report totals agree by condition, element and gap', () => {
    const aggregator = new LeakageAggregator();
    let expectedCents = 0;
    for (const text of GAP_NOTES) {
      const result = scoreNote({ text });
      expectedCents += result.summary.estimated_value_at_risk_usd * 100;
      aggregator.add(result);
    }
    const report = aggregator.report();
    const cents = (values: number[]) =>
      values.reduce((sum, value) => sum + Math.round(value * 100), 0);
    assert.equal(Math.round(report.estimated_value_at_risk_usd * 100), expectedCents);
    assert.equal(
      cents(report.by_condition.map((row) => row.estimated_value_at_risk_usd)),
      expectedCents,
    );
    assert.equal(cents(report.by_missing_element.map((row) => row.attributed_usd)), expectedCents);
    assert.equal(cents(report.by_gap.map((row) => row.attributed_usd)), expectedCents);
    assert.equal(report.notes, GAP_NOTES.length);
  });
});

describe('value assumptions', () => {
  test('defaults reproduce the engine figures', () => {
    const result = scoreNote({ text: GAP_NOTES[0]! });
    assert.deepEqual(applyValueAssumptions(result, defaultValueAssumptions()), result);
  });

  test('tenant values change the estimate', () => {
    const result = scoreNote({ text: GAP_NOTES[1]! });
    const defaults = defaultValueAssumptions();
    const doubled = Object.fromEntries(
      Object.entries(defaults.condition_values_usd).map(([id, value]) => [id, value * 2]),
    );
    const revalued = applyValueAssumptions(result, {
      ...defaults,
      basis: 'test contract',
      condition_values_usd: doubled,
    });
    assert.equal(
      revalued.summary.estimated_value_at_risk_usd,
      result.summary.estimated_value_at_risk_usd * 2,
    );
    assert.equal(revalued.summary.value_basis, 'test contract');
  });

  test('redaction removes every text field', () => {
    const text =
      'ASSESSMENT: Type 2 diabetes mellitus, uncontrolled. PLAN: Increase metformin, recheck A1c.';
    const redacted = redactResult(scoreNote({ text }));
    const json = JSON.stringify(redacted);
    assert.ok(!json.includes('"text"'), 'a text field remains');
    assert.ok(!json.includes('metformin'), 'evidence text remains');
    assert.ok(redacted.conditions[0]!.mentions[0]!.span[1] > 0);
  });
});

describe('ROI projection', () => {
  const inputs = ROI_INPUTS;

  test('hand-computed components and total', () => {
    // 1,000 denials, 500 documentation denials, 200 prevented (x 5,000 USD = 1,000,000 USD).
    // 300 remain, 240 appealed, 20 points more success (x 5,000 USD = 240,000 USD).
    // 200 prevented x 0.8 appealed x 100 USD = 16,000 USD of appeal work avoided.
    const projection = projectRoi(inputs);
    assert.equal(projection.volumes.denied_claims, 1_000);
    assert.equal(projection.volumes.prevented_denials, 200);
    assert.equal(projection.volumes.remaining_documentation_denials_appealed, 240);
    assert.equal(projection.prevented_documentation_denials_usd, 1_000_000);
    assert.equal(projection.incremental_appeal_gains_usd, 240_000);
    assert.equal(projection.avoided_appeal_costs_usd, 16_000);
    assert.equal(projection.total_preserved_usd, 1_256_000);
    assert.equal(projection.net_benefit_usd, 1_156_000);
    assert.equal(projection.roi_multiple, 12.56);
    assert.equal(projection.roi_multiple_reason, null);
  });

  test('total equals the sum of its components', () => {
    const projection = projectRoi({
      ...inputs,
      average_claim_value_usd: 1234.56,
      denial_rate: 0.0731,
    });
    assert.equal(
      projection.total_preserved_usd,
      Math.round(
        (projection.prevented_documentation_denials_usd +
          projection.incremental_appeal_gains_usd +
          projection.avoided_appeal_costs_usd) *
          100,
      ) / 100,
    );
  });

  test('zero program cost gives a null multiple with a reason', () => {
    const projection = projectRoi({ ...inputs, program_cost_usd: 0 });
    assert.equal(projection.roi_multiple, null);
    assert.match(projection.roi_multiple_reason ?? '', /program_cost_usd is 0/);
    assert.equal(projection.net_benefit_usd, projection.total_preserved_usd);
  });

  test('every input and default is echoed', () => {
    const projection = projectRoi({
      ...inputs,
      documentation_denial_share: undefined,
      appeal_rate: undefined,
      expected_appeal_success_rate: undefined,
    });
    const byName = new Map(projection.assumptions.map((entry) => [entry.name, entry]));
    assert.equal(byName.size, 10);
    assert.equal(byName.get('appeal_rate')?.source, 'default');
    assert.equal(byName.get('appeal_rate')?.value, 1);
    assert.equal(byName.get('expected_appeal_success_rate')?.value, 0.4);
    assert.equal(byName.get('denial_rate')?.source, 'input');
    assert.equal(projection.incremental_appeal_gains_usd, 0);
  });
});
