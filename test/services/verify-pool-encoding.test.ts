// The encoding of worker replies in the verifier pool must give back exactly what a JSON round
// trip gives: the same values, the same key order, and the same treatment of undefined.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  decodeJsonValues,
  encodeJsonValues,
  type EncodedValues,
} from '../../src/services/verify-pool-encoding.ts';

function jsonRoundTrip(values: unknown[]): unknown {
  return JSON.parse(JSON.stringify(values));
}

function roundTrip(values: unknown[]): unknown[] {
  return decodeJsonValues(encodeJsonValues(values));
}

test('encoding round trip equals JSON round trip', () => {
  fc.assert(
    fc.property(fc.array(fc.jsonValue()), (values) => {
      const decoded = roundTrip(values);
      assert.deepEqual(decoded, jsonRoundTrip(values));
      // deepEqual ignores key order, but the JSON text does not.
      assert.equal(JSON.stringify(decoded), JSON.stringify(values));
    }),
    { numRuns: 2000 },
  );
});

test('encoding keeps key order and shares no state', () => {
  const values = [{ b: 1, a: [true, false, null], '': 'x', 10: 'ten', 2: 'two' }, 'b', 'a'];
  const decoded = roundTrip(values);
  assert.deepEqual(Object.keys(decoded[0] as object), ['2', '10', 'b', 'a', '']);
  assert.deepEqual(decoded, values);
  assert.notEqual(decoded[0], values[0]);
});

test('encoding follows JSON for undefined and non-finite numbers', () => {
  const values = [
    { kept: 1, dropped: undefined, code: undefined },
    [undefined, Number.NaN, Number.POSITIVE_INFINITY, -0, 1e21, 5e-324],
  ];
  const decoded = roundTrip(values);
  assert.deepEqual(decoded, jsonRoundTrip(values));
  assert.deepEqual(Object.keys(decoded[0] as object), ['kept']);
  assert.ok(Object.is((decoded[1] as number[])[3], 0));
});

test('encoding keeps __proto__ as an own property', () => {
  const values = JSON.parse('[{"__proto__": {"polluted": true}, "a": 1}]') as unknown[];
  const decoded = roundTrip(values);
  const object = decoded[0] as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(object), Object.prototype);
  assert.deepEqual(Object.keys(object), ['__proto__', 'a']);
  assert.deepEqual(Object.getOwnPropertyDescriptor(object, '__proto__')?.value, {
    polluted: true,
  });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('encoding sends each distinct string once', () => {
  const check = { check: 'signature', status: 'pass', detail: 'verifies' };
  const encoded = encodeJsonValues([check, { ...check }, { ...check, status: 'fail' }]);
  assert.deepEqual(encoded.strings.toSorted(), [
    'check',
    'detail',
    'fail',
    'pass',
    'signature',
    'status',
    'verifies',
  ]);
});

test('encoding rejects values JSON would change', () => {
  for (const value of [new Date(0), new Map(), () => 1, 1n, Symbol('s'), new (class Thing {})()]) {
    assert.throws(() => encodeJsonValues([value]), TypeError, String(typeof value));
  }
  assert.throws(() => encodeJsonValues([{ nested: [new Uint8Array(2)] }]), TypeError);
});

test('decoding rejects codes it did not write', () => {
  const good = encodeJsonValues([{ a: 'b' }, 'c']);
  const codes = [...new Int32Array(good.codes)];
  const broken: [string, EncodedValues, RegExp][] = [
    [
      'truncated',
      { strings: good.strings, codes: new Int32Array(codes.slice(0, -1)).buffer },
      /end in the middle/,
    ],
    ['missing strings', { strings: [], codes: good.codes }, /outside the string table/],
    [
      'unknown code',
      { strings: good.strings, codes: new Int32Array([-4, 1, -99]).buffer },
      /unknown value code -99/,
    ],
    [
      'trailing codes',
      { strings: good.strings, codes: new Int32Array([...codes, -1]).buffer },
      /not one array/,
    ],
    ['not an array', { strings: ['x'], codes: new Int32Array([0]).buffer }, /not one array/],
  ];
  for (const [name, encoded, message] of broken) {
    assert.throws(() => decodeJsonValues(encoded), message, name);
  }
});
