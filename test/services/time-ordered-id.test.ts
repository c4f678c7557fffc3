// Certificate, audit event and shadow item identifiers are UUID version 7: their first 48 bits
// are the issue time in milliseconds, so they sort by time and index inserts stay at the right
// edge of each unique index.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { timeOrderedUuid } from '../../src/services/time-ordered-id.ts';
import { issueBody, startTestApp, type TestApp } from '../helpers/app.ts';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Reads the millisecond time from the first 48 bits of a UUID. */
function uuidTime(uuid: string): number {
  return Number.parseInt(uuid.slice(0, 8) + uuid.slice(9, 13), 16);
}

describe('timeOrderedUuid', () => {
  test('writes time, version and variant', () => {
    for (const time of [
      0,
      1,
      0xffff_ffff,
      0x1_0000_0000,
      Date.parse('2026-12-05T09:00:00.123Z'),
      2 ** 48 - 1,
    ]) {
      const id = timeOrderedUuid(time);
      assert.match(id, V7, id);
      assert.equal(uuidTime(id), time, id);
    }
  });

  test('sorts by time, unique within a millisecond', () => {
    const times = [
      1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_255, 1_700_000_000_256, 1_800_000_000_000,
    ];
    const ids = times.map((time) => timeOrderedUuid(time));
    assert.deepEqual([...ids].sort(), ids);
    // 2,000 ids span several refills of the random buffer.
    const sameMs = new Set(Array.from({ length: 2000 }, () => timeOrderedUuid(1_700_000_000_000)));
    assert.equal(sameMs.size, 2000);
  });

  test('randomizes every digit after the time', () => {
    const seen = Array.from({ length: 36 }, () => new Set<string>());
    for (let i = 0; i < 4000; i++) {
      const id = timeOrderedUuid(5);
      for (let j = 0; j < id.length; j++) {
        seen[j]!.add(id[j]!);
      }
    }
    // Position 14 is the version and position 19 the variant, which leaves 4 values. The other 18
    // random digits each take all 16 values in 4,000 draws.
    const random = [15, 16, 17, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35];
    for (const position of random) {
      assert.equal(seen[position]!.size, 16, `hex digit ${position}`);
    }
    assert.deepEqual([...seen[14]!], ['7']);
    assert.deepEqual([...seen[19]!].sort(), ['8', '9', 'a', 'b']);
  });

  test('rejects times outside 48 bits', () => {
    for (const time of [-1, 2 ** 48, 1.5, Number.NaN]) {
      assert.throws(() => timeOrderedUuid(time), RangeError, String(time));
    }
  });
});

describe('issued identifiers', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
    await t.services.tenants.create('uuid-ward');
  });
  after(async () => {
    await t?.close();
  });

  test('certificate and event ids carry their time', async () => {
    const certificates = [];
    for (let i = 0; i < 3; i++) {
      const outcome = await t.services.issuance.issue(
        'uuid-ward',
        issueBody({ note_text: `Note ${i}.` }) as never,
      );
      certificates.push(outcome.certificate);
    }
    for (const certificate of certificates) {
      assert.match(certificate.certificate_id, V7);
      assert.equal(uuidTime(certificate.certificate_id), Date.parse(certificate.issued_at_utc));
    }
    const events = await t.services.store.listAuditEvents('uuid-ward', {}, -1, 100);
    assert.ok(events.length >= 4, `${events.length} audit events`);
    for (const event of events) {
      assert.match(event.event_id, V7);
      assert.equal(uuidTime(event.event_id), Date.parse(event.occurred_at));
    }
  });
});
