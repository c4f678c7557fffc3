// Measures the cost per issuance request of the display-field pattern. It tests the seven short
// fields of an issuance body against PRINTABLE_PATTERN, compiled with the u flag as Ajv
// compiles it. The baseline is the earlier pattern, which rejected only controls,
// bidirectional formatting characters and lone surrogates.
// Run: node --import tsx bench/display-fields.ts [--rounds 7] [--requests 1000000]
import { parseArgs } from 'node:util';

import { PRINTABLE_PATTERN } from '../src/server/schemas.ts';

const { values: options } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    requests: { type: 'string', default: '1000000' },
  },
});
const ROUNDS = Number(options.rounds);
const REQUESTS = Number(options.requests);

const EARLIER_PATTERN =
  '^[^\\u0000-\\u001f\\u007f-\\u009f\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069\\ud800-\\udfff]+$';

const PATTERNS: Record<string, RegExp> = {
  earlier: new RegExp(EARLIER_PATTERN, 'u'),
  current: new RegExp(PRINTABLE_PATTERN, 'u'),
};

/** The short fields of 64 issuance bodies, with identifiers of typical length. */
const REQUEST_FIELDS: string[][] = Array.from({ length: 64 }, (_, index) => [
  'bench-scribe',
  '2026.11',
  'soap-v3',
  'policy-2026-10',
  `reviewer-${index % 7}`,
  `enc-${100_000 + index}`,
  `patient-${200_000 + index}`,
]);

/** Returns microseconds per request of testing every short field of `REQUESTS` requests. */
function timeRequests(pattern: RegExp): number {
  let passed = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < REQUESTS; i += 1) {
    for (const field of REQUEST_FIELDS[i % REQUEST_FIELDS.length]!) {
      passed += pattern.test(field) ? 1 : 0;
    }
  }
  const elapsedNs = Number(process.hrtime.bigint() - started);
  if (passed !== REQUESTS * 7) {
    throw new Error(`a valid field failed the pattern (${passed} of ${REQUESTS * 7} passed)`);
  }
  return elapsedNs / REQUESTS / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const samples: Record<string, number[]> = {};
for (const [name, pattern] of Object.entries(PATTERNS)) {
  samples[name] = [];
  // One untimed pass lets V8 compile the regular expression.
  timeRequests(pattern);
}
for (let round = 0; round < ROUNDS; round += 1) {
  for (const [name, pattern] of Object.entries(PATTERNS)) {
    samples[name]!.push(timeRequests(pattern));
  }
}
console.log(`node ${process.version}, ${REQUESTS} requests per round, median of ${ROUNDS} rounds`);
for (const [name, values] of Object.entries(samples)) {
  console.log(`${name.padEnd(8)} pattern  ${median(values).toFixed(3)} µs per request (7 fields)`);
}
