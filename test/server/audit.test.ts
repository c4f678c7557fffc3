// The audit trail over HTTP on the engine under test. It covers which requests record which
// events, that each event is a log leaf with a verifiable inclusion proof, and the listing API.
// It also covers requests whose tenant cannot be trusted and audit writes that fail.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AUDIT_ACTIONS, parseAuditEvent, type AuditEvent } from '../../src/core/audit-event.ts';
import { openCheckpoint, parseVerifierKey } from '../../src/core/checkpoint.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { fromBase64, fromHex, utf8Encode } from '../../src/core/encoding.ts';
import { leafHash, verifyInclusion } from '../../src/core/merkle.ts';
import { INTERNAL_CONTEXT, type AuditRecord } from '../../src/services/audit.ts';
import { AuditEventExistsError } from '../../src/storage/store.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';

interface Item {
  log_index: number;
  event: AuditEvent;
  event_json: string;
}

const REQUEST_ID = '6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f';

describe('audit trail over HTTP', () => {
  let t: TestApp;
  let clinician: string;
  let auditor: string;
  let certificateId: string;
  let subjectHash: string;

  const events = async (tenantId = 'alice'): Promise<Item[]> => {
    const token = tenantId === 'alice' ? auditor : await t.token('auditor', tenantId);
    const items: Item[] = [];
    let cursor: string | undefined;
    do {
      const response = await t.app.inject({
        method: 'GET',
        url: `/v1/audit-events?limit=500${cursor ? `&cursor=${cursor}` : ''}`,
        headers: bearer(token),
      });
      assert.equal(response.statusCode, 200, response.body);
      items.push(...(response.json().items as Item[]));
      cursor = response.json().next_cursor ?? undefined;
    } while (cursor);
    return items;
  };

  /** Runs a request and returns the audit events it added to alice's log. */
  const added = async (run: () => Promise<unknown>, tenantId = 'alice'): Promise<Item[]> => {
    const before = await events(tenantId);
    await run();
    return (await events(tenantId)).slice(before.length);
  };

  before(async () => {
    t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' });
    await t.services.tenants.create('alice');
    await t.services.tenants.create('bob');
    clinician = await t.token('clinician', 'alice');
    auditor = await t.token('auditor', 'alice');
    const keys = await t.services.keyring.get('alice');
    subjectHash = keys!.hashIdentifier('token_subject', 'test-user');
  });
  after(() => t.close());

  test('tenant creation is first leaf', async () => {
    const [first] = await events();
    assert.equal(first!.log_index, 0);
    assert.equal(first!.event.action, 'tenant.create');
    assert.equal(first!.event.object_type, 'tenant');
    assert.equal(first!.event.object_id, 'alice');
    assert.equal(first!.event.channel, 'internal');
    assert.equal(first!.event.actor_hash, null);
  });

  test('issuance event follows certificate leaf', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: { ...bearer(clinician), 'x-request-id': REQUEST_ID, 'idempotency-key': 'k-1' },
      payload: issueBody(),
    });
    assert.equal(response.statusCode, 201);
    certificateId = response.json().certificate.certificate_id;
    const row = await t.services.store.getCertificate('alice', certificateId);
    const issued = (await events()).find((item) => item.event.object_id === certificateId);
    assert.ok(issued, 'no issuance event');
    assert.equal(issued.log_index, row!.log_index! + 1);
    assert.deepEqual(issued.event, {
      format: 'cdil.audit-event.v1',
      event_id: issued.event.event_id,
      tenant_id: 'alice',
      occurred_at: row!.issued_at_utc,
      action: 'certificate.issue',
      outcome: 'success',
      reason: null,
      actor_hash: subjectHash,
      actor_roles: ['clinician'],
      channel: 'http',
      route: 'POST /v1/clinical/documentation',
      object_type: 'certificate',
      object_id: certificateId,
      request_id: REQUEST_ID,
    });
    assert.deepEqual(parseAuditEvent(issued.event_json), issued.event);
  });

  test('idempotent replay records nothing', async () => {
    const replay = await added(() =>
      t.app.inject({
        method: 'POST',
        url: '/v1/clinical/documentation',
        headers: { ...bearer(clinician), 'idempotency-key': 'k-1' },
        payload: issueBody(),
      }),
    );
    assert.deepEqual(replay, []);
  });

  test('events prove inclusion in checkpoint', async () => {
    const checkpoint = await t.services.log.publish('alice');
    const key = await t.services.log.keyInfo('alice');
    const opened = openCheckpoint(
      nodeCrypto,
      checkpoint.note,
      [parseVerifierKey(nodeCrypto, key.verifier_key)],
      'cdil.local/tenants/alice',
    ).checkpoint;
    const all = await events();
    assert.ok(all.length >= 2);
    for (const item of all) {
      const proof = await t.services.log.inclusionProof('alice', item.log_index);
      assert.equal(proof.tree_size, opened.size);
      const hashes = proof.proof.map((hash) => fromBase64(hash)!);
      const leaf = leafHash(nodeCrypto, utf8Encode(item.event_json));
      assert.ok(
        verifyInclusion(nodeCrypto, leaf, item.log_index, opened.size, hashes, opened.rootHash),
        `event at ${item.log_index}`,
      );
    }
  });

  test('event proofs served over HTTP', async () => {
    const checkpoint = await t.services.log.publish('alice');
    const all = await events();
    const proofOf = (index: number | string, query = '', token = auditor) =>
      t.app.inject({
        method: 'GET',
        url: `/v1/log/entries/${index}/inclusion-proof${query}`,
        headers: bearer(token),
      });

    for (const item of all.slice(0, 3)) {
      const response = await proofOf(item.log_index, `?tree_size=${checkpoint.tree_size}`);
      assert.equal(response.statusCode, 200, response.body);
      const body = response.json<{ tree_size: number; proof: string[]; checkpoint: string }>();
      assert.equal(body.tree_size, checkpoint.tree_size);
      assert.equal(body.checkpoint, checkpoint.note);
      const leaf = leafHash(nodeCrypto, utf8Encode(item.event_json));
      const hashes = body.proof.map((hash) => fromBase64(hash)!);
      assert.ok(
        verifyInclusion(
          nodeCrypto,
          leaf,
          item.log_index,
          checkpoint.tree_size,
          hashes,
          fromHex(checkpoint.root_hash),
        ),
        `event at ${item.log_index}`,
      );
    }

    const head = (await t.services.store.getLogHead('alice'))!.tree_size;
    const past = await proofOf(head + 5);
    assert.equal(past.statusCode, 404);
    assert.equal(past.json().error.code, 'LEAF_NOT_FOUND');
    assert.equal((await proofOf('-1')).statusCode, 400);
    assert.equal((await proofOf('1e3')).statusCode, 400);
    // Bob's auditor requesting leaf 0 gets a proof from bob's own log, not alice's.
    const bobs = await proofOf(0, '', await t.token('auditor', 'bob'));
    assert.equal(bobs.statusCode, 200, bobs.body);
    assert.match(bobs.json().checkpoint as string, /^cdil\.local\/tenants\/bob\n/);
  });

  test('verification records its outcome', async () => {
    const verify = (note: string) =>
      t.app.inject({
        method: 'POST',
        url: `/v1/certificates/${certificateId}/verify`,
        headers: bearer(auditor),
        payload: { note_text: note },
      });
    const [valid] = await added(() => verify(issueBody().note_text as string));
    assert.equal(valid!.event.action, 'certificate.verify');
    assert.equal(valid!.event.outcome, 'success');
    assert.equal(valid!.event.reason, null);
    assert.equal(valid!.event.object_id, certificateId);
    assert.deepEqual(valid!.event.actor_roles, ['auditor']);
    const [invalid] = await added(() => verify('some other note'));
    assert.equal(invalid!.event.outcome, 'failure');
    assert.equal(invalid!.event.reason, 'verification_failed');
  });

  test('both exports are recorded', async () => {
    for (const [path, action] of [
      ['defense-bundle', 'certificate.export_defense_bundle'],
      ['evidence-bundle.json', 'certificate.export_evidence'],
    ] as const) {
      const recorded = await added(async () => {
        const response = await t.app.inject({
          method: 'GET',
          url: `/v1/certificates/${certificateId}/${path}`,
          headers: bearer(auditor),
        });
        assert.equal(response.statusCode, 200);
      });
      assert.equal(recorded.length, 1, path);
      assert.equal(recorded[0]!.event.action, action);
      assert.equal(recorded[0]!.event.object_id, certificateId);
    }
  });

  test('requested checkpoint publication is recorded', async () => {
    await t.services.issuance.issue('alice', issueBody() as never);
    const recorded = await added(async () => {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/log/checkpoint',
        headers: bearer(auditor),
      });
      assert.equal(response.statusCode, 200);
      const size = response.json().tree_size as number;
      // The publication event is the first leaf after the checkpoint.
      const head = await t.services.store.getLogHead('alice');
      assert.equal(head!.tree_size, size + 1);
    });
    assert.equal(recorded.length, 1);
    assert.equal(recorded[0]!.event.action, 'log.checkpoint_publish');
    assert.equal(recorded[0]!.event.object_type, 'checkpoint');
    assert.equal(recorded[0]!.log_index, Number(recorded[0]!.event.object_id));
  });

  test('rejections recorded for token tenant', async () => {
    const cases = [
      {
        reason: 'forbidden',
        request: { method: 'GET' as const, url: '/v1/audit-events', token: clinician },
      },
      {
        reason: 'validation_failed',
        request: { method: 'GET' as const, url: '/v1/audit-events?limit=0', token: auditor },
      },
      {
        reason: 'cross_tenant_or_missing',
        request: {
          method: 'GET' as const,
          url: '/v1/certificates/00000000-0000-4000-8000-000000000000',
          token: auditor,
        },
      },
      {
        reason: 'forbidden',
        request: { method: 'GET' as const, url: '/v1/admin/tenants', token: auditor },
      },
    ];
    for (const { reason, request } of cases) {
      const recorded = await added(() =>
        t.app.inject({ method: request.method, url: request.url, headers: bearer(request.token) }),
      );
      assert.equal(recorded.length, 1, request.url);
      assert.equal(recorded[0]!.event.action, 'request.rejected');
      assert.equal(recorded[0]!.event.outcome, 'rejected');
      assert.equal(recorded[0]!.event.reason, reason, request.url);
      assert.equal(recorded[0]!.event.object_id, null);
      assert.equal(recorded[0]!.event.actor_hash, subjectHash);
    }
  });

  test('cross-tenant probe recorded for caller only', async () => {
    const aliceBefore = await events('alice');
    const bobAdded = await added(async () => {
      const response = await t.app.inject({
        method: 'POST',
        url: `/v1/certificates/${certificateId}/verify`,
        headers: bearer(await t.token('auditor', 'bob')),
        payload: {},
      });
      assert.equal(response.statusCode, 404);
    }, 'bob');
    assert.equal(bobAdded.length, 1);
    assert.equal(bobAdded[0]!.event.reason, 'cross_tenant_or_missing');
    assert.equal(bobAdded[0]!.event.tenant_id, 'bob');
    assert.equal(bobAdded[0]!.event.route, 'POST /v1/certificates/:certificate_id/verify');
    assert.equal((await events('alice')).length, aliceBefore.length);
  });

  test('unverified tenants reach structured log only', async () => {
    const logLines = t.logs.length;
    const forged = `${auditor.slice(0, -4)}AAAA`;
    const unknownTenant = await t.token('auditor', 'nobody');
    const noTenant = await t.token('auditor');
    const recorded = await added(async () => {
      for (const token of [forged, unknownTenant, noTenant]) {
        const response = await t.app.inject({
          method: 'GET',
          url: `/v1/certificates/${certificateId}`,
          headers: bearer(token),
        });
        assert.ok([401, 403, 404].includes(response.statusCode), String(response.statusCode));
      }
    });
    assert.deepEqual(recorded, []);
    const lines = t.logs.slice(logLines).map((line) => JSON.parse(line) as Record<string, unknown>);
    const reasons = lines.filter((line) => line.msg === 'request rejected').map((l) => l.reason);
    assert.deepEqual(reasons, ['auth_failed', 'cross_tenant_or_missing', 'forbidden']);
  });

  test('non-UUID request id not recorded', async () => {
    const [event] = await added(() =>
      t.app.inject({
        method: 'GET',
        url: `/v1/certificates/${certificateId}/defense-bundle`,
        headers: { ...bearer(auditor), 'x-request-id': 'enc-4711' },
      }),
    );
    assert.equal(event!.event.request_id, null);
  });

  test('request log line names events', async () => {
    const logLines = t.logs.length;
    const [event] = await added(() =>
      t.app.inject({
        method: 'GET',
        url: `/v1/certificates/${certificateId}/defense-bundle`,
        headers: bearer(auditor),
      }),
    );
    const completed = t.logs
      .slice(logLines)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.msg === 'request completed' && line.route !== '/v1/audit-events');
    assert.deepEqual(completed?.auditEventIds, [event!.event.event_id]);
  });

  test('API tenant creation records admin', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/admin/tenants',
      headers: bearer(await t.token('admin')),
      payload: { tenant_id: 'carol' },
    });
    assert.equal(response.statusCode, 201);
    const [first] = await events('carol');
    const keys = await t.services.keyring.get('carol');
    assert.equal(first!.log_index, 0);
    assert.equal(first!.event.action, 'tenant.create');
    assert.equal(first!.event.channel, 'http');
    assert.deepEqual(first!.event.actor_roles, ['admin']);
    assert.equal(first!.event.actor_hash, keys!.hashIdentifier('token_subject', 'test-user'));
  });

  test('concurrent events keep leaves dense', async () => {
    const before = (await events()).length;
    const responses = await Promise.all(
      Array.from({ length: 40 }, () =>
        t.app.inject({
          method: 'GET',
          url: `/v1/certificates/${certificateId}/evidence-bundle.json`,
          headers: bearer(auditor),
        }),
      ),
    );
    assert.ok(responses.every((response) => response.statusCode === 200));
    const all = await events();
    assert.equal(all.length, before + 40);
    assert.equal(new Set(all.map((item) => item.event.event_id)).size, all.length);
    // Every leaf of the log is a certificate or an audit event, each index exactly once.
    const head = await t.services.store.getLogHead('alice');
    const entries = await t.services.store.listLogEntries('alice', 0, head!.tree_size);
    assert.deepEqual(
      entries.map((entry) => entry.log_index),
      Array.from({ length: head!.tree_size }, (_, i) => i),
    );
  });

  test('repeated event fails only its own append', async () => {
    const audit = t.services.audit;
    const record: AuditRecord = {
      action: 'request.rejected',
      outcome: 'rejected',
      reason: 'forbidden',
    };
    const build = async () => (await audit.build('bob', INTERNAL_CONTEXT, [record], new Date()))!;
    const stored = await build();
    await audit.append('bob', INTERNAL_CONTEXT, stored);
    const fresh = await build();
    // Issued in the same turn of the event loop, the two appends first share a transaction.
    const repeated = audit.append('bob', INTERNAL_CONTEXT, stored).then(
      () => undefined,
      (error: unknown) => error,
    );
    const appended = audit.append('bob', INTERNAL_CONTEXT, fresh).then(
      (rows) => ({ rows, error: undefined as unknown }),
      (error: unknown) => ({ rows: [], error }),
    );
    const repeatedError = await repeated;
    assert.ok(repeatedError instanceof AuditEventExistsError, String(repeatedError));
    const { rows, error } = await appended;
    assert.equal(error, undefined);
    assert.equal(rows[0]?.event_id, fresh[0]!.event_id);
    assert.equal(await audit.isStored('bob', stored), true);
    assert.equal(await audit.isStored('bob', fresh), true);
    assert.equal(await audit.isStored('alice', fresh), false, 'stored for another tenant');
    const [other] = await build();
    assert.equal(await audit.isStored('bob', [other!]), false, 'never appended');
  });

  test('failed audit write handling', async () => {
    const audit = t.services.audit;
    const original = audit.append.bind(audit);
    // Not a store busy or unavailable error, so the rejection's event is not retried.
    audit.append = () => Promise.reject(new Error('audit store failed'));
    try {
      const forbidden = await t.app.inject({
        method: 'GET',
        url: '/v1/audit-events',
        headers: bearer(clinician),
      });
      assert.equal(forbidden.statusCode, 403);
      assert.ok(
        t.logs.some((line) => line.includes('audit event of a rejected request was not written')),
      );
      const verify = await t.app.inject({
        method: 'POST',
        url: `/v1/certificates/${certificateId}/verify`,
        headers: bearer(auditor),
        payload: {},
      });
      assert.equal(verify.statusCode, 500);
      assert.equal(verify.json().error.code, 'INTERNAL');
    } finally {
      audit.append = original;
    }
  });
});

