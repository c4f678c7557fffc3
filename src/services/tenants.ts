// Tenant provisioning and key management: each tenant gets its own ECDSA P-256 signing key
// and its own HMAC secret for identifier hashing, both sealed under the key-encryption key.
// Rotation replaces the active key; revocation withdraws trust in everything a key signed.
import { randomBytes } from 'node:crypto';
import { MAX_RATE_LIMIT_PER_MINUTE } from '../config/config.ts';
import { jwkThumbprint } from '../core/certificate.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import {
  toPublishedJwk,
  type Jwks,
  type KeyDescriptor,
  type RevocationReason,
} from '../core/key.ts';
import { sealSecret } from '../keys/envelope.ts';
import { generateP256KeyPair, sealPrivateKey } from '../keys/signer.ts';
import {
  TenantExistsError,
  type NewAuditEvent,
  type NewSigningKey,
  type PhiPolicy,
  type SigningKeyRow,
  type Store,
  type TenantRow,
  type TimestampPolicy,
} from '../storage/store.ts';
import {
  buildAuditEvent,
  INTERNAL_CONTEXT,
  type AuditContext,
  type AuditRecord,
  type AuditTrail,
} from './audit.ts';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import { keyedIdentifierHash, tenantHmacAad, toKeyDescriptor, type Keyring } from './keyring.ts';
import type { TransparencyLog } from './transparency-log.ts';

/** Tenant ids are short, URL-safe and case-sensitive. */
export const TENANT_ID_PATTERN = '^[a-z0-9][a-z0-9-]{1,62}$';
const TENANT_ID_RE = new RegExp(TENANT_ID_PATTERN);

export interface TenantSummary {
  tenant_id: string;
  created_at: string;
  phi_policy: PhiPolicy;
  timestamp_policy: TimestampPolicy;
  timestamp_certificates: boolean;
  /** Issuance requests per minute; null takes CDIL_RATE_LIMIT_PER_MINUTE, 0 means no limit. */
  rate_limit_per_minute: number | null;
  keys: KeyDescriptor[];
}

export interface TenantOptions {
  phiPolicy?: PhiPolicy | undefined;
  timestampPolicy?: TimestampPolicy | undefined;
  timestampCertificates?: boolean | undefined;
}

export interface KeyRotationSummary {
  tenant_id: string;
  active_key: KeyDescriptor;
  previous_key: KeyDescriptor;
}

export interface KeyRevocationSummary {
  tenant_id: string;
  revoked_key: KeyDescriptor;
  active_key: KeyDescriptor;
  /** Whether the revoked key was the active one and a new key replaced it. */
  rotated: boolean;
}

export interface RevokeOptions {
  reason: RevocationReason;
  /** Allows revoking the active key by rotating to a new key in the same transaction. */
  rotate?: boolean | undefined;
}

function summarize(tenant: TenantRow, keys: SigningKeyRow[]): TenantSummary {
  return {
    tenant_id: tenant.tenant_id,
    created_at: tenant.created_at,
    phi_policy: tenant.phi_policy,
    timestamp_policy: tenant.timestamp_policy,
    timestamp_certificates: tenant.timestamp_certificates,
    rate_limit_per_minute: tenant.rate_limit_per_minute,
    keys: keys.map(toKeyDescriptor),
  };
}

export class TenantService {
  readonly #store: Store;
  readonly #kek: Uint8Array;
  readonly #clock: Clock;
  readonly #keyring: Keyring | undefined;

  readonly #log: TransparencyLog;
  readonly #audit: AuditTrail;

  /**
   * Key changes made here invalidate `keyring`, so this process uses them at once. Each key and
   * rate-limit change stores its audit event, built by `audit`, in the change's transaction.
   */
  constructor(
    store: Store,
    kek: Uint8Array,
    clock: Clock,
    keyring: Keyring | undefined,
    log: TransparencyLog,
    audit: AuditTrail,
  ) {
    this.#store = store;
    this.#kek = kek;
    this.#clock = clock;
    this.#keyring = keyring;
    this.#log = log;
    this.#audit = audit;
  }

