import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectSections, headingKind } from '../../src/scoring/sections.ts';
import { splitSentences } from '../../src/scoring/sentences.ts';

const corpusStyle =
  'SUBJECTIVE:,  This 23-year-old white female presents with complaint of allergies.,MEDICATIONS: , Her only medication currently is Ortho Tri-Cyclen.,ASSESSMENT:,  Allergic rhinitis.,PLAN:,1.  She will try Zyrtec instead of Allegra again.';

test('detects corpus HEADING:, form', () => {
  const sections = detectSections(corpusStyle);
  assert.deepEqual(
    sections.map((section) => section.kind),
    ['history_of_present_illness', 'medications', 'assessment', 'plan'],
  );
  const assessment = sections[2];
  assert.ok(assessment !== undefined);
  assert.equal(corpusStyle.slice(assessment.start, assessment.start + 11), 'ASSESSMENT:');
  assert.equal(corpusStyle.slice(assessment.bodyStart, assessment.end), 'Allergic rhinitis.,');
});

test('detects headings at line start', () => {
  const text =
    'Chief Complaint: cough\nHPI: two days of cough.\nAssessment and Plan: bronchitis.\n';
  const kinds = detectSections(text).map((section) => section.kind);
  assert.deepEqual(kinds, ['chief_complaint', 'history_of_present_illness', 'assessment_and_plan']);
});

test('sections cover text without gaps', () => {
  const sections = detectSections(corpusStyle);
  assert.equal(sections[0]?.start, 0);
  assert.equal(sections.at(-1)?.end, corpusStyle.length);
  for (let i = 1; i < sections.length; i++) {
    assert.equal(sections[i]?.start, sections[i - 1]?.end);
  }
});

test('exam sub-headings stay in exam', () => {
  const text = 'PHYSICAL EXAMINATION:,HEENT:  Normal.,LUNGS:  Clear.,IMPRESSION:,  Bronchitis.';
  const kinds = detectSections(text).map((section) => section.kind);
  assert.deepEqual(kinds, ['physical_exam', 'impression']);
});

test('times are not headings', () => {
  assert.deepEqual(
    detectSections('Seen at 10:30 today.').map((section) => section.kind),
    ['preamble'],
  );
});

test('heading aliases map to kinds', () => {
  assert.equal(headingKind('PMH'), 'past_medical_history');
  assert.equal(headingKind('A/P'), 'assessment_and_plan');
  assert.equal(headingKind('Family History'), 'family_history');
  assert.equal(headingKind('LABORATORY DATA'), 'labs');
  assert.equal(headingKind('DISCHARGE DIAGNOSES'), 'diagnoses');
  assert.equal(headingKind('Obstetric History'), 'past_medical_history');
  assert.equal(headingKind('Lungs'), undefined);
});

test('sentences carry exact offsets', () => {
  const sections = detectSections(corpusStyle);
  const sentences = splitSentences(corpusStyle, sections);
  const texts = sentences.map((sentence) => corpusStyle.slice(sentence.start, sentence.end));
  assert.ok(texts.includes('Allergic rhinitis.'), texts.join(' | '));
  assert.ok(texts.includes('1.  She will try Zyrtec instead of Allegra again.'), texts.join(' | '));
  assert.ok(texts.includes('ASSESSMENT:'), texts.join(' | '));
});

test('abbreviations do not end sentences', () => {
  const text = 'Seen by Dr. Smith today. Metformin 500 mg p.o. b.i.d. was started.';
  const texts = splitSentences(text).map((sentence) => text.slice(sentence.start, sentence.end));
  assert.deepEqual(texts, [
    'Seen by Dr. Smith today.',
    'Metformin 500 mg p.o. b.i.d. was started.',
  ]);
});
