// Every route and the roles allowed to call it, in one table. The auth plugin enforces it and
// the tests iterate it, so a route cannot be added without deciding who may call it.

// `analyst` runs shadow-mode scoring and reads its dashboards. `auditor` may read the stored items
// and dashboards too, because they report certificate verification outcomes, but not score notes.
export const ROLES = ['clinician', 'auditor', 'admin', 'analyst'] as const;
export type Role = (typeof ROLES)[number];

export interface RouteAccess {
  method: 'GET' | 'POST' | 'PUT';
  url: string;
  /** Roles allowed, or 'public' for routes that take no token. */
  roles: readonly Role[] | 'public';
  /** Whether the route acts on one tenant's data, taken from the token. */
  tenantScoped: boolean;
}

export const ROUTES = {
  healthz: { method: 'GET', url: '/healthz', roles: 'public', tenantScoped: false },
  readyz: { method: 'GET', url: '/readyz', roles: 'public', tenantScoped: false },
  tenantJwks: {
    method: 'GET',
    url: '/v1/tenants/:tenant_id/jwks.json',
    roles: 'public',
    tenantScoped: false,
  },
  createTenant: { method: 'POST', url: '/v1/admin/tenants', roles: ['admin'], tenantScoped: false },
  listTenants: { method: 'GET', url: '/v1/admin/tenants', roles: ['admin'], tenantScoped: false },
  getTenant: {
    method: 'GET',
    url: '/v1/admin/tenants/:tenant_id',
    roles: ['admin'],
    tenantScoped: false,
  },
  rotateKey: {
    method: 'POST',
    url: '/v1/admin/tenants/:tenant_id/keys/rotate',
    roles: ['admin'],
    tenantScoped: false,
  },
  revokeKey: {
    method: 'POST',
    url: '/v1/admin/tenants/:tenant_id/keys/:key_id/revoke',
    roles: ['admin'],
    tenantScoped: false,
  },
  setRateLimit: {
    method: 'PUT',
    url: '/v1/admin/tenants/:tenant_id/rate-limit',
    roles: ['admin'],
    tenantScoped: false,
  },
  tenantLogKey: {
    method: 'GET',
    url: '/v1/tenants/:tenant_id/log-key',
    roles: 'public',
    tenantScoped: false,
  },
  latestCheckpoint: {
    method: 'GET',
    url: '/v1/log/checkpoint',
    roles: ['auditor'],
    tenantScoped: true,
  },
  publishCheckpoint: {
    method: 'POST',
    url: '/v1/log/checkpoint',
    roles: ['auditor'],
    tenantScoped: true,
  },
  checkpointAtSize: {
    method: 'GET',
    url: '/v1/log/checkpoints/:tree_size',
    roles: ['auditor'],
    tenantScoped: true,
  },
  consistencyProof: {
    method: 'GET',
    url: '/v1/log/consistency-proof',
    roles: ['auditor'],
    tenantScoped: true,
  },
  ledgerVerification: {
    method: 'POST',
    url: '/v1/log/verification',
    roles: ['auditor'],
    tenantScoped: true,
  },
  inclusionProof: {
    method: 'GET',
    url: '/v1/certificates/:certificate_id/inclusion-proof',
    roles: ['auditor'],
    tenantScoped: true,
  },
  leafInclusionProof: {
    method: 'GET',
    url: '/v1/log/entries/:log_index/inclusion-proof',
    roles: ['auditor'],
    tenantScoped: true,
  },
  auditEvents: {
    method: 'GET',
    url: '/v1/audit-events',
    roles: ['auditor'],
    tenantScoped: true,
  },
  issue: {
    method: 'POST',
    url: '/v1/clinical/documentation',
    roles: ['clinician'],
    tenantScoped: true,
  },
  getCertificate: {
    method: 'GET',
    url: '/v1/certificates/:certificate_id',
    roles: ['clinician', 'auditor'],
    tenantScoped: true,
  },
  queryCertificates: {
    method: 'POST',
    url: '/v1/certificates/query',
    roles: ['auditor'],
    tenantScoped: true,
  },
  verifyCertificate: {
    method: 'POST',
    url: '/v1/certificates/:certificate_id/verify',
    roles: ['auditor'],
    tenantScoped: true,
  },
  defenseBundle: {
    method: 'GET',
    url: '/v1/certificates/:certificate_id/defense-bundle',
    roles: ['auditor'],
    tenantScoped: true,
  },
  evidenceBundle: {
    method: 'GET',
    url: '/v1/certificates/:certificate_id/evidence-bundle.json',
    roles: ['auditor'],
    tenantScoped: true,
  },
  shadowEvidenceDeficit: {
    method: 'POST',
    url: '/v1/shadow/evidence-deficit',
    roles: ['analyst'],
    tenantScoped: true,
  },
  shadowAnalyze: {
    method: 'POST',
    url: '/v1/shadow/analyze',
    roles: ['analyst'],
    tenantScoped: true,
  },
  shadowLeakageReport: {
    method: 'POST',
    url: '/v1/shadow/leakage-report',
    roles: ['analyst'],
    tenantScoped: true,
  },
  shadowIntake: {
    method: 'POST',
    url: '/v1/shadow/intake',
    roles: ['analyst'],
    tenantScoped: true,
  },
  shadowItems: {
    method: 'GET',
    url: '/v1/shadow/items',
    roles: ['analyst', 'auditor'],
    tenantScoped: true,
  },
  shadowItem: {
    method: 'GET',
    url: '/v1/shadow/items/:item_id',
    roles: ['analyst', 'auditor'],
    tenantScoped: true,
  },
  shadowDashboard: {
    method: 'GET',
    url: '/v1/shadow/dashboard',
    roles: ['analyst', 'auditor'],
    tenantScoped: true,
  },
  riskQueue: {
    method: 'GET',
    url: '/v1/dashboard/risk-queue',
    roles: ['analyst', 'auditor'],
    tenantScoped: true,
  },
  executiveSummary: {
    method: 'GET',
    url: '/v1/dashboard/executive-summary',
    roles: ['analyst', 'auditor'],
    tenantScoped: true,
  },
  getShadowAssumptions: {
    method: 'GET',
    url: '/v1/shadow/assumptions',
    roles: ['analyst', 'auditor', 'admin'],
    tenantScoped: true,
  },
  putShadowAssumptions: {
    method: 'PUT',
    url: '/v1/shadow/assumptions',
    roles: ['analyst', 'admin'],
    tenantScoped: true,
  },
  roiProjection: {
    method: 'POST',
    url: '/v2/analytics/roi-projection',
    roles: ['analyst'],
    tenantScoped: true,
  },
} as const satisfies Record<string, RouteAccess>;

export type RouteId = keyof typeof ROUTES;
