// PHI screen for note text and short free-text fields. It reports which kinds of protected
// health information appear and how often, never the matched values or where they are, so
// the result is safe to log. It is a screen that flags text for review. It is not a
// de-identifier: names and free-form addresses are not detected.
//
// Every pattern uses bounded quantifiers or quantifiers over disjoint character classes, and
// candidates that could start inside a longer run are rejected by lookbehind at their first
// character, so the regex engine does constant work per input position. Email addresses are
// found by scanning outward from each '@' with length caps, without a regex.
//
// The patterns are not run over the whole text. Every match except an email contains a digit,
// so one cheap pass (CANDIDATE_PATTERN) finds the digit runs whose shape fits some kind. Each
// unlabelled pattern is then tried, as a sticky regex, only at those positions, and each
// labelled pattern only at label words in the 56 characters before such a digit run. See
// "Candidate positions" below for why this finds exactly what a full scan finds.

/** Kinds of PHI the screen detects, in the order used to resolve overlapping matches. */
export const PHI_KINDS = [
  'email',
  'medicare_id',
  'credit_card',
  'ssn',
  'phone',
  'date_of_birth',
  'mrn',
  'ip_address',
  'street_address',
  'zip_plus4',
] as const;
export type PhiKind = (typeof PHI_KINDS)[number];

/** Number of matches of one PHI kind. */
export interface PhiFinding {
  kind: PhiKind;
  count: number;
}

/** Kinds and counts found in one text, without the matched values or their positions. */
export interface PhiScreenResult {
  /** One entry per kind found, in `PHI_KINDS` order. Kinds with no match are left out. */
  findings: PhiFinding[];
  /** Sum of all counts. */
  total: number;
}

/** A matched value as start and end offsets. Internal only: offsets must not reach a log. */
interface PhiSpan {
  kind: PhiKind;
  start: number;
  end: number;
}

type SpanSink = (kind: PhiKind, start: number, end: number) => void;

/**
 * Screens `text` for PHI and returns the count of each kind found. A value that matches more
 * than one kind counts once, under the kind listed first in `PHI_KINDS`.
 */
export function screenForPhi(text: string): PhiScreenResult {
  const counts = new Map<PhiKind, number>();
  for (const span of findPhiSpans(text)) {
    counts.set(span.kind, (counts.get(span.kind) ?? 0) + 1);
  }

  const findings: PhiFinding[] = [];
  let total = 0;
  for (const kind of PHI_KINDS) {
    const count = counts.get(kind);
    if (count !== undefined) {
      findings.push({ kind, count });
      total += count;
    }
  }
  return { findings, total };
}

function findPhiSpans(text: string): PhiSpan[] {
  const spans: PhiSpan[] = [];
  const sink: SpanSink = (kind, start, end) => {
    spans.push({ kind, start, end });
  };

  findEmails(text, sink);
  findAnchoredMatches(text, sink);

  return removeOverlaps(spans);
}

/**
 * Keeps, of any overlapping spans, the one whose kind comes first in `PHI_KINDS`. Spans are
 * grouped into runs that overlap one another, so the cost stays O(n log n) for notes with
 * thousands of matches.
 */
function removeOverlaps(spans: PhiSpan[]): PhiSpan[] {
  const byStart = [...spans].sort((a, b) => a.start - b.start || b.end - a.end);
  const kept: PhiSpan[] = [];
  let cluster: PhiSpan[] = [];
  let clusterEnd = -1;
  for (const span of byStart) {
    if (span.start >= clusterEnd && cluster.length > 0) {
      kept.push(...resolveCluster(cluster));
      cluster = [];
    }
    cluster.push(span);
    clusterEnd = Math.max(clusterEnd, span.end);
  }
  kept.push(...resolveCluster(cluster));
  return kept;
}

