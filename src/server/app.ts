// Builds the HTTP server: logging, request ids, auth, schemas, OpenAPI and routes.
import { LogDestination } from './log-destination.ts';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Config } from '../config/config.ts';
import type { Services } from '../services/container.ts';
import { makeAuthHook, TokenVerifier } from './auth.ts';
import { describeFailure } from '../services/transparency-log.ts';
import { rejectionAuditWrite } from './audit-context.ts';
import { BackgroundAuditWriter, type AuditWritePolicy } from './audit-writer.ts';
import { handleNotFound, makeErrorHandler } from './errors.ts';
import { completeOpenApiDocument, componentNameOf, type OpenApiDocument } from './openapi.ts';
import { installBodyParsers } from './request-body.ts';
import { registerAuditRoutes } from './routes/audit.ts';
import { registerCertificateRoutes } from './routes/certificates.ts';
import { registerLogRoutes } from './routes/log.ts';
import { registerHealthRoutes } from './routes/health.ts';
import { registerShadowRoutes } from './routes/shadow.ts';
import { registerTenantRoutes } from './routes/tenants.ts';
import { CertificateSchema, ErrorSchema, VerificationReportSchema } from './schemas.ts';

export interface ServerOptions {
  /** Destination for JSON log lines; defaults to a LogDestination on stdout. */
  logStream?: { write(line: string): unknown };
  /** Overrides of DEFAULT_AUDIT_WRITE_POLICY, the limits of background audit writes. */
  auditWritePolicy?: Partial<AuditWritePolicy>;
}

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Paths removed from every log line: credentials and any request or response body. */
export const LOG_REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.body',
  'res.body',
  'body',
  'note_text',
  '*.note_text',
];

/**
 * Replies to connection-level errors (oversized headers, malformed requests) with the same JSON
 * error body as every other error, when the socket can still be written.
 */
function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  const body = JSON.stringify({
    error: {
      code: 'VALIDATION_FAILED',
      message: status === 431 ? 'request headers are too large' : 'request is malformed HTTP',
      request_id: randomUUID(),
    },
  });
  socket.end(
    `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export async function buildServer(
  config: Config,
  services: Services,
  options: ServerOptions = {},
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: { paths: LOG_REDACT_PATHS, censor: '[redacted]' },
      stream: options.logStream ?? new LogDestination(1),
      serializers: {
        req: (request: { method: string; url: string; id: string }) => ({
          method: request.method,
          url: request.url,
          reqId: request.id,
        }),
      },
    },
    requestIdHeader: false,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    },
    bodyLimit: config.bodyLimit,
    // One line per request, written by the onResponse hook below, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true } },
    return503OnClosing: true,
    clientErrorHandler: answerClientError,
  });

  installBodyParsers(app);
  app.addSchema(CertificateSchema);
  app.addSchema(VerificationReportSchema);
  app.addSchema(ErrorSchema);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'CDIL API',
        version: '1',
        description:
          'Clinical Documentation Integrity Layer: certify, verify and export AI-written clinical notes.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      },
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, index) => componentNameOf(json, index),
    },
    // The server configures OpenAPI 3.1 above, so the generator passes an openapiObject.
    transformObject: (documentObject) =>
      'openapiObject' in documentObject
        ? completeOpenApiDocument(documentObject.openapiObject as OpenApiDocument)
        : documentObject.swaggerObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.decorateRequest('auth', undefined);
  app.decorateRequest('auditEventIds', null);
  app.addHook(
    'onRequest',
    makeAuthHook(
      new TokenVerifier({
        secret: config.jwtSecret,
        issuer: config.jwtIssuer,
        audience: config.jwtAudience,
      }),
      (tenantId) => services.keyring.tenantExists(tenantId),
    ),
  );
  app.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? null,
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
        tenantId: request.auth?.tenantId,
        auditEventIds: request.auditEventIds ?? undefined,
      },
      'request completed',
    );
  });
  services.useLogger(app.log);
  const auditWriter = new BackgroundAuditWriter(app.log, options.auditWritePolicy);
  app.setErrorHandler(
    makeErrorHandler(
      (request, error) => rejectionAuditWrite(services.audit, request, error),
      auditWriter,
    ),
  );
  app.setNotFoundHandler(handleNotFound);

  registerHealthRoutes(app, services);
  registerTenantRoutes(app, services);
  registerCertificateRoutes(app, services);
  registerLogRoutes(app, services);
  registerAuditRoutes(app, services);
  registerShadowRoutes(app, services);
  let stopPublisher: () => Promise<void> = () => Promise.resolve();
  if (config.checkpointIntervalMs > 0) {
    const publisher = services.log.startPublisher(config.checkpointIntervalMs, {
      failed: (error, tenantId) => {
        app.log.error(
          { tenant_id: tenantId, error: describeFailure(error) },
          'checkpoint publication or timestamp failed; the publisher keeps retrying and logs again when the failure changes',
        );
      },
      recovered: (tenantId) => {
        app.log.info({ tenant_id: tenantId }, 'checkpoint publication recovered');
      },
    });
    stopPublisher = () => publisher.stop();
  }
  // Audit events still being written get a bounded time before the store closes. The
  // publisher's stop waits for its current cycle, which can wait for a database lock, so both
  // run at once: the audit wait, and its log of events not written, end within their bound.
  app.addHook('onClose', async () => {
    await Promise.all([auditWriter.drain(), stopPublisher()]);
  });
  await app.ready();
  return app;
}