  /**
   * Builds the audit event of a successful change. The store writes it in the change's
   * transaction, so either both are stored or neither is. Raises TENANT_NOT_FOUND when the
   * tenant does not exist, because its secret is needed to hash the actor.
   */
  async #successEvent(
    tenantId: string,
    context: AuditContext,
    record: AuditRecord,
  ): Promise<NewAuditEvent> {
    const events = await this.#audit.build(tenantId, context, [record], this.#clock.now());
    if (events === null) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
    return events[0]!;
  }

  /** Generates a P-256 key pair for the tenant and seals its private key under the KEK. */
  #generateKey(tenantId: string): NewSigningKey {
    const { publicKeyPem, privateKey } = generateP256KeyPair();
    const keyId = jwkThumbprint(nodeCrypto, nodeCrypto.importPublicKeyPem(publicKeyPem).jwk);
    return {
      tenant_id: tenantId,
      key_id: keyId,
      algorithm: 'ES256',
      public_key_pem: publicKeyPem,
      private_key_sealed: sealPrivateKey(this.#kek, tenantId, keyId, privateKey),
    };
  }

  /**
   * Provisions a tenant. Its `tenant.create` audit event is the first leaf of its log, written
   * in the same transaction as the tenant.
   */
  async create(
    tenantId: string,
    options: TenantOptions = {},
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
    const hmacSecret = randomBytes(32);
    const tenant: TenantRow = {
      tenant_id: tenantId,
      created_at: now,
      phi_policy: options.phiPolicy ?? 'flag',
      hmac_secret_sealed: sealSecret(this.#kek, hmacSecret, tenantHmacAad(tenantId)),
      timestamp_policy: options.timestampPolicy ?? 'best_effort',
      timestamp_certificates: options.timestampCertificates ?? false,
      rate_limit_per_minute: null,
    };
    const key: SigningKeyRow = {
      ...this.#generateKey(tenantId),
      status: 'active',
      valid_from: now,
      valid_until: null,
      created_at: now,
      revoked_at: null,
      revocation_reason: null,
    };
    const auditEvent = buildAuditEvent(
      tenantId,
      (kind, identifier) => keyedIdentifierHash(hmacSecret, kind, identifier),
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
    audit.onRecorded?.([auditEvent.event_id]);
    await this.#log.ensureKey(tenantId);
    return summarize(tenant, [key]);
  }

  async get(tenantId: string): Promise<TenantSummary> {
    const tenant = await this.#store.getTenant(tenantId);
    if (!tenant) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
    return summarize(tenant, await this.#store.listKeys(tenantId));
  }

  /**
   * Replaces the tenant's active key with a new one. The old key is retired: it signs nothing
   * more, and certificates it signed before the rotation keep verifying.
   */
  async rotateKey(
    tenantId: string,
    audit: AuditContext = INTERNAL_CONTEXT,
  ): Promise<KeyRotationSummary> {
    const key = this.#generateKey(tenantId);
    const event = await this.#successEvent(tenantId, audit, {
      action: 'key.rotate',
      outcome: 'success',
      object: { type: 'signing_key', id: key.key_id },
    });
    const replacement = await this.#store.rotateSigningKey(
      tenantId,
      key,
      () => this.#clock.now(),
      event,
    );
    if (!replacement) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
    this.#keyring?.invalidate(tenantId);
    audit.onRecorded?.([event.event_id]);
    return {
      tenant_id: tenantId,
      active_key: toKeyDescriptor(replacement.current),
      previous_key: toKeyDescriptor(replacement.previous),
    };
  }

  /**
   * Revokes a key: every certificate it signed then fails verification. The active key is
   * revoked only with `rotate`, which puts a new active key in its place in the same
   * transaction, so the tenant always has exactly one key to sign with.
   */
  async revokeKey(
    tenantId: string,
    keyId: string,
    options: RevokeOptions,
    audit: AuditContext = INTERNAL_CONTEXT,
  ): Promise<KeyRevocationSummary> {
    const event = await this.#successEvent(tenantId, audit, {
      action: 'key.revoke',
      outcome: 'success',
      object: { type: 'signing_key', id: keyId },
    });
    const result = await this.#store.revokeSigningKey(
      tenantId,
      keyId,
      {
        reason: options.reason,
        replacement: options.rotate ? this.#generateKey(tenantId) : undefined,
      },
      () => this.#clock.now(),
      event,
    );
    switch (result.kind) {
      case 'tenant_not_found':
        throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
      case 'key_not_found':
        throw new AppError('KEY_NOT_FOUND', `tenant ${tenantId} has no key ${keyId}`);
      case 'already_revoked':
        throw new AppError(
          'KEY_ALREADY_REVOKED',
          `key ${keyId} was already revoked at ${result.key.revoked_at ?? 'an unknown time'}`,
        );
      case 'active_key':
        throw new AppError(
          'KEY_ACTIVE',
          `key ${keyId} is the active signing key; send "rotate": true to revoke it and switch to a new key in one step`,
        );
      case 'revoked':
        break;
    }
    this.#keyring?.invalidate(tenantId);
    audit.onRecorded?.([event.event_id]);
    const active =
      result.replacement ??
      (await this.#store.listKeys(tenantId)).find((key) => key.status === 'active');
    if (!active) {
      throw new Error(`tenant ${tenantId} has no active signing key after revocation`);
    }
    return {
      tenant_id: tenantId,
      revoked_key: toKeyDescriptor(result.key),
      active_key: toKeyDescriptor(active),
      rotated: result.replacement !== undefined,
    };
  }

  /** Sets the tenant's issuance limit per minute; null returns it to the configured default. */
  async setRateLimit(
    tenantId: string,
    perMinute: number | null,
    audit: AuditContext = INTERNAL_CONTEXT,
  ): Promise<TenantSummary> {
    if (
      perMinute !== null &&
      (!Number.isSafeInteger(perMinute) || perMinute < 0 || perMinute > MAX_RATE_LIMIT_PER_MINUTE)
    ) {
      throw new AppError(
        'VALIDATION_FAILED',
        `requests_per_minute must be an integer from 0 to ${MAX_RATE_LIMIT_PER_MINUTE}, or null`,
        {
          details: [
            {
              field: 'requests_per_minute',
              rule: 'range',
              message: `must be an integer from 0 to ${MAX_RATE_LIMIT_PER_MINUTE}, or null for the default`,
            },
          ],
        },
      );
    }
    const event = await this.#successEvent(tenantId, audit, {
      action: 'tenant.set_rate_limit',
      outcome: 'success',
      object: { type: 'tenant', id: tenantId },
    });
    if (!(await this.#store.setTenantRateLimit(tenantId, perMinute, event))) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
    audit.onRecorded?.([event.event_id]);
    return this.get(tenantId);
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
