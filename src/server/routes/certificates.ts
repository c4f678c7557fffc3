import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services/container.ts';
import { recordForRequest, auditContextOf } from '../audit-context.ts';
import { tenantOf } from '../auth.ts';
import { toUtcInstant } from '../date-time.ts';
import { ROUTES } from '../route-table.ts';
import {
  CertificateIdParams,
  IdempotencyHeaders,
  IssueBody,
  IssueResponse,
  QueryBody,
  QueryResponse,
  VerifyBody,
  type IssueBody as Issue,
  type QueryBody as Query,
} from '../schemas.ts';

const security = [{ bearer: [] }];

/** The audit object of a certificate the handler has already found in the caller's tenant. */
function certificate(certificateId: string): { type: 'certificate'; id: string } {
  return { type: 'certificate', id: certificateId };
}

interface IdParams {
  Params: { certificate_id: string };
}

export function registerCertificateRoutes(app: FastifyInstance, services: Services): void {
  app.post<{ Body: Issue; Headers: { 'idempotency-key'?: string } }>(
    ROUTES.issue.url,
    {
      config: { access: ROUTES.issue },
      schema: {
        tags: ['certificates'],
        summary: 'Certify a finalized clinical note',
        body: IssueBody,
        headers: IdempotencyHeaders,
        response: { 200: IssueResponse, 201: IssueResponse },
        security,
      },
    },
    async (request, reply) => {
      const outcome = await services.issuance.issue(
        tenantOf(request),
        request.body,
        request.headers['idempotency-key'],
        auditContextOf(request),
      );
      if (outcome.replayed) {
        void reply.header('idempotent-replayed', 'true');
      }
      return reply.code(outcome.replayed ? 200 : 201).send({
        certificate: outcome.certificate,
        replayed: outcome.replayed,
        phi_screening: outcome.phiScreening,
      });
    },
  );
  app.get<IdParams>(
    ROUTES.getCertificate.url,
    {
      config: { access: ROUTES.getCertificate },
      schema: {
        tags: ['certificates'],
        summary: 'One certificate',
        params: CertificateIdParams,
        response: { 200: { $ref: 'Certificate' } },
        security,
      },
    },
    (request) => services.certificates.get(tenantOf(request), request.params.certificate_id),
  );
  app.post<{ Body: Query }>(
    ROUTES.queryCertificates.url,
    {
      config: { access: ROUTES.queryCertificates },
      schema: {
        tags: ['certificates'],
        summary: 'List certificates in chain order with filters and cursor pagination',
        body: QueryBody,
        response: { 200: QueryResponse },
        security,
      },
    },
    (request) => {
      const body = request.body ?? {};
      return services.certificates.query(
        tenantOf(request),
        {
          issuedFrom: toUtcInstant('issued_from', body.issued_from),
          issuedTo: toUtcInstant('issued_to', body.issued_to),
          modelVersion: body.model_version,
          governancePolicyVersion: body.governance_policy_version,
          humanReviewed: body.human_reviewed,
        },
        { cursor: body.cursor, limit: body.limit },
      );
    },
  );
  app.post<IdParams & { Body: { note_text?: string } | null }>(
    ROUTES.verifyCertificate.url,
    {
      config: { access: ROUTES.verifyCertificate },
      schema: {
        tags: ['certificates'],
        summary: 'Verify a stored certificate, optionally against note text',
        params: CertificateIdParams,
        body: VerifyBody,
        response: { 200: { $ref: 'VerificationReport' } },
        security,
      },
    },
    async (request) => {
      const tenantId = tenantOf(request);
      const certificateId = request.params.certificate_id;
      const report = await services.certificates.verify(
        tenantId,
        certificateId,
        request.body?.note_text,
      );
      await recordForRequest(services.audit, request, tenantId, [
        report.valid
          ? { action: 'certificate.verify', outcome: 'success', object: certificate(certificateId) }
          : {
              action: 'certificate.verify',
              outcome: 'failure',
              reason: 'verification_failed',
              object: certificate(certificateId),
            },
      ]);
      return { ...report, verified_at: new Date().toISOString() };
    },
  );
  app.get<IdParams>(
    ROUTES.defenseBundle.url,
    {
      config: { access: ROUTES.defenseBundle },
      schema: {
        tags: ['export'],
        summary: 'Defense bundle ZIP for offline verification',
        params: CertificateIdParams,
        security,
      },
    },
    async (request, reply) => {
      const tenantId = tenantOf(request);
      const { zip } = await services.certificates.defenseBundle(
        tenantId,
        request.params.certificate_id,
      );
      await recordForRequest(services.audit, request, tenantId, [
        {
          action: 'certificate.export_defense_bundle',
          outcome: 'success',
          object: certificate(request.params.certificate_id),
        },
      ]);
      return reply
        .type('application/zip')
        .header(
          'content-disposition',
          `attachment; filename="cdil-${request.params.certificate_id}.zip"`,
        )
        .send(Buffer.from(zip));
    },
  );
  app.get<IdParams>(
    ROUTES.evidenceBundle.url,
    {
      config: { access: ROUTES.evidenceBundle },
      schema: {
        tags: ['export'],
        summary: 'The defense bundle evidence as one JSON document',
        params: CertificateIdParams,
        security,
      },
    },
    async (request) => {
      const tenantId = tenantOf(request);
      const bundle = await services.certificates.evidenceBundle(
        tenantId,
        request.params.certificate_id,
      );
      await recordForRequest(services.audit, request, tenantId, [
        {
          action: 'certificate.export_evidence',
          outcome: 'success',
          object: certificate(request.params.certificate_id),
        },
      ]);
      return bundle;
    },
  );
}
