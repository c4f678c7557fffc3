// Checkpoint bodies (C2SP tlog-checkpoint), signed notes with Ed25519 signatures (C2SP
// signed-note) and verifier keys. Expected texts, key ids and signature lines are assembled
// by hand in this file with node:crypto, not with the code under test.
import assert from 'node:assert/strict';
import { createHash, verify as nodeVerify, createPublicKey } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  createVerifierKey,
  formatCheckpoint,
  formatVerifierKey,
  MAX_NOTE_BYTES,
  MAX_NOTE_SIGNATURES,
  noteKeyId,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signNote,
  type Checkpoint,
  type NoteVerifierKey,
} from '../../src/core/checkpoint.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { NoteError, NoteErrorCode } from '../../src/core/errors.ts';
import { ed25519KeyFromSeed, generateEd25519Key, type Ed25519TestKey } from '../helpers/ed25519.ts';

const crypto = nodeCrypto;

// RFC 8032 section 7.1, TEST 1: secret key, public key and the signature of the empty message.
const RFC8032_SECRET = Buffer.from(
  '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
  'hex',
);
const RFC8032_PUBLIC = Buffer.from(
  'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
  'hex',
);
const RFC8032_EMPTY_SIGNATURE = Buffer.from(
  'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  'hex',
);

const ORIGIN = 'example.com/cdil/hospital-a';
// RFC 9162 root of the 5-leaf RFC 6962 test tree, in base64.
const ROOT_5_BASE64 = 'Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=';
const ROOT_5 = new Uint8Array(Buffer.from(ROOT_5_BASE64, 'base64'));
const BODY_5 = `${ORIGIN}\n5\n${ROOT_5_BASE64}\n`;

/** SHA-256(name || 0x0A || 0x01 || public key)[:4] in hex, assembled by hand. */
function keyIdByHand(name: string, publicKey: Uint8Array): string {
  return createHash('sha256')
    .update(Buffer.concat([Buffer.from(name, 'utf8'), Buffer.from([0x0a, 0x01]), publicKey]))
    .digest()
    .subarray(0, 4)
    .toString('hex');
}

/** Builds a signature line by hand: em dash, space, name, space, base64(key id || sig). */
function signatureLineByHand(name: string, keyIdHex: string, signature: Uint8Array): string {
  const encoded = Buffer.concat([Buffer.from(keyIdHex, 'hex'), signature]).toString('base64');
  return `\u2014 ${name} ${encoded}\n`;
}

function lineFor(key: Ed25519TestKey, name: string, body: string): string {
  const signature = key.sign(Buffer.from(body, 'utf8'));
  return signatureLineByHand(name, keyIdByHand(name, key.publicKey), signature);
}

function assertNoteError(
  call: () => unknown,
  code: NoteErrorCode,
  message?: RegExp,
  label = 'call',
): void {
  assert.throws(
    call,
    (error: unknown) => {
      assert.ok(error instanceof NoteError, `${label}: expected NoteError, got ${String(error)}`);
      assert.equal(error.code, code, `${label}: ${error.message}`);
      if (message) {
        assert.match(error.message, message, label);
      }
      return true;
    },
    `${label}: no error raised`,
  );
}

const logKey = generateEd25519Key();
const witnessKey = generateEd25519Key();
const logVerifier = createVerifierKey(crypto, ORIGIN, logKey.publicKey);
const witnessVerifier = createVerifierKey(crypto, 'witness.example/w1', witnessKey.publicKey);

