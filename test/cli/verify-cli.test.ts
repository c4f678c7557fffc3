// `cdil verify` run as a real child process: exit statuses, text and JSON output, and help.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  BundleFile,
  LogBundleFile,
  TimestampBundleFile,
  prettyJson,
} from '../../src/core/bundle.ts';
import { renderBundleReadme } from '../../src/core/bundle-readme.ts';
import type { Certificate } from '../../src/core/certificate.ts';
import { CHECK_NAMES, type VerificationReport } from '../../src/core/verify/verify.ts';
import {
  createBundleFixture,
  packBundle,
  readJsonFile,
  refreshManifest,
  unpackBundle,
  withFile,
  withoutLog,
  type BundleFixture,
} from '../helpers/bundle.ts';
import { runCli } from '../helpers/cli.ts';
import { createCertificate } from '../helpers/tsa.ts';

let fixture: BundleFixture;
let dir: string;
let validPath: string;
let tamperedPath: string;
let jwksPath: string;
let notePath: string;
let garbageTokensPath: string;
let logKeyPath: string;

before(async () => {
  fixture = await createBundleFixture();
  dir = mkdtempSync(join(tmpdir(), 'cdil-verify-cli-'));
  validPath = join(dir, 'bundle.zip');
  writeFileSync(validPath, fixture.zip);

  const files = unpackBundle(fixture.zip);
  const certificate = readJsonFile(files, BundleFile.certificate);
  certificate.model_version = 'a-different-model';
  tamperedPath = join(dir, 'tampered.zip');
  writeFileSync(
    tamperedPath,
    packBundle(withFile(files, BundleFile.certificate, prettyJson(certificate))),
  );

  jwksPath = join(dir, 'tenant-jwks.json');
  writeFileSync(jwksPath, JSON.stringify(fixture.jwks));
  notePath = join(dir, 'note.txt');
  writeFileSync(notePath, fixture.noteText);

  let withTokens = withFile(files, TimestampBundleFile.checkpoint, 'not a timestamp token');
  withTokens = withFile(withTokens, TimestampBundleFile.certificate, 'not a timestamp token');
  garbageTokensPath = join(dir, 'garbage-tokens.zip');
  writeFileSync(garbageTokensPath, packBundle(withTokens));

  logKeyPath = join(dir, 'log-key.txt');
  writeFileSync(
    logKeyPath,
    `# log key of t1\n\n${Buffer.from(files.get(LogBundleFile.logKey)!).toString('utf8')}`,
  );
});

after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await fixture.close();
});

