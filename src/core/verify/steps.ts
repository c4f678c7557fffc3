// One function per verification step. Each returns a short statement of what it established or
// throws a VerificationError naming what failed.
import {
  chainHashInputOf,
  computeChainHash,
  jwkThumbprint,
  SIGNATURE_ALGORITHM,
  sha256Hex,
  signedFieldsOf,
  type SignedMessage,
} from '../certificate.ts';
import type { CryptoProvider, PublicKeyHandle } from '../crypto.ts';
import { isLowS } from '../ecdsa-der.ts';
import { fromBase64, isCanonicalBase64 } from '../encoding.ts';
import { VerificationError } from '../errors.ts';
import { keyValidAt, type Jwks, type KeyDescriptor } from '../key.ts';
import { describeNoteDifference } from './note-difference.ts';

const CERTIFICATE_EXTRA_FIELDS = ['signature', 'signature_algorithm'];

/**
 * Checks that the certificate contains exactly the signed fields of the message's format
 * version, each equal to its counterpart in the signed message, plus the signature and its
 * algorithm. So an unsigned field cannot be slipped in beside the signed ones.
 */
export function verifyCertificateFields(
  certificate: Record<string, unknown>,
  message: SignedMessage,
): string {
  // parseSignedMessage accepted the version, so its field list exists.
  const signedFields = signedFieldsOf(message.format_version)!;
  const differing = signedFields.filter((field) => certificate[field] !== message[field]);
  if (differing.length > 0) {
    throw new VerificationError(
      'FIELD_MISMATCH',
      `certificate fields differ from the signed message: ${differing.join(', ')}`,
    );
  }
  const known = new Set<string>([...signedFields, ...CERTIFICATE_EXTRA_FIELDS]);
  const unknown = Object.keys(certificate).filter((field) => !known.has(field));
  if (unknown.length > 0) {
    throw new VerificationError(
      'FIELD_MISMATCH',
      `certificate has fields that are not signed: ${unknown.join(', ')}`,
    );
  }
  if (certificate.signature_algorithm !== SIGNATURE_ALGORITHM) {
    throw new VerificationError(
      'FIELD_MISMATCH',
      `signature_algorithm must be ${SIGNATURE_ALGORITHM}`,
    );
  }
  return `all ${signedFields.length} certificate fields equal the signed message`;
}

/** Checks the ECDSA P-256 signature over the exact signed bytes. */
export function verifySignature(
  crypto: CryptoProvider,
  key: PublicKeyHandle,
  signedBytes: Uint8Array,
  signatureBase64: unknown,
): string {
  const der = typeof signatureBase64 === 'string' ? fromBase64(signatureBase64) : undefined;
  if (typeof signatureBase64 !== 'string' || !der || der.length === 0) {
    throw new VerificationError('SIGNATURE_INVALID', 'signature is missing or not base64');
  }
  if (!isCanonicalBase64(signatureBase64)) {
    // Unused trailing bits in the last character would give a second spelling of one signature.
    throw new VerificationError('SIGNATURE_INVALID', 'signature is not in canonical base64');
  }
  if (!crypto.verifyEcdsaP256(key, signedBytes, der)) {
    throw new VerificationError(
      'SIGNATURE_INVALID',
      'signature does not verify over the signed message with this public key',
    );
  }
  if (!isLowS(der)) {
    throw new VerificationError(
      'SIGNATURE_INVALID',
      'signature is not in canonical DER low-S form, so it is not the one CDIL issued',
    );
  }
  return 'ECDSA P-256 signature verifies over the exact signed bytes';
}

