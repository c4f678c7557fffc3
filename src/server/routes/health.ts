import type { FastifyInstance } from 'fastify';
import { AppError, STORAGE_FULL_RETRY_AFTER_S } from '../../services/errors.ts';
import type { Services } from '../../services/container.ts';
import type { Store } from '../../storage/store.ts';
import { ROUTES } from '../route-table.ts';

/**
 * Time limit of one readiness check. A load balancer's probe usually times out after a few
 * seconds, so `/readyz` returns 503 before that instead of hanging until the store's own
 * connect or query timeout.
 */
export const READINESS_TIMEOUT_MS = 2_500;

/**
 * Time after the last write that failed on a full disk during which `/readyz` reports not
 * ready, unless a write commits first. It is the Retry-After that such a failure sends. It
 * ends so that a process that a load balancer took out of rotation, and that therefore gets no
 * writes, receives requests again and finds out by writing whether space was freed.
 */
export const STORAGE_FULL_NOT_READY_MS = STORAGE_FULL_RETRY_AFTER_S * 1000;

/**
 * Throws NOT_READY when a write failed on a full disk less than STORAGE_FULL_NOT_READY_MS ago
 * and no write has committed since. Reads a field the store sets, so it costs no query.
 */
function checkStorageNotFull(store: Pick<Store, 'lastStorageFullFailure'>): void {
  const failedAt = store.lastStorageFullFailure();
  if (failedAt === undefined) {
    return;
  }
  const agoMs = Date.now() - failedAt;
  if (agoMs < STORAGE_FULL_NOT_READY_MS) {
    throw new AppError(
      'NOT_READY',
      `the database cannot be written because its disk is full: a write failed ${Math.round(agoMs / 1000)} s ago and none has succeeded since`,
    );
  }
}

/**
 * Returns a check that pings `store` and rejects when the ping fails or takes longer than
 * `timeoutMs`. Checks made while a ping is running share it, so repeated probes against a
 * database that does not reply start no new pings. The running ping ends at the store's own
 * connect or query timeout.
 */
export function readinessCheck(store: Pick<Store, 'ping'>, timeoutMs: number): () => Promise<void> {
  let running: Promise<void> | undefined;
  return async () => {
    running ??= store.ping().finally(() => {
      running = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`database ping timed out after ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([running, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  };
}

export function registerHealthRoutes(app: FastifyInstance, services: Services): void {
  const checkReadiness = readinessCheck(services.store, READINESS_TIMEOUT_MS);
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
      schema: {
        tags: ['operations'],
        summary: 'Readiness: the database answers, and its last write did not fail on a full disk',
      },
    },
    async () => {
      checkStorageNotFull(services);
      try {
        await checkReadiness();
      } catch (error) {
        throw new AppError('NOT_READY', 'database is not reachable', { cause: error });
      }
      return { status: 'ready', database: services.store.engine };
    },
  );
}
