// Dashboards over stored shadow items, and the ROI projection. Every figure is computed from the
// tenant's stored items and, for certificates, from real server-side verification, at request
// time. Nothing here writes.
import { centsToUsd } from '../scoring/leakage.ts';
import { MEAT_ELEMENTS, type CompiledRuleset, type MeatElement } from '../scoring/ruleset.ts';
import { projectRoi, type RoiInputs, type RoiProjection } from '../scoring/roi.ts';
import type { ShadowAggregate, ShadowItemFilter, Store } from '../storage/store.ts';
import type { CertificateService } from './certificates.ts';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import type { EffectiveAssumptions } from './shadow-assumptions.ts';
import type { ItemPage, PageOptions, ShadowService } from './shadow.ts';

/** Linked certificates verified by the executive summary unless the request sets another size. */
export const DEFAULT_VERIFICATION_SAMPLE = 100;
export const MAX_VERIFICATION_SAMPLE = 1000;
const EXECUTIVE_TOP_GAPS = 5;

export interface DateRange {
  createdFrom?: string | undefined;
  createdTo?: string | undefined;
}

const rate = (part: number, whole: number): number | null =>
  whole === 0 ? null : Math.round((part / whole) * 1000) / 1000;

function elementRates(
  met: Record<MeatElement, number>,
  total: number,
): Record<MeatElement, number | null> {
  const rates = {} as Record<MeatElement, number | null>;
  for (const element of MEAT_ELEMENTS) {
    rates[element] = rate(met[element], total);
  }
  return rates;
}

export interface VerificationSample {
  sample_limit: number;
  linked_certificates: number;
  verified: number;
  passed: number;
  failed: number;
  /** passed / verified, or null when no linked certificate was verified. */
  pass_share: number | null;
  failures: { certificate_id: string; failed_checks: string[] }[];
  method: string;
}

export class DashboardService {
  readonly #store: Store;
  readonly #certificates: CertificateService;
  readonly #shadow: ShadowService;
  readonly #ruleset: CompiledRuleset;
  readonly #clock: Clock;

  constructor(options: {
    store: Store;
    certificates: CertificateService;
    shadow: ShadowService;
    ruleset: CompiledRuleset;
    clock: Clock;
  }) {
    this.#store = options.store;
    this.#certificates = options.certificates;
    this.#shadow = options.shadow;
    this.#ruleset = options.ruleset;
    this.#clock = options.clock;
  }

