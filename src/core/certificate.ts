// The certificate format: which fields are signed, how the chain hash is formed, and how a
// key id is derived. Field names of the first 16 signed fields are those of the original
// Python CDIL, so bundles from either verify with the same steps.
import { canonicalSignedJson } from './canonical.ts';
import type { CryptoProvider, EcPublicJwk } from './crypto.ts';
import { toBase64Url, toHex, utf8Encode } from './encoding.ts';

export const CERTIFICATE_FORMAT_V1 = 'cdil.certificate.v1';
/** Adds attestation_meaning, the signed meaning of the human attestation. */
export const CERTIFICATE_FORMAT_V2 = 'cdil.certificate.v2';
/** Versions of the signed message layout, oldest first. A new signed field needs a new one. */
export const CERTIFICATE_FORMAT_VERSIONS = [CERTIFICATE_FORMAT_V1, CERTIFICATE_FORMAT_V2] as const;
export type CertificateFormatVersion = (typeof CERTIFICATE_FORMAT_VERSIONS)[number];
/** The version CDIL issues; verifiers accept every version in CERTIFICATE_FORMAT_VERSIONS. */
export const CERTIFICATE_FORMAT_VERSION: CertificateFormatVersion = CERTIFICATE_FORMAT_V2;
export const SIGNATURE_ALGORITHM = 'ECDSA_P256_SHA256';

/**
 * Meanings of a reviewer's attestation. 21 CFR 11.50(a)(3) requires a signed record to show
 * the meaning of the signature, such as review, approval, responsibility or authorship.
 */
export const ATTESTATION_MEANINGS = [
  'reviewed_and_approved',
  'reviewed',
  'approved',
  'authored',
  'responsibility_accepted',
] as const;
export type AttestationMeaning = (typeof ATTESTATION_MEANINGS)[number];
/** The meaning recorded when a reviewed note's request names none. */
export const DEFAULT_ATTESTATION_MEANING: AttestationMeaning = 'reviewed_and_approved';

/** The signed fields shared with the original Python CDIL. */
export const LEGACY_SIGNED_FIELDS = [
  'certificate_id',
  'chain_hash',
  'governance_policy_hash',
  'governance_policy_version',
  'human_attested_at_utc',
  'human_reviewed',
  'human_reviewer_id_hash',
  'issued_at_utc',
  'key_id',
  'model_name',
  'model_version',
  'nonce',
  'note_hash',
  'prompt_version',
  'server_timestamp',
  'tenant_id',
] as const;

/** Fields added in format v1: keyed identifier hashes, chain position and the format itself. */
export const ADDED_SIGNED_FIELDS = [
  'chain_sequence',
  'encounter_id_hash',
  'format_version',
  'patient_hash',
  'previous_hash',
] as const;

/** Field added in format v2: null when no human reviewed the note. */
export const ATTESTATION_SIGNED_FIELDS = ['attestation_meaning'] as const;

export const SIGNED_FIELDS_V1 = [...LEGACY_SIGNED_FIELDS, ...ADDED_SIGNED_FIELDS].sort();
export const SIGNED_FIELDS_V2 = [...SIGNED_FIELDS_V1, ...ATTESTATION_SIGNED_FIELDS].sort();

export type SignedFieldName = (typeof SIGNED_FIELDS_V2)[number];

const SIGNED_FIELDS_BY_VERSION: Readonly<
  Record<CertificateFormatVersion, readonly SignedFieldName[]>
> = {
  [CERTIFICATE_FORMAT_V1]: SIGNED_FIELDS_V1,
  [CERTIFICATE_FORMAT_V2]: SIGNED_FIELDS_V2,
};

export function isCertificateFormatVersion(value: unknown): value is CertificateFormatVersion {
  return (CERTIFICATE_FORMAT_VERSIONS as readonly unknown[]).includes(value);
}

/** Returns the signed fields of a format version, sorted, or undefined for an unknown version. */
export function signedFieldsOf(formatVersion: unknown): readonly SignedFieldName[] | undefined {
  return isCertificateFormatVersion(formatVersion)
    ? SIGNED_FIELDS_BY_VERSION[formatVersion]
    : undefined;
}

