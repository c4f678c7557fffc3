// Typed errors of the verification core. Codes are stable API: never renamed or reused.

export const VerificationErrorCode = {
  MANIFEST_MISMATCH: 'MANIFEST_MISMATCH',
  MESSAGE_MALFORMED: 'MESSAGE_MALFORMED',
  FIELD_MISMATCH: 'FIELD_MISMATCH',
  SIGNATURE_INVALID: 'SIGNATURE_INVALID',
  KEY_MISMATCH: 'KEY_MISMATCH',
  KEY_NOT_VALID: 'KEY_NOT_VALID',
  KEY_NOT_TRUSTED: 'KEY_NOT_TRUSTED',
  CHAIN_HASH_MISMATCH: 'CHAIN_HASH_MISMATCH',
  CHAIN_LINK_BROKEN: 'CHAIN_LINK_BROKEN',
  NOTE_MISMATCH: 'NOTE_MISMATCH',
  CHECKPOINT_INVALID: 'CHECKPOINT_INVALID',
  INCLUSION_PROOF_INVALID: 'INCLUSION_PROOF_INVALID',
  TIMESTAMP_INVALID: 'TIMESTAMP_INVALID',
} as const;
export type VerificationErrorCode =
  (typeof VerificationErrorCode)[keyof typeof VerificationErrorCode];

/** A check found evidence of alteration, forgery or a key that is not trusted. */
export class VerificationError extends Error {
  override readonly name = 'VerificationError';
  readonly code: VerificationErrorCode;
  constructor(code: VerificationErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export const BundleErrorCode = {
  NOT_A_ZIP: 'BUNDLE_NOT_A_ZIP',
  UNSAFE_ENTRY: 'BUNDLE_UNSAFE_ENTRY',
  TOO_LARGE: 'BUNDLE_TOO_LARGE',
  MISSING_FILE: 'BUNDLE_MISSING_FILE',
  MALFORMED_FILE: 'BUNDLE_MALFORMED_FILE',
  MALFORMED_TRUST: 'BUNDLE_MALFORMED_TRUSTED_KEYS',
  INPUT_UNREADABLE: 'INPUT_UNREADABLE',
} as const;
export type BundleErrorCode = (typeof BundleErrorCode)[keyof typeof BundleErrorCode];

/** The input cannot be read as a bundle at all, so nothing about the certificate is known. */
export class BundleError extends Error {
  override readonly name = 'BundleError';
  readonly code: BundleErrorCode;
  constructor(code: BundleErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export const MerkleErrorCode = {
  INVALID_ARGUMENT: 'MERKLE_INVALID_ARGUMENT',
  NODE_NOT_FOUND: 'MERKLE_NODE_NOT_FOUND',
} as const;
export type MerkleErrorCode = (typeof MerkleErrorCode)[keyof typeof MerkleErrorCode];

/**
 * A Merkle tree function received a size, index, frontier or hash that cannot describe the
 * tree, or a proof needs a node that the given node source lacks. Proof verification does not
 * raise it, because verifyInclusion and verifyConsistency return false for malformed input.
 */
export class MerkleError extends Error {
  override readonly name = 'MerkleError';
  readonly code: MerkleErrorCode;
  constructor(code: MerkleErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export const NoteErrorCode = {
  MALFORMED: 'NOTE_MALFORMED',
  TOO_LARGE: 'NOTE_TOO_LARGE',
  SIGNATURE_INVALID: 'NOTE_SIGNATURE_INVALID',
  NOT_VERIFIED: 'NOTE_NOT_VERIFIED',
  CHECKPOINT_MALFORMED: 'CHECKPOINT_MALFORMED',
  ORIGIN_MISMATCH: 'CHECKPOINT_ORIGIN_MISMATCH',
  VERIFIER_KEY_INVALID: 'NOTE_VERIFIER_KEY_INVALID',
} as const;
export type NoteErrorCode = (typeof NoteErrorCode)[keyof typeof NoteErrorCode];

/**
 * A signed note or checkpoint is malformed or over the size limits, a signature by a trusted
 * key failed, no trusted key signed the note, a checkpoint names another log, or a verifier
 * key is invalid.
 */
export class NoteError extends Error {
  override readonly name = 'NoteError';
  readonly code: NoteErrorCode;
  constructor(code: NoteErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export const TimestampErrorCode = {
  MALFORMED: 'TIMESTAMP_MALFORMED',
  NOT_GRANTED: 'TIMESTAMP_NOT_GRANTED',
  ALGORITHM_UNSUPPORTED: 'TIMESTAMP_ALGORITHM_UNSUPPORTED',
  IMPRINT_MISMATCH: 'TIMESTAMP_IMPRINT_MISMATCH',
  SIGNATURE_INVALID: 'TIMESTAMP_SIGNATURE_INVALID',
  SIGNER_MISMATCH: 'TIMESTAMP_SIGNER_MISMATCH',
  SIGNER_NOT_TSA: 'TIMESTAMP_SIGNER_NOT_TSA',
  SIGNER_NOT_VALID: 'TIMESTAMP_SIGNER_NOT_VALID',
  CHAIN_UNTRUSTED: 'TIMESTAMP_CHAIN_UNTRUSTED',
  GENTIME_IN_FUTURE: 'TIMESTAMP_GENTIME_IN_FUTURE',
  TRUSTED_ROOTS_INVALID: 'TIMESTAMP_TRUSTED_ROOTS_INVALID',
} as const;
export type TimestampErrorCode = (typeof TimestampErrorCode)[keyof typeof TimestampErrorCode];

/**
 * An RFC 3161 timestamp token failed a check. The code names the part that failed; see
 * docs/formats.md for what each check covers.
 */
export class TimestampError extends Error {
  override readonly name = 'TimestampError';
  readonly code: TimestampErrorCode;
  constructor(code: TimestampErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export const AuditErrorCode = {
  EVENT_MALFORMED: 'AUDIT_EVENT_MALFORMED',
  EXPORT_UNUSABLE: 'AUDIT_EXPORT_UNUSABLE',
  LOG_KEY_INVALID: 'AUDIT_LOG_KEY_INVALID',
} as const;
export type AuditErrorCode = (typeof AuditErrorCode)[keyof typeof AuditErrorCode];

/**
 * An audit event is not a well-formed canonical `cdil.audit-event.v1` event, an audit export
 * cannot be read at all (no usable header), or a pinned log key is not a verifier key.
 */
export class AuditError extends Error {
  override readonly name = 'AuditError';
  readonly code: AuditErrorCode;
  constructor(code: AuditErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
