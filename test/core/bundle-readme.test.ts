// Runs the OpenSSL commands that README.txt gives for checking a bundle by hand, exactly as
// written, in an unpacked real bundle, so the manual steps cannot drift from the format. Every
// text version is run, because bundles exported with an older text stay valid.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BundleFile, prettyJson, verifyBundle } from '../../src/core/bundle.ts';
import type { ManifestEntry } from '../../src/core/bundle.ts';
import {
  BUNDLE_README_VERSIONS,
  LATEST_BUNDLE_README_VERSION,
  renderBundleReadme,
  type BundleReadmeVersion,
} from '../../src/core/bundle-readme.ts';
import { canonicalSignedJson } from '../../src/core/canonical.ts';
import type { Certificate } from '../../src/core/certificate.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { readZipSafely } from '../../src/core/zip.ts';
import { explicitCurveKeyFor } from '../helpers/explicit-curve-key.ts';
import {
  createBundleFixture,
  packBundle,
  readJsonFile,
  refreshManifest,
  refreshReadme,
  resignBundle,
  type BundleFixture,
} from '../helpers/bundle.ts';

const COMMAND_PREFIX = '  $ ';
/** DER of a named-curve P-256 SubjectPublicKeyInfo up to the point's x and y. */
const NAMED_P256_SPKI_PREFIX = '3059301306072a8648ce3d020106082a8648ce3d03010703420004';

let fixture: BundleFixture;
let root: string;
/** The exported bundle, which carries the latest README.txt text. */
let files: Map<string, Uint8Array>;
let commands: string[];
/** The same bundle with the README.txt text of each version, as an older exporter wrote it. */
const bundlesByVersion = new Map<BundleReadmeVersion, Map<string, Uint8Array>>();

/** Fails with an actionable message when the openssl command is not installed. */
function requireOpenssl(): void {
  const probe = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    assert.fail(
      'openssl is not on PATH, so the README commands cannot run. Install OpenSSL ' +
        `(for example "apt-get install openssl") and rerun. Error: ${probe.error?.message ?? probe.stderr}`,
    );
  }
}

/** Writes the bundle files and note.txt into a new folder under `root`. */
function unpackInto(
  name: string,
  bundleFiles: ReadonlyMap<string, Uint8Array>,
  note: string | Buffer,
): string {
  const dir = join(root, name);
  mkdirSync(dir);
  for (const [fileName, content] of bundleFiles) {
    writeFileSync(join(dir, fileName), content);
  }
  writeFileSync(join(dir, 'note.txt'), note);
  return dir;
}

