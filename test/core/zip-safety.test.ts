// Hostile archives given to `cdil verify`: each must end with exit status 2 and a BundleError
// code, and the verifier must not write a single file while reading it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crc32, deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { EXIT_UNUSABLE, EXIT_VALID } from '../../src/cli/commands/verify.ts';
import { BundleErrorCode } from '../../src/core/errors.ts';
import {
  crc32 as zipCrc32,
  DEFAULT_ZIP_LIMITS,
  readZipSafely,
  tableCrc32,
  writeDeterministicZip,
} from '../../src/core/zip.ts';
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
  /** Declared CRC-32 in both headers, by default the CRC-32 of `content`. */
  crc?: number;
  /** Upper byte of "version made by": 3 (Unix) unless set. */
  host?: number;
  /** External attributes of the central record, 0 unless set. */
  externalAttributes?: number;
  /**
   * Moves the CRC-32 and sizes into a data descriptor after the data, with or without its
   * optional signature, and sets general-purpose flag bit 3. The local header fields are zero.
   */
  descriptor?: 'signed' | 'unsigned';
  /** Writes only the local header and data, with no central directory record. */
  hidden?: boolean;
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
    const crc = entry.crc ?? crc32(content);
    const name = nameBytes(entry.name);
    const localName = entry.localName === undefined ? name : nameBytes(entry.localName);
    const flags = (entry.flags ?? 0) | (entry.descriptor ? 0x8 : 0);

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12);
    if (!entry.descriptor) {
      local.writeUInt32LE(crc, 14);
      local.writeUInt32LE(data.length, 18);
      local.writeUInt32LE(size, 22);
    }
    local.writeUInt16LE(localName.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, Buffer.from(localName), Buffer.from(data));
    let localLength = 30 + localName.length + data.length;

    if (entry.descriptor) {
      const descriptor = Buffer.alloc(16);
      descriptor.writeUInt32LE(0x08074b50, 0);
      descriptor.writeUInt32LE(crc, 4);
      descriptor.writeUInt32LE(data.length, 8);
      descriptor.writeUInt32LE(size, 12);
      const written = entry.descriptor === 'signed' ? descriptor : descriptor.subarray(4);
      locals.push(written);
      localLength += written.length;
    }

    if (!entry.hidden) {
      const central = Buffer.alloc(46);
      central.writeUInt32LE(0x02014b50, 0);
      central.writeUInt16LE(((entry.host ?? 3) << 8) | 20, 4);
      central.writeUInt16LE(20, 6);
      central.writeUInt16LE(flags, 8);
      central.writeUInt16LE(method, 10);
      central.writeUInt16LE(0, 12);
      central.writeUInt16LE(0x21, 14);
      central.writeUInt32LE(crc, 16);
      central.writeUInt32LE(data.length, 20);
      central.writeUInt32LE(size, 24);
      central.writeUInt16LE(name.length, 28);
      central.writeUInt32LE(entry.externalAttributes ?? 0, 38);
      central.writeUInt32LE(offset, 42);
      centrals.push(central, Buffer.from(name));
    }

    offset += localLength;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  const count = entries.filter((entry) => !entry.hidden).length;
  end.writeUInt16LE(overrides.count ?? count, 8);
  end.writeUInt16LE(overrides.count ?? count, 10);
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

  test('name with a byte order mark keeps it', () => {
    const zip = buildZip([textEntry('\ufeffREADME.txt')]);
    assert.deepEqual([...readZipSafely(zip).keys()], ['\ufeffREADME.txt']);
  });

  test('byte order mark only in the central name is rejected', () => {
    const entry: RawEntry = { ...textEntry('\ufeffREADME.txt'), localName: 'README.txt' };
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

/** Returns the files of the genuine bundle as entries for `buildZip`, in archive order. */
function genuineEntries(): RawEntry[] {
  return [...readZipSafely(genuine)].map(([name, content]) => ({ name, content }));
}

/** Returns external attributes that carry a Unix mode in their upper 16 bits. */
function unixMode(mode: number): number {
  return mode * 0x10000;
}

/** Returns the offset of the central directory, read from the end record of `zip`. */
function directoryOffsetOf(zip: Uint8Array): number {
  return Buffer.from(zip).readUInt32LE(zip.length - 6);
}

void describe('local entries outside the central directory', () => {
  const forged: RawEntry = {
    name: 'certificate.json',
    content: Buffer.from('{"note":"forged"}'),
    hidden: true,
  };
  const positions: [string, (count: number) => number][] = [
    ['before the first entry', () => 0],
    ['between entries', (count) => count >> 1],
    ['before the central directory', (count) => count],
  ];
  for (const [label, position] of positions) {
    test(`hidden entry ${label} is rejected`, () => {
      // Readers that follow the central directory, `unzip` among them, skip the forged
      // certificate.json, but readers that walk local headers from byte 0 extract it.
      const entries = genuineEntries();
      entries.splice(position(entries.length), 0, forged);
      assertUnusable(buildZip(entries), BundleErrorCode.UNSAFE_ENTRY);
    });
  }

  test('hidden entry message names the gap', () => {
    const zip = buildZip([forged, textEntry('README.txt')]);
    assert.throws(() => readZipSafely(zip), /bytes between the start of the archive and entry/);
  });

  for (const descriptor of ['signed', 'unsigned'] as const) {
    test(`${descriptor} data descriptors are accepted`, () => {
      const entries = genuineEntries().map((entry): RawEntry => ({ ...entry, descriptor }));
      const files = readZipSafely(buildZip(entries));
      for (const entry of entries) {
        assert.deepEqual(files.get(entry.name as string), entry.content, entry.name as string);
      }
    });
  }

  test('data descriptor with a wrong CRC-32 is rejected', () => {
    const zip = Buffer.from(buildZip([{ ...textEntry('README.txt'), descriptor: 'signed' }]));
    // The descriptor's CRC-32 is the second of its four fields, 12 bytes before the directory.
    const at = directoryOffsetOf(zip) - 12;
    zip.writeUInt32LE((zip.readUInt32LE(at) ^ 1) >>> 0, at);
    assertUnusable(zip, BundleErrorCode.UNSAFE_ENTRY);
  });

  test('flag bit 3 without a data descriptor is rejected', () => {
    // The flag is set in both headers, but the data runs straight into the central directory.
    const zip = buildZip([{ ...textEntry('README.txt'), flags: 0x8 }]);
    assertUnusable(zip, BundleErrorCode.UNSAFE_ENTRY);
  });

  test('local method differing from the central one is rejected', () => {
    const zip = Buffer.from(buildZip([textEntry('README.txt')]));
    zip.writeUInt16LE(0, 8);
    assertUnusable(zip, BundleErrorCode.UNSAFE_ENTRY);
  });

  test('local size differing from the central one is rejected', () => {
    const zip = Buffer.from(buildZip([textEntry('README.txt')]));
    zip.writeUInt32LE(zip.readUInt32LE(22) + 1, 22);
    assertUnusable(zip, BundleErrorCode.UNSAFE_ENTRY);
  });

  test('bytes after the end record are rejected', () => {
    const zip = Buffer.concat([buildZip([textEntry('README.txt')]), Buffer.from('x')]);
    assertUnusable(zip, BundleErrorCode.NOT_A_ZIP);
  });

  test('archive comment is accepted', () => {
    const comment = Buffer.from('exported for review');
    const zip = Buffer.concat([buildZip([textEntry('README.txt')]), comment]);
    zip.writeUInt16LE(comment.length, zip.length - comment.length - 2);
    assert.deepEqual([...readZipSafely(zip).keys()], ['README.txt']);
  });

  test('differing entry counts in the end record are rejected', () => {
    const zip = Buffer.from(buildZip([textEntry('README.txt'), textEntry('b.txt')]));
    zip.writeUInt16LE(1, zip.length - 14);
    assertUnusable(zip, BundleErrorCode.UNSAFE_ENTRY);
  });
});

void describe('CRC-32 checks', () => {
  // crc32 runs zlib's native code where the runtime has it, so the JavaScript fallback is
  // compared with zlib on its own.
  for (const [name, compute] of [
    ['crc32', zipCrc32],
    ['tableCrc32', tableCrc32],
  ] as const) {
    test(`${name} matches zlib`, () => {
      const data = Buffer.alloc(100_000);
      for (let i = 0; i < data.length; i++) {
        data[i] = (i * 7919 + (i >> 8)) & 0xff;
      }
      for (let length = 0; length <= 70; length++) {
        const slice = data.subarray(0, length);
        assert.equal(compute(slice), crc32(slice), `length ${length}`);
      }
      assert.equal(compute(data), crc32(data), 'length 100000');
      assert.equal(compute(data.subarray(3)), crc32(data.subarray(3)), 'unaligned view');
      assert.equal(compute(data.subarray(5, 5)), 0, 'empty view');
      const plain = new Uint8Array(data.buffer, data.byteOffset + 7, 1001);
      assert.equal(compute(plain), crc32(plain), 'plain Uint8Array view');
    });
  }

  test('tableCrc32 matches zlib on random input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(7), (bytes, offset) => {
        const view = bytes.subarray(Math.min(offset, bytes.length));
        assert.equal(tableCrc32(view), crc32(view));
        assert.equal(zipCrc32(view), crc32(view));
      }),
      { numRuns: 500 },
    );
  });

  test('deflated entry with a wrong CRC-32 is rejected', () => {
    const entry: RawEntry = { ...textEntry('README.txt'), crc: 0x12345678 };
    assertUnusable(buildZip([entry]), BundleErrorCode.NOT_A_ZIP);
  });

  test('stored entry with a wrong CRC-32 is rejected', () => {
    const entry: RawEntry = { ...textEntry('README.txt'), method: 0, crc: 0 };
    assertUnusable(buildZip([entry]), BundleErrorCode.NOT_A_ZIP);
  });

  test('CRC-32 failure message names the entry', () => {
    const entry: RawEntry = { ...textEntry('README.txt'), crc: 0x12345678 };
    assert.throws(
      () => readZipSafely(buildZip([entry])),
      /entry README\.txt fails its CRC-32 check.*0x12345678/,
    );
  });

  test('genuine bundle with one changed byte is rejected', () => {
    // Bundle entries are stored, so the certificate's bytes appear as they are in the archive.
    const certificate = readZipSafely(genuine).get('certificate.json')!;
    const zip = Buffer.from(genuine);
    const at = zip.indexOf(Buffer.from(certificate)) + (certificate.length >> 1);
    assert.ok(at > 0, 'certificate.json found in the archive');
    zip.writeUInt8(zip.readUInt8(at) ^ 0x01, at);
    assertUnusable(zip, BundleErrorCode.NOT_A_ZIP);
  });
});

