// Runs the README's "first certificate by hand" commands as written against a real server,
// so the guide cannot drift from the product.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CLI, startServerProcess, type ServerProcess } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let dir: string;
let server: ServerProcess;
let database: TestDatabase;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cdil-readme-'));
  database = await createTestDatabase();
  server = await startServerProcess({
    CDIL_DATA_DIR: join(dir, 'data'),
    CDIL_LOG_LEVEL: 'info',
    ...database.env,
  });
});
after(async () => {
  server.child.kill('SIGKILL');
  await server.exited;
  await database.drop();
  rmSync(dir, { recursive: true, force: true });
});

function readmeSteps(): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('npx cdil tenant create demo-hospital');
  const end = readme.indexOf('```', start);
  assert.ok(start > 0, 'README steps not found');
  assert.ok(end > start, 'README steps block is not closed');
  return readme.slice(start, end);
}

test('README first-certificate steps work as written', () => {
  const steps = readmeSteps().replaceAll('http://127.0.0.1:8080', server.base);
  // `npx cdil` resolves to this checkout's CLI; the steps run in a scratch folder.
  const script = `npx() { shift; node ${JSON.stringify(CLI)} "$@"; }\n${steps}`;
  const result = spawnSync('bash', ['-c', script], {
    cwd: dir,
    env: { ...process.env, CDIL_DATA_DIR: join(dir, 'data'), ...database.env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(result.stderr.trim(), '');
  const verdicts = result.stdout.split('\n').filter((line) => /^(VALID|INVALID) /.test(line));
  assert.equal(verdicts.length, 2, result.stdout);
  assert.match(verdicts[0]!, /^VALID /);
  assert.match(verdicts[1]!, /^INVALID /);
  assert.match(result.stdout, /FAIL {2}note_hash/);
  assert.equal(result.status, 1, 'the last command verifies an altered note and exits 1');
});
