// Tenant provisioning: each tenant gets its own ECDSA P-256 signing key and its own HMAC
// secret for identifier hashing, both sealed under the key-encryption key.
import { randomBytes } from 'node:crypto';
import { jwkThumbprint } from '../core/certificate.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { toPublishedJwk, type Jwks, type KeyDescriptor } from '../core/key.ts';
import { sealSecret } from '../keys/envelope.ts';
import { generateP256KeyPair, sealPrivateKey } from '../keys/signer.ts';
import { TenantExistsError, type PhiPolicy, type Store } from '../storage/store.ts';
import { buildAuditEvent, INTERNAL_CONTEXT, type AuditContext } from './audit.ts';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import { keyedIdentifierHash, tenantHmacAad, toKeyDescriptor } from './keyring.ts';
import type { TransparencyLog } from './transparency-log.ts';

/** Tenant ids are short, URL-safe and case-sensitive. */
export const TENANT_ID_PATTERN = '^[a-z0-9][a-z0-9-]{1,62}$';
const TENANT_ID_RE = new RegExp(TENANT_ID_PATTERN);

export interface TenantSummary {
  tenant_id: string;
  created_at: string;
  phi_policy: PhiPolicy;
  keys: KeyDescriptor[];
}

export class TenantService {
  readonly #store: Store;
  readonly #kek: Uint8Array;
  readonly #clock: Clock;

  readonly #log: TransparencyLog;

  constructor(store: Store, kek: Uint8Array, clock: Clock, log: TransparencyLog) {
    this.#store = store;
    this.#kek = kek;
    this.#clock = clock;
    this.#log = log;
  }

  /**
   * Provisions a tenant. Its `tenant.create` audit event is the first leaf of its log, written
   * in the same transaction as the tenant.
   */
  async create(
    tenantId: string,
    options: { phiPolicy?: PhiPolicy } = {},
    audit: AuditContext = INTERNAL_CONTEXT,
  ): Promise<TenantSummary> {
    if (!TENANT_ID_RE.test(tenantId)) {
      throw new AppError(
        'VALIDATION_FAILED',
        'tenant_id must be 2-63 characters of a-z, 0-9 and -, starting with a letter or digit',
        {
          details: [
            { field: 'tenant_id', rule: 'pattern', message: `must match ${TENANT_ID_PATTERN}` },
          ],
        },
      );
    }
    const nowDate = this.#clock.now();
    const now = nowDate.toISOString();
    const { publicKeyPem, privateKey } = generateP256KeyPair();
    const hmacSecret = randomBytes(32);
    const keyId = jwkThumbprint(nodeCrypto, nodeCrypto.importPublicKeyPem(publicKeyPem).jwk);
    const tenant = {
      tenant_id: tenantId,
      created_at: now,
      phi_policy: options.phiPolicy ?? 'flag',
      hmac_secret_sealed: sealSecret(this.#kek, hmacSecret, tenantHmacAad(tenantId)),
    };
    const key = {
      tenant_id: tenantId,
      key_id: keyId,
      algorithm: 'ES256' as const,
      status: 'active' as const,
      valid_from: now,
      valid_until: null,
      public_key_pem: publicKeyPem,
      private_key_sealed: sealPrivateKey(this.#kek, tenantId, keyId, privateKey),
      created_at: now,
    };
    const auditEvent = buildAuditEvent(
      tenantId,
      (subject) => keyedIdentifierHash(hmacSecret, 'token_subject', subject),
      audit,
      { action: 'tenant.create', outcome: 'success', object: { type: 'tenant', id: tenantId } },
      nowDate,
    );
    try {
      await this.#store.createTenant(tenant, key, auditEvent);
    } catch (error) {
      if (error instanceof TenantExistsError) {
        throw new AppError('TENANT_EXISTS', `tenant ${tenantId} already exists`);
      }
      throw error;
    }
    await this.#log.ensureKey(tenantId);
    return {
      tenant_id: tenantId,
      created_at: now,
      phi_policy: tenant.phi_policy,
      keys: [toKeyDescriptor(key)],
    };
  }

  async get(tenantId: string): Promise<TenantSummary> {
    const tenant = await this.#store.getTenant(tenantId);
    if (!tenant) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
    const keys = await this.#store.listKeys(tenantId);
    return {
      tenant_id: tenant.tenant_id,
      created_at: tenant.created_at,
      phi_policy: tenant.phi_policy,
      keys: keys.map(toKeyDescriptor),
    };
  }

  async list(): Promise<TenantSummary[]> {
    const tenants = await this.#store.listTenants();
    return Promise.all(tenants.map((tenant) => this.get(tenant.tenant_id)));
  }

  /** Returns the tenant's public keys with status and validity, for pinning by verifiers. */
  async jwks(tenantId: string): Promise<Jwks> {
    const summary = await this.get(tenantId);
    return { keys: summary.keys.map(toPublishedJwk) };
  }
}
