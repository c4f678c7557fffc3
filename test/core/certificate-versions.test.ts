// Certificates of every format version verify. A bundle written by the v1 issuer, kept as
// fixed bytes, still passes every check, and a field of one version is rejected in another.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BundleFile, prettyJson } from '../../src/core/bundle.ts';
import { canonicalSignedJson } from '../../src/core/canonical.ts';
import { EXIT_INVALID, EXIT_VALID } from '../../src/cli/commands/verify.ts';
import {
  NOTE_TEXT,
  checksWithStatus,
  packBundle,
  readJsonFile,
  unpackBundle,
  verifyFile,
  verifyZip,
  withFile,
} from '../helpers/bundle.ts';

const FIXTURE = new URL('../fixtures/certificate-v1/', import.meta.url).pathname;

describe('certificate format v1', () => {
  let work: string;
  let files: Map<string, Uint8Array>;

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'cdil-v1-'));
    files = unpackBundle(readFileSync(join(FIXTURE, 'bundle.zip')));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('v1 bundle passes every check', () => {
    const notePath = join(work, 'note.txt');
    writeFileSync(notePath, NOTE_TEXT);
    const outcome = verifyFile(join(FIXTURE, 'bundle.zip'), {
      trustedKeys: join(FIXTURE, 'jwks.json'),
      trustedLogKeys: join(FIXTURE, 'log-key.txt'),
      note: notePath,
    });
    assert.equal(outcome.exitCode, EXIT_VALID, outcome.stderr);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), []);
    // The fixture was exported without a TSA.
    assert.deepEqual(checksWithStatus(outcome.report, 'skipped'), [
      'checkpoint_timestamp',
      'certificate_timestamp',
    ]);
    const format = outcome.report!.checks.find((check) => check.check === 'message_format')!;
    assert.equal(format.detail, 'signed message is canonical cdil.certificate.v1');
    const fields = outcome.report!.checks.find((check) => check.check === 'certificate_fields')!;
    assert.equal(fields.detail, 'all 21 certificate fields equal the signed message');
    assert.doesNotMatch(outcome.report!.summary, /meaning/);
  });

  test('v1 message has no attestation_meaning', () => {
    const message = readJsonFile(files, BundleFile.canonicalMessage);
    assert.equal(message.format_version, 'cdil.certificate.v1');
    assert.equal(Object.hasOwn(message, 'attestation_meaning'), false);
  });

  test('meaning added to a v1 message is unreadable', () => {
    const message = readJsonFile(files, BundleFile.canonicalMessage);
    message.attestation_meaning = 'reviewed_and_approved';
    const altered = withFile(
      files,
      BundleFile.canonicalMessage,
      canonicalSignedJson(message as Record<string, string>),
    );
    const outcome = verifyZip(work, packBundle(altered));
    assert.equal(outcome.exitCode, EXIT_INVALID);
    assert.ok(checksWithStatus(outcome.report, 'fail').includes('message_format'));
  });

  test('meaning added to v1 certificate.json is unsigned', () => {
    const certificate = readJsonFile(files, BundleFile.certificate);
    certificate.attestation_meaning = 'reviewed_and_approved';
    const altered = withFile(files, BundleFile.certificate, prettyJson(certificate));
    const outcome = verifyZip(work, packBundle(altered));
    assert.equal(outcome.exitCode, EXIT_INVALID);
    // The added field also breaks the exported order of the file.
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), [
      'bundle_manifest',
      'certificate_fields',
    ]);
    const fields = outcome.report!.checks.find((check) => check.check === 'certificate_fields')!;
    assert.match(fields.detail, /not signed: attestation_meaning/);
  });
});
