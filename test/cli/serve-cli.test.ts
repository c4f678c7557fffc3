// `cdil serve` start-up messages as a real process: the settings named when the port is taken,
// with one process and with workers, and the first commands printed only for a database without
// tenants.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, runCli, runCliAsync, startServerProcess } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { closedPort } from '../helpers/ports.ts';

/** Resolves once `read()` contains `text`, or rejects after `timeoutMs`. */
async function waitForText(read: () => string, text: string, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!read().includes(text)) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(`"${text}" did not appear within ${timeoutMs} ms; got:\n${read()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('cdil serve start-up', () => {
  let dir: string;
  let database: TestDatabase;
  let env: Record<string, string>;
  let occupied: Server;
  let occupiedPort: number;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-serve-cli-'));
    database = await createTestDatabase();
    env = {
      CDIL_DATA_DIR: dir,
      CDIL_ENV: 'development',
      CDIL_LOG_LEVEL: 'info',
      CDIL_HOST: '127.0.0.1',
      ...database.env,
    };
    occupied = createServer();
    await new Promise<void>((resolve) => occupied.listen(0, '127.0.0.1', resolve));
    occupiedPort = (occupied.address() as { port: number }).port;
  });
  after(async () => {
    await new Promise((resolve) => occupied.close(resolve));
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('first start prints the next steps', async () => {
    const server = await startServerProcess(env);
    try {
      const stderr = () => server.stderr.join('');
      await waitForText(stderr, 'API reference:');
      assert.match(stderr(), /Next steps, in another terminal in /);
      assert.ok(
        stderr().includes(`  CDIL_DATA_DIR=${dir} npx cdil tenant create demo-hospital\n`),
        stderr(),
      );
      assert.ok(
        stderr().includes(
          `  CDIL_DATA_DIR=${dir} npx cdil token --tenant demo-hospital --role clinician\n`,
        ),
        stderr(),
      );
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  test('next steps outside the package use node', async () => {
    // npx outside the package folder would look cdil up in the npm registry.
    const outside = mkdtempSync(join(tmpdir(), 'cdil-serve-cwd-'));
    try {
      const server = await startServerProcess(env, { cwd: outside });
      let stderr: string;
      try {
        await waitForText(() => server.stderr.join(''), 'API reference:');
        stderr = server.stderr.join('');
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
      }
      assert.ok(stderr.includes(`Next steps, in another terminal in ${outside}:\n`), stderr);
      assert.doesNotMatch(stderr, /npx/);
      const create = /^ {2}(.*) tenant create demo-hospital$/m.exec(stderr)?.[1];
      assert.equal(create, `CDIL_DATA_DIR=${dir} node ${CLI}`);
      assert.ok(
        stderr.includes(`  ${create} token --tenant demo-hospital --role clinician\n`),
        stderr,
      );

      // The printed command runs as written from that folder.
      const listed = spawnSync('sh', ['-c', `${create} tenant list`], {
        cwd: outside,
        env: { ...process.env, ...env },
        encoding: 'utf8',
        timeout: 120_000,
      });
      assert.equal(listed.status, 0, listed.stderr);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  test('invalid --port names the option', () => {
    for (const port of ['70000', 'abc', '-1']) {
      const result = runCli(['serve', '--port', port], env);
      assert.equal(result.status, 78, port);
      assert.match(result.stderr, /--port must be an integer from 0 to 65535, got "/, port);
      assert.doesNotMatch(result.stderr, /CDIL_PORT/, port);
    }
    const fromEnvironment = runCli(['serve'], { ...env, CDIL_PORT: '70000' });
    assert.equal(fromEnvironment.status, 78);
    assert.match(fromEnvironment.stderr, /CDIL_PORT must be an integer from 0 to 65535/);
  });

  test('start with a tenant omits the next steps', async () => {
    const created = runCli(['tenant', 'create', 'demo-hospital'], env);
    assert.equal(created.status, 0, created.stderr);
    const server = await startServerProcess(env);
    try {
      const stderr = () => server.stderr.join('');
      await waitForText(stderr, 'API reference:');
      assert.match(stderr(), /CDIL development server on /);
      assert.doesNotMatch(stderr(), /Next steps/);
      assert.doesNotMatch(stderr(), /tenant create/);
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  test('unreachable database still starts', async () => {
    const port = await closedPort();
    const server = await startServerProcess({
      ...env,
      CDIL_DATA_DIR: join(dir, 'unreachable'),
      DATABASE_URL: `postgres://cdil@127.0.0.1:${port}/cdil`,
      CDIL_MIGRATE_ON_START: 'false',
      CDIL_DATABASE_CONNECT_TIMEOUT_MS: '500',
    });
    try {
      const stderr = () => server.stderr.join('');
      await waitForText(stderr, 'API reference:');
      assert.doesNotMatch(stderr(), /Next steps/);
      assert.doesNotMatch(stderr(), /^error:/m);
      assert.equal((await fetch(`${server.base}/readyz`)).status, 503);
      server.child.kill('SIGTERM');
      assert.equal(await server.exited, 0);
    } finally {
      server.child.kill('SIGKILL');
      await server.exited;
    }
  });

  test('port in use names the settings', async () => {
    const result = await runCliAsync(['serve', '--port', String(occupiedPort)], env);
    assert.equal(result.status, 1, result.stdout);
    assert.match(result.stderr, new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${occupiedPort}`));
    assert.match(
      result.stderr,
      /another process is listening on this port: stop it, or set CDIL_PORT or --port to a free port/,
    );
  });

  test('port in use stops the workers', async () => {
    const result = await runCliAsync(
      ['serve', '--port', String(occupiedPort), '--workers', '2'],
      env,
    );
    assert.equal(result.status, 1, result.stdout);
    assert.match(result.stderr, /EADDRINUSE.*set CDIL_PORT or --port to a free port/);
    assert.match(result.stdout, /worker exited before the server listened; stopping/);
    assert.doesNotMatch(result.stdout, /starting a replacement/);
  });
});
