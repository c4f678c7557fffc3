// Tampering with the log evidence of a real format v2 defense bundle, one change at a time,
// through `cdil verify --json`. Each altered bundle keeps its manifest recomputed, so the check
// named in each test is the one that catches the change.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BundleFile, LogBundleFile, prettyJson } from '../../src/core/bundle.ts';
import {
  createVerifierKey,
  formatVerifierKey,
  parseCheckpoint,
  signNote,
} from '../../src/core/checkpoint.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { issueRequest } from '../helpers/bundle.ts';
import {
  checksWithStatus,
  createBundleFixture,
  packBundle,
  readJsonFile,
  refreshManifest,
  unpackBundle,
  verifyZip,
  withFile,
  withoutLog,
  type BundleFixture,
} from '../helpers/bundle.ts';
import { generateEd25519Key } from '../helpers/ed25519.ts';
import { createCertificate } from '../helpers/tsa.ts';

let fixture: BundleFixture;
let work: string;
let files: Map<string, Uint8Array>;
let logKeyPath: string;

const text = (name: string, source = files) => Buffer.from(source.get(name)!).toString('utf8');

/** Re-signs checkpoint.txt's body with a fresh key under the same key name. */
function resignCheckpoint(source: Map<string, Uint8Array>) {
  const note = text(LogBundleFile.checkpoint, source);
  const body = note.slice(0, note.indexOf('\n\n') + 1);
  const origin = parseCheckpoint(body).origin;
  const key = generateEd25519Key();
  const signed = signNote(nodeCrypto, body, origin, key.sign, key.publicKey);
  const verifier = formatVerifierKey(createVerifierKey(nodeCrypto, origin, key.publicKey));
  return { signed, verifier };
}

function failedChecks(zip: Uint8Array, options: { trustedLogKeys?: string } = {}) {
  const outcome = verifyZip(work, zip, options);
  return { outcome, failed: checksWithStatus(outcome.report, 'fail') };
}

before(async () => {
  fixture = await createBundleFixture();
  work = mkdtempSync(join(tmpdir(), 'cdil-bundle-log-'));
  files = unpackBundle(fixture.zip);
  logKeyPath = join(work, 'log-key.txt');
  writeFileSync(logKeyPath, text(LogBundleFile.logKey));
});

after(async () => {
  await fixture.close();
  rmSync(work, { recursive: true, force: true });
});

void describe('log evidence of a genuine v2 bundle', () => {
  test('passes both log checks, also with the log key pinned', () => {
    const { outcome, failed } = failedChecks(fixture.zip, { trustedLogKeys: logKeyPath });
    assert.deepEqual(failed, []);
    const passed = checksWithStatus(outcome.report, 'pass');
    assert.ok(passed.includes('log_checkpoint'));
    assert.ok(passed.includes('log_inclusion'));
  });
});