function resolveCluster(cluster: PhiSpan[]): PhiSpan[] {
  if (cluster.length <= 1) {
    return cluster;
  }
  const rank = (kind: PhiKind): number => PHI_KINDS.indexOf(kind);
  const byPriority = [...cluster].sort((a, b) => rank(a.kind) - rank(b.kind) || a.start - b.start);
  const kept: PhiSpan[] = [];
  for (const span of byPriority) {
    if (!kept.some((other) => span.start < other.end && other.start < span.end)) {
      kept.push(span);
    }
  }
  return kept;
}

// ---------------------------------------------------------------------------------------
// Shared pieces

/**
 * A sticky regex for one kind, tried only at candidate positions. When the pattern has a named
 * group `value`, the span covers only that group, so a label in front of the value is left
 * out. Such a pattern must end with `value`, apart from lookaheads.
 */
interface AnchoredPattern {
  kind: PhiKind;
  /** Index of this pattern in the per-call array of resume positions, unique per pattern. */
  slot: number;
  pattern: RegExp;
  /** Check on the groups of a match, for rules a regex cannot express. */
  accept?: (groups: Record<string, string | undefined>) => boolean;
}

/**
 * Tries `entry` at `at` and reports the match if `accept` passes it. A global scan resumes
 * where its previous match ended, so a position inside the previous match of the same pattern
 * is skipped here too, even when `accept` rejected that match.
 */
function tryPatternAt(
  text: string,
  at: number,
  entry: AnchoredPattern,
  resumeAt: number[],
  sink: SpanSink,
): void {
  if (at < (resumeAt[entry.slot] ?? 0)) {
    return;
  }
  entry.pattern.lastIndex = at;
  const match = entry.pattern.exec(text);
  if (match === null) {
    return;
  }
  const end = at + match[0].length;
  resumeAt[entry.slot] = end;
  const groups = match.groups ?? {};
  if (entry.accept !== undefined && !entry.accept(groups)) {
    return;
  }
  const value = groups['value'] ?? match[0];
  sink(entry.kind, end - value.length, end);
}

/**
 * Separator allowed between a label and its value: optional "number"/"no."/"#", then an
 * optional ':', '=', '#', '-', "is" or "was", with up to three spaces around each part.
 */
const LABEL_GAP = String.raw`(?:\s{0,3}(?:number|no\.?|num\.?|#))?\s{0,3}(?:[:=#-]|is\b|was\b)?\s{0,3}`;

// ---------------------------------------------------------------------------------------
// Email

const EMAIL_LOCAL_MAX = 64; // RFC 5321 limit on the local part
const EMAIL_DOMAIN_MAX = 253; // longest domain name in dotted text form (RFC 1035)

function isEmailLocalChar(code: number): boolean {
  return (
    (code >= 0x30 && code <= 0x39) || // 0-9
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    code === 0x2e || // .
    code === 0x5f || // _
    code === 0x25 || // %
    code === 0x2b || // +
    code === 0x2d // -
  );
}

function isDomainChar(code: number): boolean {
  return (
    (code >= 0x30 && code <= 0x39) ||
    (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x61 && code <= 0x7a) ||
    code === 0x2e ||
    code === 0x2d
  );
}

/**
 * Finds addresses of the form local@domain.tld. The scan walks at most 64 characters back and
 * 253 forward from each '@', so the work is linear in the text length.
 */
function findEmails(text: string, sink: SpanSink): void {
  let at = text.indexOf('@');
  while (at !== -1) {
    let start = at;
    while (
      start > 0 &&
      at - start < EMAIL_LOCAL_MAX &&
      isEmailLocalChar(text.charCodeAt(start - 1))
    ) {
      start -= 1;
    }
    // A local part may not start with a dot.
    while (start < at && text.charCodeAt(start) === 0x2e) {
      start += 1;
    }

    let end = at + 1;
    while (
      end < text.length &&
      end - at - 1 < EMAIL_DOMAIN_MAX &&
      isDomainChar(text.charCodeAt(end))
    ) {
      end += 1;
    }
    // Trailing dots and hyphens are sentence punctuation, not part of the domain.
    while (end > at + 1 && (text[end - 1] === '.' || text[end - 1] === '-')) {
      end -= 1;
    }

    if (start < at && isDomainName(text.slice(at + 1, end))) {
      sink('email', start, end);
    }
    at = text.indexOf('@', end > at ? end : at + 1);
  }
}

