// Runs every verification step in a fixed order and collects a report. Unlike a verifier that
// stops at the first failure, the report lists the outcome of each check so an auditor sees
// everything that is wrong at once.
import { CERTIFICATE_FORMAT_V2, type SignedMessage } from '../certificate.ts';
import type { CryptoProvider, PublicKeyHandle } from '../crypto.ts';
import { VerificationError, type VerificationErrorCode } from '../errors.ts';
import type { Jwks, KeyDescriptor } from '../key.ts';
import { verifyLogCheckpoint, verifyLogInclusion, type LogEvidence } from './log-steps.ts';
import { parseSignedMessage } from './message.ts';
import {
  verifyCertificateFields,
  verifyChainHash,
  verifyChainLink,
  verifyKeyBinding,
  verifyKeyValidity,
  verifyNote,
  verifySignature,
  verifyTrustedKey,
  type PredecessorLink,
} from './steps.ts';
import { summarize } from './summary.ts';

export const CHECK_NAMES = [
  'bundle_manifest',
  'message_format',
  'certificate_fields',
  'key_binding',
  'signature',
  'key_validity',
  'trusted_key',
  'chain_hash',
  'chain_link',
  'note_hash',
  'log_checkpoint',
  'log_inclusion',
  'checkpoint_timestamp',
  'certificate_timestamp',
] as const;
export type CheckName = (typeof CHECK_NAMES)[number];

export type CheckStatus = 'pass' | 'fail' | 'skipped';

export interface CheckResult {
  check: CheckName;
  status: CheckStatus;
  code?: VerificationErrorCode;
  detail: string;
}

export const VERIFICATION_REPORT_FORMAT = 'cdil.verification-report.v1';

export interface VerificationReport {
  format: typeof VERIFICATION_REPORT_FORMAT;
  valid: boolean;
  certificate_id: string | null;
  tenant_id: string | null;
  key_id: string | null;
  /**
   * Whether the signing key was compared with a pinned key set. False means anyone could have
   * made the evidence with a key pair of their own. Optional because older reports lack it.
   */
  key_pinned?: boolean;
  /**
   * Whether the log checkpoint was verified with pinned log keys, or null when the evidence has
   * no log part (a format v1 bundle). Optional because older reports lack it.
   */
  log_key_pinned?: boolean | null;
  /**
   * The README.txt text version a bundle carries, or null when its README.txt matches none.
   * Only reports of bundles have it.
   */
  readme_version?: number | null;
  checks: CheckResult[];
  summary: string;
  /** Warnings that do not make the evidence invalid. Present only when there is one. */
  notes?: string[];
}

export interface EvidenceInput {
  /** The certificate as presented (certificate.json or the stored row). */
  certificate: Record<string, unknown>;
  /** The exact bytes that were signed. */
  signedBytes: Uint8Array;
  publicKeyPem: string;
  /** Key record with validity window; without it the key_validity check is skipped. */
  key?: KeyDescriptor | undefined;
  /** Set when a key record was present but unreadable; key_validity then fails with this text. */
  keyRecordProblem?: string | undefined;
  /** Stored predecessor: a link to check, null for "none stored", undefined for "not consulted". */
  predecessor?: PredecessorLink | null | undefined;
  /** Note text to compare with the certified note_hash. */
  noteText?: string | Uint8Array | undefined;
  /** Pinned key set; when given, the key inside the evidence must be in it. */
  trustedKeys?: Jwks | undefined;
  /** Inclusion proof and checkpoint; without them the log checks are skipped. */
  log?: LogEvidence | undefined;
  /** Set when log evidence was present but unreadable; the log checks then fail with this text. */
  logProblem?: string | undefined;
  /** Pinned log verifier keys; when given, the checkpoint must be signed by one of them. */
  trustedLogKeys?: readonly string[] | undefined;
  /**
   * Fails trusted_key without a pinned key set, and log_checkpoint when log evidence is present
   * without pinned log keys, instead of trusting keys that came with the evidence.
   */
  requireTrustedKeys?: boolean | undefined;
  /**
   * Results of the timestamp checks, run beforehand because token verification is
   * asynchronous; without them both checks are skipped.
   */
  timestamps?: readonly CheckResult[] | undefined;
  /** Result of a check on the container, run by the bundle reader. */
  manifest?: { ok: true; detail: string } | { ok: false; detail: string } | undefined;
  /** README.txt text version of a bundle (null when it matches none). Unset for other evidence. */
  readmeVersion?: number | null | undefined;
}

