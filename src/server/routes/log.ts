import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { Services } from '../../services/container.ts';
import {
  LEDGER_FINDING_KINDS,
  LEDGER_SUBJECTS,
  type LedgerFindingKind,
} from '../../services/ledger.ts';
import { recordForRequest } from '../audit-context.ts';
import { tenantOf } from '../auth.ts';
import { ROUTES } from '../route-table.ts';
import { CertificateIdParams, patternString, TenantIdParams } from '../schemas.ts';

const security = [{ bearer: [] }];

/** A tree size in a path or query string: a decimal integer below 2^53 without leading zeros. */
const TreeSize = patternString(
  '^(0|[1-9][0-9]{0,14})$',
  'must be an integer from 0 to 999999999999999 without leading zeros',
  { description: 'Tree size' },
);

const Checkpoint = Type.Object({
  tree_size: Type.Integer(),
  root_hash: Type.String({ description: 'Lowercase hex SHA-256 root of the Merkle tree' }),
  checkpoint: Type.String({ description: 'The signed checkpoint in signed-note text form' }),
  published_at: Type.String(),
  timestamp_token: Type.Union([Type.String(), Type.Null()], {
    description: 'RFC 3161 timestamp token over the checkpoint text, base64 DER',
  }),
});

const TreeSizeParams = Type.Object({ tree_size: TreeSize });
const LogIndexParams = Type.Object({ log_index: TreeSize });
const ConsistencyQuery = Type.Object(
  { from: TreeSize, to: TreeSize },
  { additionalProperties: false },
);
const InclusionQuery = Type.Object(
  { tree_size: Type.Optional(TreeSize) },
  { additionalProperties: false },
);

const InclusionResponse = Type.Object({
  log_index: Type.Integer(),
  tree_size: Type.Integer(),
  proof: Type.Array(Type.String(), { description: 'Audit path from leaf to root, base64' }),
  checkpoint: Type.String(),
  checkpoint_timestamp: Type.Union([Type.String(), Type.Null()], {
    description: 'RFC 3161 timestamp token over the checkpoint text, base64 DER',
  }),
});

const ConsistencyResponse = Type.Object({
  from_size: Type.Integer(),
  to_size: Type.Integer(),
  proof: Type.Array(Type.String()),
});

const LogKeyResponse = Type.Object({
  key_name: Type.String(),
  verifier_key: Type.String({ description: 'Signed-note verifier key: name+key id+key' }),
  public_key: Type.String({ description: 'Raw Ed25519 public key, base64' }),
});

const LedgerFindingSchema = Type.Object({
  kind: Type.Union(LEDGER_FINDING_KINDS.map((kind) => Type.Literal(kind))),
  subject: Type.Union(LEDGER_SUBJECTS.map((subject) => Type.Literal(subject))),
  log_index: Type.Optional(Type.Integer()),
  count: Type.Optional(Type.Integer()),
  certificate_id: Type.Optional(Type.String()),
  event_id: Type.Optional(Type.String()),
  chain_sequence: Type.Optional(Type.Integer()),
  tree_size: Type.Optional(Type.Integer()),
  node: Type.Optional(Type.Object({ level: Type.Integer(), index: Type.Integer() })),
  fields: Type.Optional(Type.Array(Type.String())),
  detail: Type.String(),
});

const LedgerReportSchema = Type.Object({
  tenant_id: Type.String(),
  ok: Type.Boolean({ description: 'True when there is no finding' }),
  tree_size: Type.Integer({ description: 'Log size when verification started' }),
  checked: Type.Object({
    leaves: Type.Integer(),
    certificates: Type.Integer(),
    audit_events: Type.Integer(),
    nodes: Type.Integer(),
    checkpoints: Type.Integer(),
    timestamp_tokens: Type.Integer({
      description: 'Stored RFC 3161 tokens verified against the configured TSA roots',
    }),
  }),
  not_checked: Type.Object({
    leaves_appended_during_run: Type.Integer(),
    checkpoints_published_during_run: Type.Integer(),
    timestamp_tokens_without_roots: Type.Integer({
      description: 'Stored RFC 3161 tokens not verified, because the server has no TSA roots',
    }),
  }),
  totals: Type.Object(
    Object.fromEntries(LEDGER_FINDING_KINDS.map((kind) => [kind, Type.Integer()])) as Record<
      LedgerFindingKind,
      ReturnType<typeof Type.Integer>
    >,
  ),
  findings: Type.Array(LedgerFindingSchema),
  findings_truncated: Type.Boolean(),
  started_at: Type.String(),
  duration_ms: Type.Integer(),
});

function checkpointBody(row: {
  tree_size: number;
  root_hash: string;
  note: string;
  published_at: string;
  timestamp_token: string | null;
}) {
  return {
    tree_size: row.tree_size,
    root_hash: row.root_hash,
    checkpoint: row.note,
    published_at: row.published_at,
    timestamp_token: row.timestamp_token,
  };
}

