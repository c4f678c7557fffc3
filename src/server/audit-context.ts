// Ties HTTP requests to the audit trail: who called (from the verified token), through which
// route, and which events the request recorded, for the request's log line.
import type { FastifyRequest } from 'fastify';
import type { AuditContext, AuditRecord, AuditTrail } from '../services/audit.ts';
import { auditReasonOf } from '../services/audit.ts';
import type { AppError } from '../services/errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Ids of the audit events this request recorded, logged with the request. */
    auditEventIds: string[] | null;
  }
}

export function auditContextOf(request: FastifyRequest): AuditContext {
  const route = request.routeOptions.url;
  return {
    channel: 'http',
    actor: request.auth ? { subject: request.auth.subject, roles: request.auth.roles } : undefined,
    route: route === undefined ? undefined : `${request.method} ${route}`,
    requestId: String(request.id),
    onRecorded: (eventIds) => {
      request.auditEventIds = [...(request.auditEventIds ?? []), ...eventIds];
    },
  };
}

/** Records events for `tenantId` with the request's context, after the action. */
export async function recordForRequest(
  audit: AuditTrail,
  request: FastifyRequest,
  tenantId: string,
  records: AuditRecord[],
): Promise<void> {
  await audit.record(tenantId, auditContextOf(request), records);
}

/**
 * Records a rejected (4xx) or failed (5xx) request in the log of the tenant named by the
 * caller's verified token. A request without a verified token names no tenant that can be
 * trusted, so it is left to the structured log.
 */
export async function recordRejection(
  audit: AuditTrail,
  request: FastifyRequest,
  error: AppError,
): Promise<void> {
  const tenantId = request.auth?.tenantId;
  if (tenantId === undefined) {
    return;
  }
  const reason = auditReasonOf(error.code);
  await recordForRequest(audit, request, tenantId, [
    error.status >= 500
      ? { action: 'request.failed', outcome: 'failure', reason }
      : { action: 'request.rejected', outcome: 'rejected', reason },
  ]);
}
