// Commands on a SQLite data folder that the user cannot write, as on read-only backup storage or
// for an auditor's account. The commands that only read work on a private copy, and the server
// and the commands that write fail with a message that names the folder. Root may write any
// folder, so under root the commands run as the user nobody through runuser.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { CLI, runCli } from '../helpers/cli.ts';
import { TEST_ENGINE } from '../helpers/database.ts';

const OTHER_USER = 'nobody';

/** The account the commands run as: this process, or `nobody` when this process is root. */
interface Runner {
  /** Command prefix that switches to the account; empty to run as this process. */
  prefix: string[];
  /** Numeric user id of the account, for chown. */
  uid: number;
}

/**
 * Returns how to run cdil as a user that cannot write a folder with mode 0555, or the reason why
 * no such user is available.
 */
function findRunner(): Runner | string {
  if (TEST_ENGINE !== 'sqlite') {
    return 'the folder matters only for SQLite';
  }
  if (process.getuid === undefined) {
    return 'needs POSIX user ids';
  }
  if (process.getuid() !== 0) {
    return { prefix: [], uid: process.getuid() };
  }
  const id = spawnSync('id', ['-u', OTHER_USER], { encoding: 'utf8' });
  if (id.status !== 0) {
    return `runs as root and there is no user ${OTHER_USER} to run the commands as`;
  }
  const prefix = ['runuser', '-u', OTHER_USER, '--'];
  const probe = spawnSync(prefix[0]!, [...prefix.slice(1), process.execPath, CLI, '--version'], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: tmpdir() },
  });
  if (probe.status !== 0) {
    return `runs as root, and runuser cannot run cdil as ${OTHER_USER}: ${probe.error?.message ?? probe.stderr.trim()}`;
  }
  return { prefix, uid: Number(id.stdout.trim()) };
}

const runner = findRunner();
const skip = typeof runner === 'string' ? runner : false;

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

describe('SQLite data folder without write access', { skip }, () => {
  const { prefix, uid } = runner as Runner;
  let dir: string;
  let data: string;
  let walData: string;
  let scratch: string;
  let databaseHash: string;

  /** Runs cdil as the runner's user with the given data folder. */
  function runAsUser(args: string[], dataDir: string) {
    const base = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith('CDIL_')),
    );
    const command = [...prefix, 'env', `HOME=${scratch}`, process.execPath, CLI, ...args];
    const result = spawnSync(command[0]!, command.slice(1), {
      env: { ...base, CDIL_DATA_DIR: dataDir, CDIL_PORT: '0', TMPDIR: scratch },
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** Gives the folder and its files to the runner's user, then removes write access to it. */
  function makeReadOnly(folder: string): void {
    for (const name of readdirSync(folder)) {
      chownSync(join(folder, name), uid, -1);
    }
    chownSync(folder, uid, -1);
    chmodSync(folder, 0o555);
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-read-only-'));
    chmodSync(dir, 0o755);
    data = join(dir, 'data');
    const created = runCli(['tenant', 'create', 'ro-tenant'], { CDIL_DATA_DIR: data });
    assert.equal(created.status, 0, created.stderr);

    // A database whose last tenant is only in the -wal file, as a server killed before its
    // checkpoint leaves it. The open connection keeps the CLI from checkpointing on exit.
    walData = join(dir, 'wal-data');
    mkdirSync(walData);
    copyFileSync(join(data, 'cdil.sqlite'), join(walData, 'cdil.sqlite'));
    copyFileSync(join(data, 'secrets.json'), join(walData, 'secrets.json'));
    const holder = new Database(join(walData, 'cdil.sqlite'));
    holder.prepare('SELECT COUNT(*) FROM tenants').get();
    const second = runCli(['tenant', 'create', 'wal-tenant'], { CDIL_DATA_DIR: walData });
    assert.equal(second.status, 0, second.stderr);
    const walCopy = join(dir, 'wal-copy');
    mkdirSync(walCopy);
    for (const name of ['cdil.sqlite', 'cdil.sqlite-wal', 'secrets.json']) {
      copyFileSync(join(walData, name), join(walCopy, name));
    }
    holder.close();
    rmSync(walData, { recursive: true });
    walData = walCopy;

    scratch = join(dir, 'scratch');
    mkdirSync(scratch, { mode: 0o700 });
    chownSync(scratch, uid, -1);
    makeReadOnly(data);
    makeReadOnly(walData);
    databaseHash = sha256(join(data, 'cdil.sqlite'));
  });

  after(() => {
    chmodSync(data, 0o755);
    chmodSync(walData, 0o755);
    rmSync(dir, { recursive: true, force: true });
  });

  test('ledger verify reads a snapshot', () => {
    const result = runAsUser(['ledger', 'verify', '--tenant', 'ro-tenant'], data);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^CLEAN {2}ledger of tenant ro-tenant/);
    assert.ok(result.stderr.includes(`note: ${data} is not writable by this user`), result.stderr);
    assert.match(result.stderr, /reads a snapshot instead: a private copy of .*cdil\.sqlite/);
    assert.match(result.stderr, /which no writer can change meanwhile/);
  });

  test('tenant list reads a snapshot', () => {
    const result = runAsUser(['tenant', 'list'], data);
    assert.equal(result.status, 0, result.stderr);
    const tenants = JSON.parse(result.stdout) as { tenant_id: string }[];
    assert.deepEqual(
      tenants.map((tenant) => tenant.tenant_id),
      ['ro-tenant'],
    );
    assert.match(result.stderr, /reads a snapshot instead/);
  });

  test('snapshot includes the -wal file', () => {
    const result = runAsUser(['tenant', 'list'], walData);
    assert.equal(result.status, 0, result.stderr);
    const tenants = JSON.parse(result.stdout) as { tenant_id: string }[];
    assert.deepEqual(
      tenants.map((tenant) => tenant.tenant_id),
      ['ro-tenant', 'wal-tenant'],
    );
  });

  test('serve names the folder', () => {
    const result = runAsUser(['serve'], data);
    assert.equal(result.status, 78, result.stdout);
    assert.ok(
      result.stderr.includes(`folder ${data} of the SQLite database is not writable`),
      result.stderr,
    );
    assert.match(result.stderr, /set CDIL_DATA_DIR to a writable folder/);
    assert.doesNotMatch(result.stdout, /Server listening/);
  });

  test('audit export names the folder', () => {
    const out = join(scratch, 'audit.jsonl');
    const result = runAsUser(['audit', 'export', '--tenant', 'ro-tenant', '--out', out], data);
    assert.equal(result.status, 78, result.stdout);
    assert.ok(
      result.stderr.includes(`folder ${data} of the SQLite database is not writable`),
      result.stderr,
    );
    assert.equal(existsSync(out), false);
    assert.equal(existsSync(`${out}.partial`), false);
  });

  test('folders are left as they were', () => {
    assert.deepEqual(readdirSync(data).sort(), ['cdil.sqlite', 'secrets.json']);
    assert.deepEqual(readdirSync(walData).sort(), [
      'cdil.sqlite',
      'cdil.sqlite-wal',
      'secrets.json',
    ]);
    assert.equal(sha256(join(data, 'cdil.sqlite')), databaseHash);
    const leftovers = readdirSync(scratch).filter((name) => name.startsWith('cdil-snapshot-'));
    assert.deepEqual(leftovers, []);
  });
});
