// Shadow-mode scoring, stored items, dashboards, revenue assumptions and the ROI projection.
// Each handler calls one service method with the tenant from the token.
import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services/container.ts';
import { DEFAULT_VERIFICATION_SAMPLE } from '../../services/dashboard.ts';
import type { ShadowItemFilter } from '../../storage/store.ts';
import { tenantOf } from '../auth.ts';
import { ROUTES } from '../route-table.ts';
import {
  AssumptionsBody,
  BatchBody,
  EvidenceDeficitBody,
  ExecutiveSummaryQuery,
  IntakeBody,
  ItemIdParams,
  ItemsQuery,
  RangeQuery,
  RiskQueueQuery,
  RoiBody,
  type AssumptionsBody as Assumptions,
  type BatchBody as Batch,
  type EvidenceDeficitBody as EvidenceDeficit,
  type ExecutiveSummaryQuery as ExecutiveQuery,
  type IntakeBody as Intake,
  type ItemsQuery as Items,
  type RangeQuery as Range,
  type RiskQueueQuery as RiskQuery,
  type RoiBody as Roi,
} from '../shadow-schemas.ts';

const security = [{ bearer: [] }];

const isoOrUndefined = (value: string | undefined): string | undefined =>
  value === undefined ? undefined : new Date(value).toISOString();

const numberOrUndefined = (value: string | undefined): number | undefined =>
  value === undefined ? undefined : Number(value);

function rangeOf(query: Range): { createdFrom?: string; createdTo?: string } {
  const range: { createdFrom?: string; createdTo?: string } = {};
  const from = isoOrUndefined(query.created_from);
  const to = isoOrUndefined(query.created_to);
  if (from !== undefined) {
    range.createdFrom = from;
  }
  if (to !== undefined) {
    range.createdTo = to;
  }
  return range;
}

/** Builds a filter with only the fields the query sets, so cursors compare equal across pages. */
function itemFilterOf(query: Items | RiskQuery): ShadowItemFilter {
  const filter: ShadowItemFilter = rangeOf(query);
  if (query.condition !== undefined) {
    filter.conditionId = query.condition;
  }
  if ('has_deficit' in query && query.has_deficit !== undefined) {
    filter.hasDeficit = query.has_deficit === 'true';
  }
  if ('source' in query && query.source !== undefined) {
    filter.source = query.source;
  }
  if ('batch_id' in query && query.batch_id !== undefined) {
    filter.batchId = query.batch_id;
  }
  if ('certificate_id' in query && query.certificate_id !== undefined) {
    filter.certificateId = query.certificate_id;
  }
  return filter;
}

