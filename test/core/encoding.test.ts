// Byte comparison, which switches to four bytes per step on longer inputs. It is checked
// against Buffer.equals on views at every alignment and on lengths around the switch.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { bytesEqual } from '../../src/core/encoding.ts';

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