/** Checks for two or more dot-separated labels ending in an alphabetic top-level domain. */
function isDomainName(domain: string): boolean {
  const labels = domain.split('.');
  if (labels.length < 2) {
    return false;
  }
  const tld = labels[labels.length - 1] ?? '';
  if (!/^[A-Za-z]{2,24}$/.test(tld)) {
    return false;
  }
  return labels.every((label) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label));
}

// ---------------------------------------------------------------------------------------
// Medicare Beneficiary Identifier

// Format from the CMS document "Understanding the Medicare Beneficiary Identifier (MBI)
// Format": 11 characters typed C A AN N A AN N A A N N. C is 1-9 and N is 0-9. A is an
// uppercase letter other than S, L, O, I, B and Z, and AN is either. Cards print the MBI as
// XXXX-XXX-XXXX, so both forms are matched. Lowercase is not, to keep random tokens out.
const MBI_ALPHA = '[AC-HJKMNP-RT-Y]';
const MBI_ALNUM = '[AC-HJKMNP-RT-Y0-9]';
const MEDICARE_ID: AnchoredPattern = {
  kind: 'medicare_id',
  slot: 0,
  pattern: new RegExp(
    String.raw`(?<![A-Za-z0-9-])[1-9]${MBI_ALPHA}${MBI_ALNUM}\d(?<d1>-?)` +
      String.raw`${MBI_ALPHA}${MBI_ALNUM}\d\k<d1>${MBI_ALPHA}${MBI_ALPHA}\d\d(?![A-Za-z0-9]|-[A-Za-z0-9])`,
    'y',
  ),
};

// ---------------------------------------------------------------------------------------
// Payment card numbers

// 13 to 19 digits, either contiguous or in groups of 3 to 6 joined by one space or hyphen
// (4-4-4-4, 4-6-5, 4-4-4-4-3). Groups of one or two digits are not accepted because lists of
// small numbers ("3 3 4 4 3 4 1 1") are common in notes and would pass the Luhn check one
// time in ten.
const CREDIT_CARD: AnchoredPattern = {
  kind: 'credit_card',
  slot: 1,
  pattern:
    /(?<![\d.]|\d[ -])(?<value>\d{13,19}|\d{3,6}(?:(?<sep>[ -])\d{3,6})(?:\k<sep>\d{3,6}){0,4})(?![\d]|[ -]\d|\.\d)/y,
  accept: (groups) => {
    const digits = (groups['value'] ?? '').replace(/[ -]/g, '');
    return digits.length >= 13 && digits.length <= 19 && isPlausibleCardNumber(digits);
  },
};

/**
 * Checks the issuer digit and the Luhn checksum. Major networks (Visa, Mastercard, American
 * Express, Discover, JCB, Diners Club, UnionPay) issue numbers starting with 2 to 6.
 */
function isPlausibleCardNumber(digits: string): boolean {
  const first = digits.charCodeAt(0) - 0x30;
  if (first < 2 || first > 6) {
    return false;
  }
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i -= 1) {
    let digit = digits.charCodeAt(i) - 0x30;
    if (double) {
      digit *= 2;
      if (digit > 9) {
        digit -= 9;
      }
    }
    sum += digit;
    double = !double;
  }
  return sum % 10 === 0;
}

// ---------------------------------------------------------------------------------------
// Social Security numbers

