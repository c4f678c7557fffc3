// Several bundles verified at once on worker threads: verdicts per bundle in input order and
// an exit status that reports the worst outcome.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { BundleFile, LogBundleFile, verifyBundle } from '../../src/core/bundle.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { BundleError } from '../../src/core/errors.ts';
import {
  EXIT_INVALID,
  EXIT_UNUSABLE,
  EXIT_VALID,
  runVerifyMany,
} from '../../src/cli/commands/verify.ts';
import type { VerificationReport } from '../../src/core/verify/verify.ts';
import { BundleVerifierPool } from '../../src/services/verify-pool.ts';
import {
  createBundleFixture,
  packBundle,
  readJsonFile,
  resignBundle,
  unpackBundle,
  withFile,
  withoutLog,
  type BundleFixture,
} from '../helpers/bundle.ts';

let fixture: BundleFixture;
let genuine: string;
let tampered: string;
let junk: string;
let jwks: string;

before(async () => {
  fixture = await createBundleFixture();
  genuine = join(fixture.dir, 'genuine.zip');
  tampered = join(fixture.dir, 'tampered.zip');
  junk = join(fixture.dir, 'junk.zip');
  jwks = join(fixture.dir, 'jwks.json');
  writeFileSync(genuine, fixture.zip);
  const files = unpackBundle(fixture.zip);
  writeFileSync(tampered, packBundle(withFile(files, BundleFile.readme, 'forged readme')));
  writeFileSync(junk, 'not a zip');
  writeFileSync(jwks, JSON.stringify(fixture.jwks));
});
after(() => fixture.close());

async function run(paths: string[], pinned = true) {
  const lines: string[] = [];
  const status = await runVerifyMany(
    paths,
    { trustedKeys: pinned ? jwks : undefined, jobs: '2' },
    (text) => lines.push(text),
    () => undefined,
  );
  return { status, lines };
}

test('all genuine bundles give exit 0', async () => {
  const { status, lines } = await run([genuine, genuine, genuine]);
  assert.equal(status, EXIT_VALID);
  assert.equal(lines.filter((line) => line.startsWith('VALID')).length, 3);
});

test('pinned keys give no key note', async () => {
  const { lines } = await run([genuine, genuine]);
  assert.match(lines[0]!, /^VALID\s+\S+genuine\.zip$/);
  assert.equal(lines.filter((line) => line.startsWith('NOTE:')).length, 0);
});

test('unpinned valid bundles are marked', async () => {
  const { status, lines } = await run([genuine, tampered, genuine], false);
  assert.equal(status, EXIT_INVALID);
  assert.match(lines[0]!, /^VALID\s+\S+genuine\.zip \(key not pinned\)$/);
  assert.doesNotMatch(lines[1]!, /key not pinned/);
  assert.match(lines[3]!, /^2 of 3 bundles valid/);
  assert.match(lines[4]!, /^NOTE: 2 of them valid only with the key they carry\..*--trusted-keys/);
});

test('JSON entries say which keys were pinned', async () => {
  for (const pinned of [true, false]) {
    const lines: string[] = [];
    const status = await runVerifyMany(
      [genuine, genuine],
      { trustedKeys: pinned ? jwks : undefined, jobs: '2', json: true },
      (text) => lines.push(text),
      () => undefined,
    );
    assert.equal(status, EXIT_VALID);
    const entries = JSON.parse(lines.join('\n')) as { report: VerificationReport }[];
    assert.equal(entries.length, 2);
    for (const entry of entries) {
      assert.equal(entry.report.valid, true);
      assert.equal(entry.report.key_pinned, pinned);
      assert.equal(entry.report.log_key_pinned, false);
    }
  }
});

test('required pins fail unpinned bundles', async () => {
  const lines: string[] = [];
  const status = await runVerifyMany(
    [genuine, genuine],
    { trustedKeys: jwks, requireTrustedKeys: true, jobs: '2' },
    (text) => lines.push(text),
    () => undefined,
  );
  assert.equal(status, EXIT_INVALID);
  assert.match(lines[0]!, /^INVALID\s+\S+genuine\.zip: failed log_checkpoint$/);
  assert.match(lines[1]!, /^INVALID\s+\S+genuine\.zip: failed log_checkpoint$/);
  assert.match(lines[2]!, /^0 of 2 bundles valid/);
});

test('pool has at most one thread per bundle', async () => {
  for (const [jobs, expected] of [
    ['64', '(2 worker threads)'],
    ['2', '(2 worker threads)'],
    ['1', '(1 worker thread)'],
  ] as const) {
    const lines: string[] = [];
    const status = await runVerifyMany(
      [genuine, genuine],
      { trustedKeys: jwks, jobs },
      (text) => lines.push(text),
      () => undefined,
    );
    assert.equal(status, EXIT_VALID, jobs);
    assert.equal(lines[2], `2 of 2 bundles valid ${expected}`, jobs);
  }
});

test('--jobs accepts only decimal digits', async () => {
  for (const jobs of ['0x2', '1e1', ' 2', '2.0', '']) {
    const errors: string[] = [];
    const status = await runVerifyMany(
      [genuine, genuine],
      { jobs },
      () => undefined,
      (text) => errors.push(text),
    );
    assert.equal(status, EXIT_UNUSABLE, jobs);
    assert.match(errors.join('\n'), /--jobs must be an integer from 1 to 64/, jobs);
  }
});