void describe('cdil verify', () => {
  test('valid bundle exits 0 and names each check', () => {
    const result = runCli(['verify', validPath]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(
        `^VALID \\(key not pinned\\) {2}certificate ${fixture.certificate.certificate_id}`,
      ),
    );
    assert.match(result.stdout, /\nNOTE: The signing key came with the bundle .*--trusted-keys/);
    for (const check of CHECK_NAMES) {
      assert.match(result.stdout, new RegExp(`^ {2}(PASS|SKIP) {2}${check} `, 'm'), check);
    }
    assert.match(result.stdout, /is valid\./);
    assert.equal(result.stderr, '');
  });

  test('pinned keys and note pass', () => {
    const result = runCli(['verify', validPath, '--trusted-keys', jwksPath, '--note', notePath]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^VALID {2}certificate /);
    assert.doesNotMatch(result.stdout, /NOTE:/);
    assert.match(result.stdout, /^ {2}PASS {2}trusted_key /m);
    assert.match(result.stdout, /^ {2}PASS {2}note_hash /m);
    assert.match(result.stdout, /exactly the certified note/);
  });

  test('note with a final newline gets a hint', () => {
    const withNewline = join(dir, 'note-newline.txt');
    writeFileSync(withNewline, `${fixture.noteText}\n`);
    const result = runCli(['verify', validPath, '--note', withNewline]);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stdout, /^ {2}FAIL {2}note_hash .*\[NOTE_MISMATCH\]$/m);
    assert.match(
      result.stdout,
      /note_hash .* except that the given text ends with a line end that the certified note lacks\./,
    );
  });

  test('note saved with a BOM and CRLF gets a hint', () => {
    const saved = join(dir, 'note-windows.txt');
    writeFileSync(saved, `\uFEFF${fixture.noteText.replace(/\n/g, '\r\n')}`);
    const result = runCli(['verify', validPath, '--note', saved, '--json']);
    assert.equal(result.status, 1, result.stderr);
    const report = JSON.parse(result.stdout) as VerificationReport;
    const check = report.checks.find((item) => item.check === 'note_hash')!;
    assert.equal(check.code, 'NOTE_MISMATCH');
    assert.match(check.detail, /starts with a UTF-8 byte order mark/);
    assert.match(check.detail, /has CRLF line ends where the certified note has LF/);
  });

  test('different note gets no hint', () => {
    const other = join(dir, 'note-other.txt');
    writeFileSync(other, `${fixture.noteText} Edited.\n`);
    const result = runCli(['verify', validPath, '--note', other]);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stdout, /^ {2}FAIL {2}note_hash .*\[NOTE_MISMATCH\]$/m);
    assert.doesNotMatch(result.stdout, /except that/);
  });

  test('invalid --jobs with one bundle exits 2', () => {
    for (const jobs of ['abc', '0', '65', '0x2', '1e1', ' 2', '2 ', '2.0', '+2', '']) {
      const result = runCli(['verify', validPath, '--jobs', jobs]);
      assert.equal(result.status, 2, jobs);
      assert.equal(result.stdout, '', jobs);
      assert.match(result.stderr, /^error: --jobs must be an integer from 1 to 64, got "/, jobs);
    }
    const json = runCli(['verify', validPath, '--jobs', 'abc', '--json']);
    assert.equal(json.status, 2);
    assert.equal(JSON.parse(json.stdout).error.code, 'USAGE_ERROR');
    assert.equal(runCli(['verify', validPath, '--jobs', '3']).status, 0);
  });

  test('tampered bundle exits 1', () => {
    const result = runCli(['verify', tamperedPath]);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stdout, /^INVALID/);
    assert.match(
      result.stdout,
      /^ {2}FAIL {2}certificate_fields .*model_version.*\[FIELD_MISMATCH\]$/m,
    );
  });

  test('missing file exits 2', () => {
    const missing = join(dir, 'no-such-bundle.zip');
    const result = runCli(['verify', missing]);
    assert.equal(result.status, 2);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /cannot read bundle .*no-such-bundle\.zip: ENOENT/);
    assert.match(result.stderr, /\[INPUT_UNREADABLE\]/);
  });

  test('folder as bundle exits 2', () => {
    const result = runCli(['verify', dir]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /is not a regular file/);
  });

  test('malformed trusted key set exits 2', () => {
    const badJwks = join(dir, 'bad-jwks.json');
    writeFileSync(badJwks, '{"keys": "none"}');
    const result = runCli(['verify', validPath, '--trusted-keys', badJwks]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /\[BUNDLE_MALFORMED_TRUSTED_KEYS\]/);
  });

  test('text columns align for long names', () => {
    const result = runCli(['verify', validPath]);
    assert.equal(result.status, 0, result.stderr);
    const checkLines = result.stdout
      .split('\n')
      .filter((line) => /^ {2}(PASS|SKIP|FAIL) /.test(line));
    assert.equal(checkLines.length, CHECK_NAMES.length);
    const width = Math.max(...CHECK_NAMES.map((name) => name.length));
    for (const line of checkLines) {
      const match = /^ {2}(?:PASS|SKIP|FAIL) {2}(\S+)( +)\S/.exec(line);
      assert.ok(match, line);
      assert.equal(match[1]!.length + match[2]!.length, width + 1, line);
    }
  });

  test('missing bundle argument is a usage error', () => {
    const result = runCli(['verify']);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /missing required argument 'bundles'/);
  });
});

