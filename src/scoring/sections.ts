// Section detection for clinical notes. A heading is a label followed by a colon at the start of
// the text, after a line break, or after the comma or period that replaces a line break in
// transcribed corpora (`ASSESSMENT:,  1.  ...`). Known labels map to a canonical kind. Unknown
// all-capital labels such as `HEENT:` or `LUNGS:` are sub-headings when they occur inside an
// exam, review of systems or assessment section, and start an `other` section elsewhere.

export const SectionKind = {
  PREAMBLE: 'preamble',
  CHIEF_COMPLAINT: 'chief_complaint',
  HISTORY_OF_PRESENT_ILLNESS: 'history_of_present_illness',
  PAST_MEDICAL_HISTORY: 'past_medical_history',
  PAST_SURGICAL_HISTORY: 'past_surgical_history',
  FAMILY_HISTORY: 'family_history',
  SOCIAL_HISTORY: 'social_history',
  MEDICATIONS: 'medications',
  ALLERGIES: 'allergies',
  REVIEW_OF_SYSTEMS: 'review_of_systems',
  PHYSICAL_EXAM: 'physical_exam',
  LABS: 'labs',
  ASSESSMENT: 'assessment',
  PLAN: 'plan',
  ASSESSMENT_AND_PLAN: 'assessment_and_plan',
  IMPRESSION: 'impression',
  DIAGNOSES: 'diagnoses',
  HOSPITAL_COURSE: 'hospital_course',
  PROCEDURE: 'procedure',
  OTHER: 'other',
} as const;
export type SectionKind = (typeof SectionKind)[keyof typeof SectionKind];

export const SECTION_KINDS: readonly SectionKind[] = Object.values(SectionKind);

/** A section of a note. `start` is the heading start, `bodyStart` the first character after it. */
export interface Section {
  readonly kind: SectionKind;
  /** Heading text as written, or empty for the preamble before the first heading. */
  readonly heading: string;
  readonly start: number;
  readonly bodyStart: number;
  readonly end: number;
}

const HEADING_LABELS: Readonly<Record<Exclude<SectionKind, 'preamble' | 'other'>, string[]>> = {
  chief_complaint: [
    'chief complaint',
    'cc',
    'reason for consultation',
    'reason for consult',
    'reason for visit',
    'reason for referral',
    'reason for admission',
    'reason for evaluation',
    'presenting complaint',
  ],
  history_of_present_illness: [
    'history of present illness',
    'history of the present illness',
    'hpi',
    'history',
    'brief history',
    'interval history',
    'present illness',
    'subjective',
    'clinical history',
    'history and physical',
  ],
  past_medical_history: [
    'past medical history',
    'pmh',
    'pmhx',
    'medical history',
    'past history',
    'past medical and surgical history',
    'past psychiatric history',
    'problem list',
    'active problem list',
    'medical problems',
  ],
  past_surgical_history: [
    'past surgical history',
    'psh',
    'pshx',
    'surgical history',
    'previous surgeries',
    'past surgeries',
    'operations',
  ],
  family_history: ['family history', 'fh', 'fhx', 'family medical history', 'family hx'],
  social_history: ['social history', 'sh', 'shx', 'personal history', 'social hx', 'habits'],
  medications: [
    'medications',
    'medication',
    'current medications',
    'meds',
    'home medications',
    'outpatient medications',
    'admission medications',
    'medications on admission',
    'discharge medications',
    'current meds',
    'medications at discharge',
  ],
  allergies: ['allergies', 'allergy', 'drug allergies', 'medication allergies'],
  review_of_systems: ['review of systems', 'ros', 'systems review'],
  physical_exam: [
    'physical examination',
    'physical exam',
    'exam',
    'examination',
    'objective',
    'vital signs',
    'vitals',
    'pe',
    'general examination',
    'physical findings',
    'admission physical examination',
  ],
  labs: [
    'laboratory data',
    'laboratory',
    'laboratory studies',
    'laboratory values',
    'laboratory results',
    'labs',
    'lab',
    'lab results',
    'data',
    'diagnostic data',
    'diagnostic studies',
    'diagnostic tests',
    'studies',
    'results',
    'imaging',
    'radiology',
    'pertinent results',
    'ekg',
    'ecg',
  ],
  assessment: ['assessment', 'assessments', 'clinical impression', 'conclusion', 'summary'],
  plan: [
    'plan',
    'recommendations',
    'recommendation',
    'plan of care',
    'treatment plan',
    'disposition',
    'discharge instructions',
    'discharge plan',
    'follow up',
    'followup',
  ],
  assessment_and_plan: [
    'assessment and plan',
    'assessment plan',
    'a p',
    'impression and plan',
    'impression plan',
    'assessment and recommendations',
    'impression and recommendations',
    'medical decision making',
    'mdm',
  ],
  impression: ['impression', 'impressions'],
  diagnoses: [
    'diagnosis',
    'diagnoses',
    'discharge diagnosis',
    'discharge diagnoses',
    'final diagnosis',
    'final diagnoses',
    'admitting diagnosis',
    'admitting diagnoses',
    'admission diagnosis',
    'admission diagnoses',
    'principal diagnosis',
    'secondary diagnoses',
    'preoperative diagnosis',
    'preoperative diagnoses',
    'postoperative diagnosis',
    'postoperative diagnoses',
    'preop diagnosis',
    'postop diagnosis',
    'pre operative diagnosis',
    'post operative diagnosis',
    'working diagnosis',
    'differential diagnosis',
    'problem',
    'problems',
  ],
  hospital_course: [
    'hospital course',
    'course',
    'brief hospital course',
    'emergency department course',
    'ed course',
    'course in the emergency department',
    'clinical course',
  ],
  procedure: [
    'procedure',
    'procedures',
    'procedure performed',
    'procedures performed',
    'operation',
    'operation performed',
    'operative procedure',
    'description of procedure',
    'description of the procedure',
    'procedure in detail',
    'procedure details',
    'findings',
    'anesthesia',
    'indications',
    'indication',
  ],
};

