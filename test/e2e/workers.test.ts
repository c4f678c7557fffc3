// Several server processes on one database (SQLite, or PostgreSQL when DATABASE_URL is set):
// concurrent clients issue for the same tenants, then every chain is walked and every
// acknowledged certificate verified.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { createServices, type Services } from '../../src/services/container.ts';
import { issueBody } from '../helpers/app.ts';
import { walkChain } from '../helpers/chain.ts';
import { runCli, startServerProcess, type ServerProcess } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const TENANTS = ['ward-a', 'ward-b'];
const REQUESTS_PER_TENANT = 150;

let dir: string;
let server: ServerProcess;
let database: TestDatabase;
const tokens = new Map<string, string>();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cdil-workers-'));
  database = await createTestDatabase();
  const env = { CDIL_DATA_DIR: dir, CDIL_LOG_LEVEL: 'info', ...database.env };
  for (const tenant of TENANTS) {
    assert.equal(runCli(['tenant', 'create', tenant], env).status, 0);
    tokens.set(
      tenant,
      runCli(['token', '--tenant', tenant, '--role', 'clinician'], env).stdout.trim(),
    );
  }
  server = await startServerProcess({ ...env, CDIL_WORKERS: '3' });
});
after(async () => {
  server.child.kill('SIGKILL');
  await server.exited;
  await database.drop();
  rmSync(dir, { recursive: true, force: true });
});

test('three workers keep every tenant chain unbroken', async () => {
  const requests = TENANTS.flatMap((tenant) =>
    Array.from({ length: REQUESTS_PER_TENANT }, (_, i) =>
      fetch(`${server.base}/v1/clinical/documentation`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${tokens.get(tenant)!}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify(issueBody({ note_text: `Worker note ${tenant} ${i}` })),
      }).then(async (response) => ({
        tenant,
        status: response.status,
        body: (await response.json()) as any,
      })),
    ),
  );
  const outcomes = await Promise.all(requests);
  assert.ok(outcomes.every((outcome) => outcome.status === 201));
  const pids = new Set(server.stdout.map((line) => (JSON.parse(line) as { pid?: number }).pid));
  assert.ok(pids.size >= 3, `expected log lines from 3 worker processes, saw ${pids.size}`);

  server.child.kill('SIGTERM');
  assert.equal(await server.exited, 0);

  const services: Services = await createServices(
    loadConfig({ CDIL_DATA_DIR: dir, CDIL_LOG_LEVEL: 'silent', ...database.env }),
  );
  try {
    for (const tenant of TENANTS) {
      const acknowledged = new Set(
        outcomes
          .filter((outcome) => outcome.tenant === tenant)
          .map((outcome) => outcome.body.certificate.certificate_id),
      );
      const chain = await walkChain(services, tenant);
      assert.equal(chain.length, REQUESTS_PER_TENANT, `${tenant} chain length`);
      assert.deepEqual([...acknowledged].sort(), [...chain].sort());
    }
  } finally {
    await services.close();
  }
});
