// Request and response schemas of the shadow-mode, dashboard and analytics routes. Unknown
// fields are rejected everywhere, and every string and array has a limit.
import { Type, type Static } from 'typebox';
import { loadDefaultRuleset } from '../scoring/ruleset.ts';
import { FIELD_LIMITS, patternString } from './schemas.ts';

export const SHADOW_LIMITS = {
  batch_notes: 100,
  note_ref: 128,
  certificate_id: 64,
  short_text: 128,
  unit: 32,
  diagnosis_code: 16,
  description: 256,
  context_entries: 200,
  basis: 1000,
  max_condition_value_usd: 10_000_000,
  page_max: 200,
} as const;

const text = (max: number, description?: string) =>
  Type.String({ minLength: 1, maxLength: max, ...(description ? { description } : {}) });

const measurement = Type.Object(
  {
    name: text(SHADOW_LIMITS.short_text),
    value: Type.Optional(
      Type.Union([text(SHADOW_LIMITS.short_text), Type.Number({ minimum: -1e9, maximum: 1e9 })]),
    ),
    unit: Type.Optional(text(SHADOW_LIMITS.unit)),
  },
  { additionalProperties: false },
);

// Letter, digit, digit or letter, then an optional dot and up to four digits or letters, as
// isIcd10Code in the scoring engine checks.
const icd10Code = patternString(
  '^[A-Za-z][0-9][0-9A-Za-z](\\.?[0-9A-Za-z]{1,4})?$',
  'must be an ICD-10 code such as I10 or I50.22',
  {
    minLength: 3,
    maxLength: SHADOW_LIMITS.diagnosis_code,
    description: 'ICD-10 code such as I10 or I50.22',
  },
);

const list = <T extends Parameters<typeof Type.Array>[0]>(items: T, description: string) =>
  Type.Optional(Type.Array(items, { maxItems: SHADOW_LIMITS.context_entries, description }));

/** Structured encounter context, as the scoring engine accepts it. */
export const EncounterContextSchema = Type.Object(
  {
    encounter_type: Type.Optional(text(SHADOW_LIMITS.short_text)),
    service_line: Type.Optional(text(SHADOW_LIMITS.short_text)),
    diagnoses: list(
      Type.Union([
        icd10Code,
        Type.Object(
          {
            code: icd10Code,
            description: Type.Optional(text(SHADOW_LIMITS.description)),
          },
          { additionalProperties: false },
        ),
      ]),
      'ICD-10 codes, or codes with descriptions, billed or proposed for the encounter',
    ),
    labs: list(measurement, 'Lab results by name'),
    vitals: list(measurement, 'Vital signs by name'),
    medications: list(
      Type.Union([
        text(SHADOW_LIMITS.short_text),
        Type.Object({ name: text(SHADOW_LIMITS.short_text) }, { additionalProperties: false }),
      ]),
      'Medication names',
    ),
    procedures: list(text(SHADOW_LIMITS.description), 'Procedure names'),
    problem_list: list(text(SHADOW_LIMITS.description), 'Problem list entries'),
  },
  { additionalProperties: false },
);

const noteText = text(FIELD_LIMITS.note_text, 'Note text; scored, hashed, never stored');
const noteRef = text(
  SHADOW_LIMITS.note_ref,
  'Client reference for the note; stored only as a keyed hash and never returned',
);

export const EvidenceDeficitBody = Type.Object(
  { note_text: noteText, context: Type.Optional(EncounterContextSchema) },
  { additionalProperties: false },
);
export type EvidenceDeficitBody = Static<typeof EvidenceDeficitBody>;

const BatchNote = Type.Object(
  {
    note_text: noteText,
    note_ref: Type.Optional(noteRef),
    context: Type.Optional(EncounterContextSchema),
  },
  { additionalProperties: false },
);

export const BatchBody = Type.Object(
  {
    notes: Type.Array(BatchNote, {
      minItems: 1,
      maxItems: SHADOW_LIMITS.batch_notes,
      description: `1 to ${SHADOW_LIMITS.batch_notes} notes`,
    }),
  },
  { additionalProperties: false },
);
export type BatchBody = Static<typeof BatchBody>;

export const IntakeBody = Type.Object(
  {
    note_text: noteText,
    note_ref: Type.Optional(noteRef),
    context: Type.Optional(EncounterContextSchema),
    certificate_id: Type.Optional(
      text(SHADOW_LIMITS.certificate_id, "A certificate of the caller's tenant to link"),
    ),
  },
  { additionalProperties: false },
);
export type IntakeBody = Static<typeof IntakeBody>;

