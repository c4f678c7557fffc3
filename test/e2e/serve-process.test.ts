// Runs `cdil serve` as a real process: readiness, OpenAPI, JSON logs with request ids, and a
// graceful shutdown that finishes in-flight requests.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { openStore } from '../../src/storage/open.ts';
import { issueBody } from '../helpers/app.ts';
import { runCli, startServerProcess, type ServerProcess } from '../helpers/cli.ts';
import { TEST_ENGINE, createTestDatabase, runSql, type TestDatabase } from '../helpers/database.ts';

describe('cdil serve process', () => {
  let dir: string;
  let env: Record<string, string>;
  let server: ServerProcess;
  let clinician: string;
  let database: TestDatabase;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-serve-'));
    database = await createTestDatabase();
    env = {
      CDIL_DATA_DIR: dir,
      CDIL_ENV: 'development',
      CDIL_LOG_LEVEL: 'info',
      ...database.env,
    };
    assert.equal(runCli(['tenant', 'create', 'north-clinic'], env).status, 0);
    clinician = runCli(
      ['token', '--tenant', 'north-clinic', '--role', 'clinician'],
      env,
    ).stdout.trim();
    server = await startServerProcess(env);
  });
  after(async () => {
    server.child.kill('SIGKILL');
    await server.exited;
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('health and readiness answer', async () => {
    const health = await fetch(`${server.base}/healthz`);
    assert.equal(health.status, 200);
    const ready = await fetch(`${server.base}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready', database: TEST_ENGINE });
  });

  test('OpenAPI 3.1 document lists every route', async () => {
    const response = await fetch(`${server.base}/docs/json`);
    assert.equal(response.status, 200);
    const spec = (await response.json()) as { openapi: string; paths: Record<string, unknown> };
    assert.equal(spec.openapi, '3.1.0');
    for (const path of [
      '/v1/clinical/documentation',
      '/v1/certificates/query',
      '/v1/certificates/{certificate_id}/verify',
      '/v1/certificates/{certificate_id}/defense-bundle',
      '/v1/tenants/{tenant_id}/jwks.json',
    ]) {
      assert.ok(spec.paths[path], path);
    }
    const ui = await fetch(`${server.base}/docs`, { redirect: 'follow' });
    assert.equal(ui.status, 200);
  });

  test('request id is echoed and appears in JSON logs', async () => {
    const response = await fetch(`${server.base}/healthz`, {
      headers: { 'x-request-id': 'trace-me-123' },
    });
    assert.equal(response.headers.get('x-request-id'), 'trace-me-123');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const lines = server.stdout.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(lines.some((line) => line.reqId === 'trace-me-123'));
  });

  test(
    'dropped PostgreSQL connection is a JSON log line',
    { skip: TEST_ENGINE !== 'postgres' && 'needs DATABASE_URL' },
    async () => {
      // Leaves an idle connection in the server's pool, then ends it as a database restart would.
      assert.equal((await fetch(`${server.base}/readyz`)).status, 200);
      await runSql(
        { dir, database },
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cdil'",
      );
      let warning: Record<string, unknown> | undefined;
      for (let attempt = 0; attempt < 200 && !warning; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 25));
        warning = server.stdout
          .map((line) => JSON.parse(line) as Record<string, unknown>)
          .find((line) => String(line.msg).startsWith('idle PostgreSQL connection failed'));
      }
      assert.ok(warning, server.stdout.join('\n'));
      assert.equal(warning.level, 40);
      assert.equal(warning.code, '57P01');
      assert.doesNotMatch(server.stderr.join(''), /PostgreSQL/);
      assert.equal((await fetch(`${server.base}/readyz`)).status, 200);
    },
  );

  test('SIGTERM finishes in-flight requests before exit', async () => {
    const post = () =>
      fetch(`${server.base}/v1/clinical/documentation`, {
        method: 'POST',
        headers: { authorization: `Bearer ${clinician}`, 'content-type': 'application/json' },
        body: JSON.stringify(issueBody({ note_text: `In-flight note ${Math.random()}` })),
      }).then(
        async (response) => ({
          status: response.status,
          body: (await response.json()) as Record<string, any>,
        }),
        () => ({ status: 0, body: {} as any }),
      );
    const requests = Array.from({ length: 60 }, post);
    // Signal once the first response is back, so the others are still in flight.
    await Promise.race(requests);
    server.child.kill('SIGTERM');
    const outcomes = await Promise.all(requests);
    const code = await server.exited;
    assert.equal(code, 0);
    const acknowledged = outcomes.filter((outcome) => outcome.status === 201);
    assert.ok(acknowledged.length > 0, 'some requests should complete before shutdown');
    for (const outcome of outcomes) {
      assert.ok([201, 503, 0].includes(outcome.status), `unexpected status ${outcome.status}`);
    }
    assert.ok(server.stdout.some((line) => line.includes('shutdown complete')));
    const store = openStore(loadConfig({ ...env, CDIL_LOG_LEVEL: 'silent' }));
    try {
      for (const outcome of acknowledged) {
        const row = await store.getCertificate(
          'north-clinic',
          outcome.body.certificate.certificate_id,
        );
        assert.ok(row, 'acknowledged certificate must be stored');
      }
    } finally {
      await store.close();
    }
  });
});
