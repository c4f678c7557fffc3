import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

import { screenForPhi } from '../../src/services/phi-screen.ts';
import type { PhiKind, PhiScreenResult } from '../../src/services/phi-screen.ts';
import { screenForPhiReference } from '../helpers/phi-screen-reference.ts';

function countOf(result: PhiScreenResult, kind: PhiKind): number {
  return result.findings.find((finding) => finding.kind === kind)?.count ?? 0;
}

/** Asserts that `text` yields exactly one finding of `kind` and nothing else. */
function assertSingle(text: string, kind: PhiKind): void {
  const result = screenForPhi(text);
  assert.deepEqual(result.findings, [{ kind, count: 1 }], `expected one ${kind} in ${text}`);
  assert.equal(result.total, 1, `total for ${text}`);
}

function assertClean(text: string): void {
  const result = screenForPhi(text);
  assert.deepEqual(result.findings, [], `expected no PHI in ${text}`);
  assert.equal(result.total, 0, `total for ${text}`);
}

void describe('screenForPhi positive cases', () => {
  const cases: [PhiKind, string][] = [
    ['ssn', 'SSN 123-45-6789 on file.'],
    ['ssn', 'Identifier 123-45-6789 was verified.'],
    ['ssn', 'SSN: 123456789'],
    ['ssn', 'Social Security number is 123 45 6789.'],
    ['ssn', 'SS# 234-56-7890'],
    ['phone', 'Call (617) 555-0142 with results.'],
    ['phone', 'Call 617-555-0142 with results.'],
    ['phone', 'Call 617.555.0142 with results.'],
    ['phone', 'Call +1 617 555 0142 with results.'],
    ['phone', 'Call +16175550142 with results.'],
    ['phone', 'Call 1-617-555-0142 with results.'],
    ['phone', 'Phone: 6175550142'],
    ['phone', 'cell 16175550142'],
    ['phone', 'Fax number is 555-0142.'],
    ['email', 'Contact jane.doe+clinic@example.org.'],
    ['email', 'Email: <r.smith42@mail.example.com>'],
    ['mrn', 'MRN: 00123456'],
    ['mrn', 'MR# A1234567'],
    ['mrn', 'Medical record number: 4455667'],
    ['mrn', 'Chart #: 77-31-90'],
    ['mrn', 'Account number 998877665'],
    ['mrn', 'Patient ID: PT-204918'],
    ['date_of_birth', 'DOB: 03/04/1950'],
    ['date_of_birth', 'D.O.B. 3-4-50'],
    ['date_of_birth', 'Date of birth is 1950-03-04.'],
    ['date_of_birth', 'He was born on October 31, 2008.'],
    ['date_of_birth', 'Birth date: 4 March 1950'],
    ['date_of_birth', 'DOB 25/12/1961'],
    ['medicare_id', 'MBI 1EG4-TE5-MK73'],
    ['medicare_id', 'Medicare 1EG4TE5MK73 active.'],
    ['credit_card', 'Card 4111 1111 1111 1111 on file.'],
    ['credit_card', 'Card 4111-1111-1111-1111 on file.'],
    ['credit_card', 'Card 378282246310005 on file.'],
    ['ip_address', 'Portal login from 192.168.10.24 failed.'],
    ['street_address', 'Lives at 42 Elm Street with her son.'],
    ['street_address', 'Lives at 1600 N Maple Ave.'],
    ['street_address', 'Lives at 7 Oak Hill Rd in town.'],
    ['zip_plus4', 'Boston MA 02139-4307'],
  ];
  for (const [kind, text] of cases) {
    void test(`${kind}: ${text}`, () => {
      assertSingle(text, kind);
    });
  }

  void test('counts repeated values', () => {
    const result = screenForPhi('Call 617-555-0142 or 617-555-0199 617-555-0123.');
    assert.equal(countOf(result, 'phone'), 3);
    assert.equal(result.total, 3);
  });

  void test('reports mixed kinds in fixed order', () => {
    const result = screenForPhi(
      'DOB: 1/2/1960. MRN: 5566778. SSN 123-45-6789. Email a.b@example.com, cell (617) 555-0142.',
    );
    assert.deepEqual(result.findings, [
      { kind: 'email', count: 1 },
      { kind: 'ssn', count: 1 },
      { kind: 'phone', count: 1 },
      { kind: 'date_of_birth', count: 1 },
      { kind: 'mrn', count: 1 },
    ]);
    assert.equal(result.total, 5);
  });

  void test('counts labeled SSN once', () => {
    const result = screenForPhi('SSN: 123-45-6789');
    assert.deepEqual(result.findings, [{ kind: 'ssn', count: 1 }]);
  });

  void test('counts MRN shaped like SSN once', () => {
    const result = screenForPhi('MRN: 123-45-6789');
    assert.equal(result.total, 1);
  });
});