void describe('cdil verify trust options', () => {
  test('--require-timestamps alone is a usage error', () => {
    const result = runCli(['verify', garbageTokensPath, '--require-timestamps']);
    assert.equal(result.status, 2);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /--require-timestamps/);
    assert.match(result.stderr, /--tsa-roots/);
  });

  test('--require-timestamps alone with several bundles', () => {
    const result = runCli(['verify', validPath, garbageTokensPath, '--require-timestamps']);
    assert.equal(result.status, 2);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /--require-timestamps.*--tsa-roots/);
  });

  test('usage errors go to stdout with --json', () => {
    const cases = [
      ['verify', garbageTokensPath, '--require-timestamps', '--json'],
      ['verify', validPath, garbageTokensPath, '--require-timestamps', '--json'],
      ['verify', validPath, garbageTokensPath, '--jobs', '0', '--json'],
      ['verify', validPath, garbageTokensPath, '--trusted-log-keys', jwksPath, '--json'],
    ];
    for (const args of cases) {
      const result = runCli(args);
      assert.equal(result.status, 2, args.join(' '));
      const output = JSON.parse(result.stdout) as { valid: boolean; error: { code: string } };
      assert.equal(output.valid, false, args.join(' '));
      assert.match(output.error.code, /^(USAGE_ERROR|BUNDLE_MALFORMED_TRUSTED_KEYS)$/);
      assert.match(result.stderr, /^error: /);
    }
  });

  test('pinned log key file passes', () => {
    const result = runCli(['verify', validPath, '--trusted-log-keys', logKeyPath]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^ {2}PASS {2}log_checkpoint +.*signed by a pinned log key/m);
  });

  test('--require-trusted-keys fails unpinned keys', () => {
    const result = runCli(['verify', validPath, '--require-trusted-keys']);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stdout, /^INVALID {2}certificate /);
    assert.match(
      result.stdout,
      /^ {2}FAIL {2}trusted_key +a pinned key set is required.*--trusted-keys \[KEY_NOT_TRUSTED\]$/m,
    );
    assert.match(
      result.stdout,
      /^ {2}FAIL {2}log_checkpoint +.*pinned log keys are required.*\[CHECKPOINT_INVALID\]$/m,
    );
    assert.doesNotMatch(result.stdout, /NOTE:/);
  });

  test('--require-trusted-keys needs the log key too', () => {
    const result = runCli([
      'verify',
      validPath,
      '--require-trusted-keys',
      '--trusted-keys',
      jwksPath,
      '--json',
    ]);
    assert.equal(result.status, 1, result.stderr);
    const report = JSON.parse(result.stdout) as VerificationReport;
    const failed = report.checks.filter((check) => check.status === 'fail');
    assert.deepEqual(
      failed.map((check) => check.check),
      ['log_checkpoint'],
    );
    assert.equal(report.key_pinned, true);
    assert.equal(report.log_key_pinned, false);
  });

  test('--require-trusted-keys passes with both pins', () => {
    const result = runCli([
      'verify',
      validPath,
      '--require-trusted-keys',
      '--trusted-keys',
      jwksPath,
      '--trusted-log-keys',
      logKeyPath,
    ]);
    assert.equal(result.status, 0, result.stdout);
    assert.match(result.stdout, /^VALID {2}certificate /);
  });

  test('JWKS as log key file exits 2', () => {
    for (const args of [[validPath], [validPath, tamperedPath]]) {
      const result = runCli(['verify', ...args, '--trusted-log-keys', jwksPath]);
      assert.equal(result.status, 2, result.stdout);
      assert.doesNotMatch(result.stdout, /CHECKPOINT_INVALID/);
      assert.match(result.stderr, /--trusted-log-keys/);
      assert.match(result.stderr, /tenant-jwks\.json/);
      assert.match(result.stderr, /signed-note verifier key/);
      assert.match(result.stderr, /\[BUNDLE_MALFORMED_TRUSTED_KEYS\]/);
    }
  });

  test('bad log key line exits 2', () => {
    const path = join(dir, 'log-keys-typo.txt');
    const logKey = unpackBundle(fixture.zip).get(LogBundleFile.logKey)!;
    const key = Buffer.from(logKey).toString('utf8').trim();
    writeFileSync(path, `${key}\n${key.slice(0, -4)}\n`);
    const result = runCli(['verify', validPath, '--trusted-log-keys', path]);
    assert.equal(result.status, 2, result.stdout);
    assert.match(result.stderr, /--trusted-log-keys .*log-keys-typo\.txt line 2/);
  });

  test('log-key route JSON as a log key file', () => {
    const path = join(dir, 'log-key-route.json');
    const logKey = unpackBundle(fixture.zip).get(LogBundleFile.logKey)!;
    const verifierKey = Buffer.from(logKey).toString('utf8').trim();
    writeFileSync(path, JSON.stringify({ key_name: 'x', verifier_key: verifierKey }));
    const result = runCli(['verify', validPath, '--trusted-log-keys', path]);
    assert.equal(result.status, 2, result.stdout);
    assert.match(result.stderr, /write its verifier_key value to the file instead/);
  });

  test('unusable log key file as JSON', () => {
    const result = runCli(['verify', validPath, '--trusted-log-keys', jwksPath, '--json']);
    assert.equal(result.status, 2);
    const output = JSON.parse(result.stdout) as { valid: boolean; error: { code: string } };
    assert.equal(output.valid, false);
    assert.equal(output.error.code, 'BUNDLE_MALFORMED_TRUSTED_KEYS');
  });

  test('unusable TSA root files exit 2', async () => {
    const privateKeyPath = join(dir, 'tsa-key.pem');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const leaf = await createCertificate('/CN=CDIL test TSA', [
      'basicConstraints = critical, CA:FALSE',
      'extendedKeyUsage = critical, timeStamping',
    ]);
    writeFileSync(privateKeyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const leafPath = join(dir, 'tsa-leaf.pem');
    writeFileSync(leafPath, leaf);
    const keyAndRootPath = join(dir, 'key-and-root.pem');
    const root = await createCertificate('/CN=CDIL test root', [
      'basicConstraints = critical, CA:TRUE',
    ]);
    writeFileSync(
      keyAndRootPath,
      `${root}${privateKey.export({ type: 'sec1', format: 'pem' }).toString()}`,
    );
    const cases: [string, RegExp][] = [
      [privateKeyPath, /tsa-key\.pem contains a private key/],
      [keyAndRootPath, /key-and-root\.pem contains a private key/],
      [leafPath, /tsa-leaf\.pem.*is not a CA certificate/],
      [jwksPath, /tenant-jwks\.json contains no PEM certificate/],
    ];
    for (const [path, message] of cases) {
      for (const bundles of [[validPath], [validPath, garbageTokensPath]]) {
        const result = runCli(['verify', ...bundles, '--tsa-roots', path]);
        assert.equal(result.status, 2, `${path}: ${result.stdout}`);
        assert.match(result.stderr, /--tsa-roots/, path);
        assert.match(result.stderr, message, path);
        assert.match(result.stderr, /\[BUNDLE_MALFORMED_TRUSTED_KEYS\]/, path);
      }
    }
  });

  test('CA certificate as --tsa-roots is accepted', async () => {
    const rootPath = join(dir, 'root.pem');
    writeFileSync(
      rootPath,
      await createCertificate('/CN=CDIL test root', ['basicConstraints = critical, CA:TRUE']),
    );
    const result = runCli(['verify', validPath, '--tsa-roots', rootPath]);
    assert.equal(result.status, 0, result.stderr);
    const garbage = runCli(['verify', garbageTokensPath, '--tsa-roots', rootPath]);
    assert.equal(garbage.status, 1, garbage.stderr);
    assert.match(garbage.stdout, /^ {2}FAIL {2}checkpoint_timestamp +.*\[TIMESTAMP_INVALID\]$/m);
  });
});

