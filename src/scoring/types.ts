// Input and output of shadow-mode scoring. Offsets are UTF-16 code unit offsets into the note
// text, half-open: [start, end).
import type { Assertion } from './context.ts';
import type { MeatElement, StructuredKind } from './ruleset.ts';
import type { SectionKind } from './sections.ts';

export type Span = [start: number, end: number];

export interface DiagnosisEntry {
  readonly code: string;
  readonly description?: string;
}

export interface EncounterContext {
  readonly encounter_type?: string;
  readonly service_line?: string;
  /** ICD-10 codes, or codes with descriptions, billed or proposed for the encounter. */
  readonly diagnoses?: readonly (string | DiagnosisEntry)[];
  readonly labs?: readonly { name: string; value?: string | number; unit?: string }[];
  readonly vitals?: readonly { name: string; value?: string | number; unit?: string }[];
  readonly medications?: readonly (string | { name: string })[];
  readonly procedures?: readonly string[];
  readonly problem_list?: readonly string[];
}

export interface ScoreInput {
  readonly text: string;
  readonly context?: EncounterContext;
}

/** Origin of a condition. `note` means an affirmed, current mention about the patient. */
export type ConditionSource = 'note' | 'diagnosis_code' | 'diagnosis_description' | 'problem_list';

export interface Mention {
  readonly span: Span;
  readonly text: string;
  readonly section: SectionKind;
  readonly assertion: Assertion;
  /** True when the mention is affirmed, current and about the patient. */
  readonly counted: boolean;
}

export interface Evidence {
  readonly rule_id: string;
  readonly span?: Span;
  readonly text?: string;
  readonly section?: SectionKind;
  readonly structured?: { readonly kind: StructuredKind; readonly name: string };
}

export interface ElementResult {
  readonly met: boolean;
  readonly evidence: readonly Evidence[];
}

export interface ConditionResult {
  readonly condition_id: string;
  readonly name: string;
  readonly mentions: readonly Mention[];
  /** True when the condition rests on a counted note mention, a diagnosis code or the problem list. */
  readonly counted: boolean;
  /** The first of `sources` in the order note, diagnosis_code, diagnosis_description, problem_list. */
  readonly source: ConditionSource | 'none';
  readonly sources: readonly ConditionSource[];
  readonly codes: readonly string[];
  readonly meat: Readonly<Record<MeatElement, ElementResult>>;
  readonly missing: readonly MeatElement[];
  /** Sum of the weights of met elements, from 0 to 1. Zero when the condition is not counted. */
  readonly completeness: number;
  /** An estimate from configurable, illustrative value assumptions, not payer data. */
  readonly estimated_value_at_risk_usd: number;
}

export type NoteFindingKind =
  | 'short_note'
  | 'missing_section'
  | 'vague_plan'
  | 'uncounted_condition'
  | 'documentation_conflict'
  | 'unmapped_diagnosis_code';

export interface NoteFinding {
  readonly rule_id: string;
  readonly kind: NoteFindingKind;
  readonly detail: string;
  readonly condition_id?: string;
}

export interface ScoreSummary {
  readonly word_count: number;
  readonly sentence_count: number;
  readonly sections: readonly SectionKind[];
  readonly conditions_counted: number;
  readonly conditions_not_counted: number;
  /** Mean completeness over counted conditions, or null when none is counted. */
  readonly mean_completeness: number | null;
  readonly missing_elements: Readonly<Record<MeatElement, number>>;
  readonly estimated_value_at_risk_usd: number;
  readonly value_basis: string;
}

export interface ScoreResult {
  readonly ruleset_version: string;
  readonly context_rules_version: string;
  readonly conditions: readonly ConditionResult[];
  readonly note_findings: readonly NoteFinding[];
  readonly summary: ScoreSummary;
}