/**
 * Warning about the steps by hand in text version 1 of README.txt. The manifest is not signed,
 * so such a text may also have replaced a newer one in a bundle exported since.
 */
export const README_V1_CONCERN =
  "Its steps by hand with OpenSSL do not compare public_key.pem with the tenant's published " +
  'key set, so on their own they accept a bundle signed with any key. The manifest is not ' +
  'signed, so anyone can also put this older text in a newer bundle. Check the key with ' +
  "--trusted-keys and the tenant's JWKS (GET /v1/tenants/{tenant_id}/jwks.json), or follow " +
  'the steps of the current README.txt text.';

/** Note of a report for a bundle whose README.txt is text version 1. */
export const README_V1_NOTE = `README.txt is text version 1. ${README_V1_CONCERN}`;

function run(check: CheckName, step: () => string): CheckResult {
  try {
    return { check, status: 'pass', detail: step() };
  } catch (error) {
    if (error instanceof VerificationError) {
      return { check, status: 'fail', code: error.code, detail: error.message };
    }
    throw error;
  }
}

function skipped(check: CheckName, detail: string): CheckResult {
  return { check, status: 'skipped', detail };
}

/** Verifies one certificate with its evidence and returns the report; never throws for bad evidence. */
export function verifyEvidence(crypto: CryptoProvider, input: EvidenceInput): VerificationReport {
  const checks: CheckResult[] = [];
  if (input.manifest) {
    checks.push(
      input.manifest.ok
        ? { check: 'bundle_manifest', status: 'pass', detail: input.manifest.detail }
        : {
            check: 'bundle_manifest',
            status: 'fail',
            code: 'MANIFEST_MISMATCH',
            detail: input.manifest.detail,
          },
    );
  }

  let message: SignedMessage | undefined;
  checks.push(
    run('message_format', () => {
      message = parseSignedMessage(input.signedBytes);
      return `signed message is canonical ${message.format_version}`;
    }),
  );

  let key: PublicKeyHandle | undefined;
  let keyError: string | undefined;
  try {
    key = crypto.importPublicKeyPem(input.publicKeyPem);
  } catch (error) {
    keyError = `public key is not a readable EC P-256 key: ${(error as Error).message}`;
  }

  if (!message) {
    for (const check of CHECK_NAMES.slice(2)) {
      checks.push(skipped(check, 'not run because the signed message is unreadable'));
    }
    return finish(checks, input, undefined);
  }
  const signed = message;

  checks.push(run('certificate_fields', () => verifyCertificateFields(input.certificate, signed)));
  if (key) {
    const publicKey = key;
    checks.push(run('key_binding', () => verifyKeyBinding(crypto, publicKey, signed, input.key)));
    checks.push(
      run('signature', () =>
        verifySignature(crypto, publicKey, input.signedBytes, input.certificate.signature),
      ),
    );
  } else {
    checks.push({
      check: 'key_binding',
      status: 'fail',
      code: 'KEY_MISMATCH',
      detail: keyError ?? 'no key',
    });
    checks.push(skipped('signature', 'not run because the public key is unreadable'));
  }
  if (input.keyRecordProblem !== undefined) {
    checks.push({
      check: 'key_validity',
      status: 'fail',
      code: 'KEY_NOT_VALID',
      detail: input.keyRecordProblem,
    });
  } else {
    const record = input.key;
    checks.push(
      record
        ? run('key_validity', () => verifyKeyValidity(record, signed))
        : skipped('key_validity', 'no key record with a validity window was given'),
    );
  }
  if (input.trustedKeys) {
    const trusted = input.trustedKeys;
    checks.push(
      key
        ? run('trusted_key', () => verifyTrustedKey(key, signed, trusted, input.key))
        : {
            check: 'trusted_key',
            status: 'fail',
            code: 'KEY_NOT_TRUSTED',
            detail: 'public key is unreadable',
          },
    );
  } else if (input.requireTrustedKeys === true) {
    checks.push({
      check: 'trusted_key',
      status: 'fail',
      code: 'KEY_NOT_TRUSTED',
      detail:
        "a pinned key set is required, but none was given. Pass the tenant's JWKS with --trusted-keys",
    });
  } else {
    checks.push(
      skipped('trusted_key', 'no trusted key set was given; the key inside the evidence was used'),
    );
  }
  checks.push(run('chain_hash', () => verifyChainHash(crypto, signed)));
  checks.push(run('chain_link', () => verifyChainLink(signed, input.predecessor)));
  checks.push(
    input.noteText === undefined
      ? skipped('note_hash', 'no note text was given to compare')
      : run('note_hash', () => verifyNote(crypto, signed, input.noteText!)),
  );
  checks.push(...logChecks(crypto, input, signed));
  checks.push(
    ...(input.timestamps ?? [
      skipped('checkpoint_timestamp', 'timestamps were not checked'),
      skipped('certificate_timestamp', 'timestamps were not checked'),
    ]),
  );
  return finish(checks, input, signed);
}

