// Parses the signed message bytes. The bytes are attacker-controlled, so every malformation
// becomes a VerificationError rather than a stray SyntaxError.
import { canonicalSignedJson } from '../canonical.ts';
import {
  ATTESTATION_MEANINGS,
  CERTIFICATE_FORMAT_VERSIONS,
  signedFieldsOf,
  type SignedMessage,
} from '../certificate.ts';
import { utf8Decode } from '../encoding.ts';
import { VerificationError } from '../errors.ts';

type FieldKind = 'string' | 'nullable-string' | 'boolean' | 'integer' | 'nullable-meaning';

const FIELD_KINDS: Record<keyof SignedMessage, FieldKind> = {
  attestation_meaning: 'nullable-meaning',
  certificate_id: 'string',
  chain_hash: 'string',
  chain_sequence: 'integer',
  encounter_id_hash: 'string',
  format_version: 'string',
  governance_policy_hash: 'string',
  governance_policy_version: 'string',
  human_attested_at_utc: 'nullable-string',
  human_reviewed: 'boolean',
  human_reviewer_id_hash: 'nullable-string',
  issued_at_utc: 'string',
  key_id: 'string',
  model_name: 'string',
  model_version: 'string',
  nonce: 'string',
  note_hash: 'string',
  patient_hash: 'string',
  previous_hash: 'nullable-string',
  prompt_version: 'string',
  server_timestamp: 'string',
  tenant_id: 'string',
};

function hasKind(value: unknown, kind: FieldKind): boolean {
  switch (kind) {
    case 'string':
      return typeof value === 'string';
    case 'nullable-string':
      return value === null || typeof value === 'string';
    case 'boolean':
      return typeof value === 'boolean';
    case 'integer':
      return typeof value === 'number' && Number.isSafeInteger(value);
    case 'nullable-meaning':
      return value === null || (ATTESTATION_MEANINGS as readonly unknown[]).includes(value);
  }
}

const KIND_NAMES: Record<FieldKind, string> = {
  string: 'string',
  'nullable-string': 'nullable-string',
  boolean: 'boolean',
  integer: 'integer',
  'nullable-meaning': `null or one of ${ATTESTATION_MEANINGS.join(', ')}`,
};

function malformed(message: string, cause?: unknown): VerificationError {
  return new VerificationError('MESSAGE_MALFORMED', message, { cause });
}

/** Signed fields of each format version in canonical (UTF-16 code unit) order. */
const CANONICAL_FIELD_ORDER: ReadonlyMap<string, readonly string[]> = new Map(
  CERTIFICATE_FORMAT_VERSIONS.map((version) => [version, [...signedFieldsOf(version)!].sort()]),
);

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) {
    return false;
  }
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return false;
    }
  }
  return true;
}

/** Raises MESSAGE_MALFORMED naming every missing and unexpected field, if there is one. */
function checkFieldSet(record: Record<string, unknown>, fields: readonly string[]): void {
  const keys = Object.keys(record).sort();
  const missing = fields.filter((field) => !Object.hasOwn(record, field));
  // Object.hasOwn, not `in`: inherited names such as "constructor" are not signed fields.
  const extra = keys.filter((key) => !fields.includes(key));
  if (missing.length > 0 || extra.length > 0) {
    const parts = [];
    if (missing.length > 0) {
      parts.push(`missing ${missing.join(', ')}`);
    }
    if (extra.length > 0) {
      parts.push(`unexpected ${extra.join(', ')}`);
    }
    throw malformed(`signed message fields differ from the format: ${parts.join('; ')}`);
  }
}

/**
 * Parses and validates signed message bytes: UTF-8 JSON object, a known format version with
 * exactly its signed fields of the right types, and already in canonical form, so the
 * signature covers one unambiguous reading of the message.
 */
export function parseSignedMessage(bytes: Uint8Array): SignedMessage {
  let text: string;
  let parsed: unknown;
  try {
    text = utf8Decode(bytes);
    parsed = JSON.parse(text);
  } catch (error) {
    throw malformed('signed message is not UTF-8 JSON', error);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw malformed('signed message is not a JSON object');
  }
  const record = parsed as Record<string, unknown>;
  // The version decides the field set, so it is checked first.
  const fields = signedFieldsOf(record.format_version);
  if (!fields) {
    throw malformed(
      `format_version ${JSON.stringify(record.format_version)} is not supported (expected one of ${CERTIFICATE_FORMAT_VERSIONS.join(', ')})`,
    );
  }
  // JSON.parse keeps the text's key order, so a canonical message has exactly the signed
  // fields in canonical order. Any other message takes the slower path that names the
  // missing and unexpected fields.
  const inCanonicalOrder = sameStrings(
    Object.keys(record),
    CANONICAL_FIELD_ORDER.get(record.format_version as string)!,
  );
  if (!inCanonicalOrder) {
    checkFieldSet(record, fields);
  }
  for (const field of fields) {
    if (!hasKind(record[field], FIELD_KINDS[field])) {
      throw malformed(`signed field ${field} must be of type ${KIND_NAMES[FIELD_KINDS[field]]}`);
    }
  }
  const message = record as unknown as SignedMessage;
  // With the keys in canonical order and every value a string, boolean, null or safe integer,
  // JSON.stringify writes the canonical form (see flatCanonicalJson) without copying the
  // record. canonicalSignedJson sorts the keys itself.
  const canonical = inCanonicalOrder
    ? JSON.stringify(record)
    : canonicalSignedJson(record as Record<string, string>);
  if (canonical !== text) {
    throw malformed('signed message is not in canonical JSON form (RFC 8785)');
  }
  return message;
}
