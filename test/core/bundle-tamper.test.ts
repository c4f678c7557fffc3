// Tampering with one real defense bundle, one change at a time, through `cdil verify --json`.
// Every altered bundle keeps its JSON valid and its manifest recomputed, so the check named in
// each test is the one that catches the change, not a side effect of a broken file.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BundleFile, prettyJson } from '../../src/core/bundle.ts';
import { canonicalSignedJson } from '../../src/core/canonical.ts';
import { ATTESTATION_MEANINGS, SIGNED_FIELDS_V2 } from '../../src/core/certificate.ts';
import { EXIT_INVALID, EXIT_VALID } from '../../src/cli/commands/verify.ts';
import { CHECK_NAMES } from '../../src/core/verify/verify.ts';
import {
  checksWithStatus,
  createBundleFixture,
  packBundle,
  readJsonFile,
  refreshManifest,
  resignBundle,
  unpackBundle,
  verifyZip,
  withFile,
  withoutLog,
  type BundleFixture,
  type VerifyOutcome,
} from '../helpers/bundle.ts';

/** Returns a different value of the same JSON type, so the message stays well-formed. */
function alteredValue(value: unknown): unknown {
  // An attestation meaning must stay one of the known meanings to keep the message readable.
  if ((ATTESTATION_MEANINGS as readonly unknown[]).includes(value)) {
    return ATTESTATION_MEANINGS.find((meaning) => meaning !== value);
  }
  if (typeof value === 'string') {
    const last = value.at(-1);
    return value.slice(0, -1) + (last === 'a' ? 'b' : 'a');
  }
  if (typeof value === 'number') {
    return value + 1;
  }
  if (typeof value === 'boolean') {
    return !value;
  }
  if (value === null) {
    return 'a'.repeat(64);
  }
  throw new Error(`unexpected signed value ${JSON.stringify(value)}`);
}

function assertFailed(outcome: VerifyOutcome, check: string, label = ''): void {
  assert.equal(outcome.exitCode, EXIT_INVALID, `exit code ${label}`);
  assert.ok(outcome.report, `report ${label}`);
  assert.equal(outcome.report.valid, false, `report.valid ${label}`);
  const failed = checksWithStatus(outcome.report, 'fail');
  assert.ok(failed.includes(check), `${check} should fail ${label}; failed: ${failed.join(', ')}`);
}

function assertValid(outcome: VerifyOutcome): void {
  assert.equal(outcome.exitCode, EXIT_VALID, outcome.stderr);
  assert.ok(outcome.report);
  assert.equal(outcome.report.valid, true);
  assert.deepEqual(checksWithStatus(outcome.report, 'fail'), []);
}

let fixture: BundleFixture;
let work: string;
let files: Map<string, Uint8Array>;
let jwksPath: string;

before(async () => {
  fixture = await createBundleFixture();
  work = mkdtempSync(join(tmpdir(), 'cdil-tamper-'));
  files = unpackBundle(fixture.zip);
  jwksPath = join(work, 'tenant-jwks.json');
  writeFileSync(jwksPath, JSON.stringify(fixture.jwks));
});

after(async () => {
  await fixture.close();
  rmSync(work, { recursive: true, force: true });
});

void describe('genuine bundle', () => {
  test('verifies with every check passing or skipped', () => {
    const outcome = verifyZip(work, fixture.zip);
    assertValid(outcome);
    assert.deepEqual(
      outcome.report!.checks.map((check) => check.check),
      [...CHECK_NAMES],
    );
    for (const check of outcome.report!.checks) {
      assert.ok(
        check.status === 'pass' || check.status === 'skipped',
        `${check.check} is ${check.status}`,
      );
    }
    // The fixture has no TSA, so its bundles carry no timestamp tokens.
    assert.deepEqual(checksWithStatus(outcome.report, 'skipped'), [
      'trusted_key',
      'note_hash',
      'checkpoint_timestamp',
      'certificate_timestamp',
    ]);
  });

  test('verifies against the pinned tenant key set', () => {
    const outcome = verifyZip(work, fixture.zip, { trustedKeys: jwksPath });
    assertValid(outcome);
    assert.ok(checksWithStatus(outcome.report, 'pass').includes('trusted_key'));
  });

  test('repacked unchanged files still verify', () => {
    assertValid(verifyZip(work, packBundle(files)));
  });
});

