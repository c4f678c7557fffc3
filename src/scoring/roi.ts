// Return-on-investment projection for a documentation-integrity program. Pure arithmetic on the
// caller's inputs: every figure is an estimate that is only as good as those inputs.
//
//   documentation denials  = encounters * denial_rate * documentation_denial_share
//   prevented denials      = documentation denials * documentation_denial_prevention_rate
//   remaining appealed     = (documentation denials - prevented denials) * appeal_rate
//   prevented_documentation_denials_usd = prevented denials * average_claim_value_usd
//   incremental_appeal_gains_usd        = remaining appealed
//                                         * (expected_appeal_success_rate - appeal_success_rate)
//                                         * average_claim_value_usd
//   avoided_appeal_costs_usd            = prevented denials * appeal_rate * appeal_cost_usd
//   total_preserved_usd = the sum of the three amounts above, each rounded to cents first

export interface RoiInputs {
  readonly annual_encounter_volume: number;
  /** Share of claims denied, from 0 to 1. */
  readonly denial_rate: number;
  readonly average_claim_value_usd: number;
  /** Share of appealed denials overturned today, from 0 to 1. */
  readonly appeal_success_rate: number;
  readonly appeal_cost_usd: number;
  /** Share of documentation denials the program is expected to prevent, from 0 to 1. */
  readonly documentation_denial_prevention_rate: number;
  readonly program_cost_usd: number;
  /** Share of denials caused by documentation, from 0 to 1. Defaults to 1. */
  readonly documentation_denial_share?: number | undefined;
  /** Share of remaining documentation denials that are appealed, from 0 to 1. Defaults to 1. */
  readonly appeal_rate?: number | undefined;
  /** Appeal success rate with certified documentation. Defaults to `appeal_success_rate`. */
  readonly expected_appeal_success_rate?: number | undefined;
}

export interface RoiAssumption {
  readonly name: string;
  readonly value: number;
  readonly source: 'input' | 'default';
  readonly meaning: string;
}

export interface RoiProjection {
  readonly assumptions: readonly RoiAssumption[];
  readonly volumes: {
    readonly denied_claims: number;
    readonly documentation_denials: number;
    readonly prevented_denials: number;
    readonly remaining_documentation_denials_appealed: number;
  };
  readonly prevented_documentation_denials_usd: number;
  readonly incremental_appeal_gains_usd: number;
  readonly avoided_appeal_costs_usd: number;
  readonly total_preserved_usd: number;
  readonly program_cost_usd: number;
  readonly net_benefit_usd: number;
  /** total_preserved_usd / program_cost_usd, or null when the program cost is zero. */
  readonly roi_multiple: number | null;
  readonly roi_multiple_reason: string | null;
  readonly formula: string;
}

export const ROI_FORMULA =
  'total_preserved_usd = prevented_documentation_denials_usd + incremental_appeal_gains_usd + avoided_appeal_costs_usd; net_benefit_usd = total_preserved_usd - program_cost_usd; roi_multiple = total_preserved_usd / program_cost_usd';

const cents = (value: number): number => Math.round(value * 100) / 100;
const hundredths = (value: number): number => Math.round(value * 100) / 100;

const MEANINGS: Record<keyof RoiInputs, string> = {
  annual_encounter_volume: 'encounters billed per year',
  denial_rate: 'share of claims denied',
  average_claim_value_usd: 'average value of a denied claim, USD',
  appeal_success_rate: 'share of appealed denials overturned today',
  appeal_cost_usd: 'cost of working one appeal, USD',
  documentation_denial_prevention_rate:
    'share of documentation denials the program is expected to prevent',
  program_cost_usd: 'annual program cost, USD',
  documentation_denial_share: 'share of denials caused by documentation',
  appeal_rate: 'share of remaining documentation denials that are appealed',
  expected_appeal_success_rate: 'share of appealed denials overturned with certified documentation',
};

/** Projects the annual value preserved by the program. Inputs must already be validated. */
export function projectRoi(inputs: RoiInputs): RoiProjection {
  const documentationShare = inputs.documentation_denial_share ?? 1;
  const appealRate = inputs.appeal_rate ?? 1;
  const expectedSuccess = inputs.expected_appeal_success_rate ?? inputs.appeal_success_rate;

  const denied = inputs.annual_encounter_volume * inputs.denial_rate;
  const documentationDenials = denied * documentationShare;
  const prevented = documentationDenials * inputs.documentation_denial_prevention_rate;
  const appealed = (documentationDenials - prevented) * appealRate;

  const preventedUsd = cents(prevented * inputs.average_claim_value_usd);
  const appealGainsUsd = cents(
    appealed * (expectedSuccess - inputs.appeal_success_rate) * inputs.average_claim_value_usd,
  );
  const avoidedCostsUsd = cents(prevented * appealRate * inputs.appeal_cost_usd);
  const total = cents(preventedUsd + appealGainsUsd + avoidedCostsUsd);

  const effective: Record<keyof RoiInputs, number> = {
    annual_encounter_volume: inputs.annual_encounter_volume,
    denial_rate: inputs.denial_rate,
    average_claim_value_usd: inputs.average_claim_value_usd,
    appeal_success_rate: inputs.appeal_success_rate,
    appeal_cost_usd: inputs.appeal_cost_usd,
    documentation_denial_prevention_rate: inputs.documentation_denial_prevention_rate,
    program_cost_usd: inputs.program_cost_usd,
    documentation_denial_share: documentationShare,
    appeal_rate: appealRate,
    expected_appeal_success_rate: expectedSuccess,
  };
  const assumptions = (Object.keys(effective) as (keyof RoiInputs)[]).map((name) => ({
    name,
    value: effective[name],
    source: inputs[name] === undefined ? ('default' as const) : ('input' as const),
    meaning: MEANINGS[name],
  }));

  const zeroCost = inputs.program_cost_usd === 0;
  return {
    assumptions,
    volumes: {
      denied_claims: hundredths(denied),
      documentation_denials: hundredths(documentationDenials),
      prevented_denials: hundredths(prevented),
      remaining_documentation_denials_appealed: hundredths(appealed),
    },
    prevented_documentation_denials_usd: preventedUsd,
    incremental_appeal_gains_usd: appealGainsUsd,
    avoided_appeal_costs_usd: avoidedCostsUsd,
    total_preserved_usd: total,
    program_cost_usd: inputs.program_cost_usd,
    net_benefit_usd: cents(total - inputs.program_cost_usd),
    roi_multiple: zeroCost ? null : Math.round((total / inputs.program_cost_usd) * 1000) / 1000,
    roi_multiple_reason: zeroCost
      ? 'program_cost_usd is 0, so a return multiple is undefined; read net_benefit_usd instead'
      : null,
    formula: ROI_FORMULA,
  };
}