void describe('entries that are not regular files', () => {
  const cases: [string, number, number][] = [
    ['Unix symbolic link', 3, unixMode(0o120777)],
    ['Unix directory', 3, unixMode(0o040755)],
    ['Unix FIFO', 3, unixMode(0o010644)],
    ['Unix character device', 3, unixMode(0o020644)],
    ['Unix block device', 3, unixMode(0o060644)],
    ['Unix socket', 3, unixMode(0o140755)],
    ['symbolic link from MS-DOS host', 0, unixMode(0o120777) + 0x20],
    ['MS-DOS directory attribute', 0, 0x10],
    ['MS-DOS directory attribute from Unix host', 3, unixMode(0o100644) + 0x10],
  ];
  for (const [label, host, externalAttributes] of cases) {
    test(`${label} is rejected`, () => {
      // A symbolic link's data is its target path, so `unzip` would create link.txt as a link
      // to /etc/passwd while the verifier would read the path as the file's content.
      const entries = genuineEntries();
      entries.push({ ...textEntry('link.txt', '/etc/passwd'), host, externalAttributes });
      assertUnusable(buildZip(entries), BundleErrorCode.UNSAFE_ENTRY);
    });
  }

  test('symbolic link message names the type', () => {
    const entry: RawEntry = { ...textEntry('a.txt'), externalAttributes: unixMode(0o120777) };
    assert.throws(() => readZipSafely(buildZip([entry])), /entry a\.txt is a symbolic link/);
  });

  const accepted: [string, number, number][] = [
    ['Unix regular file', 3, unixMode(0o100644)],
    ['Unix permissions without a type', 3, unixMode(0o644)],
    ['MS-DOS archive attribute', 0, 0x20],
    ['NTFS read-only attribute', 10, 0x01],
  ];
  for (const [label, host, externalAttributes] of accepted) {
    test(`${label} is accepted`, () => {
      const zip = buildZip([{ ...textEntry('a.txt'), host, externalAttributes }]);
      assert.deepEqual([...readZipSafely(zip).keys()], ['a.txt']);
    });
  }
});

