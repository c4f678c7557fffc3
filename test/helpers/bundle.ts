// Real defense bundles made through the service stack, plus the file surgery that tamper
// tests need: edit one file, recompute the manifest, or re-sign everything with a new key.
import { renderBundleReadme } from '../../src/core/bundle-readme.ts';
import { toLowS } from '../../src/core/ecdsa-der.ts';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/config.ts';
import {
  BUNDLE_FORMAT_VERSION,
  BundleFile,
  LogBundleFile,
  prettyJson,
} from '../../src/core/bundle.ts';
import { canonicalSignedJson } from '../../src/core/canonical.ts';
import { jwkThumbprint, type Certificate } from '../../src/core/certificate.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import type { Jwks } from '../../src/core/key.ts';
import type { VerificationReport } from '../../src/core/verify/verify.ts';
import { readZipSafely, writeDeterministicZip } from '../../src/core/zip.ts';
import { runVerify, type VerifyCliOptions } from '../../src/cli/commands/verify.ts';
import type { IssueRequest } from '../../src/services/issuance.ts';
import { createServices, type Services } from '../../src/services/container.ts';
import { createTestDatabase } from './database.ts';

export const TENANT_ID = 't1';

/** Note text with non-ASCII letters, so hashes are checked over multi-byte UTF-8. */
export const NOTE_TEXT =
  'SUBJECTIVE: Patient reports improved breathing after inhaler change.\n' +
  'ASSESSMENT: COPD, stable. Señal normal; temperatura 36,8 °C.\n' +
  'PLAN: Continue current regimen, review in 4 weeks.';

export function issueRequest(overrides: Partial<IssueRequest> = {}): IssueRequest {
  return {
    model_name: 'scribe-model',
    model_version: '2026.11',
    prompt_version: 'soap-v3',
    governance_policy_version: 'policy-7',
    note_text: NOTE_TEXT,
    human_reviewed: true,
    human_reviewer_id: 'dr-reviewer-1',
    encounter_id: 'enc-1001',
    patient_reference: 'pat-2002',
    ...overrides,
  };
}

export interface BundleFixture {
  /** Temporary folder with the SQLite database (if used), removed by close(). */
  dir: string;
  services: Services;
  jwks: Jwks;
  /** The second certificate of the tenant chain, so previous_hash is set. */
  certificate: Certificate;
  noteText: string;
  zip: Uint8Array;
  close(): Promise<void>;
}