/** Checks that the public key is the one the message names, and belongs to the message's tenant. */
export function verifyKeyBinding(
  crypto: CryptoProvider,
  key: PublicKeyHandle,
  message: SignedMessage,
  descriptor: KeyDescriptor | undefined,
): string {
  const thumbprint = jwkThumbprint(crypto, key.jwk);
  if (thumbprint !== message.key_id) {
    throw new VerificationError(
      'KEY_MISMATCH',
      `public key thumbprint ${thumbprint} is not the signed key_id ${message.key_id}`,
    );
  }
  if (descriptor) {
    const recorded = descriptor.public_key_jwk;
    if (recorded?.x !== key.jwk.x || recorded?.y !== key.jwk.y || recorded?.crv !== key.jwk.crv) {
      throw new VerificationError('KEY_MISMATCH', 'key record contains a different public key');
    }
    if (descriptor.key_id !== message.key_id) {
      throw new VerificationError(
        'KEY_MISMATCH',
        `key record is for ${descriptor.key_id}, not ${message.key_id}`,
      );
    }
    if (descriptor.tenant_id !== message.tenant_id) {
      throw new VerificationError(
        'KEY_MISMATCH',
        `key ${message.key_id} belongs to tenant ${descriptor.tenant_id}, not ${message.tenant_id}`,
      );
    }
  }
  return (
    `public key is key ${message.key_id}` + (descriptor ? ` of tenant ${message.tenant_id}` : '')
  );
}

/**
 * Describes a revoked key for a failure detail. A revoked key fails every certificate it signed,
 * also those issued before the revocation, because whoever holds a leaked private key can sign
 * any issued_at_utc.
 */
function revokedDetail(
  keyId: string,
  key: Pick<KeyDescriptor, 'revoked_at' | 'revocation_reason'>,
): string {
  const revokedAt = key.revoked_at === undefined ? '' : ` at ${key.revoked_at}`;
  const reason = key.revocation_reason === undefined ? '' : ` (${key.revocation_reason})`;
  return `key ${keyId} was revoked${revokedAt}${reason}, so no certificate it signed is trusted, whenever it was issued`;
}

/** Checks that the key was valid for signing at the certificate's issuance time. */
export function verifyKeyValidity(descriptor: KeyDescriptor, message: SignedMessage): string {
  if (descriptor.status === 'revoked') {
    throw new VerificationError('KEY_NOT_VALID', revokedDetail(descriptor.key_id, descriptor));
  }
  if (!keyValidAt(descriptor, message.issued_at_utc)) {
    throw new VerificationError(
      'KEY_NOT_VALID',
      `key ${descriptor.key_id} (status ${descriptor.status}, valid from ${descriptor.valid_from}` +
        ` until ${descriptor.valid_until ?? 'now'}) was not valid at ${message.issued_at_utc}`,
    );
  }
  return `key was ${descriptor.status === 'active' ? 'active' : 'valid'} at issuance (${message.issued_at_utc})`;
}

/** Checks the key against a pinned key set instead of trusting the key inside the evidence. */
export function verifyTrustedKey(
  key: PublicKeyHandle,
  message: SignedMessage,
  trusted: Jwks,
  record?: KeyDescriptor,
): string {
  const pinned = trusted.keys.find((candidate) => candidate.kid === message.key_id);
  if (!pinned) {
    throw new VerificationError(
      'KEY_NOT_TRUSTED',
      `key ${message.key_id} is not in the trusted key set`,
    );
  }
  if (pinned.x !== key.jwk.x || pinned.y !== key.jwk.y || pinned.crv !== key.jwk.crv) {
    throw new VerificationError(
      'KEY_NOT_TRUSTED',
      `trusted key ${message.key_id} has different coordinates`,
    );
  }
  if (pinned.tenant_id !== undefined && pinned.tenant_id !== message.tenant_id) {
    throw new VerificationError(
      'KEY_NOT_TRUSTED',
      `trusted key ${message.key_id} belongs to tenant ${pinned.tenant_id}, not ${message.tenant_id}`,
    );
  }
  if (pinned.status === 'revoked') {
    throw new VerificationError(
      'KEY_NOT_TRUSTED',
      `trusted set: ${revokedDetail(pinned.kid, pinned)}`,
    );
  }
  const validity = {
    status: pinned.status ?? 'active',
    valid_from: pinned.valid_from ?? '1970-01-01T00:00:00.000Z',
    valid_until: pinned.valid_until ?? null,
  };
  if (!keyValidAt(validity, message.issued_at_utc)) {
    throw new VerificationError(
      'KEY_NOT_TRUSTED',
      `trusted key ${message.key_id} was not valid at ${message.issued_at_utc}`,
    );
  }
  // The key record inside a bundle is self-asserted, so its validity start must agree with the
  // pinned set. Status and end are not compared because they may change after export.
  if (record && pinned.valid_from !== undefined && record.valid_from !== pinned.valid_from) {
    throw new VerificationError(
      'KEY_NOT_TRUSTED',
      `key record says valid from ${record.valid_from}, the trusted key set says ${pinned.valid_from}`,
    );
  }
  return `key ${message.key_id} is in the trusted key set and was valid at issuance`;
}