void describe('checkpoint body', () => {
  test('formats the example by hand', () => {
    const body = formatCheckpoint({ origin: ORIGIN, size: 5, rootHash: ROOT_5, extensions: [] });
    assert.equal(body, BODY_5);
  });

  test('round trip keeps every field', () => {
    const cases: Checkpoint[] = [
      { origin: ORIGIN, size: 5, rootHash: ROOT_5, extensions: [] },
      { origin: 'o', size: 0, rootHash: new Uint8Array(32), extensions: ['ext one', 'ext+two'] },
      {
        origin: 'log with spaces',
        size: Number.MAX_SAFE_INTEGER,
        rootHash: ROOT_5,
        extensions: [],
      },
    ];
    for (const checkpoint of cases) {
      const parsed = parseCheckpoint(formatCheckpoint(checkpoint));
      assert.equal(parsed.origin, checkpoint.origin);
      assert.equal(parsed.size, checkpoint.size);
      assert.equal(
        Buffer.from(parsed.rootHash).toString('hex'),
        Buffer.from(checkpoint.rootHash).toString('hex'),
      );
      assert.deepEqual(parsed.extensions, checkpoint.extensions);
    }
  });

  test('round trip for arbitrary fields', () => {
    const line = fc
      .string({ unit: 'grapheme', minLength: 1, maxLength: 30 })
      .filter((text) => ![...text].some((char) => char.charCodeAt(0) < 0x20));
    fc.assert(
      fc.property(
        line,
        fc.maxSafeNat(),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.array(line, { maxLength: 3 }),
        (origin, size, rootHash, extensions) => {
          const body = formatCheckpoint({ origin, size, rootHash, extensions });
          const parsed = parseCheckpoint(body);
          assert.equal(parsed.origin, origin);
          assert.equal(parsed.size, size);
          assert.deepEqual([...parsed.rootHash], [...rootHash]);
          assert.deepEqual(parsed.extensions, extensions);
          assert.equal(formatCheckpoint(parsed), body);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('parser rejects malformed bodies', () => {
    const root = ROOT_5_BASE64;
    const nonCanonical = root.slice(0, -2) + 'R='; // same bytes, but nonzero unused bits
    const cases: Array<[string, string, RegExp]> = [
      ['no final newline', `${ORIGIN}\n5\n${root}`, /end with a newline/],
      ['two lines', `${ORIGIN}\n5\n`, /has 2 lines/],
      ['empty origin', `\n5\n${root}\n`, /line 1 is empty/],
      ['blank extension line', `${ORIGIN}\n5\n${root}\n\next\n`, /line 4 is empty/],
      ['trailing blank line', `${ORIGIN}\n5\n${root}\n\n`, /line 4 is empty/],
      ['leading zero', `${ORIGIN}\n05\n${root}\n`, /not a decimal without leading zeros/],
      ['double zero', `${ORIGIN}\n00\n${root}\n`, /leading zeros/],
      ['negative size', `${ORIGIN}\n-1\n${root}\n`, /leading zeros/],
      ['plus sign', `${ORIGIN}\n+5\n${root}\n`, /leading zeros/],
      ['exponent', `${ORIGIN}\n1e3\n${root}\n`, /leading zeros/],
      ['hex size', `${ORIGIN}\n0x5\n${root}\n`, /leading zeros/],
      ['space before size', `${ORIGIN}\n 5\n${root}\n`, /leading zeros/],
      ['space after size', `${ORIGIN}\n5 \n${root}\n`, /leading zeros/],
      ['size 2^53', `${ORIGIN}\n9007199254740992\n${root}\n`, /exceeds/],
      ['root of 31 bytes', `${ORIGIN}\n5\n${Buffer.alloc(31).toString('base64')}\n`, /32 bytes/],
      ['root of 33 bytes', `${ORIGIN}\n5\n${Buffer.alloc(33).toString('base64')}\n`, /32 bytes/],
      ['root without padding', `${ORIGIN}\n5\n${root.slice(0, -1)}\n`, /canonical base64/],
      ['root with unused bits set', `${ORIGIN}\n5\n${nonCanonical}\n`, /canonical base64/],
      [
        'root in base64url',
        `${ORIGIN}\n5\n${Buffer.from(ROOT_5).toString('base64url')}=\n`,
        /base64/,
      ],
      ['root in hex', `${ORIGIN}\n5\n${Buffer.from(ROOT_5).toString('hex')}\n`, /base64/],
      ['carriage return', `${ORIGIN}\r\n5\r\n${root}\r\n`, /control character U\+000D/],
      ['tab in origin', `example.com\tlog\n5\n${root}\n`, /control character U\+0009/],
      ['lone surrogate', `example.com/\ud800\n5\n${root}\n`, /lone UTF-16 surrogate/],
    ];
    for (const [label, body, message] of cases) {
      assertNoteError(
        () => parseCheckpoint(body),
        NoteErrorCode.CHECKPOINT_MALFORMED,
        message,
        label,
      );
    }
    assert.equal(
      Buffer.from(nonCanonical, 'base64').toString('hex'),
      Buffer.from(ROOT_5).toString('hex'),
    );
  });

  test('formatter rejects invalid fields', () => {
    const valid: Checkpoint = { origin: ORIGIN, size: 5, rootHash: ROOT_5, extensions: [] };
    const cases: Array<[string, Checkpoint]> = [
      ['empty origin', { ...valid, origin: '' }],
      ['origin with newline', { ...valid, origin: 'a\nb' }],
      ['origin with tab', { ...valid, origin: 'a\tb' }],
      ['negative size', { ...valid, size: -1 }],
      ['fractional size', { ...valid, size: 1.5 }],
      ['unsafe size', { ...valid, size: 2 ** 53 }],
      ['root of 31 bytes', { ...valid, rootHash: new Uint8Array(31) }],
      ['empty extension', { ...valid, extensions: [''] }],
      ['extension with newline', { ...valid, extensions: ['a\nb'] }],
    ];
    for (const [label, checkpoint] of cases) {
      assertNoteError(
        () => formatCheckpoint(checkpoint),
        NoteErrorCode.CHECKPOINT_MALFORMED,
        undefined,
        label,
      );
    }
  });
});

void describe('verifier keys', () => {
  test('key id matches a by-hand SHA-256', () => {
    const name = 'example.com/cdil-log';
    // Computed separately with Python's hashlib over the same bytes.
    assert.equal(keyIdByHand(name, RFC8032_PUBLIC), '3d32cb81');
    assert.equal(noteKeyId(crypto, name, RFC8032_PUBLIC), '3d32cb81');
    for (const key of [logKey, witnessKey]) {
      assert.equal(noteKeyId(crypto, ORIGIN, key.publicKey), keyIdByHand(ORIGIN, key.publicKey));
    }
  });

  test('formats and parses the text form', () => {
    const key = createVerifierKey(crypto, 'example.com/cdil-log', RFC8032_PUBLIC);
    const text = formatVerifierKey(key);
    const expected = `example.com/cdil-log+3d32cb81+${Buffer.concat([Buffer.from([1]), RFC8032_PUBLIC]).toString('base64')}`;
    assert.equal(text, expected);
    const parsed = parseVerifierKey(crypto, text);
    assert.equal(parsed.name, key.name);
    assert.equal(parsed.keyId, '3d32cb81');
    assert.deepEqual([...parsed.publicKey], [...RFC8032_PUBLIC]);
    assert.equal(parseVerifierKey(crypto, text.replace('3d32cb81', '3D32CB81')).keyId, '3d32cb81');
  });

  test('parser rejects invalid keys', () => {
    const good = formatVerifierKey(createVerifierKey(crypto, 'log.example', RFC8032_PUBLIC));
    const [name, id] = good.split('+') as [string, string];
    const material = good.slice(name.length + id.length + 2);
    assert.ok(material.includes('+'), 'the test key material should contain a plus sign');
    const typed = (type: number, key: Uint8Array) =>
      Buffer.concat([Buffer.from([type]), key]).toString('base64');
    const cases: Array<[string, string, RegExp]> = [
      ['two parts', `${name}+${id}`, /must have the form/],
      ['extra part', `${name}+x+${id}+${material}`, /not 8 hex digits/],
      ['empty name', `+${id}+${material}`, /key name "" must be non-empty/],
      ['name with space', `log example+${id}+${material}`, /white space/],
      ['short key id', `${name}+${id.slice(1)}+${material}`, /not 8 hex digits/],
      ['non-hex key id', `${name}+zzzzzzzz+${material}`, /not 8 hex digits/],
      ['wrong key id', `${name}+00000000+${material}`, /does not match/],
      ['ECDSA type', `${name}+${id}+${typed(0x02, RFC8032_PUBLIC)}`, /not Ed25519/],
      ['key of 31 bytes', `${name}+${id}+${typed(0x01, RFC8032_PUBLIC.subarray(1))}`, /32 bytes/],
      ['empty key', `${name}+${id}+`, /base64/],
      ['key in base64url', `${name}+${id}+${material.replace(/\+/g, '-')}`, /base64/],
    ];
    for (const [label, text, message] of cases) {
      assertNoteError(
        () => parseVerifierKey(crypto, text),
        NoteErrorCode.VERIFIER_KEY_INVALID,
        message,
        label,
      );
    }
  });
});

void describe('verifyEd25519', () => {
  test('RFC 8032 test vector verifies', () => {
    const empty = new Uint8Array(0);
    assert.equal(crypto.verifyEd25519(RFC8032_PUBLIC, empty, RFC8032_EMPTY_SIGNATURE), true);
    const fromSeed = ed25519KeyFromSeed(RFC8032_SECRET);
    assert.deepEqual([...fromSeed.publicKey], [...RFC8032_PUBLIC]);
    // Ed25519 signatures are deterministic, so the helper reproduces the test vector.
    assert.deepEqual([...fromSeed.sign(empty)], [...RFC8032_EMPTY_SIGNATURE]);
  });

  test('bad keys and signatures return false', () => {
    const empty = new Uint8Array(0);
    const signature = RFC8032_EMPTY_SIGNATURE;
    for (let i = 0; i < signature.length; i++) {
      const mutated = Buffer.from(signature);
      mutated[i]! ^= 0x01;
      assert.equal(crypto.verifyEd25519(RFC8032_PUBLIC, empty, mutated), false, `byte ${i}`);
    }
    assert.equal(crypto.verifyEd25519(RFC8032_PUBLIC, Uint8Array.of(0), signature), false);
    assert.equal(crypto.verifyEd25519(RFC8032_PUBLIC.subarray(1), empty, signature), false);
    assert.equal(crypto.verifyEd25519(RFC8032_PUBLIC, empty, signature.subarray(1)), false);
    assert.equal(crypto.verifyEd25519(new Uint8Array(32), empty, signature), false);
    assert.equal(crypto.verifyEd25519(new Uint8Array(32).fill(0xff), empty, signature), false);
  });
});

void describe('signed notes', () => {
  test('signNote writes the format by hand', () => {
    const key = ed25519KeyFromSeed(RFC8032_SECRET);
    const note = signNote(crypto, BODY_5, 'example.com/cdil-log', key.sign, key.publicKey);
    const signature = key.sign(Buffer.from(BODY_5, 'utf8'));
    assert.equal(
      note,
      `${BODY_5}\n${signatureLineByHand('example.com/cdil-log', '3d32cb81', signature)}`,
    );
    // The signature inside the line verifies with node:crypto directly.
    const encoded = note.split('\n').at(-2)!.split(' ')[2]!;
    const decoded = Buffer.from(encoded, 'base64');
    assert.equal(decoded.subarray(0, 4).toString('hex'), '3d32cb81');
    const publicKey = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: RFC8032_PUBLIC.toString('base64url') },
      format: 'jwk',
    });
    assert.ok(nodeVerify(null, Buffer.from(BODY_5, 'utf8'), publicKey, decoded.subarray(4)));
  });

  test('round trip from string and bytes', () => {
    const note = signNote(crypto, BODY_5, ORIGIN, logKey.sign, logKey.publicKey);
    for (const input of [note, new Uint8Array(Buffer.from(note, 'utf8'))]) {
      const opened = openNote(crypto, input, [logVerifier]);
      assert.equal(opened.body, BODY_5);
      assert.deepEqual(opened.verifiedBy, [logVerifier]);
      assert.deepEqual(opened.unknownSignatures, []);
    }
  });

  test('body may contain blank lines and non-ASCII text', () => {
    const body = 'première ligne\n\nlast line after a blank line — done\n';
    const note = signNote(crypto, body, ORIGIN, logKey.sign, logKey.publicKey);
    assert.equal(openNote(crypto, note, [logVerifier]).body, body);
  });

  test('unknown keys are ignored', () => {
    const note =
      signNote(crypto, BODY_5, ORIGIN, logKey.sign, logKey.publicKey) +
      lineFor(witnessKey, 'witness.example/w1', BODY_5) +
      // A line by an unknown key that would not verify: it must be ignored, not checked.
      signatureLineByHand('other.example/w2', 'deadbeef', new Uint8Array(64));

    const byLog = openNote(crypto, note, [logVerifier]);
    assert.deepEqual(byLog.verifiedBy, [logVerifier]);
    assert.deepEqual(byLog.unknownSignatures, [
      { keyName: 'witness.example/w1', keyId: witnessVerifier.keyId },
      { keyName: 'other.example/w2', keyId: 'deadbeef' },
    ]);

    const byWitness = openNote(crypto, note, [witnessVerifier]);
    assert.deepEqual(byWitness.verifiedBy, [witnessVerifier]);

    const byBoth = openNote(crypto, note, [witnessVerifier, logVerifier]);
    assert.deepEqual(byBoth.verifiedBy, [logVerifier, witnessVerifier]);
    assert.equal(byBoth.unknownSignatures.length, 1);
  });

  test('signature by a wrong key fails', () => {
    const note = signNote(crypto, BODY_5, ORIGIN, logKey.sign, logKey.publicKey);
    assertNoteError(() => openNote(crypto, note, []), NoteErrorCode.NOT_VERIFIED);
    assertNoteError(
      () => openNote(crypto, note, [witnessVerifier]),
      NoteErrorCode.NOT_VERIFIED,
      new RegExp(`signature lines name ${ORIGIN}\\+${logVerifier.keyId}`),
    );
    // The same name with another key has another key id, so the line counts as unknown.
    const sameName = createVerifierKey(crypto, ORIGIN, witnessKey.publicKey);
    assertNoteError(() => openNote(crypto, note, [sameName]), NoteErrorCode.NOT_VERIFIED);
    // A key whose name and id collide with the signer's must verify, so the note is rejected.
    const colliding: NoteVerifierKey = { ...sameName, keyId: logVerifier.keyId };
    assertNoteError(
      () => openNote(crypto, note, [colliding, logVerifier]),
      NoteErrorCode.SIGNATURE_INVALID,
      /does not verify/,
    );
  });

  test('tampered body fails', () => {
    const note = signNote(crypto, BODY_5, ORIGIN, logKey.sign, logKey.publicKey);
    const signatures = note.slice(BODY_5.length);
    for (let i = 0; i < BODY_5.length; i++) {
      const char = BODY_5[i] === 'a' ? 'b' : 'a';
      const body = BODY_5.slice(0, i) + char + BODY_5.slice(i + 1);
      assert.throws(
        () => openNote(crypto, body + signatures, [logVerifier]),
        (error: unknown) => error instanceof NoteError,
        `character ${i}`,
      );
    }
    const appended = `${BODY_5}extra\n${signatures}`;
    assertNoteError(
      () => openNote(crypto, appended, [logVerifier]),
      NoteErrorCode.SIGNATURE_INVALID,
    );
  });

  test('tampered signature line fails', () => {
    const line = lineFor(logKey, ORIGIN, BODY_5);
    const encoded = Buffer.from(line.trim().split(' ')[2]!, 'base64');
    for (let i = 0; i < encoded.length; i++) {
      const mutated = Buffer.from(encoded);
      mutated[i]! ^= 0x01;
      const note = `${BODY_5}\n\u2014 ${ORIGIN} ${mutated.toString('base64')}\n`;
      // A changed key id makes the line unknown; a changed signature fails verification.
      const code = i < 4 ? NoteErrorCode.NOT_VERIFIED : NoteErrorCode.SIGNATURE_INVALID;
      assertNoteError(() => openNote(crypto, note, [logVerifier]), code);
    }
    const short = `${BODY_5}\n\u2014 ${ORIGIN} ${encoded.subarray(0, 40).toString('base64')}\n`;
    assertNoteError(() => openNote(crypto, short, [logVerifier]), NoteErrorCode.SIGNATURE_INVALID);
  });

  test('rejects malformed notes', () => {
    const good = signNote(crypto, BODY_5, ORIGIN, logKey.sign, logKey.publicKey);
    const line = good.slice(BODY_5.length + 1);
    const encoded = line.trim().split(' ')[2]!;
    const cases: Array<[string, string | Uint8Array, RegExp]> = [
      ['no final newline', good.slice(0, -1), /end with a newline/],
      ['no blank line', BODY_5 + line, /no blank line/],
      ['no signature lines', `${BODY_5}\n`, /no signature lines/],
      ['hyphen instead of em dash', `${BODY_5}\n- ${ORIGIN} ${encoded}\n`, /em dash/],
      ['en dash', `${BODY_5}\n\u2013 ${ORIGIN} ${encoded}\n`, /em dash/],
      ['two spaces', `${BODY_5}\n\u2014 ${ORIGIN}  ${encoded}\n`, /separated by one space/],
      ['missing signature', `${BODY_5}\n\u2014 ${ORIGIN}\n`, /separated by one space/],
      ['name with plus', `${BODY_5}\n\u2014 a+b ${encoded}\n`, /white space or "\+"/],
      ['name with no-break space', `${BODY_5}\n\u2014 a\u00a0b ${encoded}\n`, /white space/],
      [
        'signature in base64url',
        `${BODY_5}\n\u2014 ${ORIGIN} ${Buffer.from(encoded, 'base64').toString('base64url')}\n`,
        /canonical base64/,
      ],
      [
        'only a key id',
        `${BODY_5}\n\u2014 ${ORIGIN} ${Buffer.alloc(4).toString('base64')}\n`,
        /key id followed by a signature/,
      ],
      ['carriage return', good.replace(/\n/g, '\r\n'), /U\+000D/],
      ['NUL in signature line', `${BODY_5}\n\u2014 ${ORIGIN}\u0000 ${encoded}\n`, /U\+0000/],
      ['lone surrogate', `x\ud800\n${good}`, /lone UTF-16 surrogate/],
      ['invalid UTF-8', Uint8Array.of(0xc3, 0x28, 0x0a, 0x0a), /not valid UTF-8/],
    ];
    // The last blank line ends the text, so an earlier signature line becomes signed text.
    assertNoteError(
      () => openNote(crypto, `${good}\n${line}`, [logVerifier]),
      NoteErrorCode.SIGNATURE_INVALID,
    );
    for (const [label, note, message] of cases) {
      assertNoteError(
        () => openNote(crypto, note, [logVerifier]),
        NoteErrorCode.MALFORMED,
        message,
        label,
      );
    }
  });

  test('byte order mark stays part of the text', () => {
    const note = signNote(crypto, BODY_5, ORIGIN, logKey.sign, logKey.publicKey);
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(note, 'utf8')]);
    assertNoteError(() => openNote(crypto, bytes, [logVerifier]), NoteErrorCode.SIGNATURE_INVALID);
    const signed = signNote(crypto, `\ufeff${BODY_5}`, ORIGIN, logKey.sign, logKey.publicKey);
    const opened = openNote(crypto, Buffer.from(signed, 'utf8'), [logVerifier]);
    assert.equal(opened.body, `\ufeff${BODY_5}`);
  });

  test('signature line limits', () => {
    assert.ok(MAX_NOTE_SIGNATURES >= 16, 'signed-note requires accepting 16 signatures');
    const signed = signNote(crypto, BODY_5, ORIGIN, logKey.sign, logKey.publicKey);
    const unknownLine = signatureLineByHand('other.example/w', '00000000', new Uint8Array(64));
    const withLines = (count: number) => signed + unknownLine.repeat(count - 1);

    const atLimit = openNote(crypto, withLines(MAX_NOTE_SIGNATURES), [logVerifier]);
    assert.equal(atLimit.unknownSignatures.length, MAX_NOTE_SIGNATURES - 1);
    assertNoteError(
      () => openNote(crypto, withLines(MAX_NOTE_SIGNATURES + 1), [logVerifier]),
      NoteErrorCode.TOO_LARGE,
      new RegExp(`${MAX_NOTE_SIGNATURES + 1} signature lines`),
    );
    assertNoteError(
      () => openNote(crypto, withLines(3), [logVerifier], { maxSignatures: 2 }),
      NoteErrorCode.TOO_LARGE,
    );
    assert.equal(openNote(crypto, withLines(2), [logVerifier], { maxSignatures: 2 }).body, BODY_5);
  });

  test('note size limit', () => {
    const note = signNote(crypto, BODY_5, ORIGIN, logKey.sign, logKey.publicKey);
    const size = Buffer.byteLength(note, 'utf8');
    const bytes = new Uint8Array(Buffer.from(note, 'utf8'));
    assert.equal(openNote(crypto, note, [logVerifier], { maxBytes: size }).body, BODY_5);
    assert.equal(openNote(crypto, bytes, [logVerifier], { maxBytes: size }).body, BODY_5);
    assertNoteError(
      () => openNote(crypto, note, [logVerifier], { maxBytes: size - 1 }),
      NoteErrorCode.TOO_LARGE,
    );
    assertNoteError(
      () => openNote(crypto, bytes, [logVerifier], { maxBytes: size - 1 }),
      NoteErrorCode.TOO_LARGE,
    );
    // The em dash is one UTF-16 code unit but three UTF-8 bytes.
    assert.ok(note.length < size);
    assertNoteError(
      () => openNote(crypto, note, [logVerifier], { maxBytes: note.length }),
      NoteErrorCode.TOO_LARGE,
    );
    const huge = 'x'.repeat(MAX_NOTE_BYTES) + note;
    assertNoteError(() => openNote(crypto, huge, [logVerifier]), NoteErrorCode.TOO_LARGE);
  });

  test('signNote rejects bad input', () => {
    const { sign, publicKey } = logKey;
    assertNoteError(
      () => signNote(crypto, 'no newline', ORIGIN, sign, publicKey),
      NoteErrorCode.MALFORMED,
    );
    assertNoteError(
      () => signNote(crypto, 'tab\there\n', ORIGIN, sign, publicKey),
      NoteErrorCode.MALFORMED,
    );
    assertNoteError(
      () => signNote(crypto, BODY_5, 'bad name', sign, publicKey),
      NoteErrorCode.VERIFIER_KEY_INVALID,
    );
    assertNoteError(
      () => signNote(crypto, BODY_5, ORIGIN, sign, publicKey.subarray(1)),
      NoteErrorCode.VERIFIER_KEY_INVALID,
    );
    assertNoteError(
      () => signNote(crypto, BODY_5, ORIGIN, witnessKey.sign, publicKey),
      NoteErrorCode.SIGNATURE_INVALID,
      /does not verify with key/,
    );
    assertNoteError(
      () => signNote(crypto, BODY_5, ORIGIN, () => new Uint8Array(63), publicKey),
      NoteErrorCode.SIGNATURE_INVALID,
    );
  });
});

