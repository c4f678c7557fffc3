// Alterations that keep every hash consistent but would let a bundle claim more than it
// proves: a second valid signature, a key record that disagrees with the key, unreadable
// validity dates and an ambiguous manifest.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BundleFile, prettyJson } from '../../src/core/bundle.ts';
import { isLowS, parseDerSignature, toLowS } from '../../src/core/ecdsa-der.ts';
import { generateP256KeyPair } from '../../src/keys/signer.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import {
  checksWithStatus,
  createBundleFixture,
  packBundle,
  readJsonFile,
  refreshManifest,
  unpackBundle,
  verifyZip,
  type BundleFixture,
} from '../helpers/bundle.ts';

const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function highS(der: Uint8Array): Buffer {
  const { r, s } = parseDerSignature(der)!;
  const encode = (value: bigint) => {
    let hex = value.toString(16);
    if (hex.length % 2) {
      hex = '0' + hex;
    }
    const bytes = Buffer.from(hex, 'hex');
    return bytes[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
  };
  const rBytes = encode(r);
  const sBytes = encode(P256_ORDER - s);
  const body = Buffer.concat([
    Buffer.from([2, rBytes.length]),
    rBytes,
    Buffer.from([2, sBytes.length]),
    sBytes,
  ]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

describe('verifier hardening', () => {
  let fixture: BundleFixture;
  before(async () => {
    fixture = await createBundleFixture();
  });
  after(() => fixture.close());

  const withKeyRecord = (edit: (key: Record<string, unknown>) => void) => {
    const files = unpackBundle(fixture.zip);
    const key = readJsonFile(files, BundleFile.key);
    edit(key);
    files.set(BundleFile.key, prettyJson(key));
    refreshManifest(files);
    return verifyZip(fixture.dir, packBundle(files), { trustedKeys: undefined });
  };

  test('issued signatures are in low-S form', () => {
    const der = Buffer.from(fixture.certificate.signature, 'base64');
    assert.equal(isLowS(der), true);
    assert.deepEqual(toLowS(der), der);
  });

  test('high-S twin of a valid signature fails the signature check', () => {
    const files = unpackBundle(fixture.zip);
    const twin = highS(Buffer.from(fixture.certificate.signature, 'base64'));
    assert.equal(isLowS(twin), false);
    assert.deepEqual(
      Buffer.from(toLowS(twin)),
      Buffer.from(fixture.certificate.signature, 'base64'),
    );
    const certificate = readJsonFile(files, BundleFile.certificate);
    certificate.signature = twin.toString('base64');
    files.set(BundleFile.certificate, prettyJson(certificate));
    files.set(BundleFile.signature, twin);
    refreshManifest(files);
    const outcome = verifyZip(fixture.dir, packBundle(files));
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['signature']);
  });

  test('key record with another public key fails key binding', () => {
    const other = nodeCrypto.importPublicKeyPem(generateP256KeyPair().publicKeyPem).jwk;
    const outcome = withKeyRecord((key) => {
      key.public_key_jwk = other;
    });
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['key_binding']);
  });

  test('key record with an unreadable validity start fails key validity', () => {
    const outcome = withKeyRecord((key) => {
      key.valid_from = 'long ago';
    });
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['key_validity']);
  });

  test('key record with an unknown status fails key validity', () => {
    const outcome = withKeyRecord((key) => {
      key.status = 'trusted-forever';
    });
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['key_validity']);
  });

  test('manifest listing a file twice fails the manifest check', () => {
    const files = unpackBundle(fixture.zip);
    const manifest = readJsonFile(files, BundleFile.manifest);
    const entries = manifest.files as unknown[];
    manifest.files = [...entries, entries[0]];
    files.set(BundleFile.manifest, prettyJson(manifest));
    const outcome = verifyZip(fixture.dir, packBundle(files));
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['bundle_manifest']);
  });

  test('manifest naming another certificate fails the manifest check', () => {
    const files = unpackBundle(fixture.zip);
    const manifest = readJsonFile(files, BundleFile.manifest);
    manifest.certificate_id = '00000000-0000-4000-8000-000000000000';
    files.set(BundleFile.manifest, prettyJson(manifest));
    const outcome = verifyZip(fixture.dir, packBundle(files));
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['bundle_manifest']);
  });

  const editedBundle = (edit: (files: Map<string, Uint8Array>) => void, trusted = false) => {
    const files = unpackBundle(fixture.zip);
    edit(files);
    refreshManifest(files);
    return verifyZip(fixture.dir, packBundle(files), trusted ? { trustedKeys: jwksFile() } : {});
  };
  const jwksFile = () => {
    const path = join(fixture.dir, 'jwks.json');
    writeFileSync(path, JSON.stringify(fixture.jwks));
    return path;
  };
  const text = (files: Map<string, Uint8Array>, name: string) =>
    Buffer.from(files.get(name)!).toString('utf8');

  test('forged unsigned content fails even with a recomputed manifest', () => {
    const outcome = editedBundle((files) => {
      const certificate = readJsonFile(files, BundleFile.certificate);
      certificate.patient_name = 'John Doe';
      certificate.signature_algorithm = 'none';
      const forged = JSON.stringify(certificate, null, 2).replace(
        '{\n',
        '{\n  "model_version": "FORGED-9.9",\n',
      );
      files.set(BundleFile.certificate, Buffer.from(forged + '\n'));
      files.set(BundleFile.readme, Buffer.from('forged'));
      files.set('note.txt', Buffer.from('a different note'));
      files.delete(BundleFile.signature);
      files.delete(BundleFile.key);
    }, true);
    assert.equal(outcome.exitCode, 1);
    const failed = checksWithStatus(outcome.report, 'fail');
    assert.ok(failed.includes('bundle_manifest'));
    assert.ok(failed.includes('certificate_fields'));
    const detail = outcome.report!.checks.find(
      (check) => check.check === 'bundle_manifest',
    )!.detail;
    for (const problem of [
      'signature.der is missing',
      'key.json is missing',
      'note.txt is not part',
      'README.txt differs',
      'certificate.json is not in its exported form',
    ]) {
      assert.ok(detail.includes(problem), problem);
    }
  });

  for (const [name, edit] of [
    [
      'README.txt with another model',
      (files: Map<string, Uint8Array>) =>
        files.set(
          BundleFile.readme,
          Buffer.from(text(files, BundleFile.readme).replace('2026', '2025')),
        ),
    ],
    [
      'public_key.pem with extra text',
      (files: Map<string, Uint8Array>) =>
        files.set(BundleFile.publicKey, Buffer.from('junk\n' + text(files, BundleFile.publicKey))),
    ],
    [
      're-indented certificate.json',
      (files: Map<string, Uint8Array>) =>
        files.set(
          BundleFile.certificate,
          Buffer.from(JSON.stringify(readJsonFile(files, BundleFile.certificate), null, 4) + '\n'),
        ),
    ],
    [
      'certificate.json with a duplicate key',
      (files: Map<string, Uint8Array>) =>
        files.set(
          BundleFile.certificate,
          Buffer.from(
            text(files, BundleFile.certificate).replace('{\n', '{\n  "model_name": "forged",\n'),
          ),
        ),
    ],
    [
      'key.json behind a byte order mark',
      (files: Map<string, Uint8Array>) =>
        files.set(
          BundleFile.key,
          Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), files.get(BundleFile.key)!]),
        ),
    ],
    [
      'an extra listed file',
      (files: Map<string, Uint8Array>) => files.set('note.txt', Buffer.from('x')),
    ],
    ['key.json removed', (files: Map<string, Uint8Array>) => files.delete(BundleFile.key)],
    [
      'report about another certificate',
      (files: Map<string, Uint8Array>) => {
        const report = readJsonFile(files, BundleFile.verificationReport);
        report.certificate_id = 'other';
        files.set(BundleFile.verificationReport, prettyJson(report));
      },
    ],
  ] as const) {
    test(`${name} fails the bundle check`, () => {
      const outcome = editedBundle(edit);
      assert.equal(outcome.exitCode, 1);
      assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['bundle_manifest']);
    });
  }

  test('unknown certificate field fails the field check', () => {
    const outcome = editedBundle((files) => {
      const certificate = readJsonFile(files, BundleFile.certificate);
      certificate.patient_name = 'John Doe';
      files.set(BundleFile.certificate, prettyJson(certificate));
    });
    // The field after signature_algorithm also breaks the exported order of the file.
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), [
      'bundle_manifest',
      'certificate_fields',
    ]);
  });

  test('signature algorithm none fails the field check', () => {
    const outcome = editedBundle((files) => {
      const certificate = readJsonFile(files, BundleFile.certificate);
      certificate.signature_algorithm = 'none';
      files.set(BundleFile.certificate, prettyJson(certificate));
    });
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['certificate_fields']);
  });

  // Spellings that decode to the signature's own bytes: one padding character too many, and,
  // when the encoding ends in padding (which depends on the DER length), unused bits set in
  // the last data character.
  const nonCanonicalSpellings = (signature: string): string[] => {
    const spellings = [signature + '='];
    const data = signature.replace(/=+$/, '');
    if (data.length < signature.length) {
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
      const last = alphabet.indexOf(data.at(-1)!);
      spellings.push(data.slice(0, -1) + alphabet[last + 1]! + signature.slice(data.length));
    }
    return spellings;
  };

  test('non-canonical base64 signature fails the signature check', () => {
    const signature = fixture.certificate.signature;
    const spellings = nonCanonicalSpellings(signature);
    assert.ok(spellings.length > 0);
    for (const spelling of spellings) {
      assert.notEqual(spelling, signature);
      assert.deepEqual(Buffer.from(spelling, 'base64'), Buffer.from(signature, 'base64'));
      const outcome = editedBundle((files) => {
        const certificate = readJsonFile(files, BundleFile.certificate);
        certificate.signature = spelling;
        files.set(BundleFile.certificate, prettyJson(certificate));
      });
      // An extra padding character also makes signature.sig disagree with the certificate.
      const failed = checksWithStatus(outcome.report, 'fail');
      assert.ok(failed.includes('signature'), spelling);
      assert.deepEqual(
        failed.filter((check) => check !== 'bundle_manifest'),
        ['signature'],
        spelling,
      );
    }
  });

  test('non-canonical spellings for each length', () => {
    // Low-S DER P-256 signatures are at most 71 bytes and almost always 68 to 71. A 69-byte
    // signature encodes without padding.
    for (const [length, count] of [
      [68, 2],
      [69, 1],
      [70, 2],
      [71, 2],
    ] as const) {
      const signature = Buffer.alloc(length, 0x30).toString('base64');
      const spellings = nonCanonicalSpellings(signature);
      assert.equal(spellings.length, count, String(length));
      for (const spelling of spellings) {
        assert.notEqual(spelling, signature);
        assert.deepEqual(Buffer.from(spelling, 'base64'), Buffer.from(signature, 'base64'));
      }
    }
  });

  test('second spellings of unsigned files fail the manifest check', () => {
    const reversed = (value: Record<string, unknown>) =>
      Object.fromEntries(Object.entries(value).reverse());
    const bom = (bytes: Uint8Array) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes]);
    const cases: [string, (files: Map<string, Uint8Array>) => void][] = [
      [
        'certificate.json keys reversed',
        (files) => {
          const certificate = reversed(readJsonFile(files, BundleFile.certificate));
          files.set(BundleFile.certificate, prettyJson(certificate));
        },
      ],
      [
        'key.json keys reversed',
        (files) =>
          files.set(BundleFile.key, prettyJson(reversed(readJsonFile(files, BundleFile.key)))),
      ],
      [
        'key.json with a comment',
        (files) => {
          const key = readJsonFile(files, BundleFile.key);
          key.comment = 'trust me';
          files.set(BundleFile.key, prettyJson(key));
        },
      ],
      [
        'private member in the public JWK',
        (files) => {
          const key = readJsonFile(files, BundleFile.key);
          (key.public_key_jwk as Record<string, unknown>).d = 'AAAA';
          files.set(BundleFile.key, prettyJson(key));
        },
      ],
      [
        'README.txt with a byte order mark',
        (files) => files.set(BundleFile.readme, bom(files.get(BundleFile.readme)!)),
      ],
      [
        'public_key.pem with a byte order mark',
        (files) => files.set(BundleFile.publicKey, bom(files.get(BundleFile.publicKey)!)),
      ],
    ];
    for (const [name, edit] of cases) {
      const outcome = editedBundle(edit);
      assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['bundle_manifest'], name);
    }

    // refreshManifest rewrites manifest.json, so a manifest edit is made after it.
    const files = unpackBundle(fixture.zip);
    refreshManifest(files);
    const manifest = readJsonFile(files, BundleFile.manifest);
    manifest.comment = 'signed by the hospital';
    files.set(BundleFile.manifest, prettyJson(manifest));
    const annotated = verifyZip(fixture.dir, packBundle(files), {});
    assert.deepEqual(checksWithStatus(annotated.report, 'fail'), ['bundle_manifest']);
    const detail = annotated.report!.checks.find((check) => check.check === 'bundle_manifest')!;
    assert.match(detail.detail, /manifest.json has unknown fields comment/);
  });

  test('exported field problems name the field', () => {
    /** Returns a copy of `value` with the positions of keys `a` and `b` exchanged. */
    const swapped = (value: Record<string, unknown>, a: string, b: string) => {
      const keys = Object.keys(value);
      const indexA = keys.indexOf(a);
      const indexB = keys.indexOf(b);
      keys[indexA] = b;
      keys[indexB] = a;
      return Object.fromEntries(keys.map((key) => [key, value[key]]));
    };
    // Each edit runs after refreshManifest, which rewrites manifest.json.
    const cases: [string, (files: Map<string, Uint8Array>) => void][] = [
      [
        'key.json has unknown fields public_key_jwk.d, public_key_jwk.p',
        (files) => {
          const key = readJsonFile(files, BundleFile.key);
          Object.assign(key.public_key_jwk as object, { d: 'AAAA', p: 'BBBB' });
          files.set(BundleFile.key, prettyJson(key));
        },
      ],
      [
        'key.json has fields of the top level out of the exported order',
        (files) => {
          const key = swapped(readJsonFile(files, BundleFile.key), 'status', 'tenant_id');
          files.set(BundleFile.key, prettyJson(key));
        },
      ],
      [
        'key.json has unknown fields note; fields of public_key_jwk.out of the exported order',
        (files) => {
          const key = readJsonFile(files, BundleFile.key);
          key.note = 'x';
          key.public_key_jwk = swapped(key.public_key_jwk as Record<string, unknown>, 'x', 'y');
          files.set(BundleFile.key, prettyJson(key));
        },
      ],
      [
        'manifest.json has unknown fields files[2].note',
        (files) => {
          const manifest = readJsonFile(files, BundleFile.manifest);
          Object.assign((manifest.files as object[])[2]!, { note: 'x' });
          files.set(BundleFile.manifest, prettyJson(manifest));
        },
      ],
      [
        'manifest.json has fields of files[0].out of the exported order',
        (files) => {
          const manifest = readJsonFile(files, BundleFile.manifest);
          const entries = manifest.files as Record<string, unknown>[];
          entries[0] = swapped(entries[0]!, 'sha256', 'size');
          files.set(BundleFile.manifest, prettyJson(manifest));
        },
      ],
      [
        'inclusion_proof.json has fields of the top level out of the exported order',
        (files) => {
          const proof = swapped(readJsonFile(files, 'inclusion_proof.json'), 'proof', 'format');
          files.set('inclusion_proof.json', prettyJson(proof));
        },
      ],
    ];
    for (const [expected, edit] of cases) {
      const files = unpackBundle(fixture.zip);
      refreshManifest(files);
      edit(files);
      const outcome = verifyZip(fixture.dir, packBundle(files), {});
      const manifest = outcome.report!.checks.find((check) => check.check === 'bundle_manifest')!;
      assert.equal(manifest.status, 'fail', expected);
      assert.ok(manifest.detail.includes(expected), manifest.detail);
    }
  });

  test('key record validity start differing from the pinned set fails trust', () => {
    const outcome = editedBundle((files) => {
      const key = readJsonFile(files, BundleFile.key);
      key.valid_from = '2000-01-01T00:00:00.000Z';
      files.set(BundleFile.key, prettyJson(key));
    }, true);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['trusted_key']);
  });
});