test('one tampered bundle gives exit 1 and is named', async () => {
  const { status, lines } = await run([genuine, tampered, genuine]);
  assert.equal(status, EXIT_INVALID);
  assert.match(lines[1]!, /^INVALID\s+.*tampered\.zip: failed bundle_manifest/);
  assert.match(lines[0]!, /^VALID/);
});

test('an unusable input gives exit 2', async () => {
  const { status, lines } = await run([genuine, tampered, junk]);
  assert.equal(status, EXIT_UNUSABLE);
  assert.match(lines[2]!, /^ERROR\s+.*junk\.zip/);
});

test('pool verdicts equal single-thread verdicts in order', async () => {
  const pool = new BundleVerifierPool(2);
  try {
    const zips = Array.from({ length: 50 }, (_, i) =>
      i % 7 === 3
        ? packBundle(withFile(unpackBundle(fixture.zip), BundleFile.readme, 'x'))
        : fixture.zip,
    );
    const outcomes = await pool.verifyMany(zips, { batchSize: 8 });
    assert.equal(outcomes.length, 50);
    outcomes.forEach((outcome, i) =>
      assert.equal(outcome.report?.valid, i % 7 !== 3, `bundle ${i}`),
    );
  } finally {
    await pool.close();
  }
});

test('pool reports equal single-thread reports', async () => {
  const pool = new BundleVerifierPool(2);
  try {
    const zips = [
      fixture.zip,
      packBundle(withFile(unpackBundle(fixture.zip), BundleFile.readme, 'x')),
      new TextEncoder().encode('not a zip'),
    ];
    const outcomes = await pool.verifyMany(zips, { trustedKeys: fixture.jwks });
    assert.deepEqual(outcomes[0], {
      report: verifyBundle(nodeCrypto, zips[0]!, { trustedKeys: fixture.jwks }),
    });
    assert.deepEqual(outcomes[1], {
      report: verifyBundle(nodeCrypto, zips[1]!, { trustedKeys: fixture.jwks }),
    });
    assert.equal(outcomes[2]?.error?.code, 'BUNDLE_NOT_A_ZIP');
  } finally {
    await pool.close();
  }
});

test('pool outcomes equal verifyBundle for varied bundles', async () => {
  const files = unpackBundle(fixture.zip);
  const certificate = readJsonFile(files, BundleFile.certificate);
  const withoutCertificate = new Map(files);
  withoutCertificate.delete(BundleFile.certificate);
  const zips = [
    fixture.zip,
    packBundle(withFile(files, BundleFile.readme, 'forged readme')),
    packBundle(
      withFile(files, BundleFile.certificate, JSON.stringify({ ...certificate, model_name: 'x' })),
    ),
    packBundle(withoutLog(files)),
    packBundle(resignBundle(files)),
    packBundle(withFile(files, LogBundleFile.inclusionProof, '{"format": 1}')),
    packBundle(withoutCertificate),
    new TextEncoder().encode('not a zip'),
  ];
  const options = { trustedKeys: fixture.jwks, noteText: fixture.noteText };
  const expected = zips.map((zip) => {
    try {
      return { report: verifyBundle(nodeCrypto, zip, options) };
    } catch (error) {
      assert.ok(error instanceof BundleError);
      return { error: { code: error.code, message: error.message } };
    }
  });
  // Every kind of outcome is present, so the comparison covers each.
  assert.equal(expected.filter((outcome) => outcome.report?.valid === true).length, 1);
  assert.equal(expected.filter((outcome) => outcome.report?.valid === false).length, 5);
  assert.equal(expected.filter((outcome) => outcome.error !== undefined).length, 2);

  const pool = new BundleVerifierPool(2);
  try {
    const outcomes = await pool.verifyMany([...zips, ...zips, ...zips], {
      ...options,
      batchSize: 5,
    });
    assert.equal(outcomes.length, zips.length * 3);
    outcomes.forEach((outcome, i) => {
      assert.deepEqual(outcome, expected[i % zips.length], `bundle ${i}`);
      // deepEqual ignores key order, which the JSON output of `cdil verify` shows.
      assert.equal(
        JSON.stringify(outcome),
        JSON.stringify(expected[i % zips.length]),
        `bundle ${i}`,
      );
    });
  } finally {
    await pool.close();
  }
});

test('pool leaves the caller bundles intact', async () => {
  const pool = new BundleVerifierPool(2);
  try {
    const zips = Array.from({ length: 20 }, () => new Uint8Array(fixture.zip));
    await pool.verifyMany(zips, { batchSize: 3 });
    for (const zip of zips) {
      assert.deepEqual(zip, fixture.zip);
    }
  } finally {
    await pool.close();
  }
});

test('pool raises when a worker thread dies', async () => {
  // A worker script that ends its thread on the first batch, as a crash would.
  const script = join(fixture.dir, 'dying-worker.mjs');
  writeFileSync(
    script,
    "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => process.exit(3));\n",
  );
  const pool = new BundleVerifierPool(2, pathToFileURL(script));
  try {
    await assert.rejects(
      pool.verifyMany([fixture.zip, fixture.zip, fixture.zip]),
      /verifier worker thread exited with code 3/,
    );
    // Later calls fail at once instead of waiting for a worker that is gone.
    await assert.rejects(pool.verifyMany([fixture.zip]), /exited with code 3/);
  } finally {
    await pool.close();
  }
});