export function registerShadowRoutes(app: FastifyInstance, services: Services): void {
  app.post<{ Body: EvidenceDeficit }>(
    ROUTES.shadowEvidenceDeficit.url,
    {
      config: { access: ROUTES.shadowEvidenceDeficit },
      schema: {
        tags: ['shadow'],
        summary: 'Score one note for MEAT evidence gaps without storing anything',
        body: EvidenceDeficitBody,
        security,
      },
    },
    (request) => services.shadow.evidenceDeficit(tenantOf(request), request.body),
  );

  app.post<{ Body: Batch }>(
    ROUTES.shadowAnalyze.url,
    {
      config: { access: ROUTES.shadowAnalyze },
      schema: {
        tags: ['shadow'],
        summary: 'Score and store a batch of notes; returns per-note results and a summary',
        body: BatchBody,
        security,
      },
    },
    async (request, reply) =>
      reply.code(201).send(await services.shadow.analyze(tenantOf(request), request.body.notes)),
  );

  app.post<{ Body: Batch }>(
    ROUTES.shadowLeakageReport.url,
    {
      config: { access: ROUTES.shadowLeakageReport },
      schema: {
        tags: ['shadow'],
        summary: 'Estimate revenue at risk per condition and missing MEAT element for a batch',
        body: BatchBody,
        security,
      },
    },
    (request) => services.shadow.leakageReport(tenantOf(request), request.body.notes),
  );

  app.post<{ Body: Intake }>(
    ROUTES.shadowIntake.url,
    {
      config: { access: ROUTES.shadowIntake },
      schema: {
        tags: ['shadow'],
        summary: 'Score and store one note, optionally linked to a certificate',
        body: IntakeBody,
        security,
      },
    },
    async (request, reply) =>
      reply.code(201).send(await services.shadow.intake(tenantOf(request), request.body)),
  );

  app.get<{ Querystring: Items }>(
    ROUTES.shadowItems.url,
    {
      config: { access: ROUTES.shadowItems },
      schema: {
        tags: ['shadow'],
        summary: 'List stored shadow items, newest first, with filters and cursor pagination',
        querystring: ItemsQuery,
        security,
      },
    },
    (request) =>
      services.shadow.listItems(tenantOf(request), itemFilterOf(request.query), {
        cursor: request.query.cursor,
        limit: numberOrUndefined(request.query.limit),
      }),
  );

  app.get<{ Params: { item_id: string } }>(
    ROUTES.shadowItem.url,
    {
      config: { access: ROUTES.shadowItem },
      schema: {
        tags: ['shadow'],
        summary: 'One stored shadow item with its full result',
        params: ItemIdParams,
        security,
      },
    },
    (request) => services.shadow.getItem(tenantOf(request), request.params.item_id),
  );

  app.get<{ Querystring: Range }>(
    ROUTES.shadowDashboard.url,
    {
      config: { access: ROUTES.shadowDashboard },
      schema: {
        tags: ['dashboards'],
        summary: 'Completeness, gaps, findings and value at risk over stored items',
        querystring: RangeQuery,
        security,
      },
    },
    (request) => services.dashboard.shadowDashboard(tenantOf(request), rangeOf(request.query)),
  );

  app.get<{ Querystring: RiskQuery }>(
    ROUTES.riskQueue.url,
    {
      config: { access: ROUTES.riskQueue },
      schema: {
        tags: ['dashboards'],
        summary: 'Stored items ranked by estimated value at risk, largest first',
        querystring: RiskQueueQuery,
        security,
      },
    },
    (request) =>
      services.dashboard.riskQueue(tenantOf(request), itemFilterOf(request.query), {
        cursor: request.query.cursor,
        limit: numberOrUndefined(request.query.limit),
      }),
  );

  app.get<{ Querystring: ExecutiveQuery }>(
    ROUTES.executiveSummary.url,
    {
      config: { access: ROUTES.executiveSummary },
      schema: {
        tags: ['dashboards'],
        summary: 'Volumes, completeness, top gaps, estimated leakage and certificate verification',
        querystring: ExecutiveSummaryQuery,
        security,
      },
    },
    (request) =>
      services.dashboard.executiveSummary(
        tenantOf(request),
        rangeOf(request.query),
        numberOrUndefined(request.query.verification_sample) ?? DEFAULT_VERIFICATION_SAMPLE,
      ),
  );

  app.get(
    ROUTES.getShadowAssumptions.url,
    {
      config: { access: ROUTES.getShadowAssumptions },
      schema: { tags: ['shadow'], summary: "The tenant's revenue assumptions", security },
    },
    (request) => services.shadow.getAssumptions(tenantOf(request)),
  );

  app.put<{ Body: Assumptions }>(
    ROUTES.putShadowAssumptions.url,
    {
      config: { access: ROUTES.putShadowAssumptions },
      schema: {
        tags: ['shadow'],
        summary: "Replace the tenant's revenue assumptions; omitted values take ruleset defaults",
        body: AssumptionsBody,
        security,
      },
    },
    (request) => services.shadow.putAssumptions(tenantOf(request), request.body),
  );

  app.post<{ Body: Roi }>(
    ROUTES.roiProjection.url,
    {
      config: { access: ROUTES.roiProjection },
      schema: {
        tags: ['analytics'],
        summary: 'Project annual value preserved and ROI of a documentation-integrity program',
        body: RoiBody,
        security,
      },
    },
    (request) => services.dashboard.roiProjection(tenantOf(request), request.body),
  );
}
