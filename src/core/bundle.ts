// The defense bundle: a self-contained ZIP that lets anyone check a certificate offline.
// The first five file names are those of the original Python CDIL; signature.der, key.json
// and manifest.json are additions of bundle format v1.
import { sha256Hex, type Certificate } from './certificate.ts';
import type { CryptoProvider } from './crypto.ts';
import { bytesEqual, fromBase64, utf8Decode, utf8Encode } from './encoding.ts';
import { BundleError } from './errors.ts';
import type { Jwks, KeyDescriptor } from './key.ts';
import { renderBundleReadme } from './bundle-readme.ts';
import { verifyEvidence, type VerificationReport } from './verify/verify.ts';
import { DEFAULT_ZIP_LIMITS, readZipSafely, writeDeterministicZip, type ZipLimits } from './zip.ts';

export const BUNDLE_FORMAT_VERSION = 'cdil.bundle.v1';

export const BundleFile = {
  certificate: 'certificate.json',
  canonicalMessage: 'canonical_message.json',
  verificationReport: 'verification_report.json',
  publicKey: 'public_key.pem',
  readme: 'README.txt',
  signature: 'signature.der',
  key: 'key.json',
  manifest: 'manifest.json',
} as const;

const REQUIRED_FILES = [
  BundleFile.certificate,
  BundleFile.canonicalMessage,
  BundleFile.publicKey,
  BundleFile.manifest,
];

/** Everything a bundle is made of. */
export interface Evidence {
  certificate: Certificate;
  signedBytes: Uint8Array;
  publicKeyPem: string;
  key: KeyDescriptor;
  report: VerificationReport;
}

export interface ManifestEntry {
  name: string;
  sha256: string;
  size: number;
}

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT_VERSION;
  certificate_id: string;
  files: ManifestEntry[];
}

/** Pretty JSON with a final newline, the form of every JSON file in a bundle except the signed message. */
export function prettyJson(value: unknown): Uint8Array {
  return utf8Encode(JSON.stringify(value, null, 2) + '\n');
}

/** Builds the bundle's files, manifest included. */
export function buildBundleFiles(
  crypto: CryptoProvider,
  evidence: Evidence,
): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const signature = fromBase64(evidence.certificate.signature);
  if (!signature) {
    throw new TypeError('certificate signature is not base64');
  }
  files.set(BundleFile.certificate, prettyJson(evidence.certificate));
  files.set(BundleFile.canonicalMessage, evidence.signedBytes);
  files.set(BundleFile.verificationReport, prettyJson(evidence.report));
  files.set(BundleFile.publicKey, utf8Encode(evidence.publicKeyPem));
  files.set(BundleFile.signature, signature);
  files.set(BundleFile.key, prettyJson(evidence.key));
  files.set(BundleFile.readme, utf8Encode(renderBundleReadme(evidence.certificate)));
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT_VERSION,
    certificate_id: evidence.certificate.certificate_id,
    files: [...files.keys()].sort().map((name) => ({
      name,
      sha256: sha256Hex(crypto, files.get(name)!),
      size: files.get(name)!.length,
    })),
  };
  files.set(BundleFile.manifest, prettyJson(manifest));
  return files;
}

export function buildBundleZip(crypto: CryptoProvider, evidence: Evidence): Uint8Array {
  return writeDeterministicZip(buildBundleFiles(crypto, evidence));
}

function parseJsonFile(files: Map<string, Uint8Array>, name: string): unknown {
  try {
    return JSON.parse(utf8Decode(files.get(name)!));
  } catch (error) {
    throw new BundleError('BUNDLE_MALFORMED_FILE', `${name} is not UTF-8 JSON`, { cause: error });
  }
}

