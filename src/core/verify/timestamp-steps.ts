// RFC 3161 timestamp checks of a bundle: the checkpoint token covers the exact checkpoint text,
// and the certificate token covers the certificate's timestamp statement. Token verification is
// asynchronous (WebCrypto), so these checks run before the synchronous verifier and are passed
// to it as results.
import { flatCanonicalJson } from '../canonical.ts';
import { utf8Encode } from '../encoding.ts';
import { TimestampError } from '../errors.ts';
import type { TrustedRoots } from '../timestamp/certificates.ts';
import type { CheckResult } from './verify.ts';

export const CERTIFICATE_TIMESTAMP_FORMAT = 'cdil.certificate-timestamp.v1';

/** The certificate fields a certificate timestamp covers, all known before chain placement. */
export interface TimestampedCertificateFields {
  tenant_id: string;
  certificate_id: string;
  note_hash: string;
  issued_at_utc: string;
}

/**
 * Returns the bytes a certificate's timestamp covers: the canonical JSON of its tenant, id,
 * note hash and issue time. They exist before the certificate's place in the chain is known,
 * so the TSA is asked before the chain is locked.
 */
export function certificateTimestampInput(fields: TimestampedCertificateFields): Uint8Array {
  // Every member is a string, so the flat serializer writes the RFC 8785 form.
  return utf8Encode(
    flatCanonicalJson({
      format: CERTIFICATE_TIMESTAMP_FORMAT,
      tenant_id: fields.tenant_id,
      certificate_id: fields.certificate_id,
      note_hash: fields.note_hash,
      issued_at_utc: fields.issued_at_utc,
    }),
  );
}

export interface TimestampEvidence {
  /** DER TimeStampToken over the checkpoint text. */
  checkpointToken?: Uint8Array | undefined;
  /** The exact checkpoint text the token covers. */
  checkpoint?: Uint8Array | undefined;
  /** DER TimeStampToken over certificateTimestampInput. */
  certificateToken?: Uint8Array | undefined;
  certificate?: TimestampedCertificateFields | undefined;
}

async function tokenCheck(
  check: 'checkpoint_timestamp' | 'certificate_timestamp',
  token: Uint8Array | undefined,
  data: Uint8Array | undefined,
  roots: TrustedRoots | undefined,
  what: string,
  required = false,
): Promise<CheckResult> {
  if (!token || !data) {
    return required
      ? {
          check,
          status: 'fail',
          code: 'TIMESTAMP_INVALID',
          detail: `a timestamp of ${what} is required, but the evidence carries none`,
        }
      : { check, status: 'skipped', detail: `the evidence carries no timestamp of ${what}` };
  }
  if (roots === undefined) {
    return {
      check,
      status: 'skipped',
      detail: `no trusted TSA roots were given, so the timestamp of ${what} was not checked`,
    };
  }
  // The token verifier loads PKI.js, which takes longer to load than a whole bundle check, so
  // it is loaded only when a token is checked.
  const { verifyTimestampToken } = await import('../timestamp/verify.ts');
  try {
    const info = await verifyTimestampToken(token, { data, trustedRoots: roots });
    return {
      check,
      status: 'pass',
      detail: `${what} existed at ${info.genTime.toISOString()}, by a TSA (${info.signerSubject}) that chains to a trusted root`,
    };
  } catch (error) {
    if (error instanceof TimestampError) {
      return {
        check,
        status: 'fail',
        code: 'TIMESTAMP_INVALID',
        detail: `timestamp of ${what} is invalid: ${error.message} [${error.code}]`,
      };
    }
    throw error;
  }
}

/**
 * Runs both timestamp checks. A missing token or missing roots gives a skipped check.
 * `requireCheckpointToken` fails a bundle without its checkpoint token instead, because a
 * deployment with a TSA gives every checkpoint one and a removed file leaves no other trace.
 */
export async function timestampChecks(
  evidence: TimestampEvidence,
  roots: TrustedRoots | undefined,
  options: { requireCheckpointToken?: boolean | undefined } = {},
): Promise<CheckResult[]> {
  return Promise.all([
    tokenCheck(
      'checkpoint_timestamp',
      evidence.checkpointToken,
      evidence.checkpoint,
      roots,
      'the log checkpoint',
      options.requireCheckpointToken === true,
    ),
    tokenCheck(
      'certificate_timestamp',
      evidence.certificateToken,
      evidence.certificate ? certificateTimestampInput(evidence.certificate) : undefined,
      roots,
      'the certificate',
    ),
  ]);
}
