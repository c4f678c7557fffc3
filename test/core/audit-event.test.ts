// The cdil.audit-event.v1 format: canonical JSON out, strict parsing in.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalJson } from '../../src/core/canonical.ts';
import {
  auditEventJson,
  parseAuditEvent,
  requestIdForAudit,
  type AuditEvent,
} from '../../src/core/audit-event.ts';
import { AuditError } from '../../src/core/errors.ts';

function sampleEvent(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    format: 'cdil.audit-event.v1',
    event_id: '0b8f5a56-1c1e-4a53-9d0c-2f1a3e4b5c6d',
    tenant_id: 'hospital-a',
    occurred_at: '2026-11-05T14:30:00.000Z',
    action: 'certificate.verify',
    outcome: 'success',
    reason: null,
    actor_hash: 'a'.repeat(64),
    actor_roles: ['auditor'],
    channel: 'http',
    route: 'POST /v1/certificates/:certificate_id/verify',
    object_type: 'certificate',
    object_id: '3a1d8828-82d5-4847-85ad-0fb34481d828',
    request_id: null,
    ...overrides,
  };
}

function rejects(text: string, pattern: RegExp): void {
  assert.throws(
    () => parseAuditEvent(text),
    (error: unknown) =>
      error instanceof AuditError &&
      error.code === 'AUDIT_EVENT_MALFORMED' &&
      pattern.test(error.message),
  );
}

describe('audit event format', () => {
  test('JSON is canonical with sorted keys', () => {
    const text = auditEventJson(sampleEvent());
    const keys = Object.keys(JSON.parse(text) as object);
    assert.deepEqual(keys, [...keys].sort());
    assert.equal(keys.length, 14);
    // The route contains the only space: no whitespace between tokens.
    assert.doesNotMatch(text, /\n|": |, "|\{ /);
    assert.ok(text.startsWith('{"action":"certificate.verify","actor_hash":"aaaa'));
  });

  test('JSON equals the general RFC 8785 serializer for any object id and roles', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
        fc.array(fc.stringMatching(/^[a-z][a-z_]{0,10}$/), { maxLength: 4 }),
        (objectId, roles) => {
          const event = sampleEvent({ object_id: objectId, actor_roles: roles });
          const text = auditEventJson(event);
          assert.equal(text, canonicalJson(JSON.parse(text)));
          assert.equal(text, canonicalJson(event));
          assert.deepEqual(parseAuditEvent(text), event);
        },
      ),
    );
  });

  test('parse returns what was written', () => {
    const event = sampleEvent();
    assert.deepEqual(parseAuditEvent(auditEventJson(event)), event);
  });

  test('parse rejects non-canonical text', () => {
    const text = auditEventJson(sampleEvent());
    rejects(text.replace('{"action"', '{ "action"'), /canonical/);
    rejects(JSON.stringify(sampleEvent()), /canonical/);
  });

  test('parse rejects extra and missing fields', () => {
    const record = JSON.parse(auditEventJson(sampleEvent())) as Record<string, unknown>;
    rejects(JSON.stringify({ ...record, note_text: 'x' }), /unexpected note_text/);
    delete record.request_id;
    rejects(JSON.stringify(record), /missing request_id/);
  });

  test('parse rejects fields of the wrong form', () => {
    const cases: [Partial<AuditEvent>, RegExp][] = [
      [{ outcome: 'maybe' as never }, /outcome/],
      [{ channel: 'email' as never }, /channel/],
      [{ event_id: 'not-a-uuid' }, /event_id/],
      [{ occurred_at: '2026-11-05 14:30' }, /occurred_at/],
      [{ actor_hash: 'ABC' }, /actor_hash/],
      [{ actor_roles: ['Auditor'] }, /actor_roles/],
      [{ action: 'Verify' }, /action/],
      [{ object_id: null }, /both be set/],
      [{ request_id: 'enc-4711' }, /request_id/],
      [{ format: 'cdil.audit-event.v2' as never }, /format/],
    ];
    for (const [override, pattern] of cases) {
      const record = { ...sampleEvent(), ...override };
      const text = JSON.stringify(
        Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : 1))),
      );
      rejects(text, pattern);
      assert.throws(() => auditEventJson(record), AuditError);
    }
  });

  test('parse rejects what is not an object', () => {
    rejects('[1]', /not a JSON object/);
    rejects('{"action":', /not JSON/);
  });

  test('only UUID request ids are kept', () => {
    assert.equal(
      requestIdForAudit('6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f'),
      '6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f',
    );
    assert.equal(requestIdForAudit('MRN-1234567'), null);
    assert.equal(requestIdForAudit(undefined), null);
  });
});
