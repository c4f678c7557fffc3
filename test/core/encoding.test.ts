// Byte comparison, which switches to four bytes per step on longer inputs. It is checked
// against Buffer.equals on views at every alignment and on lengths around the switch. The
// table-driven base64 decoder is checked against the regular expression and atob it replaced,
// and the canonical spelling check against encoding the decoded bytes again.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { bytesEqual, fromBase64, isCanonicalBase64, toBase64 } from '../../src/core/encoding.ts';

test('bytesEqual agrees with Buffer.equals', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 200 }),
      fc.nat(3),
      fc.nat(3),
      fc.option(fc.nat(), { nil: undefined }),
      (bytes, offsetA, offsetB, flipAt) => {
        // Copies at different offsets of larger buffers, so the views are unaligned.
        const a = new Uint8Array(bytes.length + offsetA).subarray(offsetA);
        const b = new Uint8Array(bytes.length + offsetB).subarray(offsetB);
        a.set(bytes);
        b.set(bytes);
        if (flipAt !== undefined && bytes.length > 0) {
          b[flipAt % bytes.length]! ^= 0x80;
        }
        assert.equal(bytesEqual(a, b), Buffer.from(a).equals(Buffer.from(b)));
      },
    ),
    { numRuns: 2000 },
  );
});

test('bytesEqual finds a difference in every position', () => {
  for (const length of [63, 64, 65, 66, 67, 130]) {
    const a = new Uint8Array(length).fill(7);
    assert.equal(bytesEqual(a, new Uint8Array(a)), true, `length ${length}`);
    for (let i = 0; i < length; i++) {
      const b = new Uint8Array(a);
      b[i] = 8;
      assert.equal(bytesEqual(a, b), false, `length ${length}, index ${i}`);
    }
  }
});

test('bytesEqual rejects different lengths', () => {
  assert.equal(bytesEqual(new Uint8Array(64), new Uint8Array(65)), false);
  assert.equal(bytesEqual(new Uint8Array(0), new Uint8Array(0)), true);
});

/** Decodes base64 as fromBase64 did before its lookup table: a regular expression, then atob. */
function referenceFromBase64(text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    return undefined;
  }
  const binary = atob(text);
  return Uint8Array.from(binary, (character) => character.charCodeAt(0));
}

/** Characters that make up base64 text, near misses of it, and text of other kinds. */
const base64ishCharacter = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...'ABCXYZabcxyz0189+/') },
  { weight: 2, arbitrary: fc.constant('=') },
  {
    weight: 1,
    arbitrary: fc.constantFrom('-', '_', ' ', '\n', '.', '\u0000', '\u00c1', '\u0141', '\ud83d'),
  },
);

test('fromBase64 agrees with atob on near-base64 text', () => {
  fc.assert(
    fc.property(fc.array(base64ishCharacter, { maxLength: 24 }), (characters) => {
      const text = characters.join('');
      assert.deepEqual(fromBase64(text), referenceFromBase64(text), JSON.stringify(text));
    }),
    { numRuns: 20_000 },
  );
});

test('fromBase64 agrees with atob on mutated base64', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 80 }),
      fc.nat(),
      fc.constantFrom(...'AQgw/+=-_ \u00ff'),
      (bytes, position, replacement) => {
        const encoded = toBase64(bytes);
        const text =
          encoded.length === 0
            ? replacement
            : encoded.slice(0, position % encoded.length) +
              replacement +
              encoded.slice((position % encoded.length) + 1);
        assert.deepEqual(fromBase64(encoded), bytes);
        assert.deepEqual(fromBase64(text), referenceFromBase64(text), JSON.stringify(text));
      },
    ),
    { numRuns: 5_000 },
  );
});

test('fromBase64 decodes every padding form', () => {
  const cases: [string, number[] | undefined][] = [
    ['', []],
    ['AA==', [0]],
    ['AAA=', [0, 0]],
    ['AAAA', [0, 0, 0]],
    ['/w==', [255]],
    // Unused low bits of the last character are ignored, as atob does.
    ['/x==', [255]],
    ['//8=', [255, 255]],
    ['//9=', [255, 255]],
    ['A===', undefined],
    ['====', undefined],
    ['=AAA', undefined],
    ['A=AA', undefined],
    ['AA=A', undefined],
    ['AAAAA', undefined],
    ['AA', undefined],
    ['AA-_', undefined],
    ['AA\u00c1A', undefined],
  ];
  for (const [text, expected] of cases) {
    assert.deepEqual(
      fromBase64(text),
      expected === undefined ? undefined : new Uint8Array(expected),
      JSON.stringify(text),
    );
  }
});

test('isCanonicalBase64 agrees with encoding again', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 80 }),
      fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'),
      (bytes, replacement) => {
        const encoded = toBase64(bytes);
        assert.equal(isCanonicalBase64(encoded), true, encoded);
        // Replace the last data character, which carries the unused bits when there is padding.
        const last = encoded.replace(/=+$/, '').length - 1;
        if (last < 0) {
          return;
        }
        const text = encoded.slice(0, last) + replacement + encoded.slice(last + 1);
        const decoded = fromBase64(text);
        assert.ok(decoded !== undefined, text);
        assert.equal(isCanonicalBase64(text), toBase64(decoded) === text, text);
      },
    ),
    { numRuns: 5_000 },
  );
  assert.equal(isCanonicalBase64('/w=='), true);
  assert.equal(isCanonicalBase64('/x=='), false);
  assert.equal(isCanonicalBase64('//8='), true);
  assert.equal(isCanonicalBase64('//9='), false);
  assert.equal(isCanonicalBase64('AAAB'), true);
  assert.equal(isCanonicalBase64(''), true);
});
