// Deterministic ZIP writing and defensive ZIP reading for bundles. Archives come from
// untrusted parties, so the reader walks the central directory itself (fflate's reader keys
// entries by name and would hide duplicates), enforces entry-count and size limits before
// inflating anything, and stops inflating as soon as an entry grows past its limit.
import { Inflate, zipSync, type Zippable } from 'fflate';
import { BundleError } from './errors.ts';
import { bytesEqual, utf8Decode, utf8Encode } from './encoding.ts';

export interface ZipLimits {
  /** Maximum size of the archive itself, in bytes. */
  maxArchiveBytes: number;
  maxEntries: number;
  /** Maximum uncompressed size of one entry, in bytes. */
  maxEntryBytes: number;
  /** Maximum uncompressed size of all entries together, in bytes. */
  maxTotalBytes: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = {
  maxArchiveBytes: 32 * 1024 * 1024,
  maxEntries: 64,
  maxEntryBytes: 16 * 1024 * 1024,
  maxTotalBytes: 48 * 1024 * 1024,
};

// DOS date fields are read in local time by fflate; a Date built from local components gives
// the same stored bytes in every time zone.
const FIXED_MTIME = new Date(1980, 0, 1, 0, 0, 0);

/** Writes a ZIP whose bytes depend only on the file names and contents. */
export function writeDeterministicZip(files: ReadonlyMap<string, Uint8Array>): Uint8Array {
  const zippable: Zippable = {};
  for (const name of [...files.keys()].sort()) {
    zippable[name] = [files.get(name)!, { level: 0, mtime: FIXED_MTIME, os: 3 }];
  }
  return zipSync(zippable);
}

const EOCD_SIGNATURE = 0x06054b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;

function unsafe(message: string): BundleError {
  return new BundleError('BUNDLE_UNSAFE_ENTRY', message);
}

function notZip(message: string): BundleError {
  return new BundleError('BUNDLE_NOT_A_ZIP', message);
}

/**
 * Rejects any name that could escape a folder if extracted or that is ambiguous across file
 * systems. Bundles are flat, so a plain file name is all that is allowed.
 */
function checkEntryName(name: string): void {
  if (name.length === 0 || name.length > 255) {
    throw unsafe('entry name is empty or longer than 255 characters');
  }
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is rejected
  if (/[\\/:\x00-\x1f]/.test(name) || name === '.' || name === '..' || name.includes('..')) {
    throw unsafe(`entry name ${JSON.stringify(name)} is not a plain file name`);
  }
}

interface CentralEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

function findEndOfCentralDirectory(view: DataView): number {
  const minimum = Math.max(0, view.byteLength - 22 - 0xffff);
  for (let offset = view.byteLength - 22; offset >= minimum; offset--) {
    if (view.getUint32(offset, true) === EOCD_SIGNATURE) {
      return offset;
    }
  }
  throw notZip('no ZIP end-of-central-directory record found');
}

function readCentralDirectory(bytes: Uint8Array, limits: ZipLimits): CentralEntry[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 22) {
    throw notZip('input is too short to be a ZIP archive');
  }
  const eocd = findEndOfCentralDirectory(view);
  const count = view.getUint16(eocd + 10, true);
  const directorySize = view.getUint32(eocd + 12, true);
  const directoryOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || directoryOffset === 0xffffffff) {
    throw unsafe('ZIP64 archives are not accepted for bundles');
  }
  if (count > limits.maxEntries) {
    throw new BundleError(
      'BUNDLE_TOO_LARGE',
      `archive has ${count} entries; the limit is ${limits.maxEntries}`,
    );
  }
  if (directoryOffset + directorySize > eocd) {
    throw notZip('central directory lies outside the archive');
  }
  const entries: CentralEntry[] = [];
  const names = new Set<string>();
  let offset = directoryOffset;
  let total = 0;
  for (let i = 0; i < count; i++) {
    if (offset + 46 > eocd || view.getUint32(offset, true) !== CENTRAL_SIGNATURE) {
      throw notZip(`central directory entry ${i} is malformed`);
    }
    const flags = view.getUint16(offset + 8, true);
    const method = view.getUint16(offset + 10, true);
    const compressedSize = view.getUint32(offset + 20, true);
    const size = view.getUint32(offset + 24, true);
    const nameLength = view.getUint16(offset + 28, true);
    const extraLength = view.getUint16(offset + 30, true);
    const commentLength = view.getUint16(offset + 32, true);
    const localOffset = view.getUint32(offset + 42, true);
    if (offset + 46 + nameLength > eocd) {
      throw notZip(`central directory entry ${i} is truncated`);
    }
    let name: string;
    try {
      name = utf8Decode(bytes.subarray(offset + 46, offset + 46 + nameLength));
    } catch {
      throw unsafe(`entry ${i} has a name that is not UTF-8`);
    }
    checkEntryName(name);
    if (names.has(name)) {
      throw unsafe(`entry name ${JSON.stringify(name)} appears more than once`);
    }
    names.add(name);
    if (flags & 0x1) {
      throw unsafe(`entry ${name} is encrypted`);
    }
    if (method !== 0 && method !== 8) {
      throw unsafe(
        `entry ${name} uses compression method ${method}; only stored and deflate are accepted`,
      );
    }
    if (size > limits.maxEntryBytes) {
      throw new BundleError(
        'BUNDLE_TOO_LARGE',
        `entry ${name} is ${size} bytes; the limit is ${limits.maxEntryBytes}`,
      );
    }
    total += size;
    if (total > limits.maxTotalBytes) {
      throw new BundleError(
        'BUNDLE_TOO_LARGE',
        `entries total more than ${limits.maxTotalBytes} bytes`,
      );
    }
    entries.push({ name, method, compressedSize, size, localOffset });
    offset += 46 + nameLength + extraLength + commentLength;
  }
  // Other ZIP readers walk the directory by its declared size, or find it by counting back
  // from the end record, so any byte outside the counted records could hide an entry.
  if (offset !== directoryOffset + directorySize || offset !== eocd) {
    throw notZip(`central directory holds bytes outside its ${count} counted entries`);
  }
  return entries;
}

