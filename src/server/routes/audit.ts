// The tenant's audit trail over HTTP: events in log order, each with its log index and the exact
// leaf text, so a reader can check any event against a checkpoint with an inclusion proof.
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import { AUDIT_ACTIONS, AUDIT_CHANNELS, AUDIT_OUTCOMES } from '../../core/audit-event.ts';
import { MAX_AUDIT_PAGE } from '../../services/audit.ts';
import type { Services } from '../../services/container.ts';
import type { AuditEventFilter } from '../../storage/store.ts';
import { tenantOf } from '../auth.ts';
import { toUtcInstant } from '../date-time.ts';
import { ROUTES } from '../route-table.ts';
import { patternString } from '../schemas.ts';

const security = [{ bearer: [] }];

const literals = <T extends string>(values: readonly T[]) =>
  Type.Union(values.map((value) => Type.Literal(value)));

const nullableString = Type.Union([Type.String(), Type.Null()]);

// Query strings are not coerced (Ajv runs with coerceTypes false), so the limit is a pattern.
export const AuditEventsQuery = Type.Object(
  {
    action: Type.Optional(literals(AUDIT_ACTIONS)),
    outcome: Type.Optional(literals(AUDIT_OUTCOMES)),
    from: Type.Optional(
      Type.String({ format: 'date-time', description: 'Inclusive lower bound of occurred_at' }),
    ),
    to: Type.Optional(
      Type.String({ format: 'date-time', description: 'Exclusive upper bound of occurred_at' }),
    ),
    limit: Type.Optional(
      patternString(
        '^(?:[1-9][0-9]?|[1-4][0-9]{2}|500)$',
        `must be an integer from 1 to ${MAX_AUDIT_PAGE}`,
        { description: `Page size, 1 to ${MAX_AUDIT_PAGE}, default 50` },
      ),
    ),
    cursor: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1024,
        description: 'next_cursor of the previous page',
      }),
    ),
  },
  { additionalProperties: false },
);
type AuditEventsQuery = Static<typeof AuditEventsQuery>;

const AuditEventSchema = Type.Object({
  format: Type.String(),
  event_id: Type.String(),
  tenant_id: Type.String(),
  occurred_at: Type.String(),
  action: Type.String(),
  outcome: literals(AUDIT_OUTCOMES),
  reason: nullableString,
  actor_hash: nullableString,
  actor_roles: Type.Array(Type.String()),
  channel: literals(AUDIT_CHANNELS),
  route: nullableString,
  object_type: nullableString,
  object_id: nullableString,
  request_id: nullableString,
});

const AuditEventsResponse = Type.Object({
  items: Type.Array(
    Type.Object({
      log_index: Type.Integer({ description: "The event's leaf index in the tenant's log" }),
      event: AuditEventSchema,
      event_json: Type.String({
        description: 'The exact leaf data (canonical JSON); its RFC 9162 leaf hash is in the log',
      }),
    }),
  ),
  next_cursor: nullableString,
});

/** Builds a filter with only the fields the query sets, so cursors compare equal across pages. */
function filterOf(query: AuditEventsQuery): AuditEventFilter {
  const filter: AuditEventFilter = {};
  if (query.action !== undefined) {
    filter.action = query.action;
  }
  if (query.outcome !== undefined) {
    filter.outcome = query.outcome;
  }
  const from = toUtcInstant('from', query.from);
  if (from !== undefined) {
    filter.occurredFrom = from;
  }
  const to = toUtcInstant('to', query.to);
  if (to !== undefined) {
    filter.occurredTo = to;
  }
  return filter;
}

export function registerAuditRoutes(app: FastifyInstance, services: Services): void {
  app.get<{ Querystring: AuditEventsQuery }>(
    ROUTES.auditEvents.url,
    {
      config: { access: ROUTES.auditEvents },
      schema: {
        tags: ['audit'],
        summary: "The tenant's audit events in log order, with filters and cursor pagination",
        querystring: AuditEventsQuery,
        response: { 200: AuditEventsResponse },
        security,
      },
    },
    (request) =>
      services.audit.list(tenantOf(request), filterOf(request.query), {
        cursor: request.query.cursor,
        limit: request.query.limit === undefined ? undefined : Number(request.query.limit),
      }),
  );
}