void describe('screenForPhi negative cases', () => {
  const cases: [string, string][] = [
    ['lab values', 'Sodium 140, potassium 4.1, creatinine 1.02, WBC 7.8, platelets 245,000.'],
    ['date of service', 'Date of service: 03/14/2024. Admitted 3/14/2024, discharged 03/18/2024.'],
    ['dosages', 'Metoprolol 25 mg p.o. b.i.d., insulin 10 units, 10 mg daily.'],
    ['times', 'Seen at 10:30 and again at 14:45 on 2024-03-14.'],
    ['accession number', 'Accession number 6175550142 received.'],
    ['order number', 'Order #: 2125550199 placed.'],
    ['bare 10 digits', 'Specimen 4155550142 sent to pathology.'],
    ['bare 9 digits', 'Serial #: 123456789.'],
    ['ICD-10 codes', 'Diagnoses J45.909, E11.65, I10 and Z79.4.'],
    ['vital signs', 'BP 120/80, HR 72, SpO2 98%, temp 98.6, RR 16.'],
    ['pH', 'Arterial pH 7.35, pCO2 40.'],
    ['SSN area 000', 'SSN 000-12-3456'],
    ['SSN area 666', 'SSN 666-12-3456'],
    ['SSN area 9xx', 'SSN 912-34-5678'],
    ['SSN group 00', 'SSN 123-00-4567'],
    ['SSN serial 0000', 'SSN 123-45-0000'],
    ['SSN inside longer code', 'Lot 1123-45-6789 expired.'],
    ['phone area starting 1', 'Call 123-456-7890.'],
    ['phone exchange starting 1', 'Call 617-155-0142.'],
    ['phone area starting 0', 'Call 017-555-0142.'],
    ['phone mixed separators', 'Ratio 617-555.0142 recorded.'],
    ['card failing Luhn', 'Card 4111 1111 1111 1112.'],
    ['card digit list', 'Scores 3 3 4 4 3 4 1 1 3 3 4 4 3 4 1 1.'],
    ['invalid IPv4 octet', 'Value 256.1.1.1 and 1.2.3 noted.'],
    ['NDC code', 'NDC 12345-6789-01 dispensed.'],
    ['MRN placeholder', 'RE: XXXX, XXXX, MR#: 0000000, Dear Dr. XYZ.'],
    ['MRN without value', 'Medical record number, weight and allergies were reviewed.'],
    ['MRN pending', 'MRN: pending'],
    ['DOB placeholder', 'DOB: MM/DD/YYYY'],
    ['born without date', 'She was born at 38 weeks, born in 1950.'],
    ['DOB invalid date', 'DOB: 13/25/1950'],
    ['MBI with excluded letter', 'ID 1SG4-TE5-MK73 listed.'],
    ['MBI in lowercase', 'ID 1eg4-te5-mk73 listed.'],
    ['email without domain', 'Weight @ 70 kg, follow-up @clinic.'],
    ['lowercase street words', 'Walked 42 feet down the hall to the drive.'],
    ['section numbering', 'See section 4.2 and figure 3.1.'],
  ];
  for (const [name, text] of cases) {
    void test(name, () => {
      assertClean(text);
    });
  }
});