void describe('log evidence altered', () => {
  test('a certificate swapped in from another bundle of the tenant fails log_inclusion', async () => {
    const { certificate } = await fixture.services.issuance.issue(
      't1',
      issueRequest({ encounter_id: 'enc-swap' }),
    );
    const { zip } = await fixture.services.certificates.defenseBundle(
      't1',
      certificate.certificate_id,
    );
    const other = unpackBundle(zip);
    const swapped = new Map(files);
    for (const name of [
      BundleFile.certificate,
      BundleFile.canonicalMessage,
      BundleFile.signature,
      BundleFile.readme,
      BundleFile.verificationReport,
    ]) {
      swapped.set(name, other.get(name)!);
    }
    refreshManifest(swapped);
    const { failed } = failedChecks(packBundle(swapped));
    assert.deepEqual(failed, ['log_inclusion']);
  });

  test('an edited proof hash fails log_inclusion', () => {
    const proof = readJsonFile(files, LogBundleFile.inclusionProof) as { proof: string[] };
    const hash = Buffer.from(proof.proof[0]!, 'base64');
    hash[0] = hash[0]! ^ 1;
    proof.proof[0] = hash.toString('base64');
    const { failed } = failedChecks(
      packBundle(withFile(files, LogBundleFile.inclusionProof, prettyJson(proof))),
    );
    assert.deepEqual(failed, ['log_inclusion']);
  });

  test('a wrong log index fails log_inclusion', () => {
    const proof = readJsonFile(files, LogBundleFile.inclusionProof) as { log_index: number };
    proof.log_index += 1;
    const { failed } = failedChecks(
      packBundle(withFile(files, LogBundleFile.inclusionProof, prettyJson(proof))),
    );
    assert.deepEqual(failed, ['log_inclusion']);
  });

  test('a checkpoint re-signed with another key fails log_checkpoint', () => {
    const { signed, verifier } = resignCheckpoint(files);
    const unkeyed = failedChecks(packBundle(withFile(files, LogBundleFile.checkpoint, signed)));
    assert.deepEqual(unkeyed.failed, ['log_checkpoint']);

    // With its own key shipped beside it, only a pinned log key distinguishes it from the real one.
    const forged = withFile(
      withFile(files, LogBundleFile.checkpoint, signed),
      LogBundleFile.logKey,
      `${verifier}\n`,
    );
    assert.deepEqual(failedChecks(packBundle(forged)).failed, []);
    const pinned = failedChecks(packBundle(forged), { trustedLogKeys: logKeyPath });
    assert.deepEqual(pinned.failed, ['log_checkpoint']);
    const check = pinned.outcome.report!.checks.find((item) => item.check === 'log_checkpoint');
    assert.equal(check?.code, 'CHECKPOINT_INVALID');
  });

  test("another tenant's checkpoint and key fail log_checkpoint", async () => {
    await fixture.services.tenants.create('t2');
    const { certificate } = await fixture.services.issuance.issue('t2', issueRequest());
    const other = unpackBundle(
      (await fixture.services.certificates.defenseBundle('t2', certificate.certificate_id)).zip,
    );
    let foreign = withFile(files, LogBundleFile.checkpoint, text(LogBundleFile.checkpoint, other));
    foreign = withFile(foreign, LogBundleFile.logKey, text(LogBundleFile.logKey, other));
    foreign = withFile(
      foreign,
      LogBundleFile.inclusionProof,
      other.get(LogBundleFile.inclusionProof)!,
    );
    const { failed, outcome } = failedChecks(packBundle(foreign));
    assert.deepEqual(failed, ['log_checkpoint']);
    const check = outcome.report!.checks.find((item) => item.check === 'log_checkpoint');
    assert.match(check!.detail, /not the log of tenant t1/);
  });

  test('a missing log file or a malformed proof fails, not passes', () => {
    const missing = new Map(files);
    missing.delete(LogBundleFile.inclusionProof);
    refreshManifest(missing);
    assert.ok(failedChecks(packBundle(missing)).failed.includes('log_checkpoint'));

    const malformed = withFile(files, LogBundleFile.inclusionProof, '{"format":"x"}\n');
    assert.ok(failedChecks(packBundle(malformed)).failed.includes('log_checkpoint'));
  });

  test('other spellings of the log text files fail the manifest check', () => {
    const checkpoint = files.get(LogBundleFile.checkpoint)!;
    const withMark = withFile(
      files,
      LogBundleFile.checkpoint,
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), checkpoint]),
    );
    assert.ok(
      failedChecks(packBundle(withMark), { trustedLogKeys: logKeyPath }).failed.includes(
        'bundle_manifest',
      ),
    );
    const crlf = withFile(
      files,
      LogBundleFile.logKey,
      text(LogBundleFile.logKey).replace(/\n$/, '\r\n'),
    );
    const { failed, outcome } = failedChecks(packBundle(crlf), { trustedLogKeys: logKeyPath });
    assert.ok(failed.includes('bundle_manifest'));
    const check = outcome.report!.checks.find((item) => item.check === 'bundle_manifest');
    assert.match(check!.detail, /exactly one line ending in a line feed/);
  });

  test('an unknown proof field fails log_checkpoint', () => {
    const proof = readJsonFile(files, LogBundleFile.inclusionProof);
    proof.note = 'verified by the auditor';
    const { failed, outcome } = failedChecks(
      packBundle(withFile(files, LogBundleFile.inclusionProof, prettyJson(proof))),
    );
    // The file is also no longer in its exported form.
    assert.deepEqual(failed, ['bundle_manifest', 'log_checkpoint']);
    const check = outcome.report!.checks.find((item) => item.check === 'log_checkpoint');
    assert.match(check!.detail, /unknown fields: note/);
  });
});

/** Returns the detail of the bundle_manifest check. */
function manifestDetail(outcome: ReturnType<typeof verifyZip>): string {
  return outcome.report!.checks.find((item) => item.check === 'bundle_manifest')!.detail;
}

/** Returns a verifier key of a fresh Ed25519 key under the log's own key name. */
function otherLogKey(): string {
  const origin = text(LogBundleFile.logKey).split('+')[0]!;
  return formatVerifierKey(createVerifierKey(nodeCrypto, origin, generateEd25519Key().publicKey));
}