// NNN-NN-NNNN anywhere. A leading or trailing digit, hyphen or decimal part rejects the match,
// so parts of longer codes do not count.
const SSN_DASHED: AnchoredPattern = {
  kind: 'ssn',
  slot: 2,
  pattern: /(?<![\d-]|\d\.)(?<area>\d{3})-(?<group>\d{2})-(?<serial>\d{4})(?![\d]|-\d|\.\d)/y,
  accept: isValidSsn,
};

// Nine digits, bare or split by spaces or hyphens, only after an SSN label.
const SSN_LABELED: AnchoredPattern = {
  kind: 'ssn',
  slot: 3,
  pattern: new RegExp(
    String.raw`\b(?:SSN|SSAN|SS#|SS\s?No\.?|soc(?:ial)?\.?\s{1,3}sec(?:urity)?\.?)` +
      LABEL_GAP +
      String.raw`(?<value>(?<area>\d{3})[- ]?(?<group>\d{2})[- ]?(?<serial>\d{4}))(?![\d]|-\d)`,
    'iy',
  ),
  accept: isValidSsn,
};

/**
 * Applies the SSA rules for issued numbers: the area is not 000, 666 or 900-999, the group
 * is not 00 and the serial is not 0000.
 */
function isValidSsn(groups: Record<string, string | undefined>): boolean {
  const area = groups['area'] ?? '';
  return (
    area !== '000' &&
    area !== '666' &&
    !area.startsWith('9') &&
    groups['group'] !== '00' &&
    groups['serial'] !== '0000'
  );
}

// ---------------------------------------------------------------------------------------
// Telephone numbers

// NANP numbers: the area code and the exchange each start with 2-9. Unlabelled numbers need
// one of these layouts: (617) 555-0142, 617-555-0142, 617.555.0142 (one separator used
// throughout), or a +1 prefix with any of spaces, dots, hyphens or nothing between parts.
const PHONE_BEFORE = String.raw`(?<![\w.+-])`;
const PHONE_AFTER = String.raw`(?![\d]|[-.]\d)`;
const PHONE: AnchoredPattern = {
  kind: 'phone',
  slot: 4,
  pattern: new RegExp(
    PHONE_BEFORE +
      '(?:' +
      String.raw`\+1[ .-]?\(?[2-9]\d\d\)?[ .-]?[2-9]\d\d[ .-]?\d{4}` +
      '|' +
      String.raw`(?:1[ .-]?)?\([2-9]\d\d\)[ .-]?[2-9]\d\d[ .-]\d{4}` +
      '|' +
      String.raw`(?:1[.-])?[2-9]\d\d(?<sep>[.-])[2-9]\d\d\k<sep>\d{4}` +
      ')' +
      PHONE_AFTER,
    'y',
  ),
};

// After a phone, tel, cell, mobile, fax or pager label, ten bare digits (with an optional
// leading 1) or a seven-digit local number such as 555-0142 also count.
const PHONE_LABELED: AnchoredPattern = {
  kind: 'phone',
  slot: 5,
  pattern: new RegExp(
    String.raw`\b(?:phone|telephone|tel\.?|ph\.?|cell|cellphone|mobile|fax|pager)` +
      LABEL_GAP +
      String.raw`(?<value>(?:\+?1)?[2-9]\d\d[2-9]\d{6}|[2-9]\d\d[-. ]\d{4})` +
      PHONE_AFTER,
    'iy',
  ),
};

// ---------------------------------------------------------------------------------------
// Dates of birth

const MONTH_NAME =
  '(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|' +
  'Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\\.?';