/** Provisions tenant t1, issues two certificates and exports the bundle of the second. */
export async function createBundleFixture(
  overrides: Partial<IssueRequest> = {},
): Promise<BundleFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'cdil-bundle-test-'));
  const database = await createTestDatabase();
  const config = loadConfig({
    CDIL_ENV: 'development',
    CDIL_DATA_DIR: dir,
    CDIL_LOG_LEVEL: 'silent',
    ...database.env,
  });
  const services = await createServices(config);
  try {
    await services.tenants.create(TENANT_ID);
    await services.issuance.issue(TENANT_ID, issueRequest({ encounter_id: 'enc-1000' }));
    const request = issueRequest(overrides);
    const { certificate } = await services.issuance.issue(TENANT_ID, request);
    const { zip } = await services.certificates.defenseBundle(
      TENANT_ID,
      certificate.certificate_id,
    );
    const jwks = await services.tenants.jwks(TENANT_ID);
    return {
      dir,
      services,
      jwks,
      certificate,
      noteText: request.note_text,
      zip,
      close: async () => {
        await services.close();
        await database.drop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await services.close();
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

export function unpackBundle(zip: Uint8Array): Map<string, Uint8Array> {
  return readZipSafely(zip);
}

export function packBundle(files: ReadonlyMap<string, Uint8Array>): Uint8Array {
  return writeDeterministicZip(files);
}

export function readJsonFile(
  files: ReadonlyMap<string, Uint8Array>,
  name: string,
): Record<string, unknown> {
  const bytes = files.get(name);
  if (!bytes) {
    throw new Error(`bundle has no ${name}`);
  }
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Rewrites manifest.json so it lists every other file with its current hash and size. */
export function refreshManifest(files: Map<string, Uint8Array>): void {
  const manifest = readJsonFile(files, BundleFile.manifest);
  manifest.certificate_id = readJsonFile(files, BundleFile.certificate).certificate_id;
  manifest.files = [...files.keys()]
    .filter((name) => name !== BundleFile.manifest)
    .sort()
    .map((name) => ({ name, sha256: sha256Hex(files.get(name)!), size: files.get(name)!.length }));
  files.set(BundleFile.manifest, prettyJson(manifest));
}

/**
 * Regenerates README.txt and the report's certificate id from certificate.json, as a forger
 * who edits the certificate would.
 */
export function refreshReadme(files: Map<string, Uint8Array>): void {
  const certificate = readJsonFile(files, BundleFile.certificate) as unknown as Certificate;
  const withLog = files.has(LogBundleFile.checkpoint);
  files.set(BundleFile.readme, Buffer.from(renderBundleReadme(certificate, withLog), 'utf8'));
  const report = readJsonFile(files, BundleFile.verificationReport);
  report.certificate_id = certificate.certificate_id;
  files.set(BundleFile.verificationReport, prettyJson(report));
}

/**
 * Returns a copy of the bundle files with one file replaced and the manifest recomputed. A
 * replaced certificate.json also gets a matching README.txt, so the change under test is the
 * only inconsistency left.
 */
export function withFile(
  files: ReadonlyMap<string, Uint8Array>,
  name: string,
  content: Uint8Array | string,
): Map<string, Uint8Array> {
  const copy = new Map(files);
  copy.set(name, typeof content === 'string' ? Buffer.from(content, 'utf8') : content);
  if (name === BundleFile.certificate) {
    refreshReadme(copy);
  }
  refreshManifest(copy);
  return copy;
}

/**
 * Returns the bundle as format v1: without its log files, with the v1 manifest and README. Tests
 * of the certificate checks use it where a change would also break the log proof.
 */
export function withoutLog(files: ReadonlyMap<string, Uint8Array>): Map<string, Uint8Array> {
  const copy = new Map(files);
  for (const name of Object.values(LogBundleFile)) {
    copy.delete(name);
  }
  const manifest = readJsonFile(copy, BundleFile.manifest);
  manifest.format = BUNDLE_FORMAT_VERSION;
  copy.set(BundleFile.manifest, prettyJson(manifest));
  refreshReadme(copy);
  refreshManifest(copy);
  return copy;
}

export interface ResignOptions {
  /** Changes the signed message after key_id is set to the new key and before signing. */
  editMessage?: (message: Record<string, unknown>) => void;
}

/**
 * Re-signs the bundle with a freshly generated P-256 key: new key_id, canonical message,
 * signature in certificate.json and signature.der, public_key.pem, key.json and manifest.
 * The result is internally consistent, so only a trust pin can tell it from a genuine bundle.
 */
export function resignBundle(
  files: ReadonlyMap<string, Uint8Array>,
  options: ResignOptions = {},
): Map<string, Uint8Array> {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const jwk = nodeCrypto.importPublicKeyPem(publicKeyPem).jwk;
  const keyId = jwkThumbprint(nodeCrypto, jwk);

  const message = readJsonFile(files, BundleFile.canonicalMessage);
  message.key_id = keyId;
  options.editMessage?.(message);
  const signedText = canonicalSignedJson(message as Record<string, string>);
  const signature = Buffer.from(
    toLowS(
      sign('sha256', Buffer.from(signedText, 'utf8'), { key: privateKey, dsaEncoding: 'der' }),
    ),
  );

  const certificate = {
    ...readJsonFile(files, BundleFile.certificate),
    ...message,
    signature: signature.toString('base64'),
  };
  const key = { ...readJsonFile(files, BundleFile.key), key_id: keyId, public_key_jwk: jwk };

  const copy = new Map(files);
  copy.set(BundleFile.canonicalMessage, Buffer.from(signedText, 'utf8'));
  copy.set(BundleFile.certificate, prettyJson(certificate));
  copy.set(BundleFile.signature, signature);
  copy.set(BundleFile.publicKey, Buffer.from(publicKeyPem, 'utf8'));
  copy.set(BundleFile.key, prettyJson(key));
  refreshReadme(copy);
  refreshManifest(copy);
  return copy;
}

export interface VerifyOutcome {
  exitCode: number;
  /** The --json report, when the bundle could be read. */
  report: VerificationReport | undefined;
  /** The --json error, when the input was unusable (exit 2). */
  error: { code: string; message: string } | undefined;
  stderr: string;
}

/** Runs `cdil verify --json` in process on a file and parses its output. */
export function verifyFile(
  path: string,
  options: Omit<VerifyCliOptions, 'json'> = {},
): VerifyOutcome {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const exitCode = runVerify(
    path,
    { ...options, json: true },
    (text) => stdout.push(text),
    (text) => stderr.push(text),
  );
  const parsed = JSON.parse(stdout.join('\n')) as Partial<VerificationReport> & {
    error?: { code: string; message: string };
  };
  return {
    exitCode,
    report: parsed.error ? undefined : (parsed as VerificationReport),
    error: parsed.error,
    stderr: stderr.join('\n'),
  };
}

/** Writes the ZIP into `dir` and verifies it with `cdil verify --json`. */
export function verifyZip(
  dir: string,
  zip: Uint8Array,
  options: Omit<VerifyCliOptions, 'json'> = {},
  name = 'bundle.zip',
): VerifyOutcome {
  const path = join(dir, name);
  writeFileSync(path, zip);
  return verifyFile(path, options);
}

/** Returns the names of the checks with the given status. */
export function checksWithStatus(
  report: VerificationReport | undefined,
  status: 'pass' | 'fail' | 'skipped',
): string[] {
  return (report?.checks ?? [])
    .filter((check) => check.status === status)
    .map((check) => check.check);
}