function runShell(
  command: string,
  cwd: string,
): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('sh', ['-c', command], { cwd, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Parses `openssl dgst -sha256 -r` output lines of the form "<hex> *<file>". */
function parseDigests(output: string): Map<string, string> {
  const digests = new Map<string, string>();
  for (const line of output.trim().split('\n')) {
    const match = /^([0-9a-f]{64}) \*(.+)$/.exec(line);
    assert.ok(match, `unexpected openssl output line ${JSON.stringify(line)}`);
    digests.set(match[2]!, match[1]!);
  }
  return digests;
}

/** Returns the shell commands of the bundle's README.txt, in order. */
function readmeCommands(bundle: ReadonlyMap<string, Uint8Array>): string[] {
  return Buffer.from(bundle.get(BundleFile.readme)!)
    .toString('utf8')
    .split('\n')
    .filter((line) => line.startsWith(COMMAND_PREFIX))
    .map((line) => line.slice(COMMAND_PREFIX.length));
}

/** Returns the bundle with README.txt in the given text version and the manifest updated. */
function withReadmeVersion(
  bundle: ReadonlyMap<string, Uint8Array>,
  version: BundleReadmeVersion,
): Map<string, Uint8Array> {
  const certificate = readJsonFile(bundle, BundleFile.certificate) as unknown as Certificate;
  const copy = new Map(bundle);
  copy.set(BundleFile.readme, Buffer.from(renderBundleReadme(certificate, true, [], version)));
  refreshManifest(copy);
  return copy;
}

before(async () => {
  fixture = await createBundleFixture();
  root = mkdtempSync(join(tmpdir(), 'cdil-readme-'));
  files = readZipSafely(fixture.zip);
  commands = readmeCommands(files);
  for (const version of BUNDLE_README_VERSIONS) {
    bundlesByVersion.set(version, withReadmeVersion(files, version));
  }
});

after(async () => {
  rmSync(root, { recursive: true, force: true });
  await fixture.close();
});

/** Returns the one README command that matches `pattern`. */
function commandMatching(bundleCommands: string[], pattern: RegExp): string {
  const found = bundleCommands.filter((command) => pattern.test(command));
  assert.equal(found.length, 1, `one command matches ${pattern}: ${bundleCommands.join('\n')}`);
  return found[0]!;
}

const SIGNATURE_COMMAND = /^openssl dgst -sha256 -verify public_key\.pem /;
const MANIFEST_COMMAND = /^openssl dgst -sha256 -r canonical_message\.json /;
const NOTE_COMMAND = /^openssl dgst -sha256 -r note\.txt$/;
const KEY_PREFIX_COMMAND = /^openssl pkey -pubin -in public_key\.pem .*\| head -c 27 \| od /;
const KEY_X_COMMAND = /^openssl pkey -pubin -in public_key\.pem .*\| tail -c 64 \| head -c 32 /;
const KEY_Y_COMMAND = /^openssl pkey -pubin -in public_key\.pem .*\| tail -c 32 /;

/** The commands each README.txt text version lists, in order. */
const EXPECTED_COMMANDS: Record<BundleReadmeVersion, RegExp[]> = {
  1: [SIGNATURE_COMMAND, MANIFEST_COMMAND, NOTE_COMMAND],
  2: [
    SIGNATURE_COMMAND,
    KEY_PREFIX_COMMAND,
    KEY_X_COMMAND,
    KEY_Y_COMMAND,
    MANIFEST_COMMAND,
    NOTE_COMMAND,
  ],
};

for (const version of BUNDLE_README_VERSIONS) {
  void describe(`README.txt version ${version} OpenSSL steps`, () => {
    const bundle = () => bundlesByVersion.get(version)!;
    const versionCommands = () => readmeCommands(bundle());

    test('lists its commands in order', () => {
      const listed = versionCommands();
      const expected = EXPECTED_COMMANDS[version];
      assert.equal(listed.length, expected.length, listed.join('\n'));
      expected.forEach((pattern, index) => assert.match(listed[index]!, pattern));
    });

    test('signature step prints Verified OK', () => {
      requireOpenssl();
      const dir = unpackInto(`v${version}-signature`, bundle(), fixture.noteText);
      const result = runShell(commandMatching(versionCommands(), SIGNATURE_COMMAND), dir);
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout.trim(), 'Verified OK');
    });

    test('manifest step hashes equal the manifest', () => {
      requireOpenssl();
      const dir = unpackInto(`v${version}-manifest`, bundle(), fixture.noteText);
      const result = runShell(commandMatching(versionCommands(), MANIFEST_COMMAND), dir);
      assert.equal(result.status, 0, result.stderr);
      const digests = parseDigests(result.stdout);
      const manifest = readJsonFile(bundle(), BundleFile.manifest) as unknown as {
        files: ManifestEntry[];
      };
      assert.deepEqual(
        [...digests.keys()].sort(),
        manifest.files.map((entry) => entry.name).sort(),
        'the command covers every file in the manifest',
      );
      for (const entry of manifest.files) {
        assert.equal(digests.get(entry.name), entry.sha256, entry.name);
      }
    });

    test('note step hash equals note_hash', () => {
      requireOpenssl();
      const dir = unpackInto(`v${version}-note`, bundle(), fixture.noteText);
      const result = runShell(commandMatching(versionCommands(), NOTE_COMMAND), dir);
      assert.equal(result.status, 0, result.stderr);
      const digests = parseDigests(result.stdout);
      const message = readJsonFile(bundle(), BundleFile.canonicalMessage);
      assert.equal(digests.get('note.txt'), message.note_hash);
      assert.equal(digests.get('note.txt'), fixture.certificate.note_hash);
    });

    test('bundle with this text verifies', () => {
      const report = verifyBundle(nodeCrypto, packBundle(bundle()), {
        trustedKeys: fixture.jwks,
      });
      assert.equal(report.valid, true, JSON.stringify(report.checks));
    });
  });
}

void describe('README.txt published key step', () => {
  /** Runs the two key commands in an unpacked bundle and returns what they print. */
  function printedCoordinates(name: string, bundle: ReadonlyMap<string, Uint8Array>) {
    requireOpenssl();
    const dir = unpackInto(name, bundle, fixture.noteText);
    const bundleCommands = readmeCommands(bundle);
    const [x, y] = [KEY_X_COMMAND, KEY_Y_COMMAND].map((pattern) => {
      const result = runShell(commandMatching(bundleCommands, pattern), dir);
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stdout, /^[A-Za-z0-9_-]{43}\n$/, 'one base64url line per coordinate');
      return result.stdout.trim();
    });
    return { x, y };
  }

  test('prints the published x and y', () => {
    assert.ok(
      commands.some((command) => KEY_X_COMMAND.test(command)),
      'latest text has the step',
    );
    const published = fixture.jwks.keys.find((key) => key.kid === fixture.certificate.key_id);
    assert.ok(published, 'the tenant key set has the signing key');
    const printed = printedCoordinates('key-genuine', files);
    assert.equal(printed.x, published.x);
    assert.equal(printed.y, published.y);
  });

  /** Runs the key prefix command in an unpacked bundle and returns what it prints. */
  function printedKeyPrefix(name: string, bundle: ReadonlyMap<string, Uint8Array>): string {
    requireOpenssl();
    const dir = unpackInto(name, bundle, fixture.noteText);
    const result = runShell(commandMatching(readmeCommands(bundle), KEY_PREFIX_COMMAND), dir);
    assert.equal(result.status, 0, result.stderr);
    return result.stdout;
  }

  /**
   * Returns the bundle re-signed, for another note and model, with a key that has explicit
   * curve parameters and the published x and y of the certificate's key, so key_id and the
   * printed coordinates stay those of the tenant.
   */
  function forgeWithExplicitCurve(bundle: ReadonlyMap<string, Uint8Array>) {
    const published = fixture.jwks.keys.find((key) => key.kid === fixture.certificate.key_id)!;
    const { privateKey, publicKeyPem } = explicitCurveKeyFor(published);
    const forgedNote = 'ASSESSMENT: COPD, unstable. Start home oxygen.';
    const message = readJsonFile(bundle, BundleFile.canonicalMessage);
    message.note_hash = createHash('sha256').update(forgedNote, 'utf8').digest('hex');
    message.model_name = 'forged-model';
    const signedText = canonicalSignedJson(message as Record<string, string>);
    const signature = sign('sha256', Buffer.from(signedText, 'utf8'), privateKey);
    const certificate = {
      ...readJsonFile(bundle, BundleFile.certificate),
      ...message,
      signature: signature.toString('base64'),
    };
    const copy = new Map(bundle);
    copy.set(BundleFile.canonicalMessage, Buffer.from(signedText, 'utf8'));
    copy.set(BundleFile.certificate, prettyJson(certificate));
    copy.set(BundleFile.signature, signature);
    copy.set(BundleFile.publicKey, Buffer.from(publicKeyPem, 'utf8'));
    refreshReadme(copy);
    refreshManifest(copy);
    return { files: copy, note: forgedNote };
  }

  test('states the named-curve key prefix', () => {
    const text = Buffer.from(files.get(BundleFile.readme)!).toString('utf8');
    assert.ok(
      text.includes(`\n     ${NAMED_P256_SPKI_PREFIX}\n`),
      'expected output is in the text',
    );
    assert.equal(printedKeyPrefix('key-prefix-genuine', files), `${NAMED_P256_SPKI_PREFIX}\n`);
  });

  test('rejects an explicit-curve key with published x and y', () => {
    const forged = forgeWithExplicitCurve(files);
    const forgedCommands = readmeCommands(forged.files);
    const dir = unpackInto('key-explicit-signature', forged.files, forged.note);
    // Steps 1 and 4 and the coordinates cannot tell this forgery from the real bundle.
    const signature = runShell(commandMatching(forgedCommands, SIGNATURE_COMMAND), dir);
    assert.equal(signature.stdout.trim(), 'Verified OK', signature.stderr);
    const note = runShell(commandMatching(forgedCommands, NOTE_COMMAND), dir);
    assert.equal(
      parseDigests(note.stdout).get('note.txt'),
      readJsonFile(forged.files, BundleFile.canonicalMessage).note_hash,
    );
    const published = fixture.jwks.keys.find((key) => key.kid === fixture.certificate.key_id)!;
    const printed = printedCoordinates('key-explicit-coordinates', forged.files);
    assert.equal(printed.x, published.x);
    assert.equal(printed.y, published.y);
    // The prefix command is the one that shows the key is not a named P-256 key.
    const prefix = printedKeyPrefix('key-explicit-prefix', forged.files);
    assert.match(prefix, /^[0-9a-f]{54}\n$/);
    assert.notEqual(prefix, `${NAMED_P256_SPKI_PREFIX}\n`);
    const report = verifyBundle(nodeCrypto, packBundle(forged.files));
    assert.equal(report.valid, false, 'cdil verify rejects the key without the manual steps');
    const keyBinding = report.checks.find((check) => check.check === 'key_binding')!;
    assert.equal(keyBinding.status, 'fail', keyBinding.detail);
  });

  test('exposes a bundle signed with another key', () => {
    const forged = resignBundle(files);
    // The signature step alone cannot tell the forgery from the real bundle.
    const dir = unpackInto('key-forged-signature', forged, fixture.noteText);
    const signature = runShell(commandMatching(readmeCommands(forged), SIGNATURE_COMMAND), dir);
    assert.equal(signature.stdout.trim(), 'Verified OK');
    const printed = printedCoordinates('key-forged', forged);
    for (const key of fixture.jwks.keys) {
      assert.notEqual(printed.x, key.x, key.kid);
      assert.notEqual(printed.y, key.y, key.kid);
    }
  });
});

