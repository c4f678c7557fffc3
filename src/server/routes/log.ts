import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { Services } from '../../services/container.ts';
import { recordForRequest } from '../audit-context.ts';
import { tenantOf } from '../auth.ts';
import { ROUTES } from '../route-table.ts';
import { CertificateIdParams, TenantIdParams } from '../schemas.ts';

const security = [{ bearer: [] }];

/** A tree size in a path or query string: a decimal integer below 2^53 without leading zeros. */
const TreeSize = Type.String({ pattern: '^(0|[1-9][0-9]{0,14})$', description: 'Tree size' });

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