void describe('screenForPhi result contents', () => {
  const values = [
    '123-45-6789',
    '(617) 555-0142',
    'jane.doe@example.org',
    'A1234567',
    '03/04/1950',
    '1EG4-TE5-MK73',
    '4111 1111 1111 1111',
    '192.168.10.24',
    '42 Elm Street',
    '02139-4307',
  ];
  const text =
    `SSN ${values[0]}, phone ${values[1]}, email ${values[2]}, MRN: ${values[3]}, ` +
    `DOB: ${values[4]}, MBI ${values[5]}, card ${values[6]}, IP ${values[7]}, ` +
    `address ${values[8]}, ZIP ${values[9]}.`;
  const result = screenForPhi(text);

  void test('finds every kind', () => {
    assert.equal(result.findings.length, 10);
    assert.equal(result.total, 10);
  });

  for (const value of values) {
    void test(`omits value ${value}`, () => {
      assert.ok(!JSON.stringify(result).includes(value));
    });
  }

  void test('has only kind and count keys', () => {
    for (const finding of result.findings) {
      assert.deepEqual(Object.keys(finding).sort(), ['count', 'kind']);
    }
    assert.deepEqual(Object.keys(result).sort(), ['findings', 'total']);
  });
});

void describe('screenForPhi performance', () => {
  /** Returns the shortest of three timings of screenForPhi(input), in ms. */
  function fastestRun(input: string): number {
    let best = Infinity;
    for (let run = 0; run < 3; run++) {
      const started = performance.now();
      screenForPhi(input);
      best = Math.min(best, performance.now() - started);
    }
    return best;
  }

  void test('screening time grows linearly', () => {
    // Each unit is repeated to 10 KB and to 100 KB. Linear screening takes about 10 times as
    // long on the larger input, and quadratic screening about 100 times. A ratio, not a time
    // bound, so a slow or busy machine does not fail the test.
    const units = ['1', 'a@', '1.', '123 ', 'DOB: 1/', 'MRN: A-', '12 Elm Oak Pine Ash '];
    const inputs: [string, string][] = units.map((unit) => [
      unit.repeat(Math.ceil(10_000 / unit.length)),
      unit.repeat(Math.ceil(100_000 / unit.length)),
    ]);
    inputs.push(['a'.repeat(10_000) + '@example.com', 'a'.repeat(100_000) + '@example.com']);
    for (const [small, large] of inputs) {
      screenForPhi(large); // compile the patterns before timing
      const smallMs = fastestRun(small);
      const largeMs = fastestRun(large);
      // Below 20 ms the ratio is mostly timer and cache noise; quadratic 100 KB takes seconds.
      assert.ok(
        largeMs < 20 || largeMs / Math.max(smallMs, 0.05) < 40,
        `${large.slice(0, 12)}...: ${smallMs.toFixed(2)} ms for 10 KB, ${largeMs.toFixed(2)} ms for 100 KB`,
      );
    }
  });
});

// ---------------------------------------------------------------------------------------
// Real corpus: de-identified MTSamples transcriptions

interface CorpusNote {
  note_id: number;
  text: string;
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const dataDir = resolve(repoRoot, process.env['CDIL_REFERENCE_DATA'] ?? '../shared/data');
const corpusPath = resolve(dataDir, 'mtsamples/notes.jsonl.gz');
const corpusMissing = existsSync(corpusPath)
  ? false
  : `reference corpus not found at ${corpusPath}; set CDIL_REFERENCE_DATA to the data folder`;

function loadCorpus(): CorpusNote[] {
  const lines = gunzipSync(readFileSync(corpusPath)).toString('utf8').split('\n');
  return lines.filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as CorpusNote);
}

/**
 * Corpus notes that contain a value of the flagged kind, checked by reading them. Notes 1791
 * and 4170 give a counseling service phone number, and 2188 and 3909 a 7-digit fax number
 * after "fax number is". Notes 1922 and 4266 give a birth date in a birth history, and 2851
 * and 4296 the birth date of the patient's son. Each pair is one note published twice.
 */
const REVIEWED_CORPUS_HITS = new Map<number, PhiKind>([
  [1791, 'phone'],
  [4170, 'phone'],
  [2188, 'phone'],
  [3909, 'phone'],
  [1922, 'date_of_birth'],
  [4266, 'date_of_birth'],
  [2851, 'date_of_birth'],
  [4296, 'date_of_birth'],
]);

const BARE_TEN_DIGITS = /\b\d{10}\b/;

