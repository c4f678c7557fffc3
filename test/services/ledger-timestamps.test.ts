// Whole-ledger verification of the stored RFC 3161 tokens, on the engine under test. A tenant
// with required checkpoint and certificate timestamps gets its tokens from a local `openssl ts`
// TSA on 127.0.0.1. Each test replaces one stored token with SQL, checks the finding, and puts
// the original back.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { utf8Encode } from '../../src/core/encoding.ts';
import { certificateTimestampInput } from '../../src/core/verify/timestamp-steps.ts';
import { systemClock } from '../../src/services/clock.ts';
import {
  LedgerVerifier,
  type LedgerFinding,
  type LedgerReport,
} from '../../src/services/ledger.ts';
import { bearer, issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { runCliAsync } from '../helpers/cli.ts';
import { runSql } from '../helpers/database.ts';
import { startLocalTsa, type LocalTsa } from '../helpers/tsa.ts';

const TENANT = 'stamped';
const CERTIFICATES = 3;

function describeFindings(report: LedgerReport): string {
  return JSON.stringify(report.findings, null, 1);
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

describe('whole-ledger verification of timestamp tokens', () => {
  let tsa: LocalTsa;
  let otherTsa: LocalTsa;
  let t: TestApp;
  /** Certificate ids in chain order. */
  let certificateIds: string[];
  let checkpointSizes: number[];

  before(async () => {
    [tsa, otherTsa] = await Promise.all([startLocalTsa(), startLocalTsa()]);
    t = await startTestApp({
      CDIL_CHECKPOINT_INTERVAL_MS: '0',
      TSA_URL: tsa.url,
      TSA_TRUSTED_ROOTS: tsa.rootPemPath,
    });
    await t.services.tenants.create(TENANT, {
      timestampPolicy: 'required',
      timestampCertificates: true,
    });
    await t.services.log.publish(TENANT);
    for (let i = 0; i < CERTIFICATES; i++) {
      await t.services.issuance.issue(TENANT, issueBody() as never);
      await t.services.log.publish(TENANT);
    }
    const certificates = await sql(
      'SELECT certificate_id FROM certificates WHERE tenant_id = ? ORDER BY chain_sequence',
      [TENANT],
    );
    certificateIds = certificates.map((row) => String(row.certificate_id));
    const checkpoints = await sql(
      'SELECT tree_size FROM log_checkpoints WHERE tenant_id = ? ORDER BY tree_size',
      [TENANT],
    );
    checkpointSizes = checkpoints.map((row) => Number(row.tree_size));
  });
  after(async () => {
    await t.close();
    await Promise.all([tsa.close(), otherTsa.close()]);
  });

  function sql(text: string, params: (string | number | null)[] = []) {
    return runSql(t, text, params);
  }

  async function certificateRow(id: string): Promise<Record<string, unknown>> {
    const [row] = await sql(
      'SELECT * FROM certificates WHERE tenant_id = ? AND certificate_id = ?',
      [TENANT, id],
    );
    assert.ok(row, `no certificate ${id}`);
    return row;
  }

  async function checkpointRow(size: number): Promise<Record<string, unknown>> {
    const [row] = await sql('SELECT * FROM log_checkpoints WHERE tenant_id = ? AND tree_size = ?', [
      TENANT,
      size,
    ]);
    assert.ok(row, `no checkpoint of size ${size}`);
    return row;
  }

  /** Stores `token` as the certificate's token, runs `check`, then restores the original. */
  async function withCertificateToken(
    id: string,
    token: string,
    check: () => Promise<void>,
  ): Promise<void> {
    const original = (await certificateRow(id)).timestamp_token as string;
    const update =
      'UPDATE certificates SET timestamp_token = ? WHERE tenant_id = ? AND certificate_id = ?';
    await sql(update, [token, TENANT, id]);
    try {
      await check();
    } finally {
      await sql(update, [original, TENANT, id]);
    }
  }

  async function withCheckpointToken(
    size: number,
    token: string,
    check: () => Promise<void>,
  ): Promise<void> {
    const original = (await checkpointRow(size)).timestamp_token as string;
    const update =
      'UPDATE log_checkpoints SET timestamp_token = ? WHERE tenant_id = ? AND tree_size = ?';
    await sql(update, [token, TENANT, size]);
    try {
      await check();
    } finally {
      await sql(update, [original, TENANT, size]);
    }
  }

  /** Returns the bytes the service timestamped for a certificate, from its signed message. */
  async function certificateInput(id: string): Promise<Uint8Array> {
    const row = await certificateRow(id);
    const message = JSON.parse(String(row.signed_message)) as {
      tenant_id: string;
      certificate_id: string;
      note_hash: string;
      issued_at_utc: string;
    };
    return certificateTimestampInput(message);
  }

  /** Verifies with the configured roots, page size 2, and returns the report. */
  function verify(): Promise<LedgerReport> {
    return t.services.ledger.verify(TENANT, { pageSize: 2 });
  }

  /** Asserts that the report's only finding is one timestamp_invalid finding, and returns it. */
  function onlyTimestampFinding(report: LedgerReport): LedgerFinding {
    assert.equal(report.ok, false);
    assert.equal(report.findings.length, 1, describeFindings(report));
    assert.equal(report.totals.timestamp_invalid, 1);
    const finding = report.findings[0]!;
    assert.equal(finding.kind, 'timestamp_invalid');
    return finding;
  }

  async function assertCertificateFinding(id: string, code: RegExp): Promise<void> {
    const report = await verify();
    const finding = onlyTimestampFinding(report);
    const row = await certificateRow(id);
    assert.equal(finding.subject, 'certificate');
    assert.equal(finding.certificate_id, id);
    assert.equal(finding.log_index, Number(row.log_index));
    assert.equal(finding.chain_sequence, Number(row.chain_sequence));
    assert.match(finding.detail, code);
    // The finding names the certificate, never the stored token.
    assert.ok(!JSON.stringify(report).includes(String(row.timestamp_token)));
  }

  test('clean ledger with tokens verifies with roots', async () => {
    assert.equal(certificateIds.length, CERTIFICATES);
    assert.equal(checkpointSizes.length, CERTIFICATES + 1);
    const [stamped] = await sql(
      `SELECT
         (SELECT COUNT(*) FROM certificates WHERE tenant_id = ? AND timestamp_token IS NOT NULL)
       + (SELECT COUNT(*) FROM log_checkpoints WHERE tenant_id = ? AND timestamp_token IS NOT NULL)
         AS tokens`,
      [TENANT, TENANT],
    );
    const tokens = Number(stamped!.tokens);
    assert.equal(tokens, CERTIFICATES + checkpointSizes.length);

    for (const pageSize of [1, 2, 1000]) {
      const report = await t.services.ledger.verify(TENANT, { pageSize });
      assert.equal(report.ok, true, `page size ${pageSize}: ${describeFindings(report)}`);
      assert.equal(report.checked.timestamp_tokens, tokens);
      assert.equal(report.not_checked.timestamp_tokens_without_roots, 0);
      assert.equal(report.totals.timestamp_invalid, 0);
    }
  });

  test('without roots the tokens are not checked', async () => {
    await withCertificateToken(certificateIds[0]!, 'not a token', async () => {
      const report = await new LedgerVerifier(t.services.store, systemClock).verify(TENANT);
      assert.equal(report.ok, true, describeFindings(report));
      assert.equal(report.checked.timestamp_tokens, 0);
      assert.equal(
        report.not_checked.timestamp_tokens_without_roots,
        CERTIFICATES + checkpointSizes.length,
      );
    });
  });

  test('token of another certificate is invalid', async () => {
    const [first, second] = certificateIds as [string, string];
    const otherToken = (await certificateRow(second)).timestamp_token as string;
    await withCertificateToken(first, otherToken, () =>
      assertCertificateFinding(first, /TIMESTAMP_IMPRINT_MISMATCH/),
    );
  });

  test('valid token over other data is invalid', async () => {
    const id = certificateIds[1]!;
    const { token } = await tsa.issue(utf8Encode('other data'));
    await withCertificateToken(id, base64(token), () =>
      assertCertificateFinding(id, /TIMESTAMP_IMPRINT_MISMATCH/),
    );
  });

  test('truncated token is invalid', async () => {
    const id = certificateIds[2]!;
    const stored = Buffer.from(String((await certificateRow(id)).timestamp_token), 'base64');
    const truncated = base64(stored.subarray(0, Math.floor(stored.length / 2)));
    await withCertificateToken(id, truncated, () =>
      assertCertificateFinding(id, /TIMESTAMP_MALFORMED/),
    );
  });

  test('corrupted token signature is invalid', async () => {
    const id = certificateIds[0]!;
    const stored = Buffer.from(String((await certificateRow(id)).timestamp_token), 'base64');
    // The SignerInfo, and with it the signature, ends the DER token, so the last byte is part
    // of the signature value.
    const corrupted = Buffer.from(stored);
    corrupted[corrupted.length - 1] = corrupted[corrupted.length - 1]! ^ 0x01;
    await withCertificateToken(id, base64(corrupted), () =>
      assertCertificateFinding(id, /TIMESTAMP_SIGNATURE_INVALID/),
    );
  });

  test('token text that is not base64 is invalid', async () => {
    const id = certificateIds[1]!;
    await withCertificateToken(id, 'not base64!', () =>
      assertCertificateFinding(id, /is not valid base64/),
    );
  });

  test('certificate token from another TSA is invalid', async () => {
    const id = certificateIds[2]!;
    const { token } = await otherTsa.issue(await certificateInput(id));
    await withCertificateToken(id, base64(token), () =>
      assertCertificateFinding(id, /TIMESTAMP_CHAIN_UNTRUSTED/),
    );
  });

  test('checkpoint token problems name the tree size', async () => {
    const size = checkpointSizes[1]!;
    const note = String((await checkpointRow(size)).note);
    const otherCheckpoint = String((await checkpointRow(checkpointSizes[2]!)).timestamp_token);
    const fromOtherTsa = base64((await otherTsa.issue(utf8Encode(note))).token);
    const stored = Buffer.from(String((await checkpointRow(size)).timestamp_token), 'base64');
    const truncated = base64(stored.subarray(0, stored.length - 10));
    const cases: [string, string, RegExp][] = [
      ['token of another checkpoint', otherCheckpoint, /TIMESTAMP_IMPRINT_MISMATCH/],
      ['token from another TSA', fromOtherTsa, /TIMESTAMP_CHAIN_UNTRUSTED/],
      ['truncated token', truncated, /TIMESTAMP_MALFORMED/],
    ];
    for (const [name, token, code] of cases) {
      await withCheckpointToken(size, token, async () => {
        const finding = onlyTimestampFinding(await verify());
        assert.equal(finding.subject, 'checkpoint', name);
        assert.equal(finding.tree_size, size, name);
        assert.match(finding.detail, code, name);
        assert.match(finding.detail, /^checkpoint timestamp token is invalid/, name);
      });
    }
  });

  test('HTTP report counts verified tokens', async () => {
    const id = certificateIds[0]!;
    const { token } = await otherTsa.issue(await certificateInput(id));
    await withCertificateToken(id, base64(token), async () => {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/log/verification',
        headers: bearer(await t.token('auditor', TENANT)),
      });
      assert.equal(response.statusCode, 200, response.body);
      const report = response.json<LedgerReport>();
      assert.equal(report.ok, false);
      assert.equal(report.checked.timestamp_tokens, CERTIFICATES + checkpointSizes.length);
      assert.equal(report.not_checked.timestamp_tokens_without_roots, 0);
      assert.equal(report.totals.timestamp_invalid, 1);
      assert.equal(report.findings[0]?.certificate_id, id);
    });
  });

  describe('command line', () => {
    // The command gets no TSA_URL, so only --tsa-roots gives it roots.
    const cliEnv = () => ({ CDIL_DATA_DIR: t.dir, ...t.database.env });

    test('command verifies tokens with --tsa-roots', async () => {
      const tokens = CERTIFICATES + checkpointSizes.length;
      const clean = await runCliAsync(
        ['ledger', 'verify', '--tenant', TENANT, '--tsa-roots', tsa.rootPemPath],
        cliEnv(),
      );
      assert.equal(clean.status, 0, clean.stderr);
      assert.match(clean.stdout, new RegExp(`^ {2}verified ${tokens} timestamp tokens$`, 'm'));

      const without = await runCliAsync(['ledger', 'verify', '--tenant', TENANT], cliEnv());
      assert.equal(without.status, 0, without.stderr);
      assert.match(
        without.stdout,
        new RegExp(`not verified: ${tokens} timestamp tokens, because no TSA roots were given`),
      );

      const untrusted = await runCliAsync(
        ['ledger', 'verify', '--tenant', TENANT, '--json', '--tsa-roots', otherTsa.rootPemPath],
        cliEnv(),
      );
      assert.equal(untrusted.status, 1, untrusted.stderr);
      const report = JSON.parse(untrusted.stdout) as LedgerReport;
      assert.equal(report.totals.timestamp_invalid, tokens);
      assert.ok(report.findings.every((finding) => /CHAIN_UNTRUSTED/.test(finding.detail)));
    });

    test('command exits 2 on a bad roots file', async () => {
      const empty = join(t.dir, 'empty-roots.pem');
      writeFileSync(empty, '');
      const cases: [string, RegExp][] = [
        [empty, /--tsa-roots .*empty-roots\.pem contains no PEM certificate/],
        [
          join(t.dir, 'missing-roots.pem'),
          /cannot read TSA root file .*missing-roots\.pem: ENOENT/,
        ],
        [t.dir, /is not a regular file/],
      ];
      for (const [path, message] of cases) {
        const result = await runCliAsync(
          ['ledger', 'verify', '--tenant', TENANT, '--tsa-roots', path],
          cliEnv(),
        );
        assert.equal(result.status, 2, `${path}: ${result.stdout}`);
        assert.match(result.stderr, message);
        assert.equal(result.stdout, '');
      }
    });
  });
});
