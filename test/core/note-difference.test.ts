// The hint that a NOTE_MISMATCH gets when a byte order mark or line ends explain it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sha256Hex } from '../../src/core/certificate.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { describeNoteDifference } from '../../src/core/verify/note-difference.ts';

const BOM = '\uFEFF';

function hintFor(certified: string, given: string | Uint8Array): string | undefined {
  return describeNoteDifference(nodeCrypto, given, sha256Hex(nodeCrypto, certified));
}

describe('describeNoteDifference', () => {
  for (const [name, certified, given, differences] of [
    ['final line end added', 'a\nb', 'a\nb\n', ['the given text ends with a line end']],
    ['final CRLF added', 'a\r\nb', 'a\r\nb\r\n', ['the given text ends with a line end']],
    ['final line end missing', 'a\nb\n', 'a\nb', ['the certified note ends with a line end']],
    ['CRLF line ends', 'a\nb\nc', 'a\r\nb\r\nc', ['the given text has CRLF line ends']],
    ['LF line ends', 'a\r\nb', 'a\nb', ['the given text has LF line ends']],
    ['byte order mark added', 'a\nb', `${BOM}a\nb`, ['the given text starts with a UTF-8 byte']],
    ['byte order mark missing', `${BOM}a`, 'a', ['the certified note starts with a UTF-8 byte']],
    [
      'all three at once',
      'a\nb',
      `${BOM}a\r\nb\r\n`,
      ['starts with a UTF-8 byte', 'has CRLF line ends', 'ends with a line end'],
    ],
    [
      'LF ends without the final CRLF',
      'a\r\nb\r\n',
      'a\nb',
      ['has LF line ends', 'the certified note ends with a line end'],
    ],
  ] as const) {
    test(name, () => {
      const hint = hintFor(certified, given);
      assert.ok(hint !== undefined, 'no hint');
      assert.match(hint, /^The given text is the certified note except that /);
      for (const difference of differences) {
        assert.ok(hint.includes(difference), `hint lacks "${difference}": ${hint}`);
      }
      assert.equal(
        (hint.match(/ line end| byte order mark/g) ?? []).length,
        differences.length,
        `hint names more differences than expected: ${hint}`,
      );
    });
  }

  test('other text gets no hint', () => {
    assert.equal(hintFor('a\nb', 'a\nc\n'), undefined);
    assert.equal(hintFor('a\nb', 'a b'), undefined);
    assert.equal(hintFor('', ' '), undefined);
  });

  test('bytes and strings give the same hint', () => {
    const given = `${BOM}Señal\r\n`;
    assert.equal(hintFor('Señal', Buffer.from(given, 'utf8')), hintFor('Señal', given));
  });

  test('large note does not overflow the stack', () => {
    const certified = 'line of a long note\n'.repeat(500_000);
    const hint = hintFor(certified, `${BOM}${certified.replace(/\n/g, '\r\n').slice(0, -2)}`);
    assert.ok(hint !== undefined, 'no hint');
    assert.ok(hint.includes('byte order mark'), hint);
    assert.ok(hint.includes('CRLF'), hint);
    assert.ok(hint.includes('the certified note ends with a line end'), hint);
  });
});
