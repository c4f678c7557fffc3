// Reference PHI screen for tests and benchmarks: the straightforward version of
// src/services/phi-screen.ts that runs every pattern as a global regex over the whole text.
// Its patterns are copies of the ones in that module. Tests check that the module, which tries
// them only at candidate positions, returns the same result, so change both together.
//
// Every pattern uses bounded quantifiers or quantifiers over disjoint character classes, and
// candidates that could start inside a longer run are rejected by lookbehind at their first
// character, so the regex engine does constant work per input position. Email addresses are
// found by scanning outward from each '@' with length caps, without a regex.

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
export function screenForPhiReference(text: string): PhiScreenResult {
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
  findMedicareIds(text, sink);
  findCreditCards(text, sink);
  findSsns(text, sink);
  findPhones(text, sink);
  findDatesOfBirth(text, sink);
  findMrns(text, sink);
  findIpAddresses(text, sink);
  findStreetAddresses(text, sink);
  findZipPlus4(text, sink);

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
 * Runs a global regex over `text` and reports each match that `accept` passes. When the
 * pattern has a named group `value`, the span covers only that group, so a label in front of
 * the value is left out. Such a pattern must end with `value`, apart from lookaheads.
 */
function scan(
  text: string,
  pattern: RegExp,
  kind: PhiKind,
  sink: SpanSink,
  accept: (groups: Record<string, string | undefined>) => boolean = () => true,
): void {
  for (const match of text.matchAll(pattern)) {
    const groups = match.groups ?? {};
    if (!accept(groups)) {
      continue;
    }
    const value = groups['value'] ?? match[0];
    const end = match.index + match[0].length;
    sink(kind, end - value.length, end);
  }
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
const MBI_PATTERN = new RegExp(
  String.raw`(?<![A-Za-z0-9-])[1-9]${MBI_ALPHA}${MBI_ALNUM}\d(?<d1>-?)` +
    String.raw`${MBI_ALPHA}${MBI_ALNUM}\d\k<d1>${MBI_ALPHA}${MBI_ALPHA}\d\d(?![A-Za-z0-9]|-[A-Za-z0-9])`,
  'g',
);

function findMedicareIds(text: string, sink: SpanSink): void {
  scan(text, MBI_PATTERN, 'medicare_id', sink);
}

// ---------------------------------------------------------------------------------------
// Payment card numbers

// 13 to 19 digits, either contiguous or in groups of 3 to 6 joined by one space or hyphen
// (4-4-4-4, 4-6-5, 4-4-4-4-3). Groups of one or two digits are not accepted because lists of
// small numbers ("3 3 4 4 3 4 1 1") are common in notes and would pass the Luhn check one
// time in ten.
const CARD_PATTERN =
  /(?<![\d.]|\d[ -])(?<value>\d{13,19}|\d{3,6}(?:(?<sep>[ -])\d{3,6})(?:\k<sep>\d{3,6}){0,4})(?![\d]|[ -]\d|\.\d)/g;

function findCreditCards(text: string, sink: SpanSink): void {
  scan(text, CARD_PATTERN, 'credit_card', sink, (groups) => {
    const digits = (groups['value'] ?? '').replace(/[ -]/g, '');
    return digits.length >= 13 && digits.length <= 19 && isPlausibleCardNumber(digits);
  });
}

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
const SSN_DASHED_PATTERN =
  /(?<![\d-]|\d\.)(?<area>\d{3})-(?<group>\d{2})-(?<serial>\d{4})(?![\d]|-\d|\.\d)/g;

// Nine digits, bare or split by spaces or hyphens, only after an SSN label.
const SSN_LABELED_PATTERN = new RegExp(
  String.raw`\b(?:SSN|SSAN|SS#|SS\s?No\.?|soc(?:ial)?\.?\s{1,3}sec(?:urity)?\.?)` +
    LABEL_GAP +
    String.raw`(?<value>(?<area>\d{3})[- ]?(?<group>\d{2})[- ]?(?<serial>\d{4}))(?![\d]|-\d)`,
  'gi',
);

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

function findSsns(text: string, sink: SpanSink): void {
  scan(text, SSN_DASHED_PATTERN, 'ssn', sink, isValidSsn);
  scan(text, SSN_LABELED_PATTERN, 'ssn', sink, isValidSsn);
}

// ---------------------------------------------------------------------------------------
// Telephone numbers

// NANP numbers: the area code and the exchange each start with 2-9. Unlabelled numbers need
// one of these layouts: (617) 555-0142, 617-555-0142, 617.555.0142 (one separator used
// throughout), or a +1 prefix with any of spaces, dots, hyphens or nothing between parts.
const PHONE_BEFORE = String.raw`(?<![\w.+-])`;
const PHONE_AFTER = String.raw`(?![\d]|[-.]\d)`;
const PHONE_PATTERN = new RegExp(
  PHONE_BEFORE +
    '(?:' +
    String.raw`\+1[ .-]?\(?[2-9]\d\d\)?[ .-]?[2-9]\d\d[ .-]?\d{4}` +
    '|' +
    String.raw`(?:1[ .-]?)?\([2-9]\d\d\)[ .-]?[2-9]\d\d[ .-]\d{4}` +
    '|' +
    String.raw`(?:1[.-])?[2-9]\d\d(?<sep>[.-])[2-9]\d\d\k<sep>\d{4}` +
    ')' +
    PHONE_AFTER,
  'g',
);

// After a phone, tel, cell, mobile, fax or pager label, ten bare digits (with an optional
// leading 1) or a seven-digit local number such as 555-0142 also count.
const PHONE_LABELED_PATTERN = new RegExp(
  String.raw`\b(?:phone|telephone|tel\.?|ph\.?|cell|cellphone|mobile|fax|pager)` +
    LABEL_GAP +
    String.raw`(?<value>(?:\+?1)?[2-9]\d\d[2-9]\d{6}|[2-9]\d\d[-. ]\d{4})` +
    PHONE_AFTER,
  'gi',
);

function findPhones(text: string, sink: SpanSink): void {
  scan(text, PHONE_PATTERN, 'phone', sink);
  scan(text, PHONE_LABELED_PATTERN, 'phone', sink);
}

// ---------------------------------------------------------------------------------------
// Dates of birth

const MONTH_NAME =
  '(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|' +
  'Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\\.?';

// A date right after a DOB, date of birth, birth date or born (on) label. Accepted dates:
// M/D/Y or M-D-Y or M.D.Y with a 2- or 4-digit year, ISO YYYY-MM-DD, "March 4, 1950" and
// "4 March 1950". A year alone is not a date of birth.
const DOB_PATTERN = new RegExp(
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
  'gi',
);

function isDayAndMonth(day: string | undefined, month: string | undefined): boolean {
  const dayNumber = day === undefined ? 1 : Number(day);
  const monthNumber = month === undefined ? 1 : Number(month);
  return dayNumber >= 1 && dayNumber <= 31 && monthNumber >= 1 && monthNumber <= 12;
}

function findDatesOfBirth(text: string, sink: SpanSink): void {
  scan(text, DOB_PATTERN, 'date_of_birth', sink, (groups) => {
    if (groups['m'] !== undefined) {
      // Both the US order M/D/Y and D/M/Y are accepted when either reading is a real day.
      return isDayAndMonth(groups['d'], groups['m']) || isDayAndMonth(groups['m'], groups['d']);
    }
    if (groups['im'] !== undefined) {
      return isDayAndMonth(groups['id'], groups['im']);
    }
    return isDayAndMonth(groups['nd'] ?? groups['dn'], undefined);
  });
}

// ---------------------------------------------------------------------------------------
// Medical record and account numbers

// An identifier of 4 to 20 letters, digits and hyphens, with at least one digit, right after
// an MRN, MR#, medical record number, chart number, account number or patient ID label.
// Accession and order numbers are not labels here, and a value of one repeated character
// (0000000) is a template placeholder.
const MRN_PATTERN = new RegExp(
  String.raw`\b(?:MRN|MR\s?#|MR\s?(?:no\b\.?|number\b)|med(?:ical)?\.?\s{1,3}rec(?:ord)?s?\.?` +
    String.raw`(?=\s{0,3}(?:number|no\b|num\b|#))|chart(?=\s{0,3}(?:number|no\b|num\b|#))` +
    String.raw`|acc(?:oun)?t\.?(?=\s{0,3}(?:number|no\b|num\b|#))|patient\s{1,3}id\b)` +
    LABEL_GAP +
    String.raw`(?<value>(?=[A-Z0-9-]{0,19}\d)[A-Z0-9][A-Z0-9-]{3,19})(?![A-Z0-9])`,
  'gi',
);

function findMrns(text: string, sink: SpanSink): void {
  scan(text, MRN_PATTERN, 'mrn', sink, (groups) => !isPlaceholder(groups['value'] ?? ''));
}

/** Detects masks such as 0000000 or XXXX-XXXX that templates put where an identifier goes. */
function isPlaceholder(value: string): boolean {
  const characters = value.replace(/-/g, '').toUpperCase();
  return /^(.)\1*$/.test(characters);
}

// ---------------------------------------------------------------------------------------
// IPv4 addresses

// Four dotted octets of 0-255 without leading zeros and with a non-zero first octet.
const OCTET = String.raw`(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)`;
const IPV4_PATTERN = new RegExp(
  String.raw`(?<![\d.])(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d?)(?:\.${OCTET}){3}(?![\d]|\.\d)`,
  'g',
);

function findIpAddresses(text: string, sink: SpanSink): void {
  scan(text, IPV4_PATTERN, 'ip_address', sink);
}

// ---------------------------------------------------------------------------------------
// Street addresses

// A house number, an optional compass direction, one to three capitalized words and a
// street suffix: "42 Elm Street", "1600 N Maple Ave". Case-sensitive, so "3 times a day"
// or "10 mg daily" never match.
const STREET_SUFFIX =
  '(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|' +
  'Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Way)';
const STREET_PATTERN = new RegExp(
  String.raw`(?<![\w.,/-])\d{1,6}[A-Z]?\s{1,3}(?:(?:[NSEW]|North|South|East|West)\.?\s{1,3})?` +
    String.raw`(?:[A-Z][a-z]{1,20}\s{1,3}){1,3}${STREET_SUFFIX}\b`,
  'g',
);

function findStreetAddresses(text: string, sink: SpanSink): void {
  scan(text, STREET_PATTERN, 'street_address', sink);
}

// ---------------------------------------------------------------------------------------
// ZIP+4 codes

// NNNNN-NNNN with nothing digit-like around it, so an 11-digit NDC code (5-4-2) does not
// count.
const ZIP4_PATTERN = /(?<![\d-]|\d\.)\d{5}-\d{4}(?![\d]|-\d|\.\d)/g;

function findZipPlus4(text: string, sink: SpanSink): void {
  scan(text, ZIP4_PATTERN, 'zip_plus4', sink);
}