export function registerLogRoutes(app: FastifyInstance, services: Services): void {
  const log = services.log;
  app.get<{ Params: { tenant_id: string } }>(
    ROUTES.tenantLogKey.url,
    {
      config: { access: ROUTES.tenantLogKey },
      schema: {
        tags: ['log'],
        summary: "The key that signs the tenant's log checkpoints",
        params: TenantIdParams,
        response: { 200: LogKeyResponse },
      },
    },
    async (request, reply) => {
      const key = await log.keyInfo(request.params.tenant_id);
      void reply.header('cache-control', 'public, max-age=300');
      return key;
    },
  );
  app.get(
    ROUTES.latestCheckpoint.url,
    {
      config: { access: ROUTES.latestCheckpoint },
      schema: {
        tags: ['log'],
        summary: "The latest signed checkpoint of the tenant's log",
        response: { 200: Checkpoint },
        security,
      },
    },
    async (request) => checkpointBody(await log.latest(tenantOf(request))),
  );
  app.post(
    ROUTES.publishCheckpoint.url,
    {
      config: { access: ROUTES.publishCheckpoint },
      schema: {
        tags: ['log'],
        summary: 'Sign and publish a checkpoint of the log as it is now',
        response: { 200: Checkpoint },
        security,
      },
    },
    async (request) => {
      const tenantId = tenantOf(request);
      const checkpoint = await log.publish(tenantId);
      // The event becomes the next leaf, so the log is one leaf past this checkpoint. The
      // periodic publisher records nothing, so it signs that leaf once and stops.
      await recordForRequest(services.audit, request, tenantId, [
        {
          action: 'log.checkpoint_publish',
          outcome: 'success',
          object: { type: 'checkpoint', id: String(checkpoint.tree_size) },
        },
      ]);
      return checkpointBody(checkpoint);
    },
  );
  app.get<{ Params: Static<typeof TreeSizeParams> }>(
    ROUTES.checkpointAtSize.url,
    {
      config: { access: ROUTES.checkpointAtSize },
      schema: {
        tags: ['log'],
        summary: 'The checkpoint published at one tree size',
        params: TreeSizeParams,
        response: { 200: Checkpoint },
        security,
      },
    },
    async (request) =>
      checkpointBody(await log.checkpointAt(tenantOf(request), Number(request.params.tree_size))),
  );
  app.get<{ Querystring: Static<typeof ConsistencyQuery> }>(
    ROUTES.consistencyProof.url,
    {
      config: { access: ROUTES.consistencyProof },
      schema: {
        tags: ['log'],
        summary: 'Proof that the log at size `from` is a prefix of the log at size `to`',
        querystring: ConsistencyQuery,
        response: { 200: ConsistencyResponse },
        security,
      },
    },
    async (request) =>
      log.consistencyProof(tenantOf(request), Number(request.query.from), Number(request.query.to)),
  );
  app.post(
    ROUTES.ledgerVerification.url,
    {
      config: { access: ROUTES.ledgerVerification },
      schema: {
        tags: ['log'],
        summary:
          "Verify the tenant's whole ledger: every leaf, certificate, node, checkpoint and the head",
        response: { 200: LedgerReportSchema },
        security,
      },
    },
    async (request) => services.ledger.verify(tenantOf(request)),
  );
  app.get<{ Params: Static<typeof LogIndexParams>; Querystring: Static<typeof InclusionQuery> }>(
    ROUTES.leafInclusionProof.url,
    {
      config: { access: ROUTES.leafInclusionProof },
      schema: {
        tags: ['log'],
        summary:
          "Proof that leaf `log_index` (a certificate or an audit event) is in the tenant's log",
        params: LogIndexParams,
        querystring: InclusionQuery,
        response: { 200: InclusionResponse },
        security,
      },
    },
    async (request) =>
      log.leafInclusion(
        tenantOf(request),
        Number(request.params.log_index),
        request.query.tree_size === undefined ? undefined : Number(request.query.tree_size),
      ),
  );
  app.get<{ Params: { certificate_id: string }; Querystring: Static<typeof InclusionQuery> }>(
    ROUTES.inclusionProof.url,
    {
      config: { access: ROUTES.inclusionProof },
      schema: {
        tags: ['log'],
        summary: "Proof that the certificate is a leaf of the tenant's log",
        params: CertificateIdParams,
        querystring: InclusionQuery,
        response: { 200: InclusionResponse },
        security,
      },
    },
    async (request) =>
      log.certificateInclusion(
        tenantOf(request),
        request.params.certificate_id,
        request.query.tree_size === undefined ? undefined : Number(request.query.tree_size),
      ),
  );
}