function asObject(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BundleError('BUNDLE_MALFORMED_FILE', `${name} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Checks the manifest against the files: same set of names, same SHA-256 and sizes. */
function checkManifest(
  crypto: CryptoProvider,
  files: Map<string, Uint8Array>,
  certificate: Record<string, unknown>,
): { ok: boolean; detail: string } {
  const manifest = asObject(parseJsonFile(files, BundleFile.manifest), BundleFile.manifest);
  if (manifest.format !== BUNDLE_FORMAT_VERSION || !Array.isArray(manifest.files)) {
    return { ok: false, detail: `manifest is not a ${BUNDLE_FORMAT_VERSION} manifest` };
  }
  const problems: string[] = [];
  const listed = new Map<string, ManifestEntry>();
  for (const entry of manifest.files as ManifestEntry[]) {
    if (typeof entry?.name !== 'string') {
      problems.push('manifest has an entry without a name');
    } else if (listed.has(entry.name)) {
      problems.push(`${entry.name} is listed twice`);
    } else {
      listed.set(entry.name, entry);
    }
  }
  if (manifest.certificate_id !== certificate.certificate_id) {
    problems.push('manifest names a different certificate');
  }
  for (const name of files.keys()) {
    if (name === BundleFile.manifest) {
      continue;
    }
    const entry = listed.get(name);
    if (!entry) {
      problems.push(`${name} is not listed`);
    } else if (
      entry.sha256 !== sha256Hex(crypto, files.get(name)!) ||
      entry.size !== files.get(name)!.length
    ) {
      problems.push(`${name} was modified`);
    }
  }
  for (const name of listed.keys()) {
    if (!files.has(name)) {
      problems.push(`${name} is missing`);
    }
  }
  const der = files.get(BundleFile.signature);
  const signature =
    typeof certificate.signature === 'string' ? fromBase64(certificate.signature) : undefined;
  if (der && (!signature || !bytesEqual(der, signature))) {
    problems.push(`${BundleFile.signature} differs from the certificate signature`);
  }
  if (problems.length > 0) {
    return { ok: false, detail: `manifest check failed: ${problems.join('; ')}` };
  }
  return { ok: true, detail: `all ${listed.size} files match the manifest hashes` };
}

export interface BundleVerifyOptions {
  trustedKeys?: Jwks | undefined;
  noteText?: string | Uint8Array | undefined;
  limits?: ZipLimits;
}

/**
 * Verifies a defense bundle offline. Throws BundleError when the input is not a usable bundle;
 * returns a report, valid or not, otherwise.
 */
export function verifyBundle(
  crypto: CryptoProvider,
  zipBytes: Uint8Array,
  options: BundleVerifyOptions = {},
): VerificationReport {
  const files = readZipSafely(zipBytes, options.limits ?? DEFAULT_ZIP_LIMITS);
  for (const name of REQUIRED_FILES) {
    if (!files.has(name)) {
      throw new BundleError('BUNDLE_MISSING_FILE', `bundle has no ${name}`);
    }
  }
  const certificate = asObject(
    parseJsonFile(files, BundleFile.certificate),
    BundleFile.certificate,
  );
  let publicKeyPem: string;
  try {
    publicKeyPem = utf8Decode(files.get(BundleFile.publicKey)!);
  } catch (error) {
    throw new BundleError('BUNDLE_MALFORMED_FILE', `${BundleFile.publicKey} is not UTF-8 text`, {
      cause: error,
    });
  }
  const key = files.has(BundleFile.key)
    ? (asObject(parseJsonFile(files, BundleFile.key), BundleFile.key) as unknown as KeyDescriptor)
    : undefined;
  const manifest = checkManifest(crypto, files, certificate);
  return verifyEvidence(crypto, {
    certificate,
    signedBytes: files.get(BundleFile.canonicalMessage)!,
    publicKeyPem,
    key: key && isKeyDescriptor(key) ? key : undefined,
    keyRecordProblem:
      key && !isKeyDescriptor(key)
        ? `${BundleFile.key} is not a valid key record (key_id, tenant_id, status, valid_from, valid_until, public_key_jwk)`
        : undefined,
    noteText: options.noteText,
    trustedKeys: options.trustedKeys,
    manifest: manifest.ok
      ? { ok: true, detail: manifest.detail }
      : { ok: false, detail: manifest.detail },
  });
}

function isKeyDescriptor(value: KeyDescriptor): boolean {
  const jwk = value.public_key_jwk as Partial<KeyDescriptor['public_key_jwk']> | undefined;
  return (
    typeof value.key_id === 'string' &&
    typeof value.tenant_id === 'string' &&
    typeof value.status === 'string' &&
    typeof value.valid_from === 'string' &&
    !Number.isNaN(Date.parse(value.valid_from)) &&
    (value.valid_until === null ||
      (typeof value.valid_until === 'string' && !Number.isNaN(Date.parse(value.valid_until)))) &&
    typeof jwk === 'object' &&
    jwk !== null &&
    typeof jwk.x === 'string' &&
    typeof jwk.y === 'string'
  );
}

/** Parses a JWKS document used as a trust pin; throws BundleError when it is not one. */
export function parseTrustedKeys(text: string): Jwks {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new BundleError('BUNDLE_MALFORMED_TRUSTED_KEYS', 'trusted key set is not JSON', {
      cause: error,
    });
  }
  const keys = (parsed as { keys?: unknown })?.keys;
  const isKey = (key: unknown): boolean =>
    typeof key === 'object' &&
    key !== null &&
    typeof (key as { kid?: unknown }).kid === 'string' &&
    typeof (key as { x?: unknown }).x === 'string' &&
    typeof (key as { y?: unknown }).y === 'string';
  if (!Array.isArray(keys) || !keys.every(isKey)) {
    throw new BundleError(
      'BUNDLE_MALFORMED_TRUSTED_KEYS',
      'trusted key set must be a JWKS: {"keys": [{"kid", "x", "y", ...}]}',
    );
  }
  return parsed as Jwks;
}
