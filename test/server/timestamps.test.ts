// RFC 3161 timestamps through the service: checkpoint and certificate tokens from a local
// `openssl ts` TSA on 127.0.0.1, verified offline from the bundle, and the required and
// best-effort policies when the TSA is down.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  TimestampBundleFile,
  verifyBundle,
  verifyBundleWithTimestamps,
} from '../../src/core/bundle.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { readZipSafely, writeDeterministicZip } from '../../src/core/zip.ts';
import { describeFailure } from '../../src/services/transparency-log.ts';
import { TsaClient, type TimestampAuthority } from '../../src/services/tsa-client.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { refreshManifest } from '../helpers/bundle.ts';
import { startLocalTsa, type LocalTsa } from '../helpers/tsa.ts';

/** A real TSA client that a test can switch off, as if the TSA went down. */
class SwitchableTsa implements TimestampAuthority {
  up = true;
  /** Message of the error a request fails with while the TSA is down. */
  reason = 'TSA is down';
  calls = 0;
  readonly #client: TsaClient;
  constructor(client: TsaClient) {
    this.#client = client;
  }
  timestamp(data: Uint8Array): Promise<Uint8Array> {
    this.calls += 1;
    return this.up ? this.#client.timestamp(data) : Promise.reject(new Error(this.reason));
  }
}

