// Three separate server processes on one database (SQLite, or PostgreSQL when DATABASE_URL is
// set), plus the CLI as a fourth process: a key rotated or revoked in one process is used by
// every other from its next certificate on, and the issuance rate limit applies across all
// three within the bound that docs/operations.md states.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Certificate } from '../../src/core/certificate.ts';
import type { Jwks } from '../../src/core/key.ts';
import type { VerificationReport } from '../../src/core/verify/verify.ts';
import { RATE_LIMIT_WINDOW_MS } from '../../src/services/rate-limiter.ts';
import { issueBody } from '../helpers/app.ts';
import { runCli, startServerProcess, type ServerProcess } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const KEYS_TENANT = 'ward-keys';
const LIMITED_TENANT = 'ward-limited';
const LIMIT_PER_MINUTE = 30;
const SYNC_MS = 100;
const ROUNDS = 8;
const REQUESTS_PER_PROCESS_PER_ROUND = 3;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('state shared between server processes', () => {
  let dir: string;
  let database: TestDatabase;
  let env: Record<string, string>;
  let servers: ServerProcess[] = [];
  const tokens = new Map<string, string>();

  const token = (name: string) => tokens.get(name)!;

  function cli(args: string[]): any {
    const result = runCli(args, env);
    assert.equal(result.status, 0, `cdil ${args.join(' ')}: ${result.stderr}`);
    return JSON.parse(result.stdout);
  }

  async function request(
    server: ServerProcess,
    method: string,
    path: string,
    bearerToken?: string,
    body?: unknown,
  ): Promise<Response> {
    const headers: Record<string, string> = {};
    if (bearerToken !== undefined) {
      headers.authorization = `Bearer ${bearerToken}`;
    }
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
    }
    return fetch(`${server.base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  }

  async function issue(server: ServerProcess, note: string): Promise<Certificate> {
    const response = await request(
      server,
      'POST',
      '/v1/clinical/documentation',
      token('keys-clinician'),
      issueBody({ note_text: note }),
    );
    assert.equal(response.status, 201, await response.clone().text());
    return ((await response.json()) as { certificate: Certificate }).certificate;
  }

  async function verify(server: ServerProcess, certificateId: string) {
    const response = await request(
      server,
      'POST',
      `/v1/certificates/${certificateId}/verify`,
      token('keys-auditor'),
    );
    assert.equal(response.status, 200);
    return (await response.json()) as VerificationReport;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-shared-state-'));
    database = await createTestDatabase();
    env = {
      CDIL_DATA_DIR: dir,
      CDIL_LOG_LEVEL: 'info',
      CDIL_RATE_LIMIT_SYNC_MS: String(SYNC_MS),
      // Long enough that no process reloads keys on its own during the test: every key change
      // it picks up comes from the check in the append transaction.
      CDIL_KEY_CACHE_TTL_MS: '600000',
      CDIL_DATABASE_POOL_SIZE: '4',
      ...database.env,
    };
    cli(['tenant', 'create', KEYS_TENANT]);
    cli(['tenant', 'create', LIMITED_TENANT]);
    cli(['tenant', 'set-rate-limit', LIMITED_TENANT, String(LIMIT_PER_MINUTE)]);
    const issueToken = (args: string[]) => {
      const result = runCli(['token', ...args], env);
      assert.equal(result.status, 0, result.stderr);
      return result.stdout.trim();
    };
    tokens.set('admin', issueToken(['--role', 'admin']));
    tokens.set('keys-clinician', issueToken(['--tenant', KEYS_TENANT, '--role', 'clinician']));
    tokens.set('keys-auditor', issueToken(['--tenant', KEYS_TENANT, '--role', 'auditor']));
    tokens.set(
      'limited-clinician',
      issueToken(['--tenant', LIMITED_TENANT, '--role', 'clinician']),
    );
    // One after another, so the first applies migrations before the others start.
    for (let i = 0; i < 3; i++) {
      servers.push(await startServerProcess(env));
    }
  });
  after(async () => {
    for (const server of servers) {
      server.child.kill('SIGKILL');
      await server.exited;
    }
    servers = [];
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('rotation in one process reaches the others at once', async () => {
    const warm = await Promise.all(servers.map((server, i) => issue(server, `Warm ${i}`)));
    const firstKey = warm[0]!.key_id;
    assert.ok(warm.every((certificate) => certificate.key_id === firstKey));

    const rotated = await request(
      servers[0]!,
      'POST',
      `/v1/admin/tenants/${KEYS_TENANT}/keys/rotate`,
      token('admin'),
    );
    assert.equal(rotated.status, 201);
    const secondKey = ((await rotated.json()) as { active_key: { key_id: string } }).active_key
      .key_id;
    const afterApi = await Promise.all(servers.map((server, i) => issue(server, `After ${i}`)));
    assert.deepEqual(
      afterApi.map((certificate) => certificate.key_id),
      [secondKey, secondKey, secondKey],
    );

    const thirdKey = cli(['tenant', 'rotate-key', KEYS_TENANT]).active_key.key_id as string;
    const afterCli = await Promise.all(servers.map((server, i) => issue(server, `Cli ${i}`)));
    assert.deepEqual(
      afterCli.map((certificate) => certificate.key_id),
      [thirdKey, thirdKey, thirdKey],
    );

    const all = [...warm, ...afterApi, ...afterCli];
    for (const [i, certificate] of all.entries()) {
      const report = await verify(servers[(i + 1) % servers.length]!, certificate.certificate_id);
      assert.equal(report.valid, true, JSON.stringify(report.checks));
    }
    const jwks = (await (
      await request(servers[2]!, 'GET', `/v1/tenants/${KEYS_TENANT}/jwks.json`)
    ).json()) as Jwks;
    assert.deepEqual(
      jwks.keys.map((key) => [key.kid, key.status]),
      [
        [firstKey, 'retired'],
        [secondKey, 'retired'],
        [thirdKey, 'active'],
      ],
    );
  });

  test('concurrent rotations leave one active key', async () => {
    const responses = await Promise.all(
      [...servers, ...servers].map((server) =>
        request(server, 'POST', `/v1/admin/tenants/${KEYS_TENANT}/keys/rotate`, token('admin')),
      ),
    );
    assert.deepEqual(
      responses.map((response) => response.status),
      [201, 201, 201, 201, 201, 201],
    );
    const jwks = (await (
      await request(servers[0]!, 'GET', `/v1/tenants/${KEYS_TENANT}/jwks.json`)
    ).json()) as Jwks;
    assert.equal(jwks.keys.length, 9);
    const active = jwks.keys.filter((key) => key.status === 'active');
    assert.equal(active.length, 1);
    const issued = await Promise.all(servers.map((server, i) => issue(server, `Settled ${i}`)));
    for (const certificate of issued) {
      assert.equal(certificate.key_id, active[0]!.kid);
    }
  });

  test('revocation in one process reaches the others at once', async () => {
    const signed = await issue(servers[2]!, 'Signed before the revocation');
    const revoked = await request(
      servers[1]!,
      'POST',
      `/v1/admin/tenants/${KEYS_TENANT}/keys/${signed.key_id}/revoke`,
      token('admin'),
      { reason: 'key_compromise', rotate: true },
    );
    assert.equal(revoked.status, 200);
    const activeKey = ((await revoked.json()) as { active_key: { key_id: string } }).active_key
      .key_id;
    const issued = await Promise.all(servers.map((server, i) => issue(server, `Replaced ${i}`)));
    assert.deepEqual(
      issued.map((certificate) => certificate.key_id),
      [activeKey, activeKey, activeKey],
    );
    for (const server of servers) {
      const report = await verify(server, signed.certificate_id);
      assert.equal(report.valid, false);
      assert.equal(
        report.checks.find((check) => check.check === 'key_validity')?.code,
        'KEY_NOT_VALID',
      );
    }
  });

  test('rate limit applies across three processes', async () => {
    // All rounds must fall into one one-minute window.
    const remaining = RATE_LIMIT_WINDOW_MS - (Date.now() % RATE_LIMIT_WINDOW_MS);
    if (remaining < 20_000) {
      await sleep(remaining + 100);
    }
    const outcomes: { server: number; status: number; retryAfter: string | null }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const responses = await Promise.all(
        servers.flatMap((server, index) =>
          Array.from({ length: REQUESTS_PER_PROCESS_PER_ROUND }, async (_, i) => {
            const response = await request(
              server,
              'POST',
              '/v1/clinical/documentation',
              token('limited-clinician'),
              issueBody({ note_text: `Limited ${round} ${index} ${i}` }),
            );
            await response.arrayBuffer();
            return {
              server: index,
              status: response.status,
              retryAfter: response.headers.get('retry-after'),
            };
          }),
        ),
      );
      outcomes.push(...responses);
      // Several sync intervals, so every process adds its round to the shared counter.
      await sleep(5 * SYNC_MS);
    }

    const admitted = outcomes.filter((outcome) => outcome.status === 201).length;
    const limited = outcomes.filter((outcome) => outcome.status === 429);
    assert.equal(admitted + limited.length, outcomes.length, 'only 201 and 429 are expected');
    assert.ok(admitted >= LIMIT_PER_MINUTE, `admitted ${admitted}`);
    // The documented bound: each process may admit what it receives in one sync interval after
    // the shared total reaches the limit. Here that is one round of each process.
    const bound = LIMIT_PER_MINUTE + servers.length * REQUESTS_PER_PROCESS_PER_ROUND;
    assert.ok(admitted <= bound, `admitted ${admitted}, bound ${bound}`);
    // Each process received 24 requests, fewer than the limit, so a 429 from it can only come
    // from the counts of the others.
    for (const index of servers.keys()) {
      assert.ok(
        limited.some((outcome) => outcome.server === index),
        `process ${index} never rejected`,
      );
    }
    for (const outcome of limited) {
      assert.match(outcome.retryAfter ?? '', /^\d+$/);
    }
  });

  test('removed limit reaches every process after one sync', async () => {
    cli(['tenant', 'set-rate-limit', LIMITED_TENANT, '0']);
    for (const [index, server] of servers.entries()) {
      const started = Date.now();
      let status = 0;
      // The first request may still see the old limit; the sync after it reads the new one.
      while (status !== 201) {
        assert.ok(Date.now() - started < 20 * SYNC_MS, `process ${index} kept the old limit`);
        const response = await request(
          server,
          'POST',
          '/v1/clinical/documentation',
          token('limited-clinician'),
          issueBody({ note_text: `Unlimited ${index}` }),
        );
        await response.arrayBuffer();
        status = response.status;
        if (status !== 201) {
          assert.equal(status, 429);
          await sleep(SYNC_MS / 2);
        }
      }
    }
  });
});
