import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services/container.ts';
import { auditContextOf } from '../audit-context.ts';
import { ROUTES } from '../route-table.ts';
import {
  CreateTenantBody,
  TenantIdParams,
  type CreateTenantBody as CreateTenant,
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
        { phiPolicy: request.body.phi_policy },
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
}