const LABEL_TO_KIND = new Map<string, SectionKind>();
for (const [kind, labels] of Object.entries(HEADING_LABELS)) {
  for (const label of labels) {
    LABEL_TO_KIND.set(label, kind as SectionKind);
  }
}

/** Section kinds whose unknown all-capital sub-headings stay inside them. */
const CONTAINER_KINDS: ReadonlySet<SectionKind> = new Set<SectionKind>([
  'review_of_systems',
  'physical_exam',
  'labs',
  'assessment',
  'plan',
  'assessment_and_plan',
  'impression',
  'diagnoses',
  'hospital_course',
]);

/** Maximum heading label length in characters. */
const MAX_LABEL_LENGTH = 60;

function isLabelChar(code: number): boolean {
  return (
    (code >= 65 && code <= 90) || // A-Z
    (code >= 97 && code <= 122) || // a-z
    (code >= 48 && code <= 57) || // 0-9
    code === 32 || // space
    code === 9 || // tab
    code === 47 || // slash
    code === 38 || // ampersand
    code === 39 || // apostrophe
    code === 40 || // (
    code === 41 || // )
    code === 45 // hyphen
  );
}

interface HeadingCandidate {
  readonly label: string;
  readonly start: number;
  /** True when only a run of spaces, not a line break or punctuation, precedes the label. */
  readonly afterSpaces: boolean;
}

/**
 * Reads the heading label that ends at the colon at `colon`, walking back over label characters.
 * A label must follow the start of the text, a line break, a comma, period or semicolon, or a
 * run of two or more spaces. A digit right after the colon marks a time such as 10:30.
 */