void describe('names that collide on case-insensitive file systems', () => {
  test('names differing in case are rejected', () => {
    const entries = genuineEntries();
    entries.push({ name: 'CERTIFICATE.json', content: Buffer.from('{"note":"forged"}') });
    assertUnusable(buildZip(entries), BundleErrorCode.UNSAFE_ENTRY);
  });

  test('names differing in normalization are rejected', () => {
    // "café.txt" with a precomposed é and with e followed by a combining acute accent.
    const zip = buildZip([textEntry('caf\u00e9.txt'), textEntry('cafe\u0301.txt')]);
    assertUnusable(zip, BundleErrorCode.UNSAFE_ENTRY);
  });

  test('collision message names both entries', () => {
    const zip = buildZip([textEntry('a.txt'), textEntry('A.TXT')]);
    assert.throws(() => readZipSafely(zip), /"a\.txt" and "A\.TXT" differ only in letter case/);
  });
});

/** Returns whether `command --version` runs, so tests can skip tools that are not installed. */
function hasCommand(command: string): boolean {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0;
}

const PYTHON_ZIP = `
import os, sys, zipfile
source, output, method, target = sys.argv[1:5]
compression = zipfile.ZIP_STORED if method == 'stored' else zipfile.ZIP_DEFLATED
# A pipe cannot seek, so zipfile writes data descriptors instead of patching local headers.
destination = sys.stdout.buffer if target == 'pipe' else output
with zipfile.ZipFile(destination, 'w', compression=compression) as archive:
    for name in sorted(os.listdir(source)):
        archive.write(os.path.join(source, name), arcname=name)
`;

