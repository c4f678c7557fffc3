// Canonical JSON per RFC 8785 (JCS). Signed messages hold only strings, booleans, null and
// safe integers under ASCII keys, so for them JCS output equals plain sorted-key compact JSON,
// which keeps the bytes identical to the original Python CDIL's json_c14n_v1.
import canonicalize from 'canonicalize';

export type SignedValue = string | boolean | null | number;
export type SignedRecord = Readonly<Record<string, SignedValue>>;

export class CanonicalizationError extends Error {
  override readonly name = 'CanonicalizationError';
}

/** Serializes any JSON value with RFC 8785 rules. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) {
    throw new CanonicalizationError('value has no JSON representation');
  }
  return text;
}

/**
 * Serializes a flat signed record after checking that every key is ASCII and every value is a
 * string, boolean, null or safe integer. Floats and nested values are rejected because their
 * serialization differs between JSON libraries, and a verifier in another language must be
 * able to rebuild the exact bytes.
 */
export function canonicalSignedJson(record: SignedRecord): string {
  for (const [key, value] of Object.entries(record)) {
    if (!/^[\x20-\x7e]+$/.test(key)) {
      throw new CanonicalizationError(`key ${JSON.stringify(key)} is not printable ASCII`);
    }
    const ok =
      value === null ||
      typeof value === 'string' ||
      typeof value === 'boolean' ||
      (typeof value === 'number' && Number.isSafeInteger(value));
    if (!ok) {
      throw new CanonicalizationError(`field ${key} must be a string, boolean, null or integer`);
    }
  }
  return flatCanonicalJson(record);
}

/**
 * Serializes a flat record of strings, booleans, null and safe integers under ASCII keys. For
 * such records RFC 8785 reduces to sorted keys with ECMAScript JSON.stringify values. This
 * function does that directly, several times faster than the general serializer on the
 * verification hot path. Callers MUST pass only such records (canonicalSignedJson checks).
 */
export function flatCanonicalJson(record: SignedRecord): string {
  // Keys that are not array indices keep insertion order in JSON.stringify, so copying them
  // in sorted order and serializing once gives the canonical text in one native call.
  const sorted: Record<string, SignedValue> = {};
  for (const key of Object.keys(record).sort()) {
    // Array-index keys would be moved to the front by JSON.stringify, and assigning __proto__
    // would set the prototype instead of a property. Both take the general path.
    if (key === '__proto__' || /^(?:0|[1-9]\d*)$/.test(key)) {
      return canonicalJson(record);
    }
    sorted[key] = record[key]!;
  }
  return JSON.stringify(sorted);
}
