// RFC 8785 (JCS) serialization of signed messages, the chain hash and the JWK thumbprint,
// each checked against a computation that does not use the code under test.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { calculateJwkThumbprint } from 'jose';
import {
  CanonicalizationError,
  canonicalJson,
  canonicalSignedJson,
  type SignedRecord,
} from '../../src/core/canonical.ts';
import {
  chainHashInputOf,
  computeChainHash,
  jwkThumbprint,
  pickSignedFields,
  SIGNED_FIELDS_V1,
  SIGNED_FIELDS_V2,
  signedBytes,
  type ChainHashInput,
  type SignedMessage,
} from '../../src/core/certificate.ts';
import type { EcPublicJwk } from '../../src/core/crypto.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import {
  CERTIFICATE_TIMESTAMP_FORMAT,
  certificateTimestampInput,
} from '../../src/core/verify/timestamp-steps.ts';

/** Sorted-key compact JSON, equal to RFC 8785 output for flat records of strings and null. */
function sortedJson(record: Record<string, unknown>): string {
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(record).sort()) {
    sorted[key] = record[key];
  }
  return JSON.stringify(sorted);
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function sampleMessage(overrides: Partial<SignedMessage> = {}): SignedMessage {
  return {
    tenant_id: 'hospital-a',
    previous_hash: null,
    chain_sequence: 1,
    certificate_id: '0b8f5a56-1c1e-4a53-9d0c-2f1a3e4b5c6d',
    chain_hash: 'a'.repeat(64),
    encounter_id_hash: 'b'.repeat(64),
    format_version: 'cdil.certificate.v1',
    governance_policy_hash: 'c'.repeat(64),
    governance_policy_version: 'policy-7',
    human_attested_at_utc: null,
    human_reviewed: false,
    human_reviewer_id_hash: null,
    issued_at_utc: '2026-11-05T14:30:00.000Z',
    key_id: 'Dblqp9GjjF5oNzgefVCZD9_0cntrSVKiwWgRMyWUtms',
    model_name: 'scribe-model',
    model_version: '2026.11',
    nonce: '00112233445566778899aabbccddeeff',
    note_hash: 'd'.repeat(64),
    patient_hash: 'e'.repeat(64),
    prompt_version: 'soap-v3',
    server_timestamp: '2026-11-05T14:30:00.004Z',
    ...overrides,
  };
}

