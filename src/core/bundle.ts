// The defense bundle: a self-contained ZIP that lets anyone check a certificate offline.
// The first five file names are those of the original Python CDIL; signature.der, key.json
// and manifest.json are additions of bundle format v1. Format v2 adds the certificate's
// inclusion proof, the signed log checkpoint it leads to, and the log's verifier key.
import { sha256Hex, type Certificate } from './certificate.ts';
import type { CryptoProvider } from './crypto.ts';
import { bytesEqual, fromBase64, toBase64, utf8Decode, utf8Encode } from './encoding.ts';
import { BundleError } from './errors.ts';
import { p256PublicKeyPem, type Jwks, type KeyDescriptor } from './key.ts';
import {
  bundleReadmeVersionOf,
  renderBundleReadme,
  type BundleReadmeVersion,
} from './bundle-readme.ts';
import { formatVerifierKey } from './checkpoint.ts';
import { checkpointSigners, type LogEvidence } from './verify/log-steps.ts';
import type { TrustedRoots } from './timestamp/certificates.ts';
import {
  timestampChecks,
  type TimestampedCertificateFields,
  type TimestampEvidence,
} from './verify/timestamp-steps.ts';
import { verifyEvidence, type CheckResult, type VerificationReport } from './verify/verify.ts';
import { unknownFields } from './json-fields.ts';
import { DEFAULT_ZIP_LIMITS, readZipSafely, writeDeterministicZip, type ZipLimits } from './zip.ts';

export const BUNDLE_FORMAT_VERSION = 'cdil.bundle.v1';
export const BUNDLE_FORMAT_V2 = 'cdil.bundle.v2';
export type BundleFormat = typeof BUNDLE_FORMAT_VERSION | typeof BUNDLE_FORMAT_V2;
export const INCLUSION_PROOF_FORMAT = 'cdil.inclusion-proof.v1';

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

export const LogBundleFile = {
  inclusionProof: 'inclusion_proof.json',
  checkpoint: 'checkpoint.txt',
  logKey: 'log_key.txt',
} as const;

/** RFC 3161 tokens a v2 bundle carries when the deployment has a TSA; both are optional. */
export const TimestampBundleFile = {
  checkpoint: 'checkpoint_timestamp.tsr',
  certificate: 'certificate_timestamp.tsr',
} as const;
const TIMESTAMP_FILES: ReadonlySet<string> = new Set(Object.values(TimestampBundleFile));

/** Lists the timestamp token files a bundle contains, which its README names. */
function timestampFilesIn(files: ReadonlyMap<string, Uint8Array>): string[] {
  return [...files.keys()].filter((name) => TIMESTAMP_FILES.has(name));
}

/** inclusion_proof.json. */
export interface InclusionProofFile {
  format: typeof INCLUSION_PROOF_FORMAT;
  log_index: number;
  tree_size: number;
  /** Audit path from leaf to root, base64 SHA-256 hashes. */
  proof: string[];
}

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
  /** The certificate's place in the tenant's log; present, the bundle is format v2. */
  log?: LogEvidence | undefined;
  /** RFC 3161 tokens (DER) over the checkpoint text and the certificate statement. */
  timestamps?: { checkpoint?: Uint8Array | undefined; certificate?: Uint8Array | undefined };
}

export interface ManifestEntry {
  name: string;
  sha256: string;
  size: number;
}

