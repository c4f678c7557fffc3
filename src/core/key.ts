// Public description of a tenant signing key, as served in JWKS and carried in bundles.
import type { EcPublicJwk } from './crypto.ts';
import { fromBase64Url, toBase64 } from './encoding.ts';

export const KEY_STATUSES = ['active', 'retired', 'revoked'] as const;
export type KeyStatus = (typeof KEY_STATUSES)[number];

/** Why a key was revoked: the CRLReason values of RFC 5280, section 5.3.1, that apply to CDIL. */
export const REVOCATION_REASONS = [
  'unspecified',
  'key_compromise',
  'affiliation_changed',
  'superseded',
  'cessation_of_operation',
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export interface KeyDescriptor {
  key_id: string;
  tenant_id: string;
  algorithm: 'ES256';
  status: KeyStatus;
  /** First instant (ISO 8601 UTC) at which the key may sign. */
  valid_from: string;
  /** Instant after which the key no longer signs, or null while it is current. */
  valid_until: string | null;
  public_key_jwk: EcPublicJwk;
  /** Present on revoked keys only. */
  revoked_at?: string;
  revocation_reason?: RevocationReason;
}

/** A JWK as published in a tenant's JWKS, with CDIL's validity members. */
export interface PublishedJwk extends EcPublicJwk {
  kid: string;
  alg: 'ES256';
  use: 'sig';
  status: KeyStatus;
  valid_from: string;
  valid_until?: string;
  tenant_id: string;
  revoked_at?: string;
  revocation_reason?: RevocationReason;
}

export interface Jwks {
  keys: PublishedJwk[];
}

export function toPublishedJwk(key: KeyDescriptor): PublishedJwk {
  const jwk: PublishedJwk = {
    ...key.public_key_jwk,
    kid: key.key_id,
    alg: 'ES256',
    use: 'sig',
    status: key.status,
    valid_from: key.valid_from,
    tenant_id: key.tenant_id,
  };
  if (key.valid_until !== null) {
    jwk.valid_until = key.valid_until;
  }
  if (key.revoked_at !== undefined) {
    jwk.revoked_at = key.revoked_at;
  }
  if (key.revocation_reason !== undefined) {
    jwk.revocation_reason = key.revocation_reason;
  }
  return jwk;
}

/** Tells whether the key's validity window and status allow a signature made at `instant`. */
export function keyValidAt(
  key: Pick<KeyDescriptor, 'status' | 'valid_from' | 'valid_until'>,
  instant: string,
): boolean {
  // Key records may come from an untrusted bundle, so an unknown status or an unreadable date
  // makes the key invalid rather than unbounded (comparisons with NaN are always false).
  if (key.status !== 'active' && key.status !== 'retired') {
    return false;
  }
  const at = Date.parse(instant);
  const from = Date.parse(key.valid_from);
  const until = key.valid_until === null ? Infinity : Date.parse(key.valid_until);
  if (Number.isNaN(at) || Number.isNaN(from) || Number.isNaN(until)) {
    return false;
  }
  return from <= at && at < until;
}

// DER prefix of a SubjectPublicKeyInfo for an uncompressed P-256 point (RFC 5480): the
// algorithm identifier id-ecPublicKey with namedCurve prime256v1, then a 66-byte BIT STRING.
const P256_SPKI_PREFIX = [
  0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
  0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

const MAX_CACHED_PEMS = 256;
const pemCache = new Map<string, string>();

/**
 * Renders the SPKI PEM of a P-256 public key the way OpenSSL and Node write it (64-character
 * lines, final newline), so a bundle's public_key.pem can be compared byte for byte.
 */
export function p256PublicKeyPem(jwk: EcPublicJwk): string | undefined {
  // A bundle set usually shares one tenant key, so the PEM is cached. Only valid coordinates
  // are cached, and base64url has no dot, so a cache key names exactly one (x, y) pair.
  const cacheKey = `${jwk.x}.${jwk.y}`;
  const cached = pemCache.get(cacheKey);
  if (cached !== undefined) {
    return cached;
  }
  const x = fromBase64Url(jwk.x);
  const y = fromBase64Url(jwk.y);
  if (!x || !y || x.length !== 32 || y.length !== 32) {
    return undefined;
  }
  const body = toBase64(Uint8Array.from([...P256_SPKI_PREFIX, ...x, ...y]));
  const lines = body.match(/.{1,64}/g) ?? [];
  const pem = `-----BEGIN PUBLIC KEY-----\n${lines.join('\n')}\n-----END PUBLIC KEY-----\n`;
  if (pemCache.size >= MAX_CACHED_PEMS) {
    pemCache.clear();
  }
  pemCache.set(cacheKey, pem);
  return pem;
}