// A date right after a DOB, date of birth, birth date or born (on) label. Accepted dates:
// M/D/Y or M-D-Y or M.D.Y with a 2- or 4-digit year, ISO YYYY-MM-DD, "March 4, 1950" and
// "4 March 1950". A year alone is not a date of birth.
const DATE_OF_BIRTH: AnchoredPattern = {
  kind: 'date_of_birth',
  slot: 6,
  pattern: new RegExp(
    String.raw`(?:\bDOB\b|\bD\.O\.B\.?|\bdate\s{1,3}of\s{1,3}birth\b|\bbirth\s?date\b|\bborn(?:\s{1,3}on)?\b)` +
      LABEL_GAP +
      '(?<value>' +
      String.raw`(?<m>\d{1,2})(?<sep>[/.-])(?<d>\d{1,2})\k<sep>(?:\d{4}|\d{2})(?![\d])` +
      '|' +
      String.raw`(?:19|20)\d\d-(?<im>\d\d)-(?<id>\d\d)(?![\d])` +
      '|' +
      String.raw`${MONTH_NAME}\s{1,3}(?<nd>\d{1,2})(?:st|nd|rd|th)?,?\s{1,3}\d{4}(?![\d])` +
      '|' +
      String.raw`(?<dn>\d{1,2})(?:st|nd|rd|th)?\s{1,3}${MONTH_NAME},?\s{1,3}\d{4}(?![\d])` +
      ')',
    'iy',
  ),
  accept: isValidDateOfBirth,
};

function isDayAndMonth(day: string | undefined, month: string | undefined): boolean {
  const dayNumber = day === undefined ? 1 : Number(day);
  const monthNumber = month === undefined ? 1 : Number(month);
  return dayNumber >= 1 && dayNumber <= 31 && monthNumber >= 1 && monthNumber <= 12;
}

function isValidDateOfBirth(groups: Record<string, string | undefined>): boolean {
  if (groups['m'] !== undefined) {
    // Both the US order M/D/Y and D/M/Y are accepted when either reading is a real day.
    return isDayAndMonth(groups['d'], groups['m']) || isDayAndMonth(groups['m'], groups['d']);
  }
  if (groups['im'] !== undefined) {
    return isDayAndMonth(groups['id'], groups['im']);
  }
  return isDayAndMonth(groups['nd'] ?? groups['dn'], undefined);
}

// ---------------------------------------------------------------------------------------
// Medical record and account numbers

// An identifier of 4 to 20 letters, digits and hyphens, with at least one digit, right after
// an MRN, MR#, medical record number, chart number, account number or patient ID label.
// Accession and order numbers are not labels here, and a value of one repeated character
// (0000000) is a template placeholder.
const MRN: AnchoredPattern = {
  kind: 'mrn',
  slot: 7,
  pattern: new RegExp(
    String.raw`\b(?:MRN|MR\s?#|MR\s?(?:no\b\.?|number\b)|med(?:ical)?\.?\s{1,3}rec(?:ord)?s?\.?` +
      String.raw`(?=\s{0,3}(?:number|no\b|num\b|#))|chart(?=\s{0,3}(?:number|no\b|num\b|#))` +
      String.raw`|acc(?:oun)?t\.?(?=\s{0,3}(?:number|no\b|num\b|#))|patient\s{1,3}id\b)` +
      LABEL_GAP +
      String.raw`(?<value>(?=[A-Z0-9-]{0,19}\d)[A-Z0-9][A-Z0-9-]{3,19})(?![A-Z0-9])`,
    'iy',
  ),
  accept: (groups) => !isPlaceholder(groups['value'] ?? ''),
};

/** Detects masks such as 0000000 or XXXX-XXXX that templates put where an identifier goes. */
function isPlaceholder(value: string): boolean {
  const characters = value.replace(/-/g, '').toUpperCase();
  return /^(.)\1*$/.test(characters);
}

// ---------------------------------------------------------------------------------------
// IPv4 addresses

// Four dotted octets of 0-255 without leading zeros and with a non-zero first octet.
const OCTET = String.raw`(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)`;
const IP_ADDRESS: AnchoredPattern = {
  kind: 'ip_address',
  slot: 8,
  pattern: new RegExp(
    String.raw`(?<![\d.])(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d?)(?:\.${OCTET}){3}(?![\d]|\.\d)`,
    'y',
  ),
};