void describe('cdil verify --json', () => {
  test('valid report parses', () => {
    const result = runCli(['verify', validPath, '--json']);
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout) as VerificationReport;
    assert.equal(report.format, 'cdil.verification-report.v1');
    assert.equal(report.valid, true);
    assert.equal(report.certificate_id, fixture.certificate.certificate_id);
    assert.equal(report.tenant_id, 't1');
    assert.deepEqual(
      report.checks.map((check) => check.check),
      [...CHECK_NAMES],
    );
  });

  test('report says which keys were pinned', () => {
    const cases: { args: string[]; key: boolean; log: boolean }[] = [
      { args: [], key: false, log: false },
      { args: ['--trusted-keys', jwksPath], key: true, log: false },
      { args: ['--trusted-log-keys', logKeyPath], key: false, log: true },
      {
        args: ['--trusted-keys', jwksPath, '--trusted-log-keys', logKeyPath],
        key: true,
        log: true,
      },
    ];
    for (const { args, key, log } of cases) {
      const result = runCli(['verify', validPath, ...args, '--json']);
      assert.equal(result.status, 0, result.stderr);
      const report = JSON.parse(result.stdout) as VerificationReport;
      assert.equal(report.valid, true, args.join(' '));
      assert.equal(report.key_pinned, key, args.join(' '));
      assert.equal(report.log_key_pinned, log, args.join(' '));
    }
  });

  test('log key pin is null without a checkpoint', () => {
    const path = join(dir, 'without-log.zip');
    writeFileSync(path, packBundle(withoutLog(unpackBundle(fixture.zip))));
    const result = runCli(['verify', path, '--trusted-keys', jwksPath, '--json']);
    const report = JSON.parse(result.stdout) as VerificationReport;
    assert.equal(report.key_pinned, true);
    assert.equal(report.log_key_pinned, null);
  });

  test('tampered report names the failed check', () => {
    const result = runCli(['verify', tamperedPath, '--json']);
    assert.equal(result.status, 1, result.stderr);
    const report = JSON.parse(result.stdout) as VerificationReport;
    assert.equal(report.valid, false);
    const failed = report.checks.filter((check) => check.status === 'fail');
    assert.deepEqual(
      failed.map((check) => check.check),
      ['certificate_fields'],
    );
    assert.equal(failed[0]!.code, 'FIELD_MISMATCH');
  });

  test('unusable input prints a JSON error', () => {
    const result = runCli(['verify', join(dir, 'no-such-bundle.zip'), '--json']);
    assert.equal(result.status, 2);
    const output = JSON.parse(result.stdout) as { valid: boolean; error: { code: string } };
    assert.equal(output.valid, false);
    assert.equal(output.error.code, 'INPUT_UNREADABLE');
  });
});