void describe('README.txt text versions in the verifier', () => {
  /** Returns the bundle_manifest check of a bundle whose README.txt is `text`. */
  function manifestCheckWith(text: string) {
    const altered = new Map(files);
    altered.set(BundleFile.readme, Buffer.from(text, 'utf8'));
    refreshManifest(altered);
    const report = verifyBundle(nodeCrypto, packBundle(altered));
    return report.checks.find((check) => check.check === 'bundle_manifest')!;
  }

  test('exporter writes the latest version', () => {
    const certificate = readJsonFile(files, BundleFile.certificate) as unknown as Certificate;
    assert.equal(LATEST_BUNDLE_README_VERSION, Math.max(...BUNDLE_README_VERSIONS));
    const latest = renderBundleReadme(certificate, true, [], LATEST_BUNDLE_README_VERSION);
    assert.equal(Buffer.from(files.get(BundleFile.readme)!).toString('utf8'), latest);
  });

  test('each version text passes', () => {
    const certificate = readJsonFile(files, BundleFile.certificate) as unknown as Certificate;
    for (const version of BUNDLE_README_VERSIONS) {
      const check = manifestCheckWith(renderBundleReadme(certificate, true, [], version));
      assert.equal(check.status, 'pass', `version ${version}: ${check.detail}`);
    }
  });

  test('other texts fail', () => {
    const certificate = readJsonFile(files, BundleFile.certificate) as unknown as Certificate;
    const [oldest, latest] = [1, 2].map((version) =>
      renderBundleReadme(certificate, true, [], version as BundleReadmeVersion),
    ) as [string, string];
    const cases: [string, string][] = [
      [
        'latest without the key step',
        latest.replace(/\n2\. public_key\.pem[^]*?\n\n(?: {2}\$ .*\n){3}/, '\n'),
      ],
      ['oldest with a line added', `${oldest}Checked by the auditor.\n`],
      ['latest for a bundle without log', renderBundleReadme(certificate, false, [], 2)],
      ['oldest for a bundle without log', renderBundleReadme(certificate, false, [], 1)],
      ['latest naming another tenant', latest.replace('/v1/tenants/t1/', '/v1/tenants/t2/')],
    ];
    for (const [name, text] of cases) {
      assert.notEqual(text, oldest, name);
      assert.notEqual(text, latest, name);
      const check = manifestCheckWith(text);
      assert.equal(check.status, 'fail', name);
      assert.match(check.detail, /README\.txt differs from each text version/, name);
    }
  });
});

