import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services/container.ts';
import { auditContextOf } from '../audit-context.ts';
import { ROUTES } from '../route-table.ts';
import {
  CreateTenantBody,
  KeyParams,
  RateLimitBody,
  RevokeKeyBody,
  TenantIdParams,
  type CreateTenantBody as CreateTenant,
  type RateLimitBody as RateLimit,
  type RevokeKeyBody as RevokeKey,
} from '../schemas.ts';

const security = [{ bearer: [] }];

export function registerTenantRoutes(app: FastifyInstance, services: Services): void {
  app.get<{ Params: { tenant_id: string } }>(
    ROUTES.tenantJwks.url,
    {
      config: { access: ROUTES.tenantJwks },
      schema: {
        tags: ['keys'],
        summary: "The tenant's public signing keys as a JWKS, with status and validity",
        params: TenantIdParams,
      },
    },
    async (request, reply) => {
      const jwks = await services.tenants.jwks(request.params.tenant_id);
      void reply.header('cache-control', 'public, max-age=60').type('application/jwk-set+json');
      return jwks;
    },
  );
  app.post<{ Body: CreateTenant }>(
    ROUTES.createTenant.url,
    {
      config: { access: ROUTES.createTenant },
      schema: {
        tags: ['admin'],
        summary: 'Provision a tenant with its own signing key',
        body: CreateTenantBody,
        security,
      },
    },
    async (request, reply) => {
      const tenant = await services.tenants.create(
        request.body.tenant_id,
        {
          phiPolicy: request.body.phi_policy,
          timestampPolicy: request.body.timestamp_policy,
          timestampCertificates: request.body.timestamp_certificates,
        },
        auditContextOf(request),
      );
      request.log.info({ tenantId: tenant.tenant_id }, 'tenant created');
      return reply.code(201).send(tenant);
    },
  );
  app.get(
    ROUTES.listTenants.url,
    {
      config: { access: ROUTES.listTenants },
      schema: { tags: ['admin'], summary: 'List tenants', security },
    },
    async () => ({ tenants: await services.tenants.list() }),
  );
  app.get<{ Params: { tenant_id: string } }>(
    ROUTES.getTenant.url,
    {
      config: { access: ROUTES.getTenant },
      schema: {
        tags: ['admin'],
        summary: 'One tenant with its keys',
        params: TenantIdParams,
        security,
      },
    },
    (request) => services.tenants.get(request.params.tenant_id),
  );
  registerKeyRoutes(app, services);
}

/** Key rotation, revocation and the tenant's rate-limit override. */
function registerKeyRoutes(app: FastifyInstance, services: Services): void {
  app.post<{ Params: { tenant_id: string } }>(
    ROUTES.rotateKey.url,
    {
      config: { access: ROUTES.rotateKey },
      schema: {
        tags: ['admin'],
        summary: 'Replace the active signing key with a new one and retire the old key',
        params: TenantIdParams,
        security,
      },
    },
    async (request, reply) => {
      const rotation = await services.tenants.rotateKey(
        request.params.tenant_id,
        auditContextOf(request),
      );
      request.log.info(
        {
          tenantId: rotation.tenant_id,
          keyId: rotation.active_key.key_id,
          retiredKeyId: rotation.previous_key.key_id,
        },
        'signing key rotated',
      );
      return reply.code(201).send(rotation);
    },
  );
  app.post<{ Params: { tenant_id: string; key_id: string }; Body: RevokeKey }>(
    ROUTES.revokeKey.url,
    {
      config: { access: ROUTES.revokeKey },
      schema: {
        tags: ['admin'],
        summary: 'Revoke a signing key; the active key only together with a rotation',
        params: KeyParams,
        body: RevokeKeyBody,
        security,
      },
    },
    async (request) => {
      const revocation = await services.tenants.revokeKey(
        request.params.tenant_id,
        request.params.key_id,
        { reason: request.body.reason, rotate: request.body.rotate },
        auditContextOf(request),
      );
      request.log.info(
        {
          tenantId: revocation.tenant_id,
          keyId: revocation.revoked_key.key_id,
          reason: request.body.reason,
          activeKeyId: revocation.active_key.key_id,
          rotated: revocation.rotated,
        },
        'signing key revoked',
      );
      return revocation;
    },
  );
  app.put<{ Params: { tenant_id: string }; Body: RateLimit }>(
    ROUTES.setRateLimit.url,
    {
      config: { access: ROUTES.setRateLimit },
      schema: {
        tags: ['admin'],
        summary: "Set or clear the tenant's issuance limit per minute",
        params: TenantIdParams,
        body: RateLimitBody,
        security,
      },
    },
    async (request) => {
      const tenant = await services.tenants.setRateLimit(
        request.params.tenant_id,
        request.body.requests_per_minute,
        auditContextOf(request),
      );
      request.log.info(
        { tenantId: tenant.tenant_id, rateLimitPerMinute: tenant.rate_limit_per_minute },
        'tenant rate limit set',
      );
      return tenant;
    },
  );
}
