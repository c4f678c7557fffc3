import type { FastifyInstance } from 'fastify';
import { AppError } from '../../services/errors.ts';
import type { Services } from '../../services/container.ts';
import { ROUTES } from '../route-table.ts';

export function registerHealthRoutes(app: FastifyInstance, services: Services): void {
  app.get(
    ROUTES.healthz.url,
    {
      config: { access: ROUTES.healthz },
      schema: { tags: ['operations'], summary: 'Liveness: the process is up' },
    },
    () => ({ status: 'ok' }),
  );
  app.get(
    ROUTES.readyz.url,
    {
      config: { access: ROUTES.readyz },
      schema: { tags: ['operations'], summary: 'Readiness: the database answers' },
    },
    async () => {
      try {
        await services.store.ping();
      } catch (error) {
        throw new AppError('NOT_READY', 'database is not reachable', { cause: error });
      }
      return { status: 'ready', database: services.store.engine };
    },
  );
}