/** Polls `condition` every 10 ms and fails after 10 seconds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) {
      assert.fail(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function checkStatus(
  report: { checks: { check: string; status: string; code?: string }[] },
  name: string,
) {
  return report.checks.find((check) => check.check === name);
}

describe('RFC 3161 timestamps of checkpoints and certificates', () => {
  let tsa: LocalTsa;
  let untrusted: LocalTsa;
  let switchable: SwitchableTsa;
  let t: TestApp;
  let failures: unknown[];

  before(async () => {
    [tsa, untrusted] = await Promise.all([startLocalTsa(), startLocalTsa()]);
    switchable = new SwitchableTsa(
      new TsaClient({ url: tsa.url, timeoutMs: 10_000, trustedRoots: tsa.rootPem }),
    );
    failures = [];
    t = await startTestApp(
      {
        CDIL_CHECKPOINT_INTERVAL_MS: '0',
        TSA_URL: tsa.url,
        TSA_TRUSTED_ROOTS: tsa.rootPemPath,
      },
      undefined,
      { tsa: switchable, onTimestampFailure: (error) => failures.push(error) },
    );
    await t.services.tenants.create('strict', {
      timestampPolicy: 'required',
      timestampCertificates: true,
    });
    await t.services.tenants.create('relaxed');
    await t.services.tenants.create('strict-log', { timestampPolicy: 'required' });
  });
  after(async () => {
    await t.close();
    await Promise.all([tsa.close(), untrusted.close()]);
  });

  const issue = async (tenant: string) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/clinical/documentation',
      headers: bearer(await t.token('clinician', tenant)),
      payload: issueBody(),
    });

  const bundle = async (tenant: string, id: string) => {
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/certificates/${id}/defense-bundle`,
      headers: bearer(await t.token('auditor', tenant)),
    });
    assert.equal(response.statusCode, 200);
    return new Uint8Array(response.rawPayload);
  };

  test('strict tenant tokens verify offline', async () => {
    switchable.up = true;
    const issued = await issue('strict');
    assert.equal(issued.statusCode, 201, issued.body);
    const zip = await bundle('strict', issued.json().certificate.certificate_id);
    const files = readZipSafely(zip);
    assert.ok(files.has(TimestampBundleFile.certificate));
    assert.ok(files.has(TimestampBundleFile.checkpoint));

    const report = await verifyBundleWithTimestamps(nodeCrypto, zip, { tsaRoots: tsa.rootPem });
    assert.equal(report.valid, true, JSON.stringify(report.checks));
    assert.equal(checkStatus(report, 'checkpoint_timestamp')?.status, 'pass');
    assert.equal(checkStatus(report, 'certificate_timestamp')?.status, 'pass');

    const unpinned = await verifyBundleWithTimestamps(nodeCrypto, zip);
    assert.equal(checkStatus(unpinned, 'certificate_timestamp')?.status, 'skipped');

    const wrongRoot = await verifyBundleWithTimestamps(nodeCrypto, zip, {
      tsaRoots: untrusted.rootPem,
    });
    assert.equal(wrongRoot.valid, false);
    assert.equal(checkStatus(wrongRoot, 'checkpoint_timestamp')?.code, 'TIMESTAMP_INVALID');
    assert.equal(checkStatus(wrongRoot, 'certificate_timestamp')?.code, 'TIMESTAMP_INVALID');

    // The server's own report checks the tokens against the configured roots.
    const verified = await t.app.inject({
      method: 'POST',
      url: `/v1/certificates/${issued.json().certificate.certificate_id}/verify`,
      headers: bearer(await t.token('auditor', 'strict')),
      payload: {},
    });
    assert.equal(checkStatus(verified.json(), 'certificate_timestamp')?.status, 'pass');
  });

  test('swapped tokens fail their check', async () => {
    const first = (await issue('strict')).json().certificate.certificate_id as string;
    const second = (await issue('strict')).json().certificate.certificate_id as string;
    // Both bundles verify first, so the swapped token is a cache hit in the shared verifier,
    // with the covered bytes of the other certificate remembered as matching it.
    for (const id of [first, second]) {
      const report = await verifyBundleWithTimestamps(nodeCrypto, await bundle('strict', id), {
        tsaRoots: tsa.rootPem,
      });
      assert.equal(report.valid, true, JSON.stringify(report.checks));
    }
    const files = readZipSafely(await bundle('strict', first));
    const other = readZipSafely(await bundle('strict', second));
    files.set(TimestampBundleFile.certificate, other.get(TimestampBundleFile.certificate)!);
    refreshManifest(files);
    const swapped = await verifyBundleWithTimestamps(nodeCrypto, writeDeterministicZip(files), {
      tsaRoots: tsa.rootPem,
    });
    assert.equal(checkStatus(swapped, 'certificate_timestamp')?.status, 'fail');
    assert.equal(checkStatus(swapped, 'checkpoint_timestamp')?.status, 'pass');

    const foreign = await untrusted.issue(Buffer.from('anything'));
    files.set(TimestampBundleFile.checkpoint, foreign.token);
    refreshManifest(files);
    const forged = await verifyBundleWithTimestamps(nodeCrypto, writeDeterministicZip(files), {
      tsaRoots: tsa.rootPem,
    });
    assert.equal(checkStatus(forged, 'checkpoint_timestamp')?.code, 'TIMESTAMP_INVALID');
    // The synchronous verifier skips the tokens and reports them as skipped.
    const plain = verifyBundle(nodeCrypto, writeDeterministicZip(files));
    assert.equal(checkStatus(plain, 'checkpoint_timestamp')?.status, 'skipped');
  });

  test('with the TSA down, a required timestamp fails the request and stores nothing', async () => {
    const countCertificates = async () =>
      (await t.services.store.queryCertificates('strict', {}, 0, 1000)).length;
    const before = await countCertificates();
    switchable.up = false;
    try {
      const refused = await issue('strict');
      assert.equal(refused.statusCode, 503);
      assert.equal(refused.json().error.code, 'TIMESTAMP_UNAVAILABLE');
      assert.equal(await countCertificates(), before);
      // The rejection itself is recorded in the audit trail.
      const events = await t.services.store.listAuditEvents('strict', {}, -1, 1000);
      assert.ok(events.some((event) => event.event_json.includes('"reason":"unavailable"')));

      await issue('relaxed');
      const publish = await t.app.inject({
        method: 'POST',
        url: '/v1/log/checkpoint',
        headers: bearer(await t.token('auditor', 'strict')),
      });
      // The recorded rejection grew the strict log, and its checkpoint needs a timestamp too.
      assert.equal(publish.statusCode, 503);
      assert.equal(publish.json().error.code, 'TIMESTAMP_UNAVAILABLE');
    } finally {
      switchable.up = true;
    }
  });

  test('with the TSA down, a required checkpoint timestamp fails publication cleanly', async () => {
    assert.equal((await issue('strict-log')).statusCode, 201);
    switchable.up = false;
    try {
      const publish = await t.app.inject({
        method: 'POST',
        url: '/v1/log/checkpoint',
        headers: bearer(await t.token('auditor', 'strict-log')),
      });
      assert.equal(publish.statusCode, 503);
      assert.equal(publish.json().error.code, 'TIMESTAMP_UNAVAILABLE');
      assert.equal(await t.services.store.getLatestCheckpoint('strict-log'), undefined);
    } finally {
      switchable.up = true;
    }
    const published = await t.services.log.publish('strict-log');
    assert.ok(published.timestamp_token);
  });

  test('with the TSA down, a best-effort checkpoint is stored and stamped later', async () => {
    switchable.up = false;
    let checkpointSize: number;
    try {
      const issued = await issue('relaxed');
      assert.equal(issued.statusCode, 201);
      assert.equal(issued.json().certificate.certificate_id.length > 0, true);
      const checkpoint = await t.services.log.publish('relaxed');
      assert.equal(checkpoint.timestamp_token, null);
      checkpointSize = checkpoint.tree_size;
      assert.ok(failures.length > 0);
      assert.equal(await t.services.log.retryTimestamps(), 0);
    } finally {
      switchable.up = true;
    }
    assert.ok((await t.services.log.retryTimestamps()) >= 1);
    const stamped = await t.services.store.getCheckpoint('relaxed', checkpointSize);
    assert.ok(stamped?.timestamp_token);
    assert.equal(stamped.timestamp_attempts, 3);
  });

  test('a failing tenant does not stop publication for others', async () => {
    // Tenants are published in id order, so this one comes before "relaxed".
    await t.services.tenants.create('a-required', { timestampPolicy: 'required' });
    assert.equal((await issue('a-required')).statusCode, 201);
    assert.equal((await issue('relaxed')).statusCode, 201);
    const relaxedSize = (await t.services.store.getLogHead('relaxed'))!.tree_size;
    switchable.up = false;
    try {
      // Other required tenants whose logs grew in earlier tests fail as well.
      const failure: unknown = await t.services.log.publishGrown().then(
        () => assert.fail('publication succeeded with the TSA down'),
        (error: unknown) => error,
      );
      const errors = failure instanceof AggregateError ? failure.errors : [failure];
      assert.ok(errors.length >= 1);
      for (const error of errors) {
        assert.equal((error as { code?: string }).code, 'TIMESTAMP_UNAVAILABLE');
      }
      const relaxed = await t.services.store.getLatestCheckpoint('relaxed');
      assert.equal(relaxed?.tree_size, relaxedSize);
      assert.equal(await t.services.store.getLatestCheckpoint('a-required'), undefined);
    } finally {
      switchable.up = true;
    }
    await t.services.log.publish('a-required');
  });

  test('publisher reports an outage once per tenant', async () => {
    assert.equal((await issue('strict-log')).statusCode, 201);
    assert.equal((await issue('relaxed')).statusCode, 201);
    const relaxedSize = (await t.services.store.getLogHead('relaxed'))!.tree_size;
    const failed: string[] = [];
    const recovered: (string | undefined)[] = [];
    let ticks = 0;
    switchable.up = false;
    const publisher = t.services.log.startPublisher(20, {
      failed: (error, tenantId) => {
        failed.push(`${tenantId}: ${describeFailure(error)}`);
      },
      recovered: (tenantId) => {
        recovered.push(tenantId);
      },
    });
    try {
      const callsBefore = switchable.calls;
      // Each tick requests a handful of tokens (one per failing tenant and per checkpoint
      // without a token), so 40 requests span several ticks.
      await until(() => switchable.calls - callsBefore >= 40, 'the publisher to tick');
      ticks = switchable.calls - callsBefore;

      // The best-effort tenant is published without a token, the required one is not published.
      const relaxed = await t.services.store.getLatestCheckpoint('relaxed');
      assert.ok(relaxed !== undefined);
      assert.ok(relaxed.tree_size >= relaxedSize);
      const strictHead = (await t.services.store.getLogHead('strict-log'))!.tree_size;
      const strict = await t.services.store.getLatestCheckpoint('strict-log');
      assert.ok((strict?.tree_size ?? 0) < strictHead);
      assert.ok(
        failed.some((line) => line.startsWith('strict-log: ')),
        failed.join('\n'),
      );
      assert.equal(new Set(failed).size, failed.length, failed.join('\n'));
      assert.ok(failed.length < ticks, `${failed.length} reports in ${ticks} TSA calls`);

      // A required tenant's error wraps the TSA error, and a new cause is reported again.
      const strictLines = () => failed.filter((line) => line.startsWith('strict-log: '));
      assert.equal(strictLines().length, 1);
      assert.match(strictLines()[0]!, /TIMESTAMP_UNAVAILABLE: .*: TSA is down$/);
      switchable.reason = 'TSA certificate is not trusted';
      await until(() => strictLines().length === 2, 'a report of the new cause');
      assert.match(strictLines()[1]!, /: TSA certificate is not trusted$/);

      switchable.up = true;
      await until(() => recovered.includes('strict-log'), 'strict-log to recover');
      const published = await t.services.store.getLatestCheckpoint('strict-log');
      assert.ok(published?.timestamp_token);
    } finally {
      switchable.up = true;
      switchable.reason = 'TSA is down';
      await publisher.stop();
    }
  });

  test('cdil verify --tsa-roots checks the tokens from the command line', async () => {
    const issued = await issue('strict');
    const zip = await bundle('strict', issued.json().certificate.certificate_id);
    const path = join(t.dir, 'strict.zip');
    writeFileSync(path, zip);
    const { runVerifyWithTimestamps } = await import('../../src/cli/commands/verify.ts');
    const out: string[] = [];
    const good = await runVerifyWithTimestamps(
      path,
      { tsaRoots: tsa.rootPemPath, json: true },
      (text) => out.push(text),
      () => undefined,
    );
    assert.equal(good, 0);
    const rootsPath = join(t.dir, 'other-root.pem');
    writeFileSync(rootsPath, untrusted.rootPem);
    const bad = await runVerifyWithTimestamps(
      path,
      { tsaRoots: rootsPath, json: true },
      () => undefined,
      () => undefined,
    );
    assert.equal(bad, 1);
  });
});