function logChecks(
  crypto: CryptoProvider,
  input: EvidenceInput,
  message: SignedMessage,
): CheckResult[] {
  if (input.logProblem !== undefined) {
    return [
      {
        check: 'log_checkpoint',
        status: 'fail',
        code: 'CHECKPOINT_INVALID',
        detail: input.logProblem,
      },
      skipped('log_inclusion', 'not run because the log evidence is unreadable'),
    ];
  }
  const evidence = input.log;
  if (!evidence) {
    // A v2 certificate is a log leaf from the moment it exists. The bundle format in the
    // manifest is not signed, so missing log evidence for such a certificate, or for any
    // certificate when log keys are pinned, means the evidence was removed.
    const required =
      message.format_version === CERTIFICATE_FORMAT_V2
        ? `a ${CERTIFICATE_FORMAT_V2} certificate is always recorded in its tenant's log, but the evidence carries no checkpoint or inclusion proof`
        : input.trustedLogKeys !== undefined
          ? 'log keys were pinned, but the evidence carries no checkpoint or inclusion proof'
          : undefined;
    if (required !== undefined) {
      return [
        { check: 'log_checkpoint', status: 'fail', code: 'CHECKPOINT_INVALID', detail: required },
        skipped('log_inclusion', 'not run because the evidence carries no inclusion proof'),
      ];
    }
    return [
      skipped('log_checkpoint', 'the evidence carries no log checkpoint'),
      skipped('log_inclusion', 'the evidence carries no inclusion proof'),
    ];
  }
  let checkpoint: Parameters<typeof verifyLogInclusion>[3] | undefined;
  const checkpointResult = run('log_checkpoint', () => {
    const verified = verifyLogCheckpoint(crypto, evidence, message.tenant_id, input.trustedLogKeys);
    checkpoint = verified.checkpoint;
    if (input.requireTrustedKeys === true && input.trustedLogKeys === undefined) {
      // The inclusion check still runs against this checkpoint, so it reports its own result.
      throw new VerificationError(
        'CHECKPOINT_INVALID',
        `${verified.detail}, but pinned log keys are required and none were given. Pass the tenant's log key with --trusted-log-keys`,
      );
    }
    return verified.detail;
  });
  const verified = checkpoint;
  return [
    checkpointResult,
    verified
      ? run('log_inclusion', () =>
          verifyLogInclusion(crypto, input.signedBytes, evidence, verified),
        )
      : skipped('log_inclusion', 'not run because the checkpoint did not verify'),
  ];
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function finish(
  checks: CheckResult[],
  input: EvidenceInput,
  message: SignedMessage | undefined,
): VerificationReport {
  const { certificate } = input;
  const valid = checks.every((check) => check.status !== 'fail') && message !== undefined;
  const hasCheckpoint = input.log !== undefined || input.logProblem !== undefined;
  const report: VerificationReport = {
    format: 'cdil.verification-report.v1',
    valid,
    certificate_id: message?.certificate_id ?? stringOrNull(certificate.certificate_id),
    tenant_id: message?.tenant_id ?? stringOrNull(certificate.tenant_id),
    key_id: message?.key_id ?? stringOrNull(certificate.key_id),
    key_pinned: input.trustedKeys !== undefined,
    log_key_pinned: hasCheckpoint ? input.trustedLogKeys !== undefined : null,
    ...(input.readmeVersion !== undefined && { readme_version: input.readmeVersion }),
    checks,
    summary: '',
  };
  report.summary = summarize(report, message);
  if (input.readmeVersion === 1) {
    report.notes = [README_V1_NOTE];
  }
  return report;
}