/** The message whose canonical JSON bytes are signed. */
export interface SignedMessage {
  /** Present from format v2 on: the meaning of the human attestation, or null without one. */
  attestation_meaning?: AttestationMeaning | null;
  certificate_id: string;
  chain_hash: string;
  chain_sequence: number;
  encounter_id_hash: string;
  format_version: string;
  governance_policy_hash: string;
  governance_policy_version: string;
  human_attested_at_utc: string | null;
  human_reviewed: boolean;
  human_reviewer_id_hash: string | null;
  issued_at_utc: string;
  key_id: string;
  model_name: string;
  model_version: string;
  nonce: string;
  note_hash: string;
  patient_hash: string;
  previous_hash: string | null;
  prompt_version: string;
  server_timestamp: string;
  tenant_id: string;
}

/** A certificate as stored, returned by the API and written to certificate.json. */
export interface Certificate extends SignedMessage {
  signature: string;
  signature_algorithm: typeof SIGNATURE_ALGORITHM;
}

/** The inputs of the chain hash, with the names the original Python CDIL used. */
export interface ChainHashInput {
  previous_hash: string | null;
  certificate_id: string;
  tenant_id: string;
  timestamp: string;
  note_hash: string;
  model_version: string;
  governance_policy_version: string;
}

export function sha256Hex(crypto: CryptoProvider, data: Uint8Array | string): string {
  if (crypto.sha256Hex) {
    return crypto.sha256Hex(data);
  }
  return toHex(crypto.sha256(typeof data === 'string' ? utf8Encode(data) : data));
}

/** Computes SHA-256 over the canonical JSON of the chain inputs; `timestamp` is issued_at_utc. */
export function computeChainHash(crypto: CryptoProvider, input: ChainHashInput): string {
  // The members are written in sorted order and are strings or null, so JSON.stringify gives
  // their RFC 8785 form without sorting on every call. The type makes a new input field a
  // compile error here until it is added in its sorted place.
  const members: Record<keyof ChainHashInput, string | null> = {
    certificate_id: input.certificate_id,
    governance_policy_version: input.governance_policy_version,
    model_version: input.model_version,
    note_hash: input.note_hash,
    previous_hash: input.previous_hash,
    tenant_id: input.tenant_id,
    timestamp: input.timestamp,
  };
  return sha256Hex(crypto, JSON.stringify(members));
}

export function chainHashInputOf(message: SignedMessage): ChainHashInput {
  return {
    previous_hash: message.previous_hash,
    certificate_id: message.certificate_id,
    tenant_id: message.tenant_id,
    timestamp: message.issued_at_utc,
    note_hash: message.note_hash,
    model_version: message.model_version,
    governance_policy_version: message.governance_policy_version,
  };
}

/** Returns the exact bytes that are signed for a message. */
export function signedBytes(message: SignedMessage): Uint8Array {
  return utf8Encode(
    canonicalSignedJson(pickSignedFields(message) as unknown as Record<string, string>),
  );
}

/** Copies the signed fields of the message's format version; raises for an unknown version. */
export function pickSignedFields(source: SignedMessage): SignedMessage {
  const fields = signedFieldsOf(source.format_version);
  if (!fields) {
    throw new TypeError(`format_version ${JSON.stringify(source.format_version)} is not known`);
  }
  const out: Record<string, unknown> = {};
  for (const field of fields) {
    out[field] = source[field];
  }
  return out as unknown as SignedMessage;
}

const MAX_CACHED_THUMBPRINTS = 256;
const thumbprintCaches = new WeakMap<CryptoProvider, Map<string, string>>();

/** Computes the RFC 7638 JWK thumbprint (SHA-256, base64url), used as the key id. */
export function jwkThumbprint(crypto: CryptoProvider, jwk: EcPublicJwk): string {
  // The members are listed in sorted order, so JSON.stringify writes their canonical JSON.
  const members = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  // Verifying a bundle set computes the thumbprint of one tenant key again and again. The
  // cache key is the exact hashed text, and each provider has its own cache.
  let cache = thumbprintCaches.get(crypto);
  if (!cache) {
    cache = new Map();
    thumbprintCaches.set(crypto, cache);
  }
  let thumbprint = cache.get(members);
  if (thumbprint === undefined) {
    thumbprint = toBase64Url(crypto.sha256(utf8Encode(members)));
    if (cache.size >= MAX_CACHED_THUMBPRINTS) {
      cache.clear();
    }
    cache.set(members, thumbprint);
  }
  return thumbprint;
}

/** Computes the governance policy hash: SHA-256 of the policy version string. */
export function governancePolicyHash(crypto: CryptoProvider, policyVersion: string): string {
  return sha256Hex(crypto, policyVersion);
}