void describe('openCheckpoint', () => {
  test('returns the verified checkpoint', () => {
    const body = formatCheckpoint({ origin: ORIGIN, size: 5, rootHash: ROOT_5, extensions: [] });
    const note = signNote(crypto, body, ORIGIN, logKey.sign, logKey.publicKey);
    const opened = openCheckpoint(crypto, note, [logVerifier], ORIGIN);
    assert.equal(opened.checkpoint.origin, ORIGIN);
    assert.equal(opened.checkpoint.size, 5);
    assert.equal(Buffer.from(opened.checkpoint.rootHash).toString('base64'), ROOT_5_BASE64);
    assert.deepEqual(opened.verifiedBy, [logVerifier]);
  });

  test('rejects another origin', () => {
    const note = signNote(crypto, BODY_5, ORIGIN, logKey.sign, logKey.publicKey);
    assertNoteError(
      () => openCheckpoint(crypto, note, [logVerifier], 'example.com/cdil/hospital-b'),
      NoteErrorCode.ORIGIN_MISMATCH,
      /hospital-a" is not the expected "example.com\/cdil\/hospital-b"/,
    );
  });

  test('signed but malformed body fails', () => {
    const note = signNote(
      crypto,
      `${ORIGIN}\n05\n${ROOT_5_BASE64}\n`,
      ORIGIN,
      logKey.sign,
      logKey.publicKey,
    );
    assertNoteError(
      () => openCheckpoint(crypto, note, [logVerifier], ORIGIN),
      NoteErrorCode.CHECKPOINT_MALFORMED,
    );
  });

  test('untrusted checkpoint is not parsed', () => {
    const note = signNote(
      crypto,
      `${ORIGIN}\n05\n${ROOT_5_BASE64}\n`,
      ORIGIN,
      logKey.sign,
      logKey.publicKey,
    );
    assertNoteError(
      () => openCheckpoint(crypto, note, [witnessVerifier], ORIGIN),
      NoteErrorCode.NOT_VERIFIED,
    );
  });
});