void describe('canonicalSignedJson on the signed message shape', () => {
  test('sorts keys and omits whitespace', () => {
    const text = canonicalSignedJson(sampleMessage() as unknown as SignedRecord);
    const keys = Object.keys(JSON.parse(text) as object);
    assert.deepEqual(keys, [...SIGNED_FIELDS_V1]);
    assert.deepEqual(keys, [...keys].sort());
    assert.equal(text, sortedJson(sampleMessage() as unknown as Record<string, unknown>));
    assert.doesNotMatch(text, /[ \n\r\t]/);
    assert.ok(text.startsWith('{"certificate_id":"0b8f5a56-'), text.slice(0, 40));
    assert.ok(text.includes('"chain_sequence":1,'));
    assert.ok(text.includes('"human_reviewed":false,'));
    assert.ok(text.includes('"previous_hash":null,'));
    assert.ok(text.endsWith('"tenant_id":"hospital-a"}'));
  });

  test('orders keys by code unit, uppercase first', () => {
    const text = canonicalSignedJson({ b: 1, a: 2, _: 3, Z: 4, A: 5, '0': 6 });
    assert.equal(text, '{"0":6,"A":5,"Z":4,"_":3,"a":2,"b":1}');
  });

  test('keeps non-ASCII strings as UTF-8', () => {
    const text = canonicalSignedJson({ a: 'Müller', b: '日本語', c: '🩺 note', d: 'política-ñ' });
    assert.equal(text, '{"a":"Müller","b":"日本語","c":"🩺 note","d":"política-ñ"}');
    const bytes = Buffer.from(text, 'utf8');
    assert.ok(bytes.includes(Buffer.from([0x4d, 0xc3, 0xbc])), 'M then ü as C3 BC');
    assert.ok(bytes.includes(Buffer.from([0xe6, 0x97, 0xa5])), '日 as E6 97 A5');
    assert.ok(bytes.includes(Buffer.from([0xf0, 0x9f, 0xa9, 0xba])), '🩺 as F0 9F A9 BA');
    assert.equal(text.includes('\\u'), false, 'no \\u escapes');
  });

  test('escapes quotes, backslash and control characters', () => {
    const cases: [string, string][] = [
      ['say "hi"', '"say \\"hi\\""'],
      ['back\\slash', '"back\\\\slash"'],
      ['a/b', '"a/b"'],
      ['\b\t\n\f\r', '"\\b\\t\\n\\f\\r"'],
      ['\u0000', '"\\u0000"'],
      ['\u0001\u001f', '"\\u0001\\u001f"'],
      ['\u007f', '"\u007f"'],
      ['\u2028\u2029', '"\u2028\u2029"'],
    ];
    for (const [value, expected] of cases) {
      assert.equal(canonicalSignedJson({ k: value }), `{"k":${expected}}`, JSON.stringify(value));
    }
  });

  test('writes integers, booleans and null plainly', () => {
    const text = canonicalSignedJson({
      a: 0,
      b: -0,
      c: -42,
      d: Number.MAX_SAFE_INTEGER,
      e: true,
      f: false,
      g: null,
    });
    assert.equal(text, '{"a":0,"b":0,"c":-42,"d":9007199254740991,"e":true,"f":false,"g":null}');
  });

  test('round-trips through JSON.parse unchanged', () => {
    const text = canonicalSignedJson(
      sampleMessage({ model_name: 'Modèle-α "q" \\ \n' }) as unknown as SignedRecord,
    );
    assert.equal(canonicalSignedJson(JSON.parse(text) as SignedRecord), text);
  });
});