/** Recomputes the chain hash from the signed fields and the previous hash. */
export function verifyChainHash(crypto: CryptoProvider, message: SignedMessage): string {
  const expected = computeChainHash(crypto, chainHashInputOf(message));
  if (expected !== message.chain_hash) {
    throw new VerificationError(
      'CHAIN_HASH_MISMATCH',
      `chain hash recomputed from the certificate is ${expected}, signed value is ${message.chain_hash}`,
    );
  }
  return 'chain hash recomputes from the previous hash and the certificate fields';
}

/** The stored predecessor, when the verifier has access to the ledger. */
export interface PredecessorLink {
  chain_sequence: number;
  chain_hash: string;
}

/**
 * Checks the link to the previous certificate. Without ledger access only the shape can be
 * checked: the first certificate has no previous hash and every later one has one.
 */
export function verifyChainLink(
  message: SignedMessage,
  predecessor: PredecessorLink | null | undefined,
): string {
  if (message.chain_sequence < 1) {
    throw new VerificationError(
      'CHAIN_LINK_BROKEN',
      `chain_sequence ${message.chain_sequence} is below 1`,
    );
  }
  const first = message.chain_sequence === 1;
  if (first !== (message.previous_hash === null)) {
    throw new VerificationError(
      'CHAIN_LINK_BROKEN',
      first
        ? 'first certificate of a chain has a previous hash'
        : 'certificate has no previous hash',
    );
  }
  if (predecessor === undefined) {
    return first
      ? 'certificate is the first in its tenant chain'
      : `certificate follows chain entry ${message.chain_sequence - 1} (ledger not consulted)`;
  }
  if (first) {
    if (predecessor !== null) {
      throw new VerificationError(
        'CHAIN_LINK_BROKEN',
        'ledger holds an entry before the first certificate',
      );
    }
    return 'certificate is the first in its tenant chain';
  }
  if (predecessor === null || predecessor.chain_sequence !== message.chain_sequence - 1) {
    throw new VerificationError(
      'CHAIN_LINK_BROKEN',
      `ledger has no entry ${message.chain_sequence - 1} before this certificate`,
    );
  }
  if (predecessor.chain_hash !== message.previous_hash) {
    throw new VerificationError(
      'CHAIN_LINK_BROKEN',
      `previous_hash does not equal the chain hash of stored entry ${predecessor.chain_sequence}`,
    );
  }
  return `previous hash equals the chain hash of stored entry ${predecessor.chain_sequence}`;
}

/** Checks that the given note text is the certified note. */
export function verifyNote(
  crypto: CryptoProvider,
  message: SignedMessage,
  note: string | Uint8Array,
): string {
  const hash = sha256Hex(crypto, note);
  if (hash !== message.note_hash) {
    const hint = describeNoteDifference(crypto, note, message.note_hash);
    throw new VerificationError(
      'NOTE_MISMATCH',
      'SHA-256 of the given note text differs from the certified note_hash' +
        (hint === undefined ? '' : `. ${hint}`),
    );
  }
  return 'given note text is byte for byte the certified note';
}
