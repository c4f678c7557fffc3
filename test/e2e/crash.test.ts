// Kills the server with SIGKILL during sustained issuance, restarts it on the same database
// (SQLite, or PostgreSQL when DATABASE_URL is set), and checks that no half-written entry
// exists, every acknowledged certificate is present, and the chain continues cleanly.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { createServices } from '../../src/services/container.ts';
import { issueBody } from '../helpers/app.ts';
import { walkChain } from '../helpers/chain.ts';
import { runCli, startServerProcess } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const TENANT = 'crash-ward';
const CLIENTS = 8;
const KILL_AFTER_MS = 800;

let dir: string;
let database: TestDatabase;
let env: Record<string, string>;
let token: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cdil-crash-'));
  database = await createTestDatabase();
  env = { CDIL_DATA_DIR: dir, CDIL_LOG_LEVEL: 'info', ...database.env };
  assert.equal(runCli(['tenant', 'create', TENANT], env).status, 0);
  token = runCli(['token', '--tenant', TENANT, '--role', 'clinician'], env).stdout.trim();
});
after(async () => {
  await database.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function issueUntilFailure(base: string, acknowledged: string[], client: number) {
  for (let i = 0; ; i++) {
    let response: Response;
    try {
      response = await fetch(`${base}/v1/clinical/documentation`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(issueBody({ note_text: `Crash note ${client} ${i}` })),
      });
    } catch {
      return;
    }
    if (response.status !== 201) {
      return;
    }
    const body = (await response.json()) as { certificate: { certificate_id: string } };
    acknowledged.push(body.certificate.certificate_id);
  }
}

test('SIGKILL during issuance loses no acknowledged certificate', async () => {
  const first = await startServerProcess(env);
  const acknowledged: string[] = [];
  const clients = Array.from({ length: CLIENTS }, (_, client) =>
    issueUntilFailure(first.base, acknowledged, client),
  );
  await new Promise((resolve) => setTimeout(resolve, KILL_AFTER_MS));
  first.child.kill('SIGKILL');
  await first.exited;
  await Promise.all(clients);
  assert.ok(acknowledged.length > 0, 'the server should acknowledge some certificates first');

  const second = await startServerProcess(env);
  const afterRestart: string[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`${second.base}/v1/clinical/documentation`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(issueBody({ note_text: `After restart ${i}` })),
      });
      assert.equal(response.status, 201);
      const body = (await response.json()) as { certificate: { certificate_id: string } };
      afterRestart.push(body.certificate.certificate_id);
    }
  } finally {
    second.child.kill('SIGTERM');
    await second.exited;
  }

  const services = await createServices(
    loadConfig({ CDIL_DATA_DIR: dir, CDIL_LOG_LEVEL: 'silent', ...database.env }),
  );
  try {
    const chain = await walkChain(services, TENANT);
    const stored = new Set(chain);
    for (const id of acknowledged) {
      assert.ok(stored.has(id), `acknowledged certificate ${id} is missing after the crash`);
    }
    // The certificates issued after the restart extend the chain right after the survivors.
    assert.deepEqual(chain.slice(-afterRestart.length), afterRestart);
  } finally {
    await services.close();
  }
});