void describe('signed field altered in canonical_message.json', () => {
  for (const field of SIGNED_FIELDS_V2) {
    if (field === 'format_version') {
      continue;
    }
    test(`${field} breaks the signature`, () => {
      const message = readJsonFile(files, BundleFile.canonicalMessage);
      message[field] = alteredValue(message[field]);
      const altered = withFile(
        files,
        BundleFile.canonicalMessage,
        canonicalSignedJson(message as Record<string, string>),
      );
      const outcome = verifyZip(work, packBundle(altered));
      assertFailed(outcome, 'signature', field);
      assertFailed(outcome, 'certificate_fields', field);
      assert.ok(
        checksWithStatus(outcome.report, 'pass').includes('bundle_manifest'),
        'manifest was recomputed',
      );
      assert.ok(
        checksWithStatus(outcome.report, 'pass').includes('message_format'),
        'message stays canonical',
      );
    });
  }

  test('format_version makes the message unreadable', () => {
    const message = readJsonFile(files, BundleFile.canonicalMessage);
    message.format_version = 'cdil.certificate.v3';
    const altered = withFile(
      files,
      BundleFile.canonicalMessage,
      canonicalSignedJson(message as Record<string, string>),
    );
    const outcome = verifyZip(work, packBundle(altered));
    assertFailed(outcome, 'message_format');
    assert.equal(
      outcome.report!.checks.find((check) => check.check === 'message_format')?.code,
      'MESSAGE_MALFORMED',
    );
    assert.ok(checksWithStatus(outcome.report, 'skipped').includes('signature'));
  });

  test('downgrade to v1 keeping the meaning is unreadable', () => {
    const message = readJsonFile(files, BundleFile.canonicalMessage);
    message.format_version = 'cdil.certificate.v1';
    const altered = withFile(
      files,
      BundleFile.canonicalMessage,
      canonicalSignedJson(message as Record<string, string>),
    );
    const outcome = verifyZip(work, packBundle(altered));
    assertFailed(outcome, 'message_format');
    const detail = outcome.report!.checks.find((check) => check.check === 'message_format')!;
    assert.match(detail.detail, /unexpected attestation_meaning/);
  });

  test('unknown attestation meaning is unreadable', () => {
    const message = readJsonFile(files, BundleFile.canonicalMessage);
    message.attestation_meaning = 'witnessed';
    const altered = withFile(
      files,
      BundleFile.canonicalMessage,
      canonicalSignedJson(message as Record<string, string>),
    );
    const outcome = verifyZip(work, packBundle(altered));
    assertFailed(outcome, 'message_format');
  });

  test('non-canonical whitespace is rejected', () => {
    const message = readJsonFile(files, BundleFile.canonicalMessage);
    const altered = withFile(files, BundleFile.canonicalMessage, JSON.stringify(message, null, 1));
    assertFailed(verifyZip(work, packBundle(altered)), 'message_format');
  });
});

void describe('signed field altered in certificate.json', () => {
  for (const field of SIGNED_FIELDS_V2) {
    test(`${field} differs from the signed message`, () => {
      const certificate = readJsonFile(files, BundleFile.certificate);
      certificate[field] = alteredValue(certificate[field]);
      const altered = withFile(files, BundleFile.certificate, prettyJson(certificate));
      const outcome = verifyZip(work, packBundle(altered));
      assertFailed(outcome, 'certificate_fields', field);
      assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['certificate_fields'], field);
      assert.equal(
        outcome.report!.checks.find((check) => check.check === 'certificate_fields')?.code,
        'FIELD_MISMATCH',
      );
    });
  }
});