export interface BundleManifest {
  format: BundleFormat;
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
  if (evidence.log) {
    const proof: InclusionProofFile = {
      format: INCLUSION_PROOF_FORMAT,
      log_index: evidence.log.logIndex,
      tree_size: evidence.log.treeSize,
      proof: evidence.log.proof.map(toBase64),
    };
    files.set(LogBundleFile.inclusionProof, prettyJson(proof));
    files.set(LogBundleFile.checkpoint, utf8Encode(evidence.log.checkpoint));
    files.set(LogBundleFile.logKey, utf8Encode(`${evidence.log.logKey}\n`));
    if (evidence.timestamps?.checkpoint) {
      files.set(TimestampBundleFile.checkpoint, evidence.timestamps.checkpoint);
    }
    if (evidence.timestamps?.certificate) {
      files.set(TimestampBundleFile.certificate, evidence.timestamps.certificate);
    }
  }
  files.set(
    BundleFile.readme,
    utf8Encode(
      renderBundleReadme(evidence.certificate, evidence.log !== undefined, timestampFilesIn(files)),
    ),
  );
  const manifest: BundleManifest = {
    format: evidence.log ? BUNDLE_FORMAT_V2 : BUNDLE_FORMAT_VERSION,
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

/** A bundle file decoded as UTF-8 and parsed as JSON, or the error that either step raised. */
type JsonFile = { ok: true; text: string; value: unknown } | { ok: false; error: unknown };

/** Parsed JSON files of a bundle by name. A file the bundle lacks has no entry. */
type JsonFiles = ReadonlyMap<string, JsonFile>;

/**
 * Decodes and parses every JSON file of the bundle once. Several checks read the same file (the
 * manifest for its format, its layout and its entries), and parsing is a large share of the
 * verification time. The parsed values are shared, so no check may modify them.
 */
function parseJsonFiles(files: Map<string, Uint8Array>): JsonFiles {
  const parsed = new Map<string, JsonFile>();
  for (const name of PRETTY_JSON_FILES) {
    const bytes = files.get(name);
    if (bytes) {
      parsed.set(name, parseJsonBytes(bytes));
    }
  }
  return parsed;
}

function parseJsonBytes(bytes: Uint8Array): JsonFile {
  try {
    const text = utf8Decode(bytes);
    return { ok: true, text, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Returns the parsed value of a JSON file the bundle contains, or throws BundleError. */
function parseJsonFile(json: JsonFiles, name: string): unknown {
  const file = json.get(name)!;
  if (!file.ok) {
    throw new BundleError('BUNDLE_MALFORMED_FILE', `${name} is not UTF-8 JSON`, {
      cause: file.error,
    });
  }
  return file.value;
}

function asObject(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BundleError('BUNDLE_MALFORMED_FILE', `${name} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

const V1_FILES: ReadonlySet<string> = new Set(Object.values(BundleFile));
const V2_FILES: ReadonlySet<string> = new Set([
  ...Object.values(BundleFile),
  ...Object.values(LogBundleFile),
]);

function filesOf(format: BundleFormat): ReadonlySet<string> {
  return format === BUNDLE_FORMAT_V2 ? V2_FILES : V1_FILES;
}

/** Returns the bundle format the manifest names, or v1 when it names no known format. */
function formatOf(json: JsonFiles): BundleFormat {
  const file = json.get(BundleFile.manifest);
  if (!file?.ok) {
    return BUNDLE_FORMAT_VERSION;
  }
  const manifest = file.value as { format?: unknown } | null;
  return manifest?.format === BUNDLE_FORMAT_V2 ? BUNDLE_FORMAT_V2 : BUNDLE_FORMAT_VERSION;
}

/** Files whose exact bytes are pretty JSON as written by buildBundleFiles. */
const PRETTY_JSON_FILES = [
  BundleFile.certificate,
  BundleFile.key,
  BundleFile.manifest,
  BundleFile.verificationReport,
  LogBundleFile.inclusionProof,
];

/**
 * Checks the files that are not covered by the signature. The manifest only detects accidental
 * damage, because anyone can recompute it, so every unsigned file is also checked against what
 * the signed content determines: the exact JSON layout (which rules out duplicate keys and
 * reordering), the README text generated for this certificate, the PEM of the named key and
 * the DER of the signature. Only verification_report.json carries content that cannot be
 * rebuilt offline; it is informational, and the verifier recomputes every check itself.
 */
function checkBundleFiles(
  crypto: CryptoProvider,
  files: Map<string, Uint8Array>,
  json: JsonFiles,
  certificate: Record<string, unknown>,
  publicKeyPem: string,
  format: BundleFormat,
  logKeyProblem: string | undefined,
): { ok: boolean; detail: string; readmeVersion: BundleReadmeVersion | undefined } {
  const problems: string[] = [];
  const expected = filesOf(format);
  for (const name of expected) {
    if (!files.has(name)) {
      problems.push(`${name} is missing`);
    }
  }
  for (const name of files.keys()) {
    const optional = format === BUNDLE_FORMAT_V2 && TIMESTAMP_FILES.has(name);
    if (!expected.has(name) && !optional) {
      problems.push(`${name} is not part of a ${format} bundle`);
    }
  }
  for (const name of PRETTY_JSON_FILES) {
    const bytes = files.get(name);
    if (bytes && !isPrettyJson(bytes, json.get(name)!)) {
      problems.push(`${name} is not in its exported form (reformatted or duplicate keys)`);
    }
  }
  const manifest = asObject(parseJsonFile(json, BundleFile.manifest), BundleFile.manifest);
  checkManifestEntries(crypto, files, manifest, certificate, format, problems);
  checkExportedFields(json, problems);
  for (const name of TEXT_FILES) {
    const bytes = files.get(name);
    if (bytes && startsWithByteOrderMark(bytes)) {
      problems.push(`${name} starts with a byte order mark, which the exported file does not`);
    }
  }
  const logKey = files.get(LogBundleFile.logKey);
  if (logKey && !/^[^\r\n]+\n$/.test(utf8Decode(logKey))) {
    problems.push(`${LogBundleFile.logKey} must hold exactly one line ending in a line feed`);
  } else if (logKeyProblem !== undefined) {
    problems.push(logKeyProblem);
  }

  const der = files.get(BundleFile.signature);
  const signature =
    typeof certificate.signature === 'string' ? fromBase64(certificate.signature) : undefined;
  if (der && (!signature || !bytesEqual(der, signature))) {
    problems.push(`${BundleFile.signature} differs from the certificate signature`);
  }
  const readme = files.get(BundleFile.readme);
  const readmeVersion =
    readme === undefined
      ? undefined
      : bundleReadmeVersionOf(
          utf8Decode(readme),
          certificate as unknown as Certificate,
          format === BUNDLE_FORMAT_V2,
          timestampFilesIn(files),
        );
  if (readme && readmeVersion === undefined) {
    problems.push(
      `${BundleFile.readme} differs from each text version generated for this certificate`,
    );
  }
  const report = files.has(BundleFile.verificationReport)
    ? asObject(parseJsonFile(json, BundleFile.verificationReport), BundleFile.verificationReport)
    : undefined;
  if (report && report.certificate_id !== certificate.certificate_id) {
    problems.push(`${BundleFile.verificationReport} is about another certificate`);
  }
  let canonicalPem: string | undefined;
  try {
    canonicalPem = p256PublicKeyPem(crypto.importPublicKeyPem(publicKeyPem).jwk);
  } catch {
    // An unreadable key is reported by the key_binding check.
    canonicalPem = publicKeyPem;
  }
  if (canonicalPem !== publicKeyPem) {
    problems.push(`${BundleFile.publicKey} holds more than the PEM of one P-256 public key`);
  }
  if (problems.length > 0) {
    return {
      ok: false,
      detail: `bundle files were altered: ${problems.join('; ')}`,
      readmeVersion,
    };
  }
  return {
    ok: true,
    detail: `all ${files.size} files are present, match the manifest and agree with the signed content`,
    readmeVersion,
  };
}

/**
 * Checks whether `bytes`, parsed as `file`, are UTF-8 JSON in exactly the layout prettyJson
 * writes. The decoded text is compared with one serialization of the parsed value. Decoding
 * drops a leading byte order mark, which prettyJson never writes, so a file that starts with
 * one is rejected first. For any other valid UTF-8, equal text means equal bytes.
 */
function isPrettyJson(bytes: Uint8Array, file: JsonFile): boolean {
  if (!file.ok || startsWithByteOrderMark(bytes)) {
    return false;
  }
  return file.text === JSON.stringify(file.value, null, 2) + '\n';
}

/** Text files whose checks compare decoded text, which would hide a leading byte order mark. */
const TEXT_FILES = [
  BundleFile.readme,
  BundleFile.publicKey,
  LogBundleFile.checkpoint,
  LogBundleFile.logKey,
] as const;

/**
 * Fields of key.json, its public JWK, the manifest, a manifest entry and inclusion_proof.json,
 * in the order the exporter writes them.
 */
const KNOWN_FIELDS = {
  key: [
    'key_id',
    'tenant_id',
    'algorithm',
    'status',
    'valid_from',
    'valid_until',
    'public_key_jwk',
    'revoked_at',
    'revocation_reason',
  ],
  jwk: ['kty', 'crv', 'x', 'y'],
  manifest: ['format', 'certificate_id', 'files'],
  manifestEntry: ['name', 'sha256', 'size'],
  inclusionProof: ['format', 'log_index', 'tree_size', 'proof'],
} as const;

/**
 * Returns the problems of an object's keys against the exported field list: fields the
 * exporter does not write, and fields out of the exported order. Empty for a non-object.
 */
function fieldProblems(value: unknown, known: readonly string[], prefix: string): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return [];
  }
  // One pass over the keys, because this runs for every manifest entry of every bundle.
  const unknown: string[] = [];
  let ordered = true;
  let previous = -1;
  for (const key of Object.keys(value)) {
    const position = known.indexOf(key);
    if (position < 0) {
      unknown.push(prefix + key);
    } else if (position <= previous) {
      ordered = false;
    }
    previous = position;
  }
  if (unknown.length > 0) {
    return [`unknown fields ${unknown.join(', ')}`];
  }
  return ordered ? [] : [`fields of ${prefix || 'the top level '}out of the exported order`];
}

/**
 * Adds a problem for each field of key.json, manifest.json and inclusion_proof.json that the
 * exporter does not write or writes in another order, and for certificate.json keys out of
 * their exported order (signed fields sorted, then signature and signature_algorithm). No check
 * covers unknown fields, so a reader must not be shown them as evidence, and a private member
 * such as `d` in the public JWK is refused this way. Order checks leave one spelling per bundle.
 */
function checkExportedFields(json: JsonFiles, problems: string[]): void {
  const key = json.get(BundleFile.key);
  if (key?.ok) {
    const record = key.value as { public_key_jwk?: unknown } | null;
    const found = [
      ...fieldProblems(record, KNOWN_FIELDS.key, ''),
      ...fieldProblems(record?.public_key_jwk, KNOWN_FIELDS.jwk, 'public_key_jwk.'),
    ];
    if (found.length > 0) {
      problems.push(`${BundleFile.key} has ${found.join('; ')}`);
    }
  }
  const manifest = json.get(BundleFile.manifest);
  if (manifest?.ok) {
    const value = manifest.value as { files?: unknown } | null;
    const entries = Array.isArray(value?.files) ? (value.files as unknown[]) : [];
    const found = [
      ...fieldProblems(value, KNOWN_FIELDS.manifest, ''),
      ...entries.flatMap((entry, index) =>
        fieldProblems(entry, KNOWN_FIELDS.manifestEntry, `files[${index}].`),
      ),
    ];
    if (found.length > 0) {
      problems.push(`${BundleFile.manifest} has ${found.join('; ')}`);
    }
  }
  const proof = json.get(LogBundleFile.inclusionProof);
  if (proof?.ok) {
    const found = fieldProblems(proof.value, KNOWN_FIELDS.inclusionProof, '');
    if (found.length > 0) {
      problems.push(`${LogBundleFile.inclusionProof} has ${found.join('; ')}`);
    }
  }
  const certificate = json.get(BundleFile.certificate);
  if (certificate?.ok && typeof certificate.value === 'object' && certificate.value !== null) {
    const keys = Object.keys(certificate.value);
    const signed = keys.slice(0, -2);
    const sorted = signed.every((name, index) => index === 0 || signed[index - 1]! < name);
    if (!sorted || keys.at(-2) !== 'signature' || keys.at(-1) !== 'signature_algorithm') {
      problems.push(
        `${BundleFile.certificate} has its fields out of the exported order (signed fields sorted, then signature and signature_algorithm)`,
      );
    }
  }
}

function startsWithByteOrderMark(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
}

/** Adds a problem for every difference between the manifest and the files. */
function checkManifestEntries(
  crypto: CryptoProvider,
  files: Map<string, Uint8Array>,
  manifest: Record<string, unknown>,
  certificate: Record<string, unknown>,
  format: BundleFormat,
  problems: string[],
): void {
  if (manifest.format !== format || !Array.isArray(manifest.files)) {
    problems.push(`manifest is not a ${format} manifest`);
    return;
  }
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
  for (const [name, bytes] of files) {
    if (name === BundleFile.manifest) {
      continue;
    }
    const entry = listed.get(name);
    if (!entry) {
      problems.push(`${name} is not listed in the manifest`);
    } else if (entry.sha256 !== sha256Hex(crypto, bytes) || entry.size !== bytes.length) {
      problems.push(`${name} does not match its manifest hash`);
    }
  }
  for (const name of listed.keys()) {
    if (!files.has(name)) {
      problems.push(`${name} is listed but missing`);
    }
  }
}

export interface BundleVerifyOptions {
  trustedKeys?: Jwks | undefined;
  /** Pinned log verifier keys (signed-note form) for the checkpoint. */
  trustedLogKeys?: readonly string[] | undefined;
  /** Fails a bundle whose signing key, or log key when it has log evidence, is not pinned. */
  requireTrustedKeys?: boolean | undefined;
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
  return verifyBundleFiles(
    crypto,
    readZipSafely(zipBytes, options.limits ?? DEFAULT_ZIP_LIMITS),
    options,
  );
}

/**
 * Verifies a defense bundle offline like verifyBundle, and also its RFC 3161 timestamp tokens
 * against `tsaRoots`. Without roots, the timestamp checks are skipped and their details say why.
 */
export async function verifyBundleWithTimestamps(
  crypto: CryptoProvider,
  zipBytes: Uint8Array,
  options: BundleVerifyOptions & {
    tsaRoots?: TrustedRoots | undefined;
    /** Fails a bundle that carries no checkpoint timestamp token. */
    requireTimestamps?: boolean | undefined;
  } = {},
): Promise<VerificationReport> {
  const files = readZipSafely(zipBytes, options.limits ?? DEFAULT_ZIP_LIMITS);
  const timestamps = await timestampChecks(timestampEvidenceOf(files), options.tsaRoots, {
    requireCheckpointToken: options.requireTimestamps,
  });
  return verifyBundleFiles(crypto, files, { ...options, timestamps });
}

/** Collects the timestamp tokens and what they cover; unreadable parts are left out. */
function timestampEvidenceOf(files: Map<string, Uint8Array>): TimestampEvidence {
  let certificate: TimestampedCertificateFields | undefined;
  try {
    const message = JSON.parse(
      utf8Decode(files.get(BundleFile.canonicalMessage) ?? new Uint8Array()),
    ) as Record<string, unknown>;
    const fields = ['tenant_id', 'certificate_id', 'note_hash', 'issued_at_utc'] as const;
    if (fields.every((field) => typeof message[field] === 'string')) {
      certificate = message as unknown as TimestampedCertificateFields;
    }
  } catch {
    // The message_format check reports an unreadable message.
  }
  return {
    checkpointToken: files.get(TimestampBundleFile.checkpoint),
    checkpoint: files.get(LogBundleFile.checkpoint),
    certificateToken: files.get(TimestampBundleFile.certificate),
    certificate,
  };
}

function verifyBundleFiles(
  crypto: CryptoProvider,
  files: Map<string, Uint8Array>,
  options: BundleVerifyOptions & { timestamps?: readonly CheckResult[] },
): VerificationReport {
  for (const name of REQUIRED_FILES) {
    if (!files.has(name)) {
      throw new BundleError('BUNDLE_MISSING_FILE', `bundle has no ${name}`);
    }
  }
  const json = parseJsonFiles(files);
  const certificate = asObject(parseJsonFile(json, BundleFile.certificate), BundleFile.certificate);
  let publicKeyPem: string;
  try {
    publicKeyPem = utf8Decode(files.get(BundleFile.publicKey)!);
  } catch (error) {
    throw new BundleError('BUNDLE_MALFORMED_FILE', `${BundleFile.publicKey} is not UTF-8 text`, {
      cause: error,
    });
  }
  const key = files.has(BundleFile.key)
    ? (asObject(parseJsonFile(json, BundleFile.key), BundleFile.key) as unknown as KeyDescriptor)
    : undefined;
  const keyIsValid = key !== undefined && isKeyDescriptor(key);
  const format = formatOf(json);
  const log = format === BUNDLE_FORMAT_V2 ? readLogEvidence(files, json) : undefined;
  const manifest = checkBundleFiles(
    crypto,
    files,
    json,
    certificate,
    publicKeyPem,
    format,
    log?.evidence && shippedLogKeyProblem(crypto, log.evidence, options.trustedLogKeys),
  );
  return verifyEvidence(crypto, {
    log: log?.evidence,
    logProblem: log?.problem,
    trustedLogKeys: options.trustedLogKeys,
    requireTrustedKeys: options.requireTrustedKeys,
    certificate,
    signedBytes: files.get(BundleFile.canonicalMessage)!,
    publicKeyPem,
    key: keyIsValid ? key : undefined,
    keyRecordProblem:
      key && !keyIsValid
        ? `${BundleFile.key} is not a valid key record (key_id, tenant_id, status, valid_from, valid_until, public_key_jwk)`
        : undefined,
    noteText: options.noteText,
    trustedKeys: options.trustedKeys,
    timestamps: options.timestamps,
    manifest: manifest.ok
      ? { ok: true, detail: manifest.detail }
      : { ok: false, detail: manifest.detail },
    readmeVersion: manifest.readmeVersion ?? null,
  });
}

/**
 * Returns why log_key.txt is not the key that verified the checkpoint, or undefined. The file
 * must be, in the form formatVerifierKey writes, a pinned key that signed the checkpoint when
 * log keys are pinned, else its own key. Otherwise a pinned run would never read the file. A
 * checkpoint that no key verifies is left to the log_checkpoint check.
 */
function shippedLogKeyProblem(
  crypto: CryptoProvider,
  log: LogEvidence,
  trustedLogKeys: readonly string[] | undefined,
): string | undefined {
  const signers = checkpointSigners(crypto, log, trustedLogKeys);
  if (signers.length === 0 || signers.some((key) => formatVerifierKey(key) === log.logKey)) {
    return undefined;
  }
  return trustedLogKeys === undefined
    ? `${LogBundleFile.logKey} is not in the form the exporter writes (lower-case key id)`
    : `${LogBundleFile.logKey} is not the pinned log key that signed the checkpoint`;
}

const PROOF_HASH_RE = /^[A-Za-z0-9+/]{43}=$/;

/** Reads the log files of a v2 bundle; a problem is returned, not thrown, to fail the log checks. */
function readLogEvidence(
  files: Map<string, Uint8Array>,
  json: JsonFiles,
): {
  evidence?: LogEvidence;
  problem?: string;
} {
  const proofBytes = files.get(LogBundleFile.inclusionProof);
  const checkpoint = files.get(LogBundleFile.checkpoint);
  const logKey = files.get(LogBundleFile.logKey);
  if (!proofBytes || !checkpoint || !logKey) {
    return { problem: 'the bundle lacks its inclusion proof, checkpoint or log key' };
  }
  const unreadable = { problem: 'the log files are not UTF-8 text and JSON' };
  const proofFile = json.get(LogBundleFile.inclusionProof)!;
  if (!proofFile.ok) {
    return unreadable;
  }
  const parsed = proofFile.value as Partial<InclusionProofFile>;
  let checkpointText: string;
  let keyText: string;
  try {
    checkpointText = utf8Decode(checkpoint);
    keyText = utf8Decode(logKey).replace(/\n$/, '');
  } catch {
    return unreadable;
  }
  const proof = parsed?.proof;
  const extra = unknownFields(parsed, KNOWN_FIELDS.inclusionProof);
  if (extra.length > 0) {
    // Nothing signs or checks other fields, so a reader must not be shown them as evidence.
    return {
      problem: `${LogBundleFile.inclusionProof} has unknown fields: ${extra.join(', ')}`,
    };
  }
  if (
    parsed?.format !== INCLUSION_PROOF_FORMAT ||
    !Number.isSafeInteger(parsed.log_index) ||
    !Number.isSafeInteger(parsed.tree_size) ||
    !Array.isArray(proof) ||
    proof.length > 64 ||
    !proof.every((hash) => typeof hash === 'string' && PROOF_HASH_RE.test(hash))
  ) {
    return {
      problem: `${LogBundleFile.inclusionProof} is not a ${INCLUSION_PROOF_FORMAT} proof (log_index, tree_size, proof)`,
    };
  }
  const hashes = proof.map((hash) => fromBase64(hash));
  if (hashes.some((hash) => hash === undefined || hash.length !== 32)) {
    return {
      problem: `${LogBundleFile.inclusionProof} holds a hash that is not 32 bytes of base64`,
    };
  }
  return {
    evidence: {
      logIndex: parsed.log_index!,
      treeSize: parsed.tree_size!,
      proof: hashes as Uint8Array[],
      checkpoint: checkpointText,
      logKey: keyText,
    },
  };
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
