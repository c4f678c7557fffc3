// Measures the cost per request of parsing an issuance body: UTF-8 decoding plus parseJsonBody
// (JSON.parse, the prototype-key check and the duplicate-key check), against UTF-8 decoding plus
// Fastify's default JSON parser (secure-json-parse) and plain JSON.parse. Notes are generated text with
// line breaks, quotes, backslashes and non-ASCII letters, so the string scan meets escapes.
// Run: node --import tsx bench/json-body.ts [--rounds 7] [--parses 100000]
import { parseArgs } from 'node:util';
import Fastify from 'fastify';

import { parseJsonBody } from '../src/server/request-body.ts';

const { values: options } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    parses: { type: 'string', default: '100000' },
  },
});
const ROUNDS = Number(options.rounds);
const PARSES = Number(options.parses);
const DISTINCT_BODIES = 256;

const SENTENCES = [
  'Patient reports "intermittent" chest pain for 3 days, worse on exertion.',
  'Denies fever, chills, nausea; appetite is normal.',
  'BP 132/84, HR 78, SpO2 98% on room air. Lungs clear: no wheezes.',
  'Assessment: atypical chest pain; rule out angina. Path C:\\notes\\today.',
  'Plan: ECG, troponin x2, follow-up in 1 week. Naïve to β-blockers.',
];

/** Builds note text of about `characters` characters from the sentences above. */
function noteOf(characters: number, seed: number): string {
  const lines: string[] = [];
  let length = 0;
  for (let i = seed; length < characters; i += 1) {
    const sentence = SENTENCES[i % SENTENCES.length]!;
    lines.push(sentence);
    length += sentence.length + 1;
  }
  return lines.join('\n').slice(0, characters);
}

function bodiesOf(noteCharacters: number): Buffer[] {
  const bodies: Buffer[] = [];
  for (let i = 0; i < DISTINCT_BODIES; i += 1) {
    const body = {
      model_name: 'bench-scribe',
      model_version: '2026.11',
      prompt_version: 'soap-v3',
      governance_policy_version: 'policy-2026-10',
      note_text: noteOf(noteCharacters, i),
      human_reviewed: true,
      human_reviewer_id: `reviewer-${i % 7}`,
      encounter_id: `enc-${i}`,
      patient_reference: `patient-${i}`,
    };
    bodies.push(Buffer.from(JSON.stringify(body)));
  }
  return bodies;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const fastifyParser = Fastify().getDefaultJsonParser('error', 'error');

/** Runs Fastify's default JSON parser, which calls back before it returns. */
function parseWithFastify(text: string): unknown {
  let result: unknown;
  void fastifyParser(undefined as never, text, (error, value) => {
    if (error) {
      throw error;
    }
    result = value;
  });
  return result;
}

const PARSERS: Record<string, (body: Buffer) => unknown> = {
  'JSON.parse only': (body) => JSON.parse(utf8.decode(body)) as unknown,
  'Fastify default': (body) => parseWithFastify(utf8.decode(body)),
  parseJsonBody: (body) => parseJsonBody(utf8.decode(body)),
};

/** Returns microseconds per parse over `count` parses of the bodies, in turn. */
function timeParses(parse: (body: Buffer) => unknown, bodies: Buffer[], count: number): number {
  let checked = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i += 1) {
    const value = parse(bodies[i % bodies.length]!) as { human_reviewed: boolean };
    checked += value.human_reviewed ? 1 : 0;
  }
  const elapsedNs = Number(process.hrtime.bigint() - started);
  if (checked !== count) {
    throw new Error(`a parse returned a wrong value (${checked} of ${count} checked)`);
  }
  return elapsedNs / count / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

console.log(`node ${process.version}, ${PARSES} parses per round, median of ${ROUNDS} rounds`);
for (const noteCharacters of [3_000, 200_000]) {
  const bodies = bodiesOf(noteCharacters);
  // Larger bodies get fewer parses, so each round takes about as long.
  const count = Math.max(100, Math.round((PARSES * 3_000) / noteCharacters));
  const samples: Record<string, number[]> = {};
  for (const name of Object.keys(PARSERS)) {
    samples[name] = [];
    // One untimed pass lets V8 optimize the parser.
    timeParses(PARSERS[name]!, bodies, count);
  }
  for (let round = 0; round < ROUNDS; round += 1) {
    // Alternating the parsers spreads machine noise over both.
    for (const [name, parse] of Object.entries(PARSERS)) {
      samples[name]!.push(timeParses(parse, bodies, count));
    }
  }
  const size = bodies[0]!.length;
  for (const [name, values] of Object.entries(samples)) {
    console.log(`${size} byte body  ${name.padEnd(16)} ${median(values).toFixed(2)} µs per parse`);
  }
}