void describe('signature and key', () => {
  test('one flipped signature bit fails the signature', () => {
    const der = Buffer.from(files.get(BundleFile.signature)!);
    der[der.length - 1]! ^= 0x01;
    const certificate = readJsonFile(files, BundleFile.certificate);
    certificate.signature = der.toString('base64');
    const altered = new Map(files);
    altered.set(BundleFile.signature, der);
    altered.set(BundleFile.certificate, prettyJson(certificate));
    refreshManifest(altered);
    const outcome = verifyZip(work, packBundle(altered));
    assertFailed(outcome, 'signature');
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['signature']);
    assert.equal(
      outcome.report!.checks.find((check) => check.check === 'signature')?.code,
      'SIGNATURE_INVALID',
    );
  });

  test('mismatched signature.der fails the manifest', () => {
    const der = Buffer.from(files.get(BundleFile.signature)!);
    der[der.length - 1]! ^= 0x01;
    const outcome = verifyZip(work, packBundle(withFile(files, BundleFile.signature, der)));
    assertFailed(outcome, 'bundle_manifest');
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['bundle_manifest']);
  });

  test('other P-256 public key fails key binding', () => {
    const otherPem = resignBundle(files).get(BundleFile.publicKey)!;
    const outcome = verifyZip(work, packBundle(withFile(files, BundleFile.publicKey, otherPem)));
    assertFailed(outcome, 'key_binding');
    assertFailed(outcome, 'signature');
    assert.equal(
      outcome.report!.checks.find((check) => check.check === 'key_binding')?.code,
      'KEY_MISMATCH',
    );
  });

  test('other public key fails with pinned keys', () => {
    // public_key.pem is compared with the signed key_id and with the pinned key of that id.
    const otherPem = resignBundle(files).get(BundleFile.publicKey)!;
    const altered = packBundle(withFile(files, BundleFile.publicKey, otherPem));
    const outcome = verifyZip(work, altered, { trustedKeys: jwksPath });
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), [
      'key_binding',
      'signature',
      'trusted_key',
    ]);
    const trusted = outcome.report!.checks.find((check) => check.check === 'trusted_key');
    assert.match(trusted!.detail, /different coordinates/);
  });

  test('unreadable public key fails key binding', () => {
    const outcome = verifyZip(
      work,
      packBundle(withFile(files, BundleFile.publicKey, 'not a key\n')),
    );
    assertFailed(outcome, 'key_binding');
  });

  test('re-signed bundle fails log and pin', () => {
    const withLog = verifyZip(work, packBundle(resignBundle(files)));
    assert.deepEqual(checksWithStatus(withLog.report, 'fail'), ['log_inclusion']);

    // A v2 certificate is always logged, so dropping the log evidence fails on its own.
    const forged = packBundle(resignBundle(withoutLog(files)));
    assert.deepEqual(checksWithStatus(verifyZip(work, forged).report, 'fail'), ['log_checkpoint']);

    const pinned = verifyZip(work, forged, { trustedKeys: jwksPath });
    assertFailed(pinned, 'trusted_key');
    assert.deepEqual(checksWithStatus(pinned.report, 'fail'), ['trusted_key', 'log_checkpoint']);
    assert.equal(
      pinned.report!.checks.find((check) => check.check === 'trusted_key')?.code,
      'KEY_NOT_TRUSTED',
    );
  });

  test('revoked key in key.json fails key validity', () => {
    const key = readJsonFile(files, BundleFile.key);
    key.status = 'revoked';
    const outcome = verifyZip(work, packBundle(withFile(files, BundleFile.key, prettyJson(key))));
    assertFailed(outcome, 'key_validity');
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['key_validity']);
  });
});