/** Returns the "version made by" and external attributes of each central directory entry. */
function centralEntries(zip: Uint8Array): { name: string; madeBy: number; attributes: number }[] {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const eocd = zip.byteLength - 22;
  assert.equal(view.getUint32(eocd, true), 0x06054b50, 'archive ends with a bare EOCD record');
  const count = view.getUint16(eocd + 10, true);
  const entries = [];
  let offset = view.getUint32(eocd + 16, true);
  for (let index = 0; index < count; index += 1) {
    assert.equal(view.getUint32(offset, true), 0x02014b50);
    const nameLength = view.getUint16(offset + 28, true);
    const extraLength = view.getUint16(offset + 30, true);
    const commentLength = view.getUint16(offset + 32, true);
    entries.push({
      name: Buffer.from(zip.subarray(offset + 46, offset + 46 + nameLength)).toString('utf8'),
      madeBy: view.getUint16(offset + 4, true),
      attributes: view.getUint32(offset + 38, true),
    });
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

void describe('bundle archive entries', () => {
  test('unpack as readable regular files', () => {
    // unzip applies the Unix mode in the upper 16 bits of the external attributes when the
    // entry was made on Unix (host 3), so a mode of 0 would leave files only root can read.
    const entries = centralEntries(fixture.zip);
    assert.equal(entries.length, files.size);
    for (const entry of entries) {
      assert.equal(entry.madeBy >> 8, 3, entry.name);
      assert.equal((entry.attributes >>> 16).toString(8), '100644', entry.name);
    }
  });
});

void describe('README.txt OpenSSL steps on altered files', () => {
  test('step 1 fails on an altered signed message', () => {
    requireOpenssl();
    const altered = new Map(files);
    const signed = Buffer.from(files.get(BundleFile.canonicalMessage)!).toString('utf8');
    altered.set(
      BundleFile.canonicalMessage,
      Buffer.from(signed.replace('"model_version":"', '"model_version":"x'), 'utf8'),
    );
    const dir = unpackInto('altered-message', altered, fixture.noteText);
    const result = runShell(commandMatching(commands, SIGNATURE_COMMAND), dir);
    assert.notEqual(result.status, 0);
    assert.match(result.stdout, /Verification failure/);
  });

  test('step 3 differs for an altered note', () => {
    requireOpenssl();
    const note = Buffer.from(fixture.noteText, 'utf8');
    note[0]! ^= 0x20;
    const dir = unpackInto('altered-note', files, note);
    const result = runShell(commandMatching(commands, NOTE_COMMAND), dir);
    assert.equal(result.status, 0, result.stderr);
    assert.notEqual(parseDigests(result.stdout).get('note.txt'), fixture.certificate.note_hash);
  });
});
