// Completes the OpenAPI document that @fastify/swagger generates from the route schemas. The
// generator lists "200 Default Response" for a route without a response schema and no error
// responses at all, and it marks every request body as required. The additions are made to
// the document only, so the serialization of responses stays as the route schemas define it.
import { ROUTES, type RouteAccess, type RouteId } from './route-table.ts';

/** The parts of an OpenAPI 3.1 operation that this module reads or changes. */
interface Operation {
  parameters?: unknown[];
  requestBody?: { required?: boolean };
  responses?: Record<string, Response>;
}

interface Response {
  description: string;
  content?: Record<string, { schema?: unknown }>;
}

/** The parts of an OpenAPI 3.1 document that this module reads. */
export interface OpenApiDocument {
  paths?: Record<string, Record<string, Operation | undefined> | undefined>;
}

/** Success statuses that each route returns. */
export const SUCCESS_STATUSES: Record<RouteId, readonly number[]> = {
  healthz: [200],
  readyz: [200],
  tenantJwks: [200],
  createTenant: [201],
  listTenants: [200],
  getTenant: [200],
  rotateKey: [201],
  revokeKey: [200],
  setRateLimit: [200],
  tenantLogKey: [200],
  latestCheckpoint: [200],
  publishCheckpoint: [200],
  checkpointAtSize: [200],
  consistencyProof: [200],
  ledgerVerification: [200],
  inclusionProof: [200],
  leafInclusionProof: [200],
  auditEvents: [200],
  issue: [201, 200],
  getCertificate: [200],
  queryCertificates: [200],
  verifyCertificate: [200],
  defenseBundle: [200],
  evidenceBundle: [200],
  shadowEvidenceDeficit: [200],
  shadowAnalyze: [201],
  shadowLeakageReport: [200],
  shadowIntake: [201],
  shadowItems: [200],
  shadowItem: [200],
  shadowDashboard: [200],
  riskQueue: [200],
  executiveSummary: [200],
  getShadowAssumptions: [200],
  putShadowAssumptions: [200],
  roiProjection: [200],
};

/** Routes whose request body may be left out. */
const OPTIONAL_BODY_ROUTES: readonly RouteId[] = ['queryCertificates', 'verifyCertificate'];

/** Error statuses that only some routes give, beyond those derived from the route's shape. */
const ROUTE_ERROR_STATUSES: Partial<Record<RouteId, readonly number[]>> = {
  createTenant: [409],
  revokeKey: [409],
  issue: [422, 429],
};

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'VALIDATION_FAILED or BODY_NOT_JSON: the request is invalid; details names each field',
  401: 'UNAUTHENTICATED: the bearer token is missing, malformed, expired or wrongly signed',
  403: "FORBIDDEN: the token's roles may not call this route, or it lacks a tenant",
  404: 'TENANT_NOT_FOUND or the named object is not found for the tenant',
  409: 'the request conflicts with the current state (TENANT_EXISTS, KEY_ACTIVE, KEY_ALREADY_REVOKED)',
  413: 'PAYLOAD_TOO_LARGE: the body exceeds CDIL_BODY_LIMIT_BYTES',
  415: 'UNSUPPORTED_MEDIA_TYPE: the body is not application/json',
  422: 'PHI_DETECTED or IDEMPOTENCY_KEY_REUSED',
  429: "RATE_LIMITED: the tenant's issuance limit for this minute is reached; see Retry-After",
  500: 'INTERNAL: an unexpected failure; the request id finds it in the logs',
  503: 'the database is busy or unavailable, the server is shutting down, or a required timestamp or signing key was not available; see Retry-After',
};

const SUCCESS_DESCRIPTIONS: Record<number, string> = {
  200: 'OK',
  201: 'Created',
};

/**
 * Returns the error statuses a route can give. 400 applies to a route with parameters or a body
 * to validate, 413 and 415 to a route that reads a body, 503 to every route because the server
 * returns 503 while it shuts down.
 */
export function errorStatusesOf(id: RouteId, route: RouteAccess, operation: Operation): number[] {
  const statuses = new Set<number>([500, 503]);
  if ((operation.parameters ?? []).length > 0 || operation.requestBody !== undefined) {
    statuses.add(400);
  }
  if (route.roles !== 'public') {
    statuses.add(401);
    statuses.add(403);
  }
  if (route.tenantScoped || route.url.includes(':')) {
    statuses.add(404);
  }
  if (route.method !== 'GET') {
    statuses.add(400);
    statuses.add(413);
    statuses.add(415);
  }
  for (const status of ROUTE_ERROR_STATUSES[id] ?? []) {
    statuses.add(status);
  }
  return [...statuses].sort((a, b) => a - b);
}

type Responses = Record<string, Response>;

/**
 * Replaces the generated responses of each route with its real success statuses, moving the
 * generated 200 schema to them, and adds its error responses with the registered Error schema.
 */
function completeOperation(id: RouteId, operation: Operation): void {
  const route: RouteAccess = ROUTES[id];
  const generated: Responses = operation.responses ?? {};
  const responses: Responses = {};
  for (const status of SUCCESS_STATUSES[id]) {
    const response = generated[status] ?? generated[200] ?? { description: '' };
    const description =
      response.description === 'Default Response' || response.description === ''
        ? (SUCCESS_DESCRIPTIONS[status] ?? 'Success')
        : response.description;
    responses[status] = { ...response, description };
  }
  for (const status of errorStatusesOf(id, route, operation)) {
    responses[status] = {
      description: ERROR_DESCRIPTIONS[status] ?? 'Error',
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
  }
  operation.responses = responses;
  if (OPTIONAL_BODY_ROUTES.includes(id) && operation.requestBody !== undefined) {
    operation.requestBody.required = false;
  }
}

/** Completes every route's operation in the generated document; see the file header. */
export function completeOpenApiDocument<T extends OpenApiDocument>(document: T): T {
  for (const [id, route] of Object.entries(ROUTES) as [RouteId, RouteAccess][]) {
    const path = route.url.replace(/:(\w+)/g, '{$1}');
    const method = route.method.toLowerCase() as Lowercase<RouteAccess['method']>;
    const operation = document.paths?.[path]?.[method];
    if (operation === undefined) {
      throw new Error(`OpenAPI document has no operation for ${route.method} ${path}`);
    }
    completeOperation(id, operation);
  }
  return document;
}

/** Names each shared schema in components.schemas by its $id (Certificate, Error, ...). */
export function componentNameOf(json: Record<string, unknown>, index: number): string {
  return typeof json.$id === 'string' ? json.$id : `def-${index}`;
}