// Unlabelled shapes a naive screen would flag: any M/D/Y date, 7- to 10-digit runs, and
// NNN-NN-NNNN or NNN-NNN-NNNN numbers.
const NAIVE_PATTERN =
  /\b\d{1,2}\/\d{1,2}\/\d{2,4}\b|\b\d{7,10}\b|\b\d{3}-\d{2}-\d{4}\b|\b\d{3}[-. ]\d{3}[-. ]\d{4}\b/;

/** Deterministic PRNG (mulberry32), so a failing insertion can be reproduced. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Random = () => number;

function randomInt(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

function pick<T>(random: Random, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  assert.ok(item !== undefined);
  return item;
}

function digits(random: Random, length: number): string {
  let out = '';
  for (let i = 0; i < length; i += 1) {
    out += String(randomInt(random, 0, 9));
  }
  return out;
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, '0');
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August'];

function syntheticSsn(random: Random): string {
  let area = randomInt(random, 1, 899);
  if (area === 666) {
    area = 667;
  }
  const parts = [
    pad(area, 3),
    pad(randomInt(random, 1, 99), 2),
    pad(randomInt(random, 1, 9999), 4),
  ];
  return pick(random, [
    `SSN: ${parts.join('-')}`,
    `Social Security number ${parts.join('')}`,
    `SSN ${parts.join(' ')}`,
    `SS# is ${parts.join('-')}`,
    `identifier ${parts.join('-')} confirmed`,
  ]);
}

function syntheticPhone(random: Random): string {
  const area = `${randomInt(random, 2, 9)}${digits(random, 2)}`;
  const exchange = `${randomInt(random, 2, 9)}${digits(random, 2)}`;
  const line = digits(random, 4);
  return pick(random, [
    `Call (${area}) ${exchange}-${line}`,
    `Call ${area}-${exchange}-${line}`,
    `Call ${area}.${exchange}.${line}`,
    `Call +1 ${area} ${exchange} ${line}`,
    `Call +1-${area}-${exchange}-${line}`,
    `cell: ${area}${exchange}${line}`,
    `Phone 1${area}${exchange}${line}`,
  ]);
}

function syntheticEmail(random: Random): string {
  const local = pick(random, ['jdoe', 'mary.smith', 'pt_4471', 'r.k+notes', 'alex-lee']);
  const domain = pick(random, ['example.org', 'example.com', 'mail.example.net']);
  return pick(random, [
    `email: ${local}${digits(random, 2)}@${domain}`,
    `reach her at <${local}@${domain}>`,
    `(${local}@${domain})`,
  ]);
}

function syntheticMrn(random: Random): string {
  const value = pick(random, [
    digits(random, randomInt(random, 6, 10)),
    `A${digits(random, 7)}`,
    `${digits(random, 2)}-${digits(random, 3)}-${digits(random, 3)}`,
  ]);
  const label = pick(random, [
    'MRN:',
    'MRN',
    'MR#:',
    'Medical record number:',
    'Medical Record #',
    'Chart number:',
    'Account number',
    'Acct #:',
    'Patient ID:',
  ]);
  return `${label} ${value}`;
}

function syntheticDateOfBirth(random: Random): string {
  const year = randomInt(random, 1925, 2020);
  const month = randomInt(random, 1, 8);
  const day = randomInt(random, 1, 28);
  const monthName = MONTHS[month - 1] ?? 'March';
  const date = pick(random, [
    `${month}/${day}/${year}`,
    `${pad(month, 2)}/${pad(day, 2)}/${pad(year % 100, 2)}`,
    `${year}-${pad(month, 2)}-${pad(day, 2)}`,
    `${monthName} ${day}, ${year}`,
    `${day} ${monthName} ${year}`,
  ]);
  const label = pick(random, [
    'DOB:',
    'DOB',
    'D.O.B.',
    'Date of birth:',
    'date of birth is',
    'born on',
  ]);
  return `${label} ${date}`;
}

function syntheticMedicareId(random: Random): string {
  const alpha = 'ACDEFGHJKMNPQRTUVWXY';
  const letter = (): string => pick(random, alpha.split(''));
  const id =
    `${randomInt(random, 1, 9)}${letter()}${letter()}${digits(random, 1)}` +
    `${letter()}${digits(random, 1)}${digits(random, 1)}` +
    `${letter()}${letter()}${digits(random, 2)}`;
  return random() < 0.5 ? `MBI ${id}` : `MBI ${id.slice(0, 4)}-${id.slice(4, 7)}-${id.slice(7)}`;
}

function syntheticCardNumber(random: Random): string {
  const body = `4${digits(random, 14)}`;
  let sum = 0;
  for (let i = 0; i < body.length; i += 1) {
    // The check digit is appended, so the last body digit is doubled.
    let digit = Number(body[body.length - 1 - i]);
    if (i % 2 === 0) {
      digit *= 2;
      if (digit > 9) {
        digit -= 9;
      }
    }
    sum += digit;
  }
  const number = body + String((10 - (sum % 10)) % 10);
  const groups = number.match(/\d{4}/g) ?? [];
  return pick(random, [`card ${number}`, `card ${groups.join(' ')}`, `card ${groups.join('-')}`]);
}

function syntheticIpAddress(random: Random): string {
  const octets = [randomInt(random, 1, 223), randomInt(random, 0, 255), randomInt(random, 0, 255)];
  return `login from ${octets.join('.')}.${randomInt(random, 1, 254)}`;
}

function syntheticStreetAddress(random: Random): string {
  const street = pick(random, ['Elm', 'Maple', 'Oak Hill', 'Cedar Ridge', 'Washington']);
  const suffix = pick(random, ['Street', 'St', 'Avenue', 'Ave', 'Road', 'Blvd', 'Lane', 'Drive']);
  return `lives at ${randomInt(random, 1, 9999)} ${street} ${suffix}`;
}

function syntheticZipPlus4(random: Random): string {
  return `Springfield ${pad(randomInt(random, 1001, 99950), 5)}-${digits(random, 4)}`;
}

/** Inserts `phrase` as a sentence after a random sentence end of `text`. */
function insertSentence(random: Random, text: string, phrase: string): string {
  const boundaries: number[] = [];
  for (const match of text.matchAll(/\.(?=\s)/g)) {
    boundaries.push(match.index + 1);
  }
  const at = boundaries.length > 0 ? pick(random, boundaries) : text.length;
  return `${text.slice(0, at)} ${phrase}.${text.slice(at)}`;
}

