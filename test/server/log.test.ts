// The per-tenant Merkle log over HTTP: checkpoints, inclusion and consistency proofs, checked
// with the core verifier against the published log key, on either storage engine.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openCheckpoint, parseVerifierKey, type Checkpoint } from '../../src/core/checkpoint.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { fromBase64, utf8Encode } from '../../src/core/encoding.ts';
import { leafHash, verifyConsistency, verifyInclusion } from '../../src/core/merkle.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';

interface CheckpointBody {
  tree_size: number;
  root_hash: string;
  checkpoint: string;
}

describe('tenant Merkle log over HTTP', () => {
  let t: TestApp;
  let auditor: string;
  let logKey: string;
  /** Log size after the first certificates: the size of the first checkpoint. */
  let initialSize: number;
  const issued: { id: string; message: string }[] = [];

  const get = (url: string, token = auditor) =>
    t.app.inject({ method: 'GET', url, headers: bearer(token) });

  const issueMany = async (count: number) => {
    for (let i = 0; i < count; i++) {
      const { certificate } = await t.services.issuance.issue(
        'alice',
        issueBody({ note_text: `Log note ${issued.length}: stable.` }) as never,
      );
      const row = await t.services.store.getCertificate('alice', certificate.certificate_id);
      issued.push({ id: certificate.certificate_id, message: row!.signed_message });
    }
  };

  const open = (body: CheckpointBody): Checkpoint =>
    openCheckpoint(
      nodeCrypto,
      body.checkpoint,
      [parseVerifierKey(nodeCrypto, logKey)],
      'cdil.local/tenants/alice',
    ).checkpoint;

  before(async () => {
    t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' });
    await t.services.tenants.create('alice');
    await t.services.tenants.create('bob');
    auditor = await t.token('auditor', 'alice');
    await issueMany(11);
    initialSize = (await t.services.store.getLogHead('alice'))!.tree_size;
    const key = await t.app.inject({ method: 'GET', url: '/v1/tenants/alice/log-key' });
    assert.equal(key.statusCode, 200);
    logKey = key.json().verifier_key;
  });
  after(() => t.close());

  test('the log key is public and names the tenant log', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/tenants/alice/log-key' });
    assert.equal(response.json().key_name, 'cdil.local/tenants/alice');
    assert.match(logKey, /^cdil\.local\/tenants\/alice\+[0-9a-f]{8}\+/);
    const missing = await t.app.inject({ method: 'GET', url: '/v1/tenants/nobody/log-key' });
    assert.equal(missing.statusCode, 404);
  });

  test('the checkpoint is signed by the log key and covers every certificate', async () => {
    const response = await get('/v1/log/checkpoint');
    assert.equal(response.statusCode, 200);
    const body = response.json<CheckpointBody>();
    const checkpoint = open(body);
    assert.equal(checkpoint.size, body.tree_size);
    assert.equal(Buffer.from(checkpoint.rootHash).toString('hex'), body.root_hash);
    assert.ok(checkpoint.size >= issued.length);
  });

  test('every certificate has an inclusion proof that verifies against its checkpoint', async () => {
    for (const [position, certificate] of issued.entries()) {
      const response = await get(`/v1/certificates/${certificate.id}/inclusion-proof`);
      assert.equal(response.statusCode, 200, response.body);
      const proof = response.json();
      const checkpoint = open({ ...proof, root_hash: '' });
      const leaf = leafHash(nodeCrypto, utf8Encode(certificate.message));
      const hashes = proof.proof.map((hash: string) => fromBase64(hash)!);
      assert.ok(
        verifyInclusion(
          nodeCrypto,
          leaf,
          proof.log_index,
          proof.tree_size,
          hashes,
          checkpoint.rootHash,
        ),
        `certificate ${position}`,
      );
      // The same proof does not hold for the neighbouring leaf.
      const other = leafHash(
        nodeCrypto,
        utf8Encode(issued[(position + 1) % issued.length]!.message),
      );
      assert.ok(
        !verifyInclusion(
          nodeCrypto,
          other,
          proof.log_index,
          proof.tree_size,
          hashes,
          checkpoint.rootHash,
        ),
      );
    }
  });

  test('a published checkpoint stays available by size, and old sizes get consistency proofs', async () => {
    const first = (await get('/v1/log/checkpoint')).json<CheckpointBody>();
    await issueMany(6);
    const published = await t.app.inject({
      method: 'POST',
      url: '/v1/log/checkpoint',
      headers: bearer(auditor),
    });
    assert.equal(published.statusCode, 200);
    const second = published.json<CheckpointBody>();
    assert.ok(second.tree_size > first.tree_size);

    const again = await get(`/v1/log/checkpoints/${first.tree_size}`);
    assert.equal(again.statusCode, 200);
    assert.equal(again.json().checkpoint, first.checkpoint);

    const response = await get(
      `/v1/log/consistency-proof?from=${first.tree_size}&to=${second.tree_size}`,
    );
    assert.equal(response.statusCode, 200, response.body);
    const hashes = response.json().proof.map((hash: string) => fromBase64(hash)!);
    const oldRoot = open(first).rootHash;
    const newRoot = open(second).rootHash;
    assert.ok(
      verifyConsistency(nodeCrypto, first.tree_size, second.tree_size, oldRoot, newRoot, hashes),
    );
    assert.ok(
      !verifyConsistency(nodeCrypto, first.tree_size, second.tree_size, newRoot, newRoot, hashes),
    );

    // An inclusion proof against the older checkpoint verifies against that root.
    const old = await get(
      `/v1/certificates/${issued[2]!.id}/inclusion-proof?tree_size=${first.tree_size}`,
    );
    assert.equal(old.statusCode, 200);
    assert.equal(old.json().tree_size, first.tree_size);
  });

  test('bad sizes are refused clearly', async () => {
    const head = (await get('/v1/log/checkpoint')).json<CheckpointBody>();
    const cases = [
      `/v1/log/consistency-proof?from=5&to=3`,
      `/v1/log/consistency-proof?from=1&to=${head.tree_size + 100}`,
      `/v1/log/consistency-proof?from=01&to=3`,
      `/v1/log/consistency-proof?from=-1&to=3`,
      `/v1/log/consistency-proof?from=1`,
      // The first checkpoint was published before this certificate existed.
      `/v1/certificates/${issued[15]!.id}/inclusion-proof?tree_size=${initialSize}`,
    ];
    for (const url of cases) {
      const response = await get(url);
      assert.equal(response.statusCode, 400, url);
      assert.equal(response.json().error.code, 'VALIDATION_FAILED', url);
    }
    const unknown = await get(`/v1/certificates/${issued[0]!.id}/inclusion-proof?tree_size=7`);
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json().error.code, 'CHECKPOINT_NOT_FOUND');
    const missing = await get('/v1/log/checkpoints/7');
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, 'CHECKPOINT_NOT_FOUND');
  });

  test("another tenant's certificate has no proof in this tenant's log", async () => {
    const bobAuditor = await t.token('auditor', 'bob');
    const response = await get(`/v1/certificates/${issued[0]!.id}/inclusion-proof`, bobAuditor);
    assert.equal(response.statusCode, 404);
    assert.equal(response.json().error.code, 'CERTIFICATE_NOT_FOUND');
    const bobCheckpoint = (await get('/v1/log/checkpoint', bobAuditor)).json<CheckpointBody>();
    // Bob's log holds only Bob's audit events: his tenant's creation and the rejected request.
    const events = (await get('/v1/audit-events', bobAuditor)).json().items;
    assert.equal(bobCheckpoint.tree_size, events.length);
    assert.deepEqual(
      events.map((item: { event: { action: string } }) => item.event.action),
      ['tenant.create', 'request.rejected'],
    );
    assert.equal(events[1].event.reason, 'cross_tenant_or_missing');
    assert.throws(() => open(bobCheckpoint));
  });

  test('the periodic publisher signs grown logs once per size', async () => {
    // Publishing through the service records no audit event, so the log stops at this size.
    const before = await t.services.log.publish('alice');
    await issueMany(1);
    assert.equal(await t.services.log.publishGrown(), 1);
    assert.equal(await t.services.log.publishGrown(), 0);
    const after = (await get('/v1/log/checkpoint')).json<CheckpointBody>();
    // One leaf for the certificate and one for its issuance event.
    assert.equal(after.tree_size, before.tree_size + 2);
  });
});