// ---------------------------------------------------------------------------------------
// Street addresses

// A house number, an optional compass direction, one to three capitalized words and a
// street suffix: "42 Elm Street", "1600 N Maple Ave". Case-sensitive, so "3 times a day"
// or "10 mg daily" never match.
const STREET_SUFFIX =
  '(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|' +
  'Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Way)';
const STREET_ADDRESS: AnchoredPattern = {
  kind: 'street_address',
  slot: 9,
  pattern: new RegExp(
    String.raw`(?<![\w.,/-])\d{1,6}[A-Z]?\s{1,3}(?:(?:[NSEW]|North|South|East|West)\.?\s{1,3})?` +
      String.raw`(?:[A-Z][a-z]{1,20}\s{1,3}){1,3}${STREET_SUFFIX}\b`,
    'y',
  ),
};

// ---------------------------------------------------------------------------------------
// ZIP+4 codes

// NNNNN-NNNN with nothing digit-like around it, so an 11-digit NDC code (5-4-2) does not
// count.
const ZIP_PLUS4: AnchoredPattern = {
  kind: 'zip_plus4',
  slot: 10,
  pattern: /(?<![\d-]|\d\.)\d{5}-\d{4}(?![\d]|-\d|\.\d)/y,
};

// ---------------------------------------------------------------------------------------
// Candidate positions
//
// A sticky regex tried at a set of positions in increasing order, skipping positions inside
// its previous match, finds the same matches as a global scan, provided that the set contains
// every position where the regex can match. Both sets below are built from conditions that
// every match meets:
//
// - An unlabelled match starts at the '(' or '+' of a phone number or at a digit that does not
//   follow a digit, because each of those patterns has a lookbehind that rules out a digit
//   before its first character. UNLABELLED_SHAPES and tryUnlabelledPatterns give further
//   conditions on the text from that digit on.
// - A labelled match starts at a label word. Labels and LABEL_GAP contain no digit, so the
//   first digit of the match starts a digit run, which LABELLED_VALUE_SHAPES describes, and
//   it lies at most LABEL_REACH characters after the start of the label.

/** Three-letter start of a month name in any letter case, as `MONTH_NAME` matches under /i. */
const MONTH_START =
  '(?:[Jj][Aa][Nn]|[Ff][Ee][Bb]|[Mm][Aa][RrYy]|[Aa][Pp][Rr]|[Jj][Uu][NnLl]|[Aa][Uu][Gg]|' +
  '[Ss][Ee][Pp]|[Oo][Cc][Tt]|[Nn][Oo][Vv]|[Dd][Ee][Cc])';

// Text that an unlabelled match starting at a digit has from that digit on. Each entry is
// looser than the pattern it stands for.
const UNLABELLED_SHAPES = [
  String.raw`\d[A-Z]`, // MBI
  String.raw`\d{13}|\d{3,6}[ -]\d{3}`, // payment card, contiguous or grouped
  String.raw`\d{3}-\d\d-\d{4}`, // SSN
  String.raw`1[ .-]?\(|1[.-]\d{3}[.-]|\d{3}[.-]\d{3}[.-]\d{4}`, // phone
  String.raw`\d{1,3}\.\d{1,3}\.\d{1,3}\.\d`, // IPv4
  String.raw`\d{1,6}[A-Z]?\s{1,3}[A-Z]`, // street address
  String.raw`\d{5}-\d{4}`, // ZIP+4
];