void describe('log_key.txt against the checkpoint signer', () => {
  test('another key fails when pinned', () => {
    const altered = packBundle(withFile(files, LogBundleFile.logKey, `${otherLogKey()}\n`));
    const pinned = failedChecks(altered, { trustedLogKeys: logKeyPath });
    assert.deepEqual(pinned.failed, ['bundle_manifest']);
    assert.match(
      manifestDetail(pinned.outcome),
      /log_key\.txt is not the pinned log key that signed the checkpoint/,
    );
    // Unpinned, the file's own key is used, and it did not sign the checkpoint.
    assert.deepEqual(failedChecks(altered).failed, ['log_checkpoint']);
  });

  test('one changed character fails when pinned', () => {
    const key = text(LogBundleFile.logKey);
    const position = key.length - 6;
    const flipped = `${key.slice(0, position)}${key[position] === 'A' ? 'B' : 'A'}${key.slice(position + 1)}`;
    const altered = packBundle(withFile(files, LogBundleFile.logKey, flipped));
    const pinned = failedChecks(altered, { trustedLogKeys: logKeyPath });
    assert.deepEqual(pinned.failed, ['bundle_manifest']);
    assert.match(manifestDetail(pinned.outcome), /log_key\.txt is not the pinned log key/);
    assert.deepEqual(failedChecks(altered).failed, ['log_checkpoint']);
  });

  test('pinned key that did not sign fails', () => {
    const other = otherLogKey();
    const bothPath = join(work, 'two-log-keys.txt');
    writeFileSync(bothPath, `${text(LogBundleFile.logKey)}${other}\n`);
    const genuine = failedChecks(fixture.zip, { trustedLogKeys: bothPath });
    assert.deepEqual(genuine.failed, []);
    const altered = packBundle(withFile(files, LogBundleFile.logKey, `${other}\n`));
    const { failed, outcome } = failedChecks(altered, { trustedLogKeys: bothPath });
    assert.deepEqual(failed, ['bundle_manifest']);
    assert.match(manifestDetail(outcome), /log_key\.txt is not the pinned log key/);
  });

  test('upper-case key id fails', () => {
    // A fresh log key whose id has a hex letter, so an upper-case spelling differs.
    let resigned = resignCheckpoint(files);
    while (!/^[^+]+\+[0-9a-f]*[a-f]/.test(resigned.verifier)) {
      resigned = resignCheckpoint(files);
    }
    const { signed, verifier } = resigned;
    const pinPath = join(work, 'fresh-log-key.txt');
    writeFileSync(pinPath, `${verifier}\n`);
    const idStart = verifier.indexOf('+') + 1;
    const upperCaseId =
      verifier.slice(0, idStart) +
      verifier.slice(idStart, idStart + 8).toUpperCase() +
      verifier.slice(idStart + 8);
    const resignedFiles = withFile(files, LogBundleFile.checkpoint, signed);
    const canonical = packBundle(withFile(resignedFiles, LogBundleFile.logKey, `${verifier}\n`));
    assert.deepEqual(failedChecks(canonical).failed, []);
    const upper = packBundle(withFile(resignedFiles, LogBundleFile.logKey, `${upperCaseId}\n`));
    for (const options of [{}, { trustedLogKeys: pinPath }]) {
      const { failed, outcome } = failedChecks(upper, options);
      assert.deepEqual(failed, ['bundle_manifest'], JSON.stringify(options));
      assert.match(manifestDetail(outcome), /log_key\.txt is not/);
    }
  });
});

void describe('log and timestamp evidence removed', () => {
  test('a v2 bundle downgraded to v1 fails log_checkpoint', () => {
    const downgraded = withoutLog(files);
    const { failed, outcome } = failedChecks(packBundle(downgraded));
    assert.deepEqual(failed, ['log_checkpoint']);
    const check = outcome.report!.checks.find((item) => item.check === 'log_checkpoint');
    assert.match(check!.detail, /always recorded in its tenant's log/);
  });

  test('the summary says when the log key was not pinned', () => {
    const unpinned = verifyZip(work, fixture.zip);
    assert.match(unpinned.report!.summary, /pin the tenant's log key/);
    const pinned = verifyZip(work, fixture.zip, { trustedLogKeys: logKeyPath });
    assert.match(pinned.report!.summary, /cannot have been removed or replaced/);
  });

  test('malformed JSON in a bundle file gives a report, not a crash', () => {
    const broken = withFile(files, LogBundleFile.inclusionProof, '{"a":');
    const { outcome } = failedChecks(packBundle(broken));
    assert.equal(outcome.exitCode, 1);
    assert.ok(checksWithStatus(outcome.report, 'fail').includes('bundle_manifest'));
  });

  test('--require-timestamps fails a bundle without a checkpoint token', async () => {
    const { runVerifyWithTimestamps } = await import('../../src/cli/commands/verify.ts');
    const path = join(work, 'no-tokens.zip');
    writeFileSync(path, fixture.zip);
    const rootsPath = join(work, 'tsa-root.pem');
    writeFileSync(
      rootsPath,
      await createCertificate('/CN=CDIL test root', ['basicConstraints = critical, CA:TRUE']),
    );
    const out: string[] = [];
    const status = await runVerifyWithTimestamps(
      path,
      { tsaRoots: rootsPath, requireTimestamps: true, json: true },
      (line) => out.push(line),
      () => undefined,
    );
    assert.equal(status, 1);
    const report = JSON.parse(out.join('\n')) as { checks: { check: string; status: string }[] };
    assert.equal(
      report.checks.find((check) => check.check === 'checkpoint_timestamp')?.status,
      'fail',
    );
  });
});
