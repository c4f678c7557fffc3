// Builds the HTTP server: logging, request ids, auth, schemas, OpenAPI and routes.
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Config } from '../config/config.ts';
import type { Services } from '../services/container.ts';
import { makeAuthHook, TokenVerifier } from './auth.ts';
import { handleError, handleNotFound } from './errors.ts';
import { registerCertificateRoutes } from './routes/certificates.ts';
import { registerHealthRoutes } from './routes/health.ts';
import { registerShadowRoutes } from './routes/shadow.ts';
import { registerTenantRoutes } from './routes/tenants.ts';
import { CertificateSchema, ErrorSchema, VerificationReportSchema } from './schemas.ts';

export interface ServerOptions {
  /** Destination for JSON log lines; defaults to stdout. */
  logStream?: NodeJS.WritableStream;
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

export async function buildServer(
  config: Config,
  services: Services,
  options: ServerOptions = {},
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: { paths: LOG_REDACT_PATHS, censor: '[redacted]' },
      stream: options.logStream,
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
    disableRequestLogging: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true } },
    return503OnClosing: true,
  });

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
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.decorateRequest('auth', undefined);
  app.addHook(
    'onRequest',
    makeAuthHook(
      new TokenVerifier({
        secret: config.jwtSecret,
        issuer: config.jwtIssuer,
        audience: config.jwtAudience,
      }),
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
      },
      'request completed',
    );
  });
  app.setErrorHandler(handleError);
  app.setNotFoundHandler(handleNotFound);

  registerHealthRoutes(app, services);
  registerTenantRoutes(app, services);
  registerCertificateRoutes(app, services);
  registerShadowRoutes(app, services);
  await app.ready();
  return app;
}