type Generator = (random: Random) => string;

/**
 * Inserts one value of each kind into `sampleSize` corpus notes and returns, per kind, how
 * many notes show one more finding of that kind than before the insertion.
 */
function measureInsertionRecall(
  notes: CorpusNote[],
  generators: Map<PhiKind, Generator>,
  sampleSize: number,
  seed: number,
): Map<PhiKind, { detected: number; missed: string[] }> {
  const random = createRandom(seed);
  const stride = Math.floor(notes.length / sampleSize);
  const outcome = new Map<PhiKind, { detected: number; missed: string[] }>();
  for (const kind of generators.keys()) {
    outcome.set(kind, { detected: 0, missed: [] });
  }

  for (let i = 0; i < sampleSize; i += 1) {
    const note = notes[i * stride];
    assert.ok(note !== undefined);
    const before = screenForPhi(note.text);
    let text = note.text;
    const phrases = new Map<PhiKind, string>();
    for (const [kind, generate] of generators) {
      const phrase = generate(random);
      phrases.set(kind, phrase);
      text = insertSentence(random, text, phrase);
    }

    const after = screenForPhi(text);
    for (const [kind, tally] of outcome) {
      if (countOf(after, kind) === countOf(before, kind) + 1) {
        tally.detected += 1;
      } else {
        tally.missed.push(`note ${note.note_id}: ${phrases.get(kind)}`);
      }
    }
  }
  return outcome;
}