void describe('archives from other ZIP writers', () => {
  let work: string;
  let source: string;

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'cdil-zip-writers-'));
    source = join(work, 'files');
    mkdirSync(source);
    for (const [name, content] of readZipSafely(genuine)) {
      writeFileSync(join(source, name), content);
    }
  });

  after(() => {
    rmSync(work, { recursive: true, force: true });
  });

  /** Verifies a re-zipped copy of the genuine bundle and expects every check to pass. */
  function assertVerifies(zip: Uint8Array): void {
    const input = join(root, 'rezipped.zip');
    writeFileSync(input, zip);
    const outcome = verifyFile(input);
    assert.equal(outcome.error, undefined, outcome.error?.message);
    assert.equal(outcome.exitCode, EXIT_VALID, 'exit status');
  }

  test('writeDeterministicZip output verifies', () => {
    assertVerifies(writeDeterministicZip(readZipSafely(genuine)));
  });

  const python = hasCommand('python3');
  for (const method of ['stored', 'deflate']) {
    for (const target of ['file', 'pipe']) {
      test(`Python zipfile ${method} to a ${target} verifies`, { skip: !python }, () => {
        const output = join(work, `python-${method}.zip`);
        const run = spawnSync('python3', ['-c', PYTHON_ZIP, source, output, method, target]);
        assert.equal(run.status, 0, run.stderr.toString());
        assertVerifies(target === 'pipe' ? run.stdout : readFileSync(output));
      });
    }
  }

  const zipCommand = hasCommand('zip');
  test('zip command output verifies', { skip: !zipCommand }, () => {
    const output = join(work, 'zip-command.zip');
    const run = spawnSync('zip', ['-q', '-X', output, ...readdirSync(source)], { cwd: source });
    assert.equal(run.status, 0, run.stderr.toString());
    assertVerifies(readFileSync(output));
  });

  test('zip command output to a pipe verifies', { skip: !zipCommand }, () => {
    // Info-ZIP Zip writes data descriptors when its output cannot seek.
    const run = spawnSync('zip', ['-q', '-X', '-', ...readdirSync(source)], { cwd: source });
    assert.equal(run.status, 0, run.stderr.toString());
    assertVerifies(run.stdout);
  });
});