function entryData(bytes: Uint8Array, entry: CentralEntry): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = entry.localOffset;
  if (at + 30 > bytes.length || view.getUint32(at, true) !== LOCAL_SIGNATURE) {
    throw notZip(`local header of ${entry.name} is missing`);
  }
  const nameLength = view.getUint16(at + 26, true);
  const start = at + 30 + nameLength + view.getUint16(at + 28, true);
  const end = start + entry.compressedSize;
  if (end > bytes.length) {
    throw notZip(`data of ${entry.name} runs past the end of the archive`);
  }
  // Extractors that read local headers in sequence write files under this name instead of
  // the checked central directory name, so the two must be the same bytes.
  if (!bytesEqual(bytes.subarray(at + 30, at + 30 + nameLength), utf8Encode(entry.name))) {
    throw unsafe(`local header of ${entry.name} names a different file`);
  }
  // A plain Uint8Array view, whatever the input type (a Buffer input would give Buffer slices).
  return new Uint8Array(bytes.buffer, bytes.byteOffset + start, end - start);
}

const INFLATE_SLICE = 4096;

/** Inflates raw DEFLATE data, aborting once the output exceeds `declaredSize`. */
function inflateBounded(data: Uint8Array, declaredSize: number, name: string): Uint8Array {
  const out = new Uint8Array(declaredSize);
  let written = 0;
  let tooLarge = false;
  const inflater = new Inflate((chunk) => {
    if (written + chunk.length > declaredSize) {
      tooLarge = true;
      return;
    }
    out.set(chunk, written);
    written += chunk.length;
  });
  try {
    for (let offset = 0; offset < data.length && !tooLarge; offset += INFLATE_SLICE) {
      const end = Math.min(offset + INFLATE_SLICE, data.length);
      inflater.push(data.subarray(offset, end), end === data.length);
    }
  } catch (error) {
    throw new BundleError('BUNDLE_NOT_A_ZIP', `entry ${name} is not valid DEFLATE data`, {
      cause: error,
    });
  }
  if (tooLarge) {
    throw new BundleError(
      'BUNDLE_TOO_LARGE',
      `entry ${name} inflates past its declared size of ${declaredSize} bytes`,
    );
  }
  if (written !== declaredSize) {
    throw notZip(`entry ${name} inflates to ${written} bytes, not the declared ${declaredSize}`);
  }
  return out;
}

/** Reads every entry of an untrusted ZIP into memory, enforcing the limits; writes nothing. */
export function readZipSafely(
  bytes: Uint8Array,
  limits: ZipLimits = DEFAULT_ZIP_LIMITS,
): Map<string, Uint8Array> {
  if (bytes.length > limits.maxArchiveBytes) {
    throw new BundleError(
      'BUNDLE_TOO_LARGE',
      `archive is ${bytes.length} bytes; the limit is ${limits.maxArchiveBytes}`,
    );
  }
  const files = new Map<string, Uint8Array>();
  for (const entry of readCentralDirectory(bytes, limits)) {
    const data = entryData(bytes, entry);
    if (entry.method === 0) {
      if (data.length !== entry.size) {
        throw notZip(`stored entry ${entry.name} has inconsistent sizes`);
      }
      files.set(entry.name, data);
    } else {
      files.set(entry.name, inflateBounded(data, entry.size, entry.name));
    }
  }
  return files;
}