void describe('screenForPhi on the MTSamples corpus', { skip: corpusMissing }, () => {
  const notes = corpusMissing === false ? loadCorpus() : [];
  const sampleSize = 200;

  void test('flags no unreviewed notes', () => {
    let screenerFlagged = 0;
    let bareFlagged = 0;
    let naiveFlagged = 0;
    const unreviewed: string[] = [];
    for (const note of notes) {
      const result = screenForPhi(note.text);
      if (result.total > 0) {
        screenerFlagged += 1;
        const reviewedKind = REVIEWED_CORPUS_HITS.get(note.note_id);
        const kinds = result.findings.map((finding) => finding.kind);
        if (reviewedKind === undefined || kinds.length !== 1 || kinds[0] !== reviewedKind) {
          unreviewed.push(`note ${note.note_id}: ${kinds.join(', ')}`);
        }
      }
      if (BARE_TEN_DIGITS.test(note.text)) {
        bareFlagged += 1;
      }
      if (NAIVE_PATTERN.test(note.text)) {
        naiveFlagged += 1;
      }
    }

    const falsePositives = unreviewed.length;
    console.log(
      `corpus: ${notes.length} notes; screener flagged ${screenerFlagged} ` +
        `(${falsePositives} outside the reviewed hits); bare 10-digit pattern flagged ` +
        `${bareFlagged}; naive unlabelled patterns flagged ${naiveFlagged}`,
    );
    assert.ok(notes.length > 4000, `corpus has only ${notes.length} notes`);
    assert.deepEqual(unreviewed, [], 'notes flagged outside the reviewed hits');
    assert.ok(falsePositives <= bareFlagged, 'more false positives than a bare 10-digit pattern');
    assert.ok(screenerFlagged <= notes.length * 0.01, `${screenerFlagged} notes flagged`);
    assert.ok(screenerFlagged < naiveFlagged, 'screener flags as many notes as naive patterns');
  });

  void test('flags every reviewed hit', () => {
    for (const [noteId, kind] of REVIEWED_CORPUS_HITS) {
      const note = notes.find((candidate) => candidate.note_id === noteId);
      assert.ok(note !== undefined, `note ${noteId} not found`);
      assert.equal(countOf(screenForPhi(note.text), kind), 1, `note ${noteId} ${kind}`);
    }
  });

  void test('ignores labelled non-PHI 10-digit numbers', () => {
    const random = createRandom(7);
    const stride = Math.floor(notes.length / sampleSize);
    let bareFlagged = 0;
    let screenerFlagged = 0;
    for (let i = 0; i < sampleSize; i += 1) {
      const note = notes[i * stride];
      assert.ok(note !== undefined);
      const label = pick(random, ['Accession number', 'Order #', 'Specimen', 'Lot', 'NPI']);
      const phrase = `${label} ${randomInt(random, 2, 9)}${digits(random, 9)}`;
      const text = insertSentence(random, note.text, phrase);
      if (BARE_TEN_DIGITS.test(text)) {
        bareFlagged += 1;
      }
      if (screenForPhi(text).total > screenForPhi(note.text).total) {
        screenerFlagged += 1;
      }
    }
    console.log(
      `non-PHI 10-digit numbers in ${sampleSize} notes: bare pattern flagged ${bareFlagged}, ` +
        `screener flagged ${screenerFlagged}`,
    );
    assert.equal(bareFlagged, sampleSize);
    assert.equal(screenerFlagged, 0);
  });

  void test('detects inserted SSN, phone, email, MRN, DOB', () => {
    const generators = new Map<PhiKind, Generator>([
      ['ssn', syntheticSsn],
      ['phone', syntheticPhone],
      ['email', syntheticEmail],
      ['mrn', syntheticMrn],
      ['date_of_birth', syntheticDateOfBirth],
    ]);
    const outcome = measureInsertionRecall(notes, generators, sampleSize, 20240314);
    for (const [kind, tally] of outcome) {
      console.log(`inserted ${kind}: detected in ${tally.detected}/${sampleSize} notes`);
      assert.deepEqual(tally.missed, [], `${kind} missed`);
      assert.equal(tally.detected, sampleSize, kind);
    }
  });

  void test('detects inserted MBI, card, IP, address, ZIP+4', () => {
    const generators = new Map<PhiKind, Generator>([
      ['medicare_id', syntheticMedicareId],
      ['credit_card', syntheticCardNumber],
      ['ip_address', syntheticIpAddress],
      ['street_address', syntheticStreetAddress],
      ['zip_plus4', syntheticZipPlus4],
    ]);
    const outcome = measureInsertionRecall(notes, generators, sampleSize, 1950);
    for (const [kind, tally] of outcome) {
      console.log(`inserted ${kind}: detected in ${tally.detected}/${sampleSize} notes`);
      assert.deepEqual(tally.missed, [], `${kind} missed`);
      assert.equal(tally.detected, sampleSize, kind);
    }
  });
});

