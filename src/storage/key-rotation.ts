// Key rows written by a rotation or a revocation. Both engines build them here, so a key's
// place in time is decided the same way on SQLite and PostgreSQL.
import type { RevocationReason } from '../core/key.ts';
import type { NewSigningKey, SigningKeyRow } from './store.ts';

/**
 * Returns the instant at which signing moves from the active key to its replacement: the old
 * key is valid until it and the new key valid from it. Engines call this while they hold the
 * tenant's chain head lock, with the latest issued_at_utc of the tenant's stored certificates.
 *
 * The instant is the current time, moved later when needed so that it is after every stored
 * certificate's issuance time and after the active key's valid_from. A process on a host whose
 * clock runs ahead, or a clock stepped back, could otherwise leave an acknowledged certificate
 * outside its key's validity window, and it would fail verification.
 */
export function rotationInstant(
  now: Date,
  active: SigningKeyRow,
  latestIssuedAt: string | null,
): string {
  let instant = now.getTime();
  if (latestIssuedAt !== null) {
    instant = Math.max(instant, Date.parse(latestIssuedAt) + 1);
  }
  instant = Math.max(instant, Date.parse(active.valid_from) + 1);
  return new Date(instant).toISOString();
}

/** Returns the active key as it is after a rotation at `instant`: retired, or revoked. */
export function endedKey(
  active: SigningKeyRow,
  instant: string,
  revocationReason?: RevocationReason,
): SigningKeyRow {
  return revocationReason === undefined
    ? { ...active, status: 'retired', valid_until: instant }
    : {
        ...active,
        status: 'revoked',
        valid_until: instant,
        revoked_at: instant,
        revocation_reason: revocationReason,
      };
}

/** Returns the row of a new key that is active from `instant`. */
export function newActiveKey(key: NewSigningKey, instant: string): SigningKeyRow {
  return {
    ...key,
    status: 'active',
    valid_from: instant,
    valid_until: null,
    created_at: instant,
    revoked_at: null,
    revocation_reason: null,
  };
}

/** Returns a retired key as it is after revocation at `instant`; its validity window stays. */
export function revokedKey(
  key: SigningKeyRow,
  instant: string,
  reason: RevocationReason,
): SigningKeyRow {
  return { ...key, status: 'revoked', revoked_at: instant, revocation_reason: reason };
}