// Text that a labelled value has from its first digit on. Each entry is looser than the value
// it stands for. Under the /i flag, [A-Z] matches ASCII letters of either case and nothing
// else, and the labelled patterns use no other letter classes.
const LABELLED_VALUE_SHAPES = [
  String.raw`\d{3}[- ]?\d\d[- ]?\d{4}`, // SSN
  String.raw`\d{10}|\d{3}[-. ]\d{4}`, // phone: the first digit follows any '+'
  String.raw`\d{1,2}(?:/\d{1,2}/|\.\d{1,2}\.|-\d{1,2}-)\d\d|\d{4}-\d\d-\d\d`, // numeric date
  String.raw`\d{1,2}[A-Za-z]{0,2},?\s{1,3}\d{4}`, // day and year of "March 4th, 1950"
  String.raw`\d{1,2}[A-Za-z]{0,2}\s{1,3}${MONTH_START}`, // day and month of "4 March 1950"
  // MRN: at least four letters, digits and hyphens, of which up to three come before the
  // digit, since the first digit of an MRN may follow letters or hyphens in the same value.
  String.raw`[A-Za-z0-9-]{4}|(?<=[A-Za-z-])[A-Za-z0-9-]{3}|(?<=[A-Za-z-]{2})[A-Za-z0-9-]{2}` +
    String.raw`|(?<=[A-Za-z-]{3})[A-Za-z0-9-]`,
];

/** Matches one of `shapes` at a digit that does not follow a digit, consuming that digit. */
function digitRunStart(shapes: string[]): string {
  // The pattern starts by consuming a digit, so V8 can skip quickly to the next digit, which
  // a leading lookahead or lookbehind prevents. The lookbehind then steps back over that digit
  // and runs right to left, so the cheap test for a digit before it comes before the shapes.
  return String.raw`\d(?<=(?=${shapes.join('|')})(?<!\d)\d)`;
}

// One match per candidate position, consuming one character. Group 1 is set when a labelled
// value may start there, and then the label words before it are searched as well. The last
// two alternatives are the '(' and '+' that can open a phone number.
const CANDIDATE_PATTERN = new RegExp(
  `${digitRunStart(LABELLED_VALUE_SHAPES)}()|${digitRunStart(UNLABELLED_SHAPES)}` +
    String.raw`|\((?=[2-9]\d\d\))|\+(?=1)`,
  'g',
);

// Upper bound on the distance from the start of a label to the first digit of its value. The
// longest labels ("social.   security." and "medical.   records.") have 19 characters,
// LABEL_GAP at most 18 (3 + "number" + 3 + "was" + 3), and the first digit of a value comes
// at most 19 characters in (an MRN of letters and one digit). "September." and three spaces
// before the day of a date of birth come to only 13.
const LABEL_REACH = 19 + 18 + 19;

// Words that each label of a labelled pattern starts with, in any letter case, grouped by
// pattern in the order of LABELLED_PATTERNS. No word is a prefix of another, so at most one
// group matches.
const LABEL_WORD_PATTERN =
  /\b(?:(ss|soc)|(ph|tel|cell|mobile|fax|pager)|(dob|d\.o|date|birth|born)|(mr|med|chart|acc|patient))/gi;

const LABELLED_PATTERNS = [SSN_LABELED, PHONE_LABELED, DATE_OF_BIRTH, MRN];

const DIGIT_ZERO = 0x30;
const DIGIT_ONE = 0x31;
const SPACE = 0x20;
const HYPHEN = 0x2d;
const DOT = 0x2e;
const OPEN_PAREN = 0x28;

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

function isUppercaseLetter(code: number): boolean {
  return code >= 0x41 && code <= 0x5a;
}

/** True for every character that \s matches, and for every other character from U+00A0 on. */
function mayBeWhitespace(code: number): boolean {
  return code === SPACE || (code >= 0x09 && code <= 0x0d) || code >= 0xa0;
}