// ---------------------------------------------------------------------------------------
// Agreement with the full-text reference. screenForPhi tries each pattern only at candidate
// positions, and these tests check that it returns what a global scan over the whole text
// returns.

void describe('screenForPhi at the longest label reach', () => {
  // The first digit of each value lies as far after the start of its label as the patterns
  // allow: the longest label, the longest gap and the latest first digit of the value.
  const cases: [PhiKind, string][] = [
    ['mrn', 'Seen. Medical.   records.   number   was   ABCDEFGHIJKLMNOPQRS1 today.'],
    ['ssn', 'Seen. Social.   security.   number   was   123-45-6789 today.'],
    ['date_of_birth', 'Seen. Date   of   birth   number   was   September.   4, 1950 today.'],
    ['date_of_birth', 'Seen. Date   of   birth   number   was   04th   September.,   1950.'],
    ['phone', 'Seen. Cellphone   number   was   +16175550142 today.'],
  ];
  for (const [kind, text] of cases) {
    void test(`${kind}: ${text}`, () => {
      assertSingle(text, kind);
      assert.deepEqual(screenForPhiReference(text), screenForPhi(text));
    });
  }
});

const LABELS = [
  'SSN',
  'SS#',
  'SS No.',
  'social security',
  'Soc.   Sec.',
  'phone',
  'Tel.',
  'ph',
  'cellphone',
  'fax',
  'pager',
  'DOB',
  'D.O.B.',
  'date of birth',
  'birth date',
  'born on',
  'MRN',
  'MR #',
  'MR no.',
  'medical records',
  'Med. rec.',
  'chart',
  'Acct.',
  'account',
  'patient ID',
  'accession',
  'order',
];

const GAPS = ['', ' ', ': ', ' #', ' number ', ' no. ', '   number   was   ', ' is ', ' = ', '-'];

const MONTH_FORMS = ['Jan', 'February', 'mar.', 'MAY', 'June', 'Sept', 'September.', 'Junk'];

const FILLER = ['the', 'Patient', 'was', 'seen', 'mg', '1.5', '120/80', 'x', '(', '-', '#'];

const SEPARATORS = [' ', '  ', ', ', '. ', '\n', '\t', '\u00a0', '/', '-', '('];

function randomCase(random: Random, text: string): string {
  let out = '';
  for (const character of text) {
    out += random() < 0.5 ? character.toLowerCase() : character.toUpperCase();
  }
  return out;
}

/** Values in and near the formats of every kind, including many that must not match. */
function randomValue(random: Random): string {
  const area = `${randomInt(random, 0, 9)}${digits(random, 2)}`;
  const exchange = `${randomInt(random, 0, 9)}${digits(random, 2)}`;
  const separator = (): string => pick(random, ['', ' ', '-', '.']);
  const month = (): string => randomCase(random, pick(random, MONTH_FORMS));
  const generators: (() => string)[] = [
    () => digits(random, randomInt(random, 1, 20)),
    () => `${area}${separator()}${digits(random, 2)}${separator()}${digits(random, 4)}`,
    () => `${area}${separator()}${exchange}${separator()}${digits(random, 4)}`,
    () =>
      `${pick(random, ['+1', '+1 ', '1-', '1 ', '+'])}(${area}) ${exchange}-${digits(random, 4)}`,
    () => `${exchange}${separator()}${digits(random, 4)}`,
    () => `${randomInt(random, 0, 13)}/${randomInt(random, 0, 32)}/${digits(random, 2)}`,
    () => `${randomInt(random, 1890, 2030)}-${digits(random, 2)}-${digits(random, 2)}`,
    () =>
      `${month()} ${randomInt(random, 0, 40)}${pick(random, ['', 'st', 'TH'])}, ${digits(random, 4)}`,
    () => `${randomInt(random, 0, 40)}${pick(random, ['', 'nd'])} ${month()} ${digits(random, 4)}`,
    () =>
      `${pick(random, ['', 'A', 'PT-', 'ABCDEFGHIJKLMNOPQRS'])}${digits(random, randomInt(random, 1, 8))}`,
    () => '0'.repeat(randomInt(random, 4, 9)),
    () => `${randomInt(random, 1, 9)}EG4${separator()}TE5${separator()}MK${digits(random, 2)}`,
    () => `${randomInt(random, 2, 6)}${digits(random, randomInt(random, 12, 18))}`,
    () => `${digits(random, 4)} ${digits(random, 4)} ${digits(random, 4)} ${digits(random, 4)}`,
    () =>
      `${randomInt(random, 0, 300)}.${randomInt(random, 0, 300)}.${randomInt(random, 0, 300)}.${randomInt(random, 0, 300)}`,
    () =>
      `${randomInt(random, 1, 99999)} ${pick(random, ['N ', ''])}Oak Hill ${pick(random, ['St', 'Ave', 'Way', 'st'])}`,
    () => `${digits(random, 5)}-${digits(random, 4)}${pick(random, ['', '-12'])}`,
    () => `${pick(random, ['jane.doe', '.x'])}@${pick(random, ['example.org', 'x', 'a-b.co.'])}`,
  ];
  return pick(random, generators)();
}

