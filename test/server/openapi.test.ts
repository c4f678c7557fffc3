// Ties the OpenAPI document to the server: every route is called with a valid request, and the
// success status it returns must be the one the document declares.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { ROLES, ROUTES, type RouteAccess, type RouteId } from '../../src/server/route-table.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { ROI_INPUTS } from '../helpers/shadow.ts';

interface Operation {
  requestBody?: { required?: boolean };
  responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }>;
}

const NOTE = 'ASSESSMENT: COPD, stable. PLAN: continue inhaler.';

describe('OpenAPI document', () => {
  let t: TestApp;
  let token: string;
  let certificateId: string;
  let retiredKeyId: string;
  let itemId: string;
  let treeSize: number;
  let paths: Record<string, Record<string, Operation>>;

  const call = (options: InjectOptions) =>
    t.app.inject({ ...options, headers: { ...bearer(token), ...options.headers } });

  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('alice');
    token = await t.token([...ROLES], 'alice');
    const issued = await t.services.issuance.issue('alice', issueBody() as never);
    certificateId = issued.certificate.certificate_id;
    retiredKeyId = (await t.services.tenants.rotateKey('alice')).previous_key.key_id;
    const intake = await call({
      method: 'POST',
      url: '/v1/shadow/intake',
      payload: { note_text: NOTE },
    });
    itemId = intake.json().item_id;
    treeSize = (await call({ method: 'POST', url: '/v1/log/checkpoint' })).json().tree_size;
    paths = (await t.app.inject({ url: '/docs/json' })).json().paths;
  });
  after(() => t.close());

  /** A valid request for each route, so that the route returns a success status. */
  const requests: Record<RouteId, () => InjectOptions[]> = {
    healthz: () => [{}],
    readyz: () => [{}],
    tenantJwks: () => [{}],
    createTenant: () => [{ payload: { tenant_id: 'openapi-tenant' } }],
    listTenants: () => [{}],
    getTenant: () => [{}],
    rotateKey: () => [{}],
    revokeKey: () => [{ payload: { reason: 'superseded' } }],
    setRateLimit: () => [{ payload: { requests_per_minute: null } }],
    tenantLogKey: () => [{}],
    latestCheckpoint: () => [{}],
    publishCheckpoint: () => [{}],
    checkpointAtSize: () => [{}],
    consistencyProof: () => [{ query: { from: '1', to: String(treeSize) } }],
    ledgerVerification: () => [{}],
    inclusionProof: () => [{}],
    leafInclusionProof: () => [{}],
    auditEvents: () => [{}],
    // A new certificate, then a replay of the same request with its idempotency key.
    issue: () => [
      { payload: issueBody(), headers: { 'idempotency-key': 'openapi-replay' } },
      { payload: issueBody(), headers: { 'idempotency-key': 'openapi-replay' } },
    ],
    getCertificate: () => [{}],
    queryCertificates: () => [{}, { payload: { limit: 1 } }],
    verifyCertificate: () => [{}, { payload: { note_text: issueBody().note_text as string } }],
    defenseBundle: () => [{}],
    evidenceBundle: () => [{}],
    shadowEvidenceDeficit: () => [{ payload: { note_text: NOTE } }],
    shadowAnalyze: () => [{ payload: { notes: [{ note_text: NOTE }] } }],
    shadowLeakageReport: () => [{ payload: { notes: [{ note_text: NOTE }] } }],
    shadowIntake: () => [{ payload: { note_text: NOTE } }],
    shadowItems: () => [{}],
    shadowItem: () => [{}],
    shadowDashboard: () => [{}],
    riskQueue: () => [{}],
    executiveSummary: () => [{}],
    getShadowAssumptions: () => [{}],
    putShadowAssumptions: () => [{ payload: {} }],
    roiProjection: () => [{ payload: ROI_INPUTS }],
  };

  const urlOf = (route: RouteAccess) =>
    route.url
      .replace(':tenant_id', 'alice')
      .replace(':certificate_id', certificateId)
      .replace(':key_id', retiredKeyId)
      .replace(':tree_size', String(treeSize))
      .replace(':log_index', '0')
      .replace(':item_id', itemId);

  for (const [id, route] of Object.entries(ROUTES) as [RouteId, RouteAccess][]) {
    const path = route.url.replace(/:(\w+)/g, '{$1}');
    const method = route.method.toLowerCase();

    test(`${id} declares the success status it returns`, async () => {
      const returned = new Set<number>();
      for (const options of requests[id]()) {
        const response = await call({ method: route.method, url: urlOf(route), ...options });
        assert.ok(response.statusCode < 300, `${response.statusCode} ${response.body}`);
        returned.add(response.statusCode);
      }
      const declared = Object.keys(paths[path]![method]!.responses)
        .map(Number)
        .filter((status) => status < 300);
      assert.deepEqual(
        declared.sort((a, b) => a - b),
        [...returned].sort((a, b) => a - b),
      );
    });

    test(`${id} declares its errors with the Error schema`, () => {
      const responses = paths[path]![method]!.responses;
      const errors = Object.keys(responses).filter((status) => Number(status) >= 400);
      assert.ok(errors.includes('503'), 'every route may answer 503 while the server stops');
      if (route.roles !== 'public') {
        assert.ok(errors.includes('401'), '401 missing');
        assert.ok(errors.includes('403'), '403 missing');
      }
      if (route.tenantScoped) {
        assert.ok(errors.includes('404'), '404 TENANT_NOT_FOUND missing');
      }
      if (route.method !== 'GET') {
        assert.ok(errors.includes('415'), '415 missing');
      }
      for (const status of errors) {
        const schema = responses[status]!.content?.['application/json']?.schema;
        assert.equal(schema?.$ref, '#/components/schemas/Error', status);
      }
    });
  }

  test('query and verify bodies are optional', () => {
    assert.equal(paths['/v1/certificates/query']!.post!.requestBody?.required, false);
    assert.equal(
      paths['/v1/certificates/{certificate_id}/verify']!.post!.requestBody?.required,
      false,
    );
    assert.equal(paths['/v1/clinical/documentation']!.post!.requestBody?.required, true);
  });

  test('error schema is the registered one', async () => {
    const document = (await t.app.inject({ url: '/docs/json' })).json();
    const error = document.components.schemas.Error;
    assert.deepEqual(Object.keys(error.properties), ['error']);
    assert.deepEqual(Object.keys(error.properties.error.properties).sort(), [
      'code',
      'details',
      'message',
      'request_id',
    ]);
  });
});
