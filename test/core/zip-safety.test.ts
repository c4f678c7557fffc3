// Hostile archives given to `cdil verify`: each must end with exit status 2 and a BundleError
// code, and the verifier must not write a single file while reading it.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crc32, deflateRawSync } from 'node:zlib';
import { EXIT_UNUSABLE } from '../../src/cli/commands/verify.ts';
import { BundleErrorCode } from '../../src/core/errors.ts';
import { DEFAULT_ZIP_LIMITS, readZipSafely } from '../../src/core/zip.ts';
import { createBundleFixture, verifyFile, type BundleFixture } from '../helpers/bundle.ts';

interface RawEntry {
  name: string | Uint8Array;
  /** Name written in the local header when it should differ from the central directory. */
  localName?: string;
  /** Uncompressed content, compressed with raw DEFLATE unless `method` is 0. */
  content?: Uint8Array;
  /** Bytes stored as the entry data, used as is instead of compressing `content`. */
  data?: Uint8Array;
  method?: number;
  flags?: number;
  /** Declared uncompressed size, by default the length of `content`. */
  size?: number;
}

interface EndRecordOverrides {
  count?: number;
  directorySize?: number;
  directoryOffset?: number;
}

function nameBytes(name: string | Uint8Array): Uint8Array {
  return typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
}