void describe('chain fields', () => {
  test('previous_hash in certificate.json fails fields', () => {
    const certificate = readJsonFile(files, BundleFile.certificate);
    certificate.previous_hash = alteredValue(certificate.previous_hash);
    const outcome = verifyZip(
      work,
      packBundle(withFile(files, BundleFile.certificate, prettyJson(certificate))),
    );
    assertFailed(outcome, 'certificate_fields');
  });

  test('re-signed wrong chain_hash fails chain hash', () => {
    const forged = resignBundle(withoutLog(files), {
      editMessage: (message) => {
        message.chain_hash = alteredValue(message.chain_hash);
      },
    });
    const outcome = verifyZip(work, packBundle(forged));
    assertFailed(outcome, 'chain_hash');
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['chain_hash', 'log_checkpoint']);
    assert.equal(
      outcome.report!.checks.find((check) => check.check === 'chain_hash')?.code,
      'CHAIN_HASH_MISMATCH',
    );
  });

  test('re-signed previous_hash fails chain hash', () => {
    const forged = resignBundle(files, {
      editMessage: (message) => {
        message.previous_hash = alteredValue(message.previous_hash);
      },
    });
    const outcome = verifyZip(work, packBundle(forged));
    assertFailed(outcome, 'chain_hash');
  });

  test('re-signed null previous_hash fails chain link', () => {
    const forged = resignBundle(files, {
      editMessage: (message) => {
        message.previous_hash = null;
      },
    });
    const outcome = verifyZip(work, packBundle(forged));
    assertFailed(outcome, 'chain_link');
    assert.equal(
      outcome.report!.checks.find((check) => check.check === 'chain_link')?.code,
      'CHAIN_LINK_BROKEN',
    );
  });

  test('re-signed chain_sequence 0 fails chain link', () => {
    const forged = resignBundle(files, {
      editMessage: (message) => {
        message.chain_sequence = 0;
      },
    });
    assertFailed(verifyZip(work, packBundle(forged)), 'chain_link');
  });
});

void describe('note text', () => {
  test('exact note passes the note hash', () => {
    const notePath = join(work, 'note.txt');
    writeFileSync(notePath, fixture.noteText);
    const outcome = verifyZip(work, fixture.zip, { note: notePath });
    assertValid(outcome);
    assert.ok(checksWithStatus(outcome.report, 'pass').includes('note_hash'));
  });

  test('note with one byte changed fails the note hash', () => {
    const note = Buffer.from(fixture.noteText, 'utf8');
    note[10]! ^= 0x20;
    const notePath = join(work, 'note-altered.txt');
    writeFileSync(notePath, note);
    const outcome = verifyZip(work, fixture.zip, { note: notePath });
    assertFailed(outcome, 'note_hash');
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['note_hash']);
    assert.equal(
      outcome.report!.checks.find((check) => check.check === 'note_hash')?.code,
      'NOTE_MISMATCH',
    );
  });

  test('note with an added final newline fails the note hash', () => {
    const notePath = join(work, 'note-newline.txt');
    writeFileSync(notePath, fixture.noteText + '\n');
    assertFailed(verifyZip(work, fixture.zip, { note: notePath }), 'note_hash');
  });
});

void describe('manifest', () => {
  test('file modified after export fails', () => {
    const altered = new Map(files);
    altered.set(
      BundleFile.readme,
      Buffer.concat([files.get(BundleFile.readme)!, Buffer.from('extra line\n')]),
    );
    const outcome = verifyZip(work, packBundle(altered));
    assertFailed(outcome, 'bundle_manifest');
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['bundle_manifest']);
    assert.equal(
      outcome.report!.checks.find((check) => check.check === 'bundle_manifest')?.code,
      'MANIFEST_MISMATCH',
    );
  });

  test('extra unlisted file fails', () => {
    const altered = new Map(files);
    altered.set('note.txt', Buffer.from('a note that was never certified'));
    const outcome = verifyZip(work, packBundle(altered));
    assertFailed(outcome, 'bundle_manifest');
    assert.match(outcome.report!.checks[0]!.detail, /note\.txt is not listed/);
  });

  test('listed file removed from the archive fails', () => {
    const altered = new Map(files);
    altered.delete(BundleFile.verificationReport);
    const outcome = verifyZip(work, packBundle(altered));
    assertFailed(outcome, 'bundle_manifest');
    assert.match(outcome.report!.checks[0]!.detail, /verification_report\.json is missing/);
  });
});