void describe('cdil verify README.txt text version', () => {
  let oldReadmePath: string;

  before(() => {
    // The manifest is not signed, so anyone can put the version 1 text into a newer bundle.
    const files = unpackBundle(fixture.zip);
    const certificate = readJsonFile(files, BundleFile.certificate) as unknown as Certificate;
    files.set(BundleFile.readme, Buffer.from(renderBundleReadme(certificate, true, [], 1)));
    refreshManifest(files);
    oldReadmePath = join(dir, 'readme-version-1.zip');
    writeFileSync(oldReadmePath, packBundle(files));
  });

  test('version 1 text prints a note', () => {
    const result = runCli(['verify', oldReadmePath, '--trusted-keys', jwksPath]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^VALID {2}certificate /);
    assert.match(result.stdout, /\nNOTE: README\.txt is text version 1\. /);
    assert.match(result.stdout, /do not compare public_key\.pem with the tenant's published key/);
  });

  test('version 1 text in the JSON report', () => {
    const result = runCli(['verify', oldReadmePath, '--json']);
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout) as VerificationReport;
    assert.equal(report.valid, true);
    assert.equal(report.readme_version, 1);
    assert.equal(report.notes?.length, 1);
    assert.match(report.notes[0]!, /^README\.txt is text version 1\. /);
  });

  test('current text has no note', () => {
    const text = runCli(['verify', validPath, '--trusted-keys', jwksPath]);
    assert.equal(text.status, 0, text.stderr);
    assert.doesNotMatch(text.stdout, /NOTE/);
    const json = runCli(['verify', validPath, '--json']);
    const report = JSON.parse(json.stdout) as VerificationReport;
    assert.equal(report.readme_version, 2);
    assert.equal(report.notes, undefined);
  });

  test('altered text has version null', () => {
    const files = unpackBundle(fixture.zip);
    const text = Buffer.from(files.get(BundleFile.readme)!).toString('utf8');
    const path = join(dir, 'readme-altered.zip');
    writeFileSync(path, packBundle(withFile(files, BundleFile.readme, `${text}Checked.\n`)));
    const result = runCli(['verify', path, '--json']);
    assert.equal(result.status, 1, result.stderr);
    const report = JSON.parse(result.stdout) as VerificationReport;
    assert.equal(report.readme_version, null);
    assert.equal(report.notes, undefined);
  });

  test('several bundles mark version 1 text', () => {
    const result = runCli(['verify', oldReadmePath, validPath, '--trusted-keys', jwksPath]);
    assert.equal(result.status, 0, result.stderr);
    const lines = result.stdout.split('\n');
    assert.ok(lines.includes(`VALID    ${oldReadmePath} (README.txt version 1)`), result.stdout);
    assert.ok(lines.includes(`VALID    ${validPath}`), result.stdout);
    assert.match(result.stdout, /\nNOTE: 1 of them carry README\.txt text version 1\. /);
  });
});

void describe('cdil verify --help', () => {
  test('exits 0 and documents the options', () => {
    const result = runCli(['verify', '--help']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /Usage: cdil verify \[options\] <bundles\.\.\.>/);
    assert.match(result.stdout, /Exit status: 0 valid, 1 invalid, 2 unusable\s+input/);
    assert.match(result.stdout, /--trusted-keys <file>/);
    assert.match(result.stdout, /--note <file>/);
    assert.match(result.stdout, /--require-trusted-keys/);
    assert.match(result.stdout, /--json/);
  });
});