  #name(conditionId: string): string {
    return this.#ruleset.conditions.find((c) => c.id === conditionId)?.name ?? conditionId;
  }

  #gaps(aggregate: ShadowAggregate, max: number) {
    return [...aggregate.gaps]
      .sort(
        (a, b) =>
          b.items - a.items ||
          b.attributed_cents - a.attributed_cents ||
          a.condition_id.localeCompare(b.condition_id) ||
          MEAT_ELEMENTS.indexOf(a.element) - MEAT_ELEMENTS.indexOf(b.element),
      )
      .slice(0, max)
      .map((gap) => ({
        condition_id: gap.condition_id,
        name: this.#name(gap.condition_id),
        element: gap.element,
        items: gap.items,
        attributed_usd: centsToUsd(gap.attributed_cents),
      }));
  }

  #leakageByElement(aggregate: ShadowAggregate) {
    return MEAT_ELEMENTS.map((element) => {
      const gaps = aggregate.gaps.filter((gap) => gap.element === element);
      return {
        element,
        gaps: gaps.reduce((sum, gap) => sum + gap.items, 0),
        attributed_usd: centsToUsd(gaps.reduce((sum, gap) => sum + gap.attributed_cents, 0)),
      };
    });
  }

  #assumptionsUsed(aggregate: ShadowAggregate, current: EffectiveAssumptions) {
    return {
      current,
      revisions_used: aggregate.assumptions_revisions,
      note: 'Stored values were computed with the revision recorded on each item; items scored before an update keep their figures.',
    };
  }

  /** Completeness, gaps, findings and value at risk per condition over the stored items. */
  async shadowDashboard(tenantId: string, range: DateRange) {
    const current = await this.#shadow.getAssumptions(tenantId);
    const aggregate = await this.#store.aggregateShadowItems(tenantId, range);
    const findings: Record<string, number> = {};
    for (const finding of aggregate.findings) {
      findings[finding.rule_id] = (findings[finding.rule_id] ?? 0) + finding.items;
    }
    return {
      generated_at: this.#clock.now().toISOString(),
      range: { created_from: range.createdFrom ?? null, created_to: range.createdTo ?? null },
      items: aggregate.items,
      items_by_source: aggregate.items_by_source,
      items_with_counted_condition: aggregate.items_with_counted_condition,
      items_with_deficit: aggregate.items_with_deficit,
      counted_condition_instances: aggregate.counted_condition_instances,
      mean_completeness: rate(aggregate.completeness_sum, aggregate.counted_condition_instances),
      element_met_rate: elementRates(aggregate.met, aggregate.counted_condition_instances),
      conditions: aggregate.conditions
        .map((condition) => ({
          condition_id: condition.condition_id,
          name: this.#name(condition.condition_id),
          items_mentioned: condition.items_mentioned,
          items_counted: condition.items_counted,
          items_not_counted: condition.items_mentioned - condition.items_counted,
          element_met_rate: elementRates(condition.met, condition.items_counted),
          mean_completeness: rate(condition.completeness_sum, condition.items_counted),
          fully_supported: condition.fully_supported,
          estimated_value_at_risk_usd: condition.estimated_value_at_risk_usd,
        }))
        .sort(
          (a, b) =>
            b.estimated_value_at_risk_usd - a.estimated_value_at_risk_usd ||
            b.items_counted - a.items_counted ||
            a.condition_id.localeCompare(b.condition_id),
        ),
      top_gaps: this.#gaps(aggregate, 15),
      note_findings: findings,
      estimated_value_at_risk_usd: aggregate.estimated_value_at_risk_usd,
      leakage_by_missing_element: this.#leakageByElement(aggregate),
      assumptions: this.#assumptionsUsed(aggregate, current),
    };
  }

  /** Stored items with a value at risk, largest first, with cursor pagination. */
  async riskQueue(
    tenantId: string,
    filter: ShadowItemFilter,
    page: PageOptions,
  ): Promise<ItemPage & { assumptions: EffectiveAssumptions }> {
    const assumptions = await this.#shadow.getAssumptions(tenantId);
    const result = await this.#shadow.listItems(tenantId, filter, page, 'risk');
    return { ...result, assumptions };
  }

  /**
   * Verifies up to `limit` distinct linked certificates, most recently linked first, with the
   * same checks as POST /v1/certificates/{id}/verify. A certificate that cannot be read or
   * parsed counts as failed.
   */
  async #verifySample(
    tenantId: string,
    range: DateRange,
    limit: number,
    linked: number,
  ): Promise<VerificationSample> {
    const ids = await this.#store.listLinkedCertificateIds(tenantId, range, limit);
    let passed = 0;
    const failures: VerificationSample['failures'] = [];
    for (const certificateId of ids) {
      let failedChecks: string[];
      try {
        const report = await this.#certificates.verify(tenantId, certificateId);
        failedChecks = report.valid
          ? []
          : report.checks.filter((check) => check.status === 'fail').map((check) => check.check);
        if (!report.valid && failedChecks.length === 0) {
          failedChecks = ['report_invalid'];
        }
      } catch (error) {
        failedChecks = [
          error instanceof AppError && error.code === 'CERTIFICATE_NOT_FOUND'
            ? 'certificate_missing'
            : 'certificate_unreadable',
        ];
      }
      if (failedChecks.length === 0) {
        passed++;
      } else {
        failures.push({ certificate_id: certificateId, failed_checks: failedChecks });
      }
    }
    return {
      sample_limit: limit,
      linked_certificates: linked,
      verified: ids.length,
      passed,
      failed: ids.length - passed,
      pass_share: rate(passed, ids.length),
      failures,
      method: `Verified at request time with the server-side certificate checks; at most ${limit} distinct linked certificates, most recently linked first.`,
    };
  }

  /** Builds a one-page summary for leadership: volumes, completeness, top gaps, leakage, certificates. */
  async executiveSummary(tenantId: string, range: DateRange, verificationSample: number) {
    if (verificationSample < 1 || verificationSample > MAX_VERIFICATION_SAMPLE) {
      throw new AppError(
        'VALIDATION_FAILED',
        `verification_sample must be from 1 to ${MAX_VERIFICATION_SAMPLE}`,
        {
          details: [
            {
              field: 'verification_sample',
              rule: 'maximum',
              message: `must be from 1 to ${MAX_VERIFICATION_SAMPLE}`,
            },
          ],
        },
      );
    }
    const current = await this.#shadow.getAssumptions(tenantId);
    const aggregate = await this.#store.aggregateShadowItems(tenantId, range);
    const verification = await this.#verifySample(
      tenantId,
      range,
      verificationSample,
      aggregate.linked_certificates,
    );
    const topConditions = aggregate.conditions
      .filter((condition) => condition.estimated_value_at_risk_usd > 0)
      .sort(
        (a, b) =>
          b.estimated_value_at_risk_usd - a.estimated_value_at_risk_usd ||
          a.condition_id.localeCompare(b.condition_id),
      )
      .slice(0, EXECUTIVE_TOP_GAPS)
      .map((condition) => ({
        condition_id: condition.condition_id,
        name: this.#name(condition.condition_id),
        items: condition.items_counted,
        estimated_value_at_risk_usd: condition.estimated_value_at_risk_usd,
      }));
    return {
      generated_at: this.#clock.now().toISOString(),
      range: { created_from: range.createdFrom ?? null, created_to: range.createdTo ?? null },
      notes_scored: aggregate.items,
      notes_with_counted_condition: aggregate.items_with_counted_condition,
      notes_with_deficit: aggregate.items_with_deficit,
      deficit_rate: rate(aggregate.items_with_deficit, aggregate.items_with_counted_condition),
      completeness: {
        counted_condition_instances: aggregate.counted_condition_instances,
        mean_completeness: rate(aggregate.completeness_sum, aggregate.counted_condition_instances),
        element_met_rate: elementRates(aggregate.met, aggregate.counted_condition_instances),
      },
      top_gaps: this.#gaps(aggregate, EXECUTIVE_TOP_GAPS),
      estimated_leakage: {
        total_usd: aggregate.estimated_value_at_risk_usd,
        by_missing_element: this.#leakageByElement(aggregate),
        top_conditions: topConditions,
        caveat:
          'Estimates from the revenue assumptions below, not payer data; see assumptions.current.basis.',
      },
      certificates: {
        linked_items: aggregate.linked_items,
        linked_certificates: aggregate.linked_certificates,
        note_hash_match_share: rate(aggregate.linked_note_matches, aggregate.linked_items),
        verification,
      },
      assumptions: this.#assumptionsUsed(aggregate, current),
    };
  }

  /** Projects program ROI from the caller's inputs; stateless. */
  async roiProjection(tenantId: string, inputs: RoiInputs): Promise<RoiProjection> {
    // The tenant must exist, like every tenant-scoped route, although the projection reads no data.
    await this.#shadow.getAssumptions(tenantId);
    return projectRoi(inputs);
  }
}