const conditionValues = Type.Object(
  Object.fromEntries(
    loadDefaultRuleset().conditions.map((condition) => [
      condition.id,
      Type.Optional(Type.Number({ minimum: 0, maximum: SHADOW_LIMITS.max_condition_value_usd })),
    ]),
  ),
  {
    additionalProperties: false,
    description: 'USD per condition id; conditions left out use the ruleset default',
  },
);

export const AssumptionsBody = Type.Object(
  {
    condition_values_usd: Type.Optional(conditionValues),
    basis: Type.Optional(text(SHADOW_LIMITS.basis, 'Where the figures come from')),
  },
  { additionalProperties: false },
);
export type AssumptionsBody = Static<typeof AssumptionsBody>;

const rate = (description: string) => Type.Number({ minimum: 0, maximum: 1, description });
const usd = (description: string) => Type.Number({ minimum: 0, maximum: 1e12, description });

export const RoiBody = Type.Object(
  {
    annual_encounter_volume: Type.Integer({ minimum: 0, maximum: 1e9 }),
    denial_rate: rate('Share of claims denied'),
    average_claim_value_usd: usd('Average value of a denied claim'),
    appeal_success_rate: rate('Share of appealed denials overturned today'),
    appeal_cost_usd: usd('Cost of working one appeal'),
    documentation_denial_prevention_rate: rate(
      'Share of documentation denials the program is expected to prevent',
    ),
    program_cost_usd: usd('Annual program cost'),
    documentation_denial_share: Type.Optional(
      rate('Share of denials caused by documentation; default 1'),
    ),
    appeal_rate: Type.Optional(
      rate('Share of remaining documentation denials that are appealed; default 1'),
    ),
    expected_appeal_success_rate: Type.Optional(
      rate('Appeal success rate with certified documentation; default appeal_success_rate'),
    ),
  },
  { additionalProperties: false },
);
export type RoiBody = Static<typeof RoiBody>;

// Query strings are not coerced (the server's Ajv runs with coerceTypes false), so numbers and
// booleans arrive as strings and are checked by pattern here and converted in the route.
const booleanText = Type.Union([Type.Literal('true'), Type.Literal('false')]);
const pageLimit = patternString(
  '^(?:[1-9][0-9]?|1[0-9]{2}|200)$',
  `must be an integer from 1 to ${SHADOW_LIMITS.page_max}`,
  { description: `Page size, 1 to ${SHADOW_LIMITS.page_max}, default 50` },
);
const dateTime = (description: string) => Type.String({ format: 'date-time', description });
const cursor = Type.String({
  minLength: 1,
  maxLength: 1024,
  description: 'next_cursor of the previous page',
});

const rangeFields = {
  created_from: Type.Optional(dateTime('Inclusive lower bound of created_at')),
  created_to: Type.Optional(dateTime('Exclusive upper bound of created_at')),
};

export const ItemsQuery = Type.Object(
  {
    ...rangeFields,
    condition: Type.Optional(text(SHADOW_LIMITS.short_text, 'Condition id counted in the note')),
    has_deficit: Type.Optional(booleanText),
    source: Type.Optional(Type.Union([Type.Literal('intake'), Type.Literal('analyze')])),
    batch_id: Type.Optional(text(SHADOW_LIMITS.certificate_id)),
    certificate_id: Type.Optional(text(SHADOW_LIMITS.certificate_id)),
    limit: Type.Optional(pageLimit),
    cursor: Type.Optional(cursor),
  },
  { additionalProperties: false },
);
export type ItemsQuery = Static<typeof ItemsQuery>;

export const RiskQueueQuery = Type.Object(
  {
    ...rangeFields,
    condition: Type.Optional(text(SHADOW_LIMITS.short_text, 'Condition id counted in the note')),
    limit: Type.Optional(pageLimit),
    cursor: Type.Optional(cursor),
  },
  { additionalProperties: false },
);
export type RiskQueueQuery = Static<typeof RiskQueueQuery>;

export const RangeQuery = Type.Object(rangeFields, { additionalProperties: false });
export type RangeQuery = Static<typeof RangeQuery>;

export const ExecutiveSummaryQuery = Type.Object(
  {
    ...rangeFields,
    verification_sample: Type.Optional(
      patternString('^(?:[1-9][0-9]{0,2}|1000)$', 'must be an integer from 1 to 1000', {
        description:
          'Linked certificates verified, most recently linked first; 1 to 1000, default 100',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ExecutiveSummaryQuery = Static<typeof ExecutiveSummaryQuery>;

export const ItemIdParams = Type.Object({ item_id: Type.String({ minLength: 1, maxLength: 64 }) });