void describe('canonicalSignedJson rejections', () => {
  const badValues: [string, unknown][] = [
    ['float', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['unsafe integer', 2 ** 53],
    ['nested object', { a: 1 }],
    ['array', ['a']],
    ['undefined', undefined],
  ];
  for (const [label, value] of badValues) {
    test(`${label} value is rejected`, () => {
      assert.throws(
        () => canonicalSignedJson({ field: value } as unknown as SignedRecord),
        (error: unknown) =>
          error instanceof CanonicalizationError && /field field must be/.test(error.message),
      );
    });
  }

  const badKeys = ['clé', 'Müller', '日本', '🩺', 'line\nbreak', 'tab\t', 'del\u007f', ''];
  for (const key of badKeys) {
    test(`key ${JSON.stringify(key)} is rejected`, () => {
      assert.throws(
        () => canonicalSignedJson({ [key]: 'x' }),
        (error: unknown) =>
          error instanceof CanonicalizationError && /is not printable ASCII/.test(error.message),
      );
    });
  }
});

void describe('canonicalJson', () => {
  test('sorts keys by UTF-16 code units', () => {
    // RFC 8785 orders members by UTF-16 code units. U+1F600 is stored as the surrogates
    // D83D DE00, so it sorts before U+FB33 although its code point is larger.
    const text = canonicalJson({ '\ufb33': 1, '😀': 2, é: 3, b: 4, a: 5, A: 6 });
    assert.equal(text, '{"A":6,"a":5,"b":4,"é":3,"😀":2,"\ufb33":1}');
  });

  test('sorts nested objects too', () => {
    assert.equal(
      canonicalJson({ b: [{ d: 1, c: 2 }], a: { z: null, y: true } }),
      '{"a":{"y":true,"z":null},"b":[{"c":2,"d":1}]}',
    );
  });

  test('serializes numbers as ECMAScript does', () => {
    assert.equal(canonicalJson([1.5, -0, 1e21, 1e-7, 100]), '[1.5,0,1e+21,1e-7,100]');
  });

  test('rejects a value without JSON form', () => {
    assert.throws(() => canonicalJson(undefined), CanonicalizationError);
  });
});

void describe('signedBytes', () => {
  test('covers exactly the signed fields', () => {
    const message = sampleMessage({ model_name: 'Modèle-α' });
    const certificate = {
      ...message,
      signature: 'MEUCIQ==',
      signature_algorithm: 'ECDSA_P256_SHA256',
    };
    const bytes = signedBytes(certificate);
    const expected = sortedJson(message as unknown as Record<string, unknown>);
    assert.equal(Buffer.from(bytes).toString('utf8'), expected);
    assert.deepEqual(Buffer.from(bytes), Buffer.from(expected, 'utf8'));
    assert.deepEqual(Object.keys(pickSignedFields(certificate)), [...SIGNED_FIELDS_V1]);
  });

  test('v2 adds attestation_meaning in sorted place', () => {
    const message = sampleMessage({
      format_version: 'cdil.certificate.v2',
      attestation_meaning: 'reviewed_and_approved',
      human_reviewed: true,
    });
    const text = Buffer.from(signedBytes(message)).toString('utf8');
    assert.deepEqual(Object.keys(JSON.parse(text) as object), [...SIGNED_FIELDS_V2]);
    assert.ok(text.startsWith('{"attestation_meaning":"reviewed_and_approved","certificate_id"'));
    assert.equal(text, sortedJson(message as unknown as Record<string, unknown>));
    assert.deepEqual(
      SIGNED_FIELDS_V2.filter((field) => !(SIGNED_FIELDS_V1 as string[]).includes(field)),
      ['attestation_meaning'],
    );
  });

  test('v2 signs a null meaning and v1 leaves it out', () => {
    const v2 = sampleMessage({ format_version: 'cdil.certificate.v2', attestation_meaning: null });
    assert.ok(Buffer.from(signedBytes(v2)).toString('utf8').includes('"attestation_meaning":null'));
    const v1 = sampleMessage({ attestation_meaning: 'authored' });
    assert.ok(!Buffer.from(signedBytes(v1)).toString('utf8').includes('attestation_meaning'));
  });

  test('unknown format version cannot be signed', () => {
    assert.throws(
      () => signedBytes(sampleMessage({ format_version: 'cdil.certificate.v9' })),
      /not known/,
    );
  });
});

void describe('chain hash', () => {
  const input: ChainHashInput = {
    previous_hash: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
    certificate_id: '0b8f5a56-1c1e-4a53-9d0c-2f1a3e4b5c6d',
    tenant_id: 'hospital-a',
    timestamp: '2026-11-05T14:30:00.000Z',
    note_hash: '2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae',
    model_version: 'Modèle-α 2026.11',
    governance_policy_version: 'política-ñ',
  };

  test('equals SHA-256 of sorted compact JSON', () => {
    const expected = sha256Hex(sortedJson(input as unknown as Record<string, unknown>));
    assert.equal(computeChainHash(nodeCrypto, input), expected);
  });

  test('matches the fixed reference value', () => {
    // Computed with Python 3: hashlib.sha256(json.dumps(input, sort_keys=True,
    // separators=(',', ':'), ensure_ascii=False).encode()).hexdigest()
    assert.equal(
      computeChainHash(nodeCrypto, input),
      '3009a6307bbdc51e38c42d2e49bc37270c53698c61c5bd7a1036397e4ee64a27',
    );
    assert.equal(
      computeChainHash(nodeCrypto, { ...input, previous_hash: null }),
      '6b2112d691ce9da95791e31621164ba3372c0034c9f4c3b3369b44540ca1f033',
    );
  });

  test('takes its inputs from the signed message', () => {
    const message = sampleMessage({
      previous_hash: input.previous_hash,
      certificate_id: input.certificate_id,
      tenant_id: input.tenant_id,
      issued_at_utc: input.timestamp,
      note_hash: input.note_hash,
      model_version: input.model_version,
      governance_policy_version: input.governance_policy_version,
    });
    assert.deepEqual(chainHashInputOf(message), input);
  });

  test('changes with every input', () => {
    const base = computeChainHash(nodeCrypto, input);
    for (const key of Object.keys(input) as (keyof ChainHashInput)[]) {
      const altered = { ...input, [key]: `${input[key] ?? ''}x` };
      assert.notEqual(computeChainHash(nodeCrypto, altered), base, key);
    }
  });
});

void describe('JWK thumbprint', () => {
  // The key of RFC 7638 section 3.1, whose thumbprint the RFC gives. It is RSA, which
  // jwkThumbprint does not handle, so it checks jose before jose is used as a reference.
  const rfcExampleKey = {
    kty: 'RSA',
    n:
      '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJ' +
      'ECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD' +
      'W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4v' +
      'MQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
    e: 'AQAB',
    alg: 'RS256',
    kid: '2011-04-29',
  };

  const fixedKey: EcPublicJwk = {
    kty: 'EC',
    crv: 'P-256',
    x: 'Cpnab7AHhfmHpBrc9YdvUxNRnGDGXPbAtSi1R8AA5SA',
    y: 'dy773WLqiMR-h000qo0gC_fcAPFmS9Vu3Ia6trjBCJU',
  };

  function independentThumbprint(jwk: EcPublicJwk): string {
    const members = `{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}","y":"${jwk.y}"}`;
    return createHash('sha256').update(members, 'utf8').digest('base64url');
  }

  test('jose reproduces the RFC 7638 example', async () => {
    assert.equal(
      await calculateJwkThumbprint(rfcExampleKey, 'sha256'),
      'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs',
    );
  });

  test('fixed EC key matches node:crypto and jose', async () => {
    const thumbprint = jwkThumbprint(nodeCrypto, fixedKey);
    assert.equal(thumbprint, 'Dblqp9GjjF5oNzgefVCZD9_0cntrSVKiwWgRMyWUtms');
    assert.equal(thumbprint, independentThumbprint(fixedKey));
    assert.equal(thumbprint, await calculateJwkThumbprint(fixedKey, 'sha256'));
  });

  test('generated EC keys match node:crypto and jose', async () => {
    for (let i = 0; i < 5; i++) {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      const jwk = nodeCrypto.importPublicKeyPem(pem).jwk;
      const thumbprint = jwkThumbprint(nodeCrypto, jwk);
      assert.equal(thumbprint, independentThumbprint(jwk));
      assert.equal(thumbprint, await calculateJwkThumbprint(jwk, 'sha256'));
      assert.match(thumbprint, /^[A-Za-z0-9_-]{43}$/);
    }
  });

  test('ignores members outside the required set', () => {
    const published = { ...fixedKey, kid: 'other', alg: 'ES256', use: 'sig' } as EcPublicJwk;
    assert.equal(jwkThumbprint(nodeCrypto, published), jwkThumbprint(nodeCrypto, fixedKey));
  });
});

describe('certificate timestamp input', () => {
  test('equals the general RFC 8785 serializer', () => {
    fc.assert(
      fc.property(
        fc.record({
          tenant_id: fc.string({ unit: 'binary' }),
          certificate_id: fc.string({ unit: 'binary' }),
          note_hash: fc.string(),
          issued_at_utc: fc.string(),
        }),
        (fields) => {
          const expected = canonicalJson({ format: CERTIFICATE_TIMESTAMP_FORMAT, ...fields });
          assert.equal(Buffer.from(certificateTimestampInput(fields)).toString('utf8'), expected);
        },
      ),
    );
  });

  test('matches the fixed reference text', () => {
    const fields = {
      tenant_id: 'hospital-a',
      certificate_id: 'c-1',
      note_hash: 'ab',
      issued_at_utc: '2026-01-02T03:04:05.000Z',
    };
    assert.equal(
      Buffer.from(certificateTimestampInput(fields)).toString('utf8'),
      '{"certificate_id":"c-1","format":"cdil.certificate-timestamp.v1",' +
        '"issued_at_utc":"2026-01-02T03:04:05.000Z","note_hash":"ab","tenant_id":"hospital-a"}',
    );
  });
});
