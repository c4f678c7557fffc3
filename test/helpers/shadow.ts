// Short notes whose counted conditions miss some MEAT elements, so they carry a value at risk,
// and ROI inputs whose results were computed by hand.

export const GAP_NOTES = [
  'HISTORY OF PRESENT ILLNESS: The patient returns for follow-up of chronic conditions. ASSESSMENT: 1. Type 2 diabetes mellitus, uncontrolled. 2. Congestive heart failure. 3. Hypertension. PLAN: Increase metformin. Follow up in 3 months.',
  'ASSESSMENT: Sepsis due to urinary tract infection. Acute kidney injury. PLAN: Start ceftriaxone.',
  'ASSESSMENT AND PLAN: COPD exacerbation, started prednisone. Atrial fibrillation, rate controlled on metoprolol, recheck ECG.',
];

/** Estimated value at risk of each GAP_NOTES entry under the ruleset defaults, USD. */
export const GAP_NOTE_VALUES = [3713, 6750, 1500];

export const ROI_INPUTS = {
  annual_encounter_volume: 10_000,
  denial_rate: 0.1,
  average_claim_value_usd: 5_000,
  appeal_success_rate: 0.4,
  appeal_cost_usd: 100,
  documentation_denial_prevention_rate: 0.4,
  program_cost_usd: 100_000,
  documentation_denial_share: 0.5,
  appeal_rate: 0.8,
  expected_appeal_success_rate: 0.6,
};