/** Builds a text of label, gap and value triples, bare values and filler words. */
function randomLabelledText(random: Random): string {
  const parts: string[] = [];
  const count = randomInt(random, 1, 30);
  for (let i = 0; i < count; i += 1) {
    const roll = random();
    if (roll < 0.4) {
      const label = randomCase(random, pick(random, LABELS));
      parts.push(`${label}${pick(random, GAPS)}${randomValue(random)}`);
    } else if (roll < 0.7) {
      parts.push(randomValue(random));
    } else {
      parts.push(pick(random, FILLER));
    }
    parts.push(pick(random, SEPARATORS));
  }
  return parts.join('');
}

void describe('screenForPhi against the full-text reference', () => {
  void test('agrees on generated labelled texts', () => {
    const random = createRandom(4242);
    let textsWithFindings = 0;
    for (let i = 0; i < 20_000; i += 1) {
      const text = randomLabelledText(random);
      const expected = screenForPhiReference(text);
      assert.deepEqual(screenForPhi(text), expected, `text ${JSON.stringify(text)}`);
      if (expected.total > 0) {
        textsWithFindings += 1;
      }
    }
    // The generated texts must exercise the patterns, not only agree on finding nothing.
    assert.ok(textsWithFindings > 10_000, `${textsWithFindings} texts with findings`);
  });

  void test('agrees on the adversarial inputs', () => {
    const size = 10_000;
    const inputs = [
      '1'.repeat(size),
      '1.'.repeat(size / 2),
      '123 '.repeat(size / 4),
      'DOB: 1/'.repeat(size / 7),
      'MRN: A1'.repeat(size / 7),
      '12 Elm Oak Pine Ash '.repeat(size / 20),
      'Phone 617-555-0142 '.repeat(size / 19),
    ];
    for (const input of inputs) {
      assert.deepEqual(screenForPhi(input), screenForPhiReference(input), input.slice(0, 20));
    }
  });
});

void describe('screenForPhi against the reference on the corpus', { skip: corpusMissing }, () => {
  const notes = corpusMissing === false ? loadCorpus() : [];

  void test('agrees on every corpus note', () => {
    assert.ok(notes.length > 4000, `corpus has only ${notes.length} notes`);
    for (const note of notes) {
      const expected = screenForPhiReference(note.text);
      assert.deepEqual(screenForPhi(note.text), expected, `note ${note.note_id}`);
    }
  });

  void test('agrees on corpus notes with inserted values', () => {
    const random = createRandom(1234);
    for (const note of notes) {
      let text = note.text;
      for (let i = 0; i < 5; i += 1) {
        text = insertSentence(random, text, randomLabelledText(random));
      }
      const expected = screenForPhiReference(text);
      assert.deepEqual(screenForPhi(text), expected, `note ${note.note_id}`);
    }
  });
});
