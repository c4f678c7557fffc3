// Ties HTTP requests to the audit trail: who called (from the verified token), through which
// route, and which events the request recorded, for the request's log line.
import type { FastifyRequest } from 'fastify';
import type { AuditContext, AuditRecord, AuditTrail } from '../services/audit.ts';
import { auditReasonOf } from '../services/audit.ts';
import type { AppError } from '../services/errors.ts';
import type { NewAuditEvent } from '../storage/store.ts';
import type { AuditWrite } from './audit-writer.ts';

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
 * Captures the audit event of a rejected (4xx) or failed (5xx) request, for the log of the
 * tenant named by the caller's verified token. The context and the event time are taken now,
 * so the event is the same whenever it is written. Returns undefined for a request without a
 * verified token, which names no tenant that can be trusted and is left to the structured log.
 */
export function rejectionAuditWrite(
  audit: AuditTrail,
  request: FastifyRequest,
  error: AppError,
): AuditWrite | undefined {
  const tenantId = request.auth?.tenantId;
  if (tenantId === undefined) {
    return undefined;
  }
  const occurredAt = audit.now();
  const context = auditContextOf(request);
  const reason = auditReasonOf(error.code);
  const record: AuditRecord =
    error.status >= 500
      ? { action: 'request.failed', outcome: 'failure', reason }
      : { action: 'request.rejected', outcome: 'rejected', reason };
  // Built once, on the first try that reads the tenant's keys, so retries reuse the event id.
  let events: NewAuditEvent[] | null | undefined;
  return {
    tenantId,
    requestId: String(request.id),
    action: record.action,
    reason,
    attempt: async () => {
      events ??= await audit.build(tenantId, context, [record], occurredAt);
      if (events !== null) {
        await audit.append(tenantId, context, events);
      }
    },
    isStored: async () =>
      events !== undefined && events !== null && (await audit.isStored(tenantId, events)),
  };
}
