// Runs the OpenSSL commands that README.txt gives for checking a bundle by hand, exactly as
// written, in an unpacked real bundle, so the manual steps cannot drift from the format.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BundleFile } from '../../src/core/bundle.ts';
import type { ManifestEntry } from '../../src/core/bundle.ts';
import { readZipSafely } from '../../src/core/zip.ts';
import { createBundleFixture, readJsonFile, type BundleFixture } from '../helpers/bundle.ts';

const COMMAND_PREFIX = '  $ ';

let fixture: BundleFixture;
let root: string;
let files: Map<string, Uint8Array>;
let commands: string[];

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

before(async () => {
  fixture = await createBundleFixture();
  root = mkdtempSync(join(tmpdir(), 'cdil-readme-'));
  files = readZipSafely(fixture.zip);
  const readme = Buffer.from(files.get(BundleFile.readme)!).toString('utf8');
  commands = readme
    .split('\n')
    .filter((line) => line.startsWith(COMMAND_PREFIX))
    .map((line) => line.slice(COMMAND_PREFIX.length));
});

after(async () => {
  rmSync(root, { recursive: true, force: true });
  await fixture.close();
});

void describe('README.txt OpenSSL steps', () => {
  test('lists the three commands in order', () => {
    assert.equal(commands.length, 3, commands.join('\n'));
    assert.match(commands[0]!, /^openssl dgst -sha256 -verify public_key\.pem /);
    assert.match(commands[1]!, /^openssl dgst -sha256 -r /);
    assert.match(commands[2]!, /note\.txt$/);
  });

  test('step 1 prints Verified OK', () => {
    requireOpenssl();
    const dir = unpackInto('step1', files, fixture.noteText);
    const result = runShell(commands[0]!, dir);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'Verified OK');
  });

  test('step 2 hashes equal the manifest', () => {
    requireOpenssl();
    const dir = unpackInto('step2', files, fixture.noteText);
    const result = runShell(commands[1]!, dir);
    assert.equal(result.status, 0, result.stderr);
    const digests = parseDigests(result.stdout);
    const manifest = readJsonFile(files, BundleFile.manifest) as unknown as {
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

  test('step 3 hash equals note_hash', () => {
    requireOpenssl();
    const dir = unpackInto('step3', files, fixture.noteText);
    const result = runShell(commands[2]!, dir);
    assert.equal(result.status, 0, result.stderr);
    const digests = parseDigests(result.stdout);
    const message = readJsonFile(files, BundleFile.canonicalMessage);
    assert.equal(digests.get('note.txt'), message.note_hash);
    assert.equal(digests.get('note.txt'), fixture.certificate.note_hash);
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
    const result = runShell(commands[0]!, dir);
    assert.notEqual(result.status, 0);
    assert.match(result.stdout, /Verification failure/);
  });

  test('step 3 differs for an altered note', () => {
    requireOpenssl();
    const note = Buffer.from(fixture.noteText, 'utf8');
    note[0]! ^= 0x20;
    const dir = unpackInto('altered-note', files, note);
    const result = runShell(commands[2]!, dir);
    assert.equal(result.status, 0, result.stderr);
    assert.notEqual(parseDigests(result.stdout).get('note.txt'), fixture.certificate.note_hash);
  });
});