/** Builds ZIP bytes by hand, so each header field can be set to a hostile value. */
function buildZip(entries: RawEntry[], overrides: EndRecordOverrides = {}): Uint8Array {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const method = entry.method ?? 8;
    const content = entry.content ?? new Uint8Array(0);
    const data = entry.data ?? (method === 0 ? content : deflateRawSync(content));
    const size = entry.size ?? content.length;
    const crc = crc32(content);
    const name = nameBytes(entry.name);
    const localName = entry.localName === undefined ? name : nameBytes(entry.localName);

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(entry.flags ?? 0, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(localName.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, Buffer.from(localName), Buffer.from(data));

    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x0314, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(entry.flags ?? 0, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, Buffer.from(name));

    offset += 30 + localName.length + data.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(overrides.count ?? entries.length, 8);
  end.writeUInt16LE(overrides.count ?? entries.length, 10);
  end.writeUInt32LE(overrides.directorySize ?? directory.length, 12);
  end.writeUInt32LE(overrides.directoryOffset ?? offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

function textEntry(name: string, text = 'content\n'): RawEntry {
  return { name, content: Buffer.from(text, 'utf8') };
}

/** Lists every file and folder under `root`, relative to it, in sorted order. */
function listTree(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      found.push(relative(root, path));
      if (statSync(path).isDirectory()) {
        walk(path);
      }
    }
  };
  walk(root);
  return found.sort();
}

const MiB = 1024 * 1024;

let fixture: BundleFixture;
let root: string;
let cwd: string;
let originalCwd: string;
let genuine: Buffer;
let zeros20MiB: Buffer;

before(async () => {
  fixture = await createBundleFixture();
  genuine = Buffer.from(fixture.zip);
  root = mkdtempSync(join(tmpdir(), 'cdil-zip-safety-'));
  cwd = join(root, 'cwd');
  mkdirSync(cwd);
  originalCwd = process.cwd();
  // A verifier that extracted entries would write relative to the working folder, and
  // "../evil" would land in `root`. Both folders are listed before and after each run.
  process.chdir(cwd);
  zeros20MiB = deflateRawSync(Buffer.alloc(20 * MiB));
});

after(async () => {
  process.chdir(originalCwd);
  rmSync(root, { recursive: true, force: true });
  await fixture.close();
});

/** Verifies `zip` and checks exit status 2, the BundleError code and an unchanged file tree. */
function assertUnusable(zip: Uint8Array, code: string): void {
  const input = join(root, 'input.zip');
  writeFileSync(input, zip);
  const treeBefore = listTree(root);
  const cwdBefore = readdirSync(process.cwd()).sort();

  const outcome = verifyFile(input);

  assert.equal(
    outcome.exitCode,
    EXIT_UNUSABLE,
    `exit status; error: ${JSON.stringify(outcome.error)}`,
  );
  assert.equal(outcome.error?.code, code, outcome.error?.message);
  assert.match(outcome.stderr, new RegExp(`\\[${code}\\]`));
  assert.equal(outcome.report, undefined);
  assert.deepEqual(listTree(root), treeBefore, 'files under the temporary folder');
  assert.deepEqual(readdirSync(process.cwd()).sort(), cwdBefore, 'files in the working folder');
}

void describe('unsafe entry names', () => {
  const names: [string, string | Uint8Array][] = [
    ['parent traversal', '../evil'],
    ['nested traversal', 'a/../../b'],
    ['subfolder', 'a/b.txt'],
    ['absolute POSIX path', '/etc/x'],
    ['drive letter path', 'C:\\x'],
    ['backslash', 'dir\\file.txt'],
    ['dot dot alone', '..'],
    ['dot alone', '.'],
    ['control character', 'a\nb.txt'],
    ['NUL byte', 'a\u0000b.txt'],
    ['empty name', ''],
    ['name over 255 characters', 'a'.repeat(256)],
    ['invalid UTF-8', Uint8Array.from([0x61, 0xff, 0xfe, 0x62])],
  ];
  for (const [label, name] of names) {
    test(`${label} is rejected`, () => {
      assertUnusable(
        buildZip([textEntry('README.txt'), { name, content: Buffer.from('x') }]),
        BundleErrorCode.UNSAFE_ENTRY,
      );
    });
  }

  test('duplicate names are rejected', () => {
    const zip = buildZip([
      textEntry('certificate.json', '{}'),
      textEntry('certificate.json', '{"a":1}'),
    ]);
    assertUnusable(zip, BundleErrorCode.UNSAFE_ENTRY);
  });

  test('duplicate names after a genuine bundle are rejected', () => {
    // Appends a second "certificate.json" entry to a real bundle's central directory.
    const files = readZipSafely(genuine);
    const entries: RawEntry[] = [...files].map(([name, content]) => ({ name, content }));
    entries.push({ name: 'certificate.json', content: Buffer.from('{}') });
    assertUnusable(buildZip(entries), BundleErrorCode.UNSAFE_ENTRY);
  });
});

void describe('entry count and sizes', () => {
  test('too many entries are rejected', () => {
    const entries = Array.from({ length: DEFAULT_ZIP_LIMITS.maxEntries + 1 }, (_, i) =>
      textEntry(`f${i}.txt`),
    );
    assertUnusable(buildZip(entries), BundleErrorCode.TOO_LARGE);
  });

  test('oversized declared entry is rejected', () => {
    const entry: RawEntry = {
      ...textEntry('README.txt'),
      size: DEFAULT_ZIP_LIMITS.maxEntryBytes + 1,
    };
    assertUnusable(buildZip([entry]), BundleErrorCode.TOO_LARGE);
  });

  test('bomb with a small declared size is stopped', () => {
    // About 20 KiB of DEFLATE data that inflates to 20 MiB while the header claims 1000 bytes.
    assert.ok(zeros20MiB.length < 64 * 1024, `compressed size ${zeros20MiB.length}`);
    const entry: RawEntry = { name: 'certificate.json', data: zeros20MiB, size: 1000 };
    assertUnusable(buildZip([entry]), BundleErrorCode.TOO_LARGE);
  });

  test('honest entry over the size limit is rejected', () => {
    const entry: RawEntry = { name: 'certificate.json', data: zeros20MiB, size: 20 * MiB };
    assertUnusable(buildZip([entry]), BundleErrorCode.TOO_LARGE);
  });

  test('entries over the total limit are rejected', () => {
    // Each entry is under the 16 MiB entry limit, but together they pass the 48 MiB total.
    const size = 15 * MiB;
    const data = deflateRawSync(Buffer.alloc(size));
    const entries = ['a', 'b', 'c', 'd'].map((name): RawEntry => ({ name, data, size }));
    assertUnusable(buildZip(entries), BundleErrorCode.TOO_LARGE);
  });

  test('archive over the size limit is rejected', () => {
    const big = Buffer.alloc(DEFAULT_ZIP_LIMITS.maxArchiveBytes + 1);
    assertUnusable(big, BundleErrorCode.TOO_LARGE);
  });
});

void describe('entry flags and methods', () => {
  test('encrypted entry is rejected', () => {
    assertUnusable(
      buildZip([{ ...textEntry('README.txt'), flags: 0x1 }]),
      BundleErrorCode.UNSAFE_ENTRY,
    );
  });

  test('unsupported compression method is rejected', () => {
    const entry: RawEntry = { ...textEntry('README.txt'), method: 12, data: Buffer.from('BZh9') };
    assertUnusable(buildZip([entry]), BundleErrorCode.UNSAFE_ENTRY);
  });

  test('invalid DEFLATE data is rejected', () => {
    const entry: RawEntry = {
      ...textEntry('README.txt'),
      data: Buffer.from([0xff, 0xff, 0xff, 0xff]),
    };
    assertUnusable(buildZip([entry]), BundleErrorCode.NOT_A_ZIP);
  });

  test('stored entry with inconsistent sizes is rejected', () => {
    const entry: RawEntry = { ...textEntry('README.txt'), method: 0, size: 3 };
    assertUnusable(buildZip([entry]), BundleErrorCode.NOT_A_ZIP);
  });

  test('entry inflating short of its size is rejected', () => {
    const entry: RawEntry = { ...textEntry('README.txt', 'short'), size: 100 };
    assertUnusable(buildZip([entry]), BundleErrorCode.NOT_A_ZIP);
  });
});

void describe('archive structure', () => {
  test('genuine bundle truncated by half is rejected', () => {
    assertUnusable(genuine.subarray(0, genuine.length >> 1), BundleErrorCode.NOT_A_ZIP);
  });

  test('genuine bundle without its last byte is rejected', () => {
    assertUnusable(genuine.subarray(0, genuine.length - 1), BundleErrorCode.NOT_A_ZIP);
  });

  test('entry data past the end is rejected', () => {
    // Keeps the central directory and end record but drops most of the entry data before them.
    const zip = Buffer.from(buildZip([textEntry('README.txt', 'x'.repeat(4000))]));
    const directoryOffset = zip.readUInt32LE(zip.length - 6);
    const cut = Buffer.concat([zip.subarray(0, 40), zip.subarray(directoryOffset)]);
    cut.writeUInt32LE(40, cut.length - 6);
    assertUnusable(cut, BundleErrorCode.NOT_A_ZIP);
  });

  test('central directory outside the archive is rejected', () => {
    assertUnusable(
      buildZip([textEntry('README.txt')], { directoryOffset: 1_000_000 }),
      BundleErrorCode.NOT_A_ZIP,
    );
  });

  test('wrong local header offset is rejected', () => {
    const zip = Buffer.from(buildZip([textEntry('README.txt')]));
    const directoryOffset = zip.readUInt32LE(zip.length - 6);
    zip.writeUInt32LE(5, directoryOffset + 42);
    assertUnusable(zip, BundleErrorCode.NOT_A_ZIP);
  });

  test('plain text is not a ZIP', () => {
    assertUnusable(
      Buffer.from('this is not a zip archive, just text\n'.repeat(4)),
      BundleErrorCode.NOT_A_ZIP,
    );
  });

  test('empty file is not a ZIP', () => {
    assertUnusable(new Uint8Array(0), BundleErrorCode.NOT_A_ZIP);
  });

  test('gzip data is not a ZIP', () => {
    assertUnusable(
      Buffer.from([0x1f, 0x8b, 0x08, 0x00, ...Buffer.alloc(40)]),
      BundleErrorCode.NOT_A_ZIP,
    );
  });

  test('ZIP64 entry count marker is rejected', () => {
    assertUnusable(
      buildZip([textEntry('README.txt')], { count: 0xffff }),
      BundleErrorCode.UNSAFE_ENTRY,
    );
  });

  test('ZIP64 directory offset marker is rejected', () => {
    assertUnusable(
      buildZip([textEntry('README.txt')], { directoryOffset: 0xffffffff }),
      BundleErrorCode.UNSAFE_ENTRY,
    );
  });

  test('entry hidden by a low entry count is rejected', () => {
    // The central directory contains nine records but the end record counts eight, so a reader
    // that trusts the count would miss the last file that other ZIP tools list and extract.
    const files = readZipSafely(genuine);
    const entries: RawEntry[] = [...files].map(([name, content]) => ({ name, content }));
    entries.push(textEntry('note.txt', 'a note that was never certified'));
    assertUnusable(buildZip(entries, { count: files.size }), BundleErrorCode.NOT_A_ZIP);
  });

  test('local name differing from the central name is rejected', () => {
    // Tools that extract from local headers would write "../evil" although the central
    // directory, which the verifier reads, names README.txt.
    const entry: RawEntry = { ...textEntry('README.txt'), localName: '../evil' };
    assertUnusable(buildZip([entry]), BundleErrorCode.UNSAFE_ENTRY);
  });

  test('archive missing a bundle file is rejected', () => {
    assertUnusable(buildZip([textEntry('README.txt')]), BundleErrorCode.MISSING_FILE);
  });

  test('hand-built copy of a genuine bundle is accepted', () => {
    // Guards the builder itself: without hostile fields its archives are readable.
    const files = readZipSafely(genuine);
    const rebuilt = readZipSafely(
      buildZip([...files].map(([name, content]) => ({ name, content }))),
    );
    assert.deepEqual([...rebuilt.keys()].sort(), [...files.keys()].sort());
    for (const [name, content] of files) {
      assert.deepEqual(rebuilt.get(name), content, name);
    }
  });
});