function headingBefore(text: string, colon: number): HeadingCandidate | undefined {
  const next = colon + 1 < text.length ? text.charCodeAt(colon + 1) : 32;
  if (next >= 48 && next <= 57) {
    return undefined;
  }
  let begin = colon;
  while (begin > 0 && colon - begin < MAX_LABEL_LENGTH && isLabelChar(text.charCodeAt(begin - 1))) {
    begin--;
  }
  const before = begin > 0 ? text[begin - 1] : '\n';
  const afterPunctuation =
    before === '\n' || before === '\r' || before === ',' || before === '.' || before === ';';
  let segment = text.slice(begin, colon);
  let offset = begin;
  let afterSpaces = false;
  if (!afterPunctuation || colon - begin >= MAX_LABEL_LENGTH) {
    const gap = segment.lastIndexOf('  ');
    if (gap < 0) {
      return undefined;
    }
    offset = begin + gap;
    segment = segment.slice(gap);
    afterSpaces = true;
  }
  const leading = segment.length - segment.trimStart().length;
  const label = segment.trim();
  if (label === '' || !/^[A-Za-z]/.test(label) || !/[A-Za-z)]$/.test(label)) {
    return undefined;
  }
  return { label, start: offset + leading, afterSpaces };
}

/** Canonical lower-case label: words separated by single spaces. */
export function normalizeHeading(label: string): string {
  return label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .trim()
    .replace(/^(?:his|her|their|the patient s|patient s|patient) /, '');
}

/**
 * Returns the section kind of a heading label, or undefined when the label is not known. Other
 * labels that end in "history" (obstetric, menstrual, developmental history) are past history.
 */
export function headingKind(label: string): SectionKind | undefined {
  const cached = HEADING_CACHE.get(label);
  if (cached !== undefined) {
    return cached ?? undefined;
  }
  const kind = classifyHeading(label);
  if (HEADING_CACHE.size >= HEADING_CACHE_LIMIT) {
    HEADING_CACHE.clear();
  }
  HEADING_CACHE.set(label, kind ?? null);
  return kind;
}

// Heading labels repeat across notes, so their kinds are cached. The cache is cleared when full
// to bound memory on unusual input.
const HEADING_CACHE = new Map<string, SectionKind | null>();
const HEADING_CACHE_LIMIT = 10_000;

function classifyHeading(label: string): SectionKind | undefined {
  const normalized = normalizeHeading(label);
  const kind = LABEL_TO_KIND.get(normalized);
  if (kind === undefined && /^[a-z ]{2,40} history$/.test(normalized)) {
    return 'past_medical_history';
  }
  return kind;
}

function isAllCapitals(label: string): boolean {
  return /[A-Z]{2}/.test(label) && !/[a-z]/.test(label);
}

// Skips the spaces, tabs and commas that follow a heading colon in `HEADING:,  text`.
function skipSeparators(text: string, offset: number): number {
  let i = offset;
  while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === ',')) {
    i++;
  }
  return i;
}

/**
 * Splits a note into sections that cover it without gaps. Text before the first heading is a
 * `preamble` section, and a note with no headings is one preamble section.
 */
export function detectSections(text: string): Section[] {
  const sections: Section[] = [];
  let current: { kind: SectionKind; heading: string; start: number; bodyStart: number } = {
    kind: 'preamble',
    heading: '',
    start: 0,
    bodyStart: 0,
  };
  for (let colon = text.indexOf(':'); colon >= 0; colon = text.indexOf(':', colon + 1)) {
    const candidate = headingBefore(text, colon);
    if (candidate === undefined || candidate.start < current.bodyStart) {
      continue;
    }
    let kind = headingKind(candidate.label);
    if (kind === undefined) {
      // A run of spaces stands for a lost line break only before a known label, because prose
      // has double spaces between sentences.
      if (
        candidate.afterSpaces ||
        !isAllCapitals(candidate.label) ||
        CONTAINER_KINDS.has(current.kind)
      ) {
        continue;
      }
      kind = 'other';
    }
    if (candidate.start > current.start || current.bodyStart > 0) {
      sections.push({ ...current, end: candidate.start });
    }
    current = {
      kind,
      heading: candidate.label,
      start: candidate.start,
      bodyStart: skipSeparators(text, colon + 1),
    };
  }
  sections.push({ ...current, end: text.length });
  return sections.filter((section) => section.end > section.start || text.length === 0);
}

/** Returns, for sorted offsets, the index of the section that contains each offset. */
export function sectionIndexAt(sections: readonly Section[], offset: number): number {
  let low = 0;
  let high = sections.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    const section = sections[middle];
    if (section !== undefined && section.start <= offset) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}
