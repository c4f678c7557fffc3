// Per-tenant key material, decrypted on first use and cached for CDIL_KEY_CACHE_TTL_MS, so a
// key status change made by another process is read again within that time. Issuance does not
// depend on this bound for correctness: the append transaction checks that the signing key is
// still the active one (see IssuanceService).
import { createHmac } from 'node:crypto';
import { nodeCrypto } from '../core/crypto-node.ts';
import type { KeyDescriptor } from '../core/key.ts';
import { DEFAULT_KEY_CACHE_TTL_MS } from '../config/config.ts';
import { openSecret } from '../keys/envelope.ts';
import { openPrivateKey, SoftwareSigner, type Signer } from '../keys/signer.ts';
import type { SigningKeyRow, Store, TenantRow } from '../storage/store.ts';

export interface TenantKeys {
  tenant: TenantRow;
  signer: Signer;
  activeKey: SigningKeyRow;
  keys: SigningKeyRow[];
  /** Keyed hash of an identifier, domain-separated by its kind. */
  hashIdentifier(kind: IdentifierKind, value: string): string;
}

export type IdentifierKind =
  | 'patient_reference'
  | 'encounter_id'
  | 'human_reviewer_id'
  | 'idempotency_key'
  | 'idempotency_request'
  | 'shadow_note_ref'
  | 'token_subject'
  | 'os_user';

/** Computes HMAC-SHA-256 over `<kind> NUL <value>` under a tenant's identifier secret, as hex. */
export function keyedIdentifierHash(
  secret: Uint8Array,
  kind: IdentifierKind,
  value: string,
): string {
  return createHmac('sha256', secret).update(`${kind}\u0000${value}`).digest('hex');
}

export function tenantHmacAad(tenantId: string): string {
  return `cdil:tenant-hmac:${tenantId}`;
}

export function toKeyDescriptor(row: SigningKeyRow): KeyDescriptor {
  const descriptor: KeyDescriptor = {
    key_id: row.key_id,
    tenant_id: row.tenant_id,
    algorithm: row.algorithm,
    status: row.status,
    valid_from: row.valid_from,
    valid_until: row.valid_until,
    public_key_jwk: nodeCrypto.importPublicKeyPem(row.public_key_pem).jwk,
  };
  if (row.revoked_at) {
    descriptor.revoked_at = row.revoked_at;
  }
  if (row.revocation_reason) {
    descriptor.revocation_reason = row.revocation_reason;
  }
  return descriptor;
}

export interface KeyringOptions {
  /** How long loaded keys are reused, in ms; 0 reads them for every call. */
  ttlMs?: number;
  /** Millisecond clock; tests pass their own. */
  now?: () => number;
}

export class Keyring {
  readonly #store: Store;
  readonly #kek: Uint8Array;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, { loadedAt: number; keys: Promise<TenantKeys | undefined> }>();
  /**
   * Tenants seen in the store. Tenants are never deleted, so an entry stays true for the life of
   * the process. A missing tenant is not remembered, because another process may create it.
   */
  readonly #existingTenants = new Set<string>();

  constructor(store: Store, kek: Uint8Array, options: KeyringOptions = {}) {
    this.#store = store;
    this.#kek = kek;
    this.#ttlMs = options.ttlMs ?? DEFAULT_KEY_CACHE_TTL_MS;
    this.#now = options.now ?? Date.now;
  }

  /** Returns the tenant's keys, or undefined when the tenant does not exist. */
  get(tenantId: string): Promise<TenantKeys | undefined> {
    const cached = this.#cache.get(tenantId);
    const now = this.#now();
    if (cached && now - cached.loadedAt < this.#ttlMs) {
      return cached.keys;
    }
    const keys = this.#load(tenantId);
    this.#cache.set(tenantId, { loadedAt: now, keys });
    keys.then(
      (loaded) => {
        if (!loaded) {
          this.#cache.delete(tenantId);
        }
      },
      () => this.#cache.delete(tenantId),
    );
    return keys;
  }

  /**
   * Returns whether the tenant exists. After it finds a tenant once, it reads nothing, so a
   * per-request check costs no query on a tenant that is in use.
   */
  async tenantExists(tenantId: string): Promise<boolean> {
    if (this.#existingTenants.has(tenantId)) {
      return true;
    }
    if ((await this.#store.getTenant(tenantId)) === undefined) {
      return false;
    }
    this.#existingTenants.add(tenantId);
    return true;
  }

  /** Drops the tenant's cached keys, so the next get() reads them from the store. */
  invalidate(tenantId: string): void {
    this.#cache.delete(tenantId);
  }

  async #load(tenantId: string): Promise<TenantKeys | undefined> {
    const tenant = await this.#store.getTenant(tenantId);
    if (!tenant) {
      return undefined;
    }
    this.#existingTenants.add(tenantId);
    const keys = await this.#store.listKeys(tenantId);
    const activeKey = keys.find((key) => key.status === 'active');
    if (!activeKey) {
      throw new Error(`tenant ${tenantId} has no active signing key`);
    }
    const privateKey = openPrivateKey(
      this.#kek,
      tenantId,
      activeKey.key_id,
      activeKey.private_key_sealed,
    );
    const hmacSecret = openSecret(this.#kek, tenant.hmac_secret_sealed, tenantHmacAad(tenantId));
    return {
      tenant,
      signer: new SoftwareSigner(activeKey.key_id, privateKey),
      activeKey,
      keys,
      hashIdentifier: (kind, value) => keyedIdentifierHash(hmacSecret, kind, value),
    };
  }
}