void describe('unexpected keys in the signed message', () => {
  // Names such as "constructor" exist on every object's prototype. The format check must
  // still reject them as fields that the format does not define.
  for (const [key, value] of [
    ['constructor', 'x'],
    ['constructor', 1.5],
    ['toString', { nested: true }],
    ['__proto__', 'x'],
    ['extra_field', 'x'],
  ] as const) {
    test(`${key} with ${JSON.stringify(value)} fails the message format`, () => {
      // Serialized by hand in sorted key order, because assigning "__proto__" on an object
      // would set its prototype instead of adding a member.
      const entries: [string, unknown][] = [
        ...Object.entries(readJsonFile(files, BundleFile.canonicalMessage)),
        [key, value],
      ];
      entries.sort(([a], [b]) => (a < b ? -1 : 1));
      const text = `{${entries.map(([name, member]) => `${JSON.stringify(name)}:${JSON.stringify(member)}`).join(',')}}`;
      const altered = withFile(files, BundleFile.canonicalMessage, text);
      const outcome = verifyZip(work, packBundle(altered));
      assertFailed(outcome, 'message_format', key);
      assert.match(outcome.report!.checks[1]!.detail, new RegExp(`unexpected ${key}`));
    });
  }
});

void describe('non-ASCII field values', () => {
  let unicode: BundleFixture;

  before(async () => {
    unicode = await createBundleFixture({
      model_name: 'Modèle-α',
      governance_policy_version: 'política-ñ',
    });
  });

  after(async () => {
    await unicode.close();
  });

  test('verify end to end with pins and note', () => {
    const notePath = join(work, 'unicode-note.txt');
    writeFileSync(notePath, unicode.noteText);
    const unicodeJwks = join(work, 'unicode-jwks.json');
    writeFileSync(unicodeJwks, JSON.stringify(unicode.jwks));
    const outcome = verifyZip(
      work,
      unicode.zip,
      { trustedKeys: unicodeJwks, note: notePath },
      'unicode.zip',
    );
    assertValid(outcome);
    assert.deepEqual(checksWithStatus(outcome.report, 'skipped'), [
      'checkpoint_timestamp',
      'certificate_timestamp',
    ]);
  });

  test('signed bytes hold the values as raw UTF-8', () => {
    const unicodeFiles = unpackBundle(unicode.zip);
    const signed = Buffer.from(unicodeFiles.get(BundleFile.canonicalMessage)!);
    assert.ok(signed.includes(Buffer.from('"model_name":"Modèle-α"', 'utf8')));
    assert.ok(signed.includes(Buffer.from('"governance_policy_version":"política-ñ"', 'utf8')));
    assert.equal(signed.includes(Buffer.from('\\u', 'utf8')), false, 'no \\u escapes');
    const certificate = readJsonFile(unicodeFiles, BundleFile.certificate);
    assert.equal(certificate.model_name, 'Modèle-α');
    assert.equal(certificate.governance_policy_version, 'política-ñ');
  });

  test('one altered accented letter breaks the signature', () => {
    const unicodeFiles = unpackBundle(unicode.zip);
    const message = readJsonFile(unicodeFiles, BundleFile.canonicalMessage);
    message.model_name = 'Modele-α';
    const altered = withFile(
      unicodeFiles,
      BundleFile.canonicalMessage,
      canonicalSignedJson(message as Record<string, string>),
    );
    assertFailed(verifyZip(work, packBundle(altered), {}, 'unicode-altered.zip'), 'signature');
  });
});