describe('audit event listing', () => {
  let t: TestApp;
  let auditor: string;

  const list = (query: string) =>
    t.app.inject({ method: 'GET', url: `/v1/audit-events${query}`, headers: bearer(auditor) });

  before(async () => {
    t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' });
    await t.services.tenants.create('alice');
    auditor = await t.token('auditor', 'alice');
    for (let i = 0; i < 12; i++) {
      await t.services.issuance.issue('alice', issueBody({ note_text: `Note ${i}.` }) as never);
    }
  });
  after(() => t.close());

  test('pages in log order', async () => {
    const indexes: number[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const response = await list(`?limit=5${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(response.statusCode, 200);
      indexes.push(...response.json().items.map((item: Item) => item.log_index));
      cursor = response.json().next_cursor ?? undefined;
      pages += 1;
    } while (cursor);
    assert.equal(indexes.length, 13);
    assert.equal(pages, 3);
    assert.deepEqual(
      indexes,
      [...indexes].sort((a, b) => a - b),
    );
    // tenant.create at 0, then certificate and issuance event in turn.
    assert.deepEqual(indexes.slice(0, 3), [0, 2, 4]);
  });

  test('filters by action, outcome, time', async () => {
    const issued = (await list('?action=certificate.issue')).json().items as Item[];
    assert.equal(issued.length, 12);
    assert.ok(issued.every((item) => item.event.action === 'certificate.issue'));
    const rejected = (await list('?outcome=rejected')).json().items as Item[];
    assert.equal(rejected.length, 0);
    const middle = issued[6]!.event.occurred_at;
    const early = (await list(`?action=certificate.issue&to=${middle}`)).json().items as Item[];
    const late = (await list(`?action=certificate.issue&from=${middle}`)).json().items as Item[];
    assert.equal(early.length + late.length, 12);
    assert.ok(early.every((item) => item.event.occurred_at < middle));
    assert.ok(late.every((item) => item.event.occurred_at >= middle));
  });

  test('cursor bound to its filters', async () => {
    const first = (await list('?limit=2')).json();
    const reused = await list(`?limit=2&action=certificate.issue&cursor=${first.next_cursor}`);
    assert.equal(reused.statusCode, 400);
    assert.equal(reused.json().error.details[0].field, 'cursor');
  });

  test('invalid parameters name the field', async () => {
    for (const [query, field] of [
      ['?limit=0', 'limit'],
      ['?limit=501', 'limit'],
      ['?action=certificate.delete', 'action'],
      ['?outcome=maybe', 'outcome'],
      ['?from=yesterday', 'from'],
      ['?tenant_id=bob', 'tenant_id'],
      ['?cursor=not-a-cursor', 'cursor'],
    ]) {
      const response = await list(query!);
      assert.equal(response.statusCode, 400, query);
      assert.equal(response.json().error.details[0].field, field, query);
    }
  });

  test('unknown action and outcome list the allowed values', async () => {
    const action = (await list('?action=certificate.delete')).json().error;
    assert.equal(action.details.length, 1);
    assert.equal(action.details[0].message, `must be one of ${AUDIT_ACTIONS.join(', ')}`);
    assert.match(action.message, /^querystring field action must be one of certificate\.issue, /);
    const outcome = (await list('?outcome=maybe')).json().error;
    assert.equal(outcome.details.length, 1);
    assert.equal(outcome.details[0].message, 'must be one of success, failure, rejected');
  });
});