/** Finds all matches except emails, trying each pattern only at its candidate positions. */
function findAnchoredMatches(text: string, sink: SpanSink): void {
  const resumeAt: number[] = []; // by slot; a slot not yet set counts as 0
  // Text before labelled-value candidates, merged where the ranges overlap. windowEnd is -1
  // while no range is open.
  let windowStart = 0;
  let windowEnd = -1;

  CANDIDATE_PATTERN.lastIndex = 0;
  let candidate = CANDIDATE_PATTERN.exec(text);
  while (candidate !== null) {
    const at = candidate.index;
    tryUnlabelledPatterns(text, at, resumeAt, sink);
    if (candidate[1] !== undefined) {
      const reachStart = Math.max(0, at - LABEL_REACH);
      if (windowEnd >= 0 && reachStart <= windowEnd) {
        windowEnd = at;
      } else {
        if (windowEnd >= 0) {
          tryLabelledPatterns(text, windowStart, windowEnd, resumeAt, sink);
        }
        windowStart = reachStart;
        windowEnd = at;
      }
    }
    candidate = CANDIDATE_PATTERN.exec(text);
  }
  if (windowEnd >= 0) {
    tryLabelledPatterns(text, windowStart, windowEnd, resumeAt, sink);
  }
}

/**
 * Tries the unlabelled patterns at a candidate position, each only when the length of the
 * digit run there and the character after it fit that pattern.
 */
function tryUnlabelledPatterns(text: string, at: number, resumeAt: number[], sink: SpanSink): void {
  const first = text.charCodeAt(at);
  if (!isDigit(first)) {
    // '(' or '+', which only a phone number starts with.
    tryPatternAt(text, at, PHONE, resumeAt, sink);
    return;
  }
  let runEnd = at + 1;
  while (runEnd < text.length && isDigit(text.charCodeAt(runEnd))) {
    runEnd += 1;
  }
  const length = runEnd - at;
  const next = text.charCodeAt(runEnd); // NaN past the end, which fails every test below

  if (length === 1 && first !== DIGIT_ZERO && isUppercaseLetter(next)) {
    tryPatternAt(text, at, MEDICARE_ID, resumeAt, sink);
  }
  if (length >= 13 || (length >= 3 && length <= 6 && (next === SPACE || next === HYPHEN))) {
    tryPatternAt(text, at, CREDIT_CARD, resumeAt, sink);
  }
  if (length === 3 && next === HYPHEN) {
    tryPatternAt(text, at, SSN_DASHED, resumeAt, sink);
  }
  const phoneGroup = length === 3 && (next === HYPHEN || next === DOT);
  const phonePrefix =
    length === 1 &&
    first === DIGIT_ONE &&
    (next === SPACE || next === DOT || next === HYPHEN || next === OPEN_PAREN);
  if (phoneGroup || phonePrefix) {
    tryPatternAt(text, at, PHONE, resumeAt, sink);
  }
  if (length <= 3 && next === DOT) {
    tryPatternAt(text, at, IP_ADDRESS, resumeAt, sink);
  }
  if (length <= 6 && (isUppercaseLetter(next) || mayBeWhitespace(next))) {
    tryPatternAt(text, at, STREET_ADDRESS, resumeAt, sink);
  }
  if (length === 5 && next === HYPHEN) {
    tryPatternAt(text, at, ZIP_PLUS4, resumeAt, sink);
  }
}

/** Tries the labelled pattern of each label word that starts in `text[start, end)`. */
function tryLabelledPatterns(
  text: string,
  start: number,
  end: number,
  resumeAt: number[],
  sink: SpanSink,
): void {
  // A word inside the slice is found as in the full text. At the slice start \b may hold
  // where the full text has none, which only adds a candidate that the sticky pattern rejects.
  const window = text.slice(start, end);
  LABEL_WORD_PATTERN.lastIndex = 0;
  let word = LABEL_WORD_PATTERN.exec(window);
  while (word !== null) {
    for (let group = 1; group <= LABELLED_PATTERNS.length; group += 1) {
      const entry = LABELLED_PATTERNS[group - 1];
      if (word[group] !== undefined && entry !== undefined) {
        tryPatternAt(text, start + word.index, entry, resumeAt, sink);
      }
    }
    word = LABEL_WORD_PATTERN.exec(window);
  }
}
