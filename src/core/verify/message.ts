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

/**
 * Parses and validates signed message bytes: UTF-8 JSON object, a known format version with
 * exactly its signed fields of the right types, and already in canonical form, so the
 * signature covers one unambiguous reading of the message.
 */
export function parseSignedMessage(bytes: Uint8Array): SignedMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8Decode(bytes));
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
  const keys = Object.keys(record).sort();
  const missing = fields.filter((field) => !Object.hasOwn(record, field));
  // Object.hasOwn, not `in`: inherited names such as "constructor" are not signed fields.
  const extra = keys.filter((key) => !(fields as readonly string[]).includes(key));
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
  for (const field of fields) {
    if (!hasKind(record[field], FIELD_KINDS[field])) {
      throw malformed(`signed field ${field} must be of type ${KIND_NAMES[FIELD_KINDS[field]]}`);
    }
  }
  const message = record as unknown as SignedMessage;
  const canonical = canonicalSignedJson(record as Record<string, string>);
  if (canonical !== utf8Decode(bytes)) {
    throw malformed('signed message is not in canonical JSON form (RFC 8785)');
  }
  return message;
}
