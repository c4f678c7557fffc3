// The witness command against a real server on 127.0.0.1, on the engine under test. It records
// growth proven by a consistency proof. It rejects a restored database backup (rollback), a
// different history of the same size (fork), a checkpoint signed by another key and an altered
// consistency proof, and each rejection leaves its state file unchanged.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { formatVerifierKey, createVerifierKey, signNote } from '../../src/core/checkpoint.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { toBase64 } from '../../src/core/encoding.ts';
import type { WitnessState } from '../../src/services/witness.ts';
import { issueBody, startTestApp, type TestApp } from '../helpers/app.ts';
import { CLI, runCliAsync, type CliResult } from '../helpers/cli.ts';
import { copyTestDatabase, createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { closedPortUrl } from '../helpers/tsa.ts';

const TENANT = 'ward-w';

interface RunningServer {
  app: TestApp;
  url: string;
}

/**
 * An HTTP proxy on 127.0.0.1 that lists request paths and can rewrite response bodies and
 * replace the bearer token it forwards.
 */
interface Proxy {
  url: string;
  paths: string[];
  rewrite: ((path: string, body: string) => string) | undefined;
  token: string | undefined;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function startProxy(target: () => string): Promise<Proxy> {
  const proxy: Proxy = {
    url: '',
    paths: [],
    rewrite: undefined,
    token: undefined,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = createServer((request, response) => {
    const path = new URL(request.url!, 'http://127.0.0.1').pathname;
    proxy.paths.push(path);
    const headers: Record<string, string> = {};
    if (request.headers.authorization) {
      headers.authorization =
        proxy.token === undefined ? request.headers.authorization : `Bearer ${proxy.token}`;
    }
    fetch(new URL(request.url!, target()), { headers })
      .then(async (upstream) => {
        const body = await upstream.text();
        response.writeHead(upstream.status, { 'content-type': 'application/json' });
        response.end(proxy.rewrite ? proxy.rewrite(path, body) : body);
      })
      .catch((error: unknown) => {
        response.writeHead(502);
        response.end(String(error));
      });
  });
  proxy.url = await listen(server);
  return proxy;
}

/**
 * Starts a reverse proxy on 127.0.0.1 that serves the target under `prefix` only, as a gateway
 * that publishes CDIL at https://host/cdil would. Other paths get 404. Lists the paths requested.
 */
async function startPrefixProxy(
  target: () => string,
  prefix: string,
): Promise<{ url: string; paths: string[]; close(): Promise<void> }> {
  const paths: string[] = [];
  const server = createServer((request, response) => {
    const path = new URL(request.url!, 'http://127.0.0.1').pathname;
    paths.push(path);
    if (!path.startsWith(`${prefix}/`)) {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'outside the prefix' } }));
      return;
    }
    const headers: Record<string, string> = {};
    if (request.headers.authorization) {
      headers.authorization = request.headers.authorization;
    }
    fetch(new URL(request.url!.slice(prefix.length), target()), { headers })
      .then(async (upstream) => {
        response.writeHead(upstream.status, { 'content-type': 'application/json' });
        response.end(await upstream.text());
      })
      .catch((error: unknown) => {
        response.writeHead(502);
        response.end(String(error));
      });
  });
  const url = await listen(server);
  return { url, paths, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** Re-signs a checkpoint response with a new Ed25519 key that has the log key's name. */
function resignWithOtherKey(body: string): string {
  const parsed = JSON.parse(body) as { checkpoint: string };
  const note = parsed.checkpoint;
  const text = note.slice(0, note.indexOf('\n\n') + 1);
  const keyName = note.slice(note.lastIndexOf('\u2014 ') + 2).split(' ')[0]!;
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(12);
  parsed.checkpoint = signNote(
    nodeCrypto,
    text,
    keyName,
    (message) => sign(null, message, privateKey),
    raw,
  );
  return JSON.stringify(parsed);
}

/** Replaces the first hash of a consistency proof response with zero bytes. */
function alterFirstProofHash(body: string): string {
  const parsed = JSON.parse(body) as { proof: string[] };
  assert.ok(parsed.proof.length > 0, 'the proof has a hash to alter');
  parsed.proof[0] = toBase64(new Uint8Array(32));
  return JSON.stringify(parsed);
}

describe('witness', () => {
  let dir: string;
  let stateDir: string;
  let tokenFile: string;
  let primary: TestDatabase;
  let backup: TestDatabase | undefined;
  let server: RunningServer | undefined;
  let proxy: Proxy;
  // Checkpoint sizes reached by grow(): each certificate adds its own leaf and the leaf of its
  // certificate.issue event, after the tenant.create event at index 0.
  let firstSize: number;
  let backupSize: number;
  let grownSize: number;
  const statePath = () => join(stateDir, `${TENANT}.json`);

  async function startServer(database: TestDatabase): Promise<RunningServer> {
    const app = await startTestApp(
      { CDIL_DATA_DIR: dir, CDIL_CHECKPOINT_INTERVAL_MS: '0' },
      database,
    );
    const url = await app.app.listen({ port: 0, host: '127.0.0.1' });
    return { app, url };
  }

  async function stopServer(): Promise<void> {
    await server?.app.close();
    server = undefined;
  }

  /** Issues certificates, publishes a checkpoint and returns its size. */
  async function grow(count: number): Promise<number> {
    const services = server!.app.services;
    const before = (await services.store.getLogHead(TENANT))?.tree_size ?? 0;
    for (let i = 0; i < count; i++) {
      await services.issuance.issue(
        TENANT,
        issueBody({ note_text: `Witness note ${randomUUID()}: stable.` }) as never,
      );
    }
    const size = (await services.log.publish(TENANT)).tree_size;
    assert.equal(size, before + 2 * count, 'each certificate adds two leaves');
    return size;
  }

  function witness(url: string, extra: string[] = [], state = stateDir): Promise<CliResult> {
    return runCliAsync([
      'witness',
      '--url',
      url,
      '--tenant',
      TENANT,
      '--token-file',
      tokenFile,
      '--state',
      state,
      ...extra,
    ]);
  }

  function readState(): WitnessState {
    return JSON.parse(readFileSync(statePath(), 'utf8')) as WitnessState;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-witness-'));
    stateDir = join(dir, 'witness-state');
    primary = await createTestDatabase();
    server = await startServer(primary);
    await server.app.services.tenants.create(TENANT);
    tokenFile = join(dir, 'auditor.token');
    writeFileSync(tokenFile, await server.app.token('auditor', TENANT), { mode: 0o600 });
    proxy = await startProxy(() => server!.url);
  });

  after(async () => {
    await proxy.close();
    await stopServer();
    await backup?.drop();
    await primary.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('first contact pins the key and records the checkpoint', async () => {
    firstSize = await grow(3);
    const result = await witness(proxy.url);
    assert.equal(result.status, 0, result.stderr);
    assert.match(
      result.stdout,
      /pinned log key cdil\.local\/tenants\/ward-w\+[0-9a-f]{8} on first contact/,
    );
    assert.match(
      result.stdout,
      new RegExp(`verified checkpoint of size ${firstSize}, root \\S+, signed by`),
    );
    assert.match(result.stdout, new RegExp(`recorded checkpoint of size ${firstSize} in `));

    const state = readState();
    assert.equal(state.size, firstSize);
    assert.equal(state.tenant_id, TENANT);
    assert.equal(state.origin, 'cdil.local/tenants/ward-w');
    const key = await server!.app.services.log.keyInfo(TENANT);
    assert.equal(state.log_key, key.verifier_key);
    const latest = await server!.app.services.log.latest(TENANT);
    assert.equal(state.note, latest.note);
    assert.equal(Buffer.from(state.root, 'base64').toString('hex'), latest.root_hash);
    assert.equal(statSync(statePath()).mode & 0o777, 0o600);
    assert.equal(proxy.paths.filter((path) => path.endsWith('/log-key')).length, 1);
  });

  test('an unchanged checkpoint is accepted with the pinned key', async () => {
    const before = readFileSync(statePath(), 'utf8');
    const result = await witness(proxy.url);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /unchanged: the checkpoint equals the one recorded/);
    assert.equal(readFileSync(statePath(), 'utf8'), before);
    // The key comes from the state file after first contact.
    assert.equal(proxy.paths.filter((path) => path.endsWith('/log-key')).length, 1);
  });

  test('growth with a valid consistency proof is recorded', async () => {
    backupSize = await grow(2);
    const result = await witness(server!.url);
    assert.equal(result.status, 0, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(
        `verified consistency proof from size ${firstSize} to ${backupSize} \\(\\d+ hashes\\)`,
      ),
    );
    assert.match(result.stdout, new RegExp(`recorded checkpoint of size ${backupSize}\\b`));
    assert.equal(readState().size, backupSize);
  });

  test('a database backup is taken at the recorded size', async () => {
    // PostgreSQL copies a database only while no session is connected to it.
    await stopServer();
    backup = await copyTestDatabase({ dir, database: primary });
    server = await startServer(primary);
    grownSize = await grow(3);
  });

  test('an altered consistency proof is rejected', async () => {
    const before = readFileSync(statePath(), 'utf8');
    proxy.rewrite = (path, body) =>
      path === '/v1/log/consistency-proof' ? alterFirstProofHash(body) : body;
    try {
      const result = await witness(proxy.url);
      assert.equal(result.status, 1, result.stderr);
      assert.match(
        result.stdout,
        new RegExp(
          `INCONSISTENT: the consistency proof from size ${backupSize} to ${grownSize} does not verify`,
        ),
      );
      assert.match(result.stdout, /state left unchanged/);
    } finally {
      proxy.rewrite = undefined;
    }
    assert.equal(readFileSync(statePath(), 'utf8'), before);
  });

  test('a checkpoint signed by another key is rejected', async () => {
    const before = readFileSync(statePath(), 'utf8');
    proxy.rewrite = (path, body) =>
      path === '/v1/log/checkpoint' ? resignWithOtherKey(body) : body;
    try {
      const result = await witness(proxy.url);
      assert.equal(result.status, 1, result.stderr);
      assert.match(
        result.stdout,
        /INVALID: the server's checkpoint does not verify with the pinned key/,
      );
      assert.match(result.stdout, /NOTE_NOT_VERIFIED/);
    } finally {
      proxy.rewrite = undefined;
    }
    assert.equal(readFileSync(statePath(), 'utf8'), before);
  });

  test('a wrong --log-key rejects the first checkpoint', async () => {
    const freshState = join(dir, 'pinned-state');
    const { publicKey } = generateKeyPairSync('ed25519');
    const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(12);
    const otherKey = formatVerifierKey(
      createVerifierKey(nodeCrypto, 'cdil.local/tenants/ward-w', raw),
    );
    const result = await witness(server!.url, ['--log-key', otherKey], freshState);
    assert.equal(result.status, 1, result.stderr);
    assert.match(
      result.stdout,
      /pinned log key cdil\.local\/tenants\/ward-w\+[0-9a-f]{8} from --log-key/,
    );
    assert.match(result.stdout, /INVALID/);
    assert.equal(existsSync(join(freshState, `${TENANT}.json`)), false);

    const right = (await server!.app.services.log.keyInfo(TENANT)).verifier_key;
    const accepted = await witness(server!.url, ['--log-key', right], freshState);
    assert.equal(accepted.status, 0, accepted.stderr);
    assert.match(accepted.stdout, new RegExp(`recorded checkpoint of size ${grownSize}\\b`));
  });

  test('the witness records the bigger checkpoint', async () => {
    const result = await witness(server!.url);
    assert.equal(result.status, 0, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(`verified consistency proof from size ${backupSize} to ${grownSize}\\b`),
    );
    assert.equal(readState().size, grownSize);
  });

  test('a restored backup is reported as a rollback', async () => {
    await stopServer();
    server = await startServer(backup!);
    // The restored database is consistent in itself, so only the witness can tell.
    const ledger = await server.app.services.ledger.verify(TENANT);
    assert.equal(ledger.ok, true, JSON.stringify(ledger.findings));
    assert.equal(ledger.tree_size, backupSize);

    const before = readFileSync(statePath(), 'utf8');
    const result = await witness(server.url);
    assert.equal(result.status, 1, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(
        `ROLLBACK: the server's checkpoint has size ${backupSize}, smaller than the recorded size ${grownSize}; state left unchanged`,
      ),
    );
    assert.equal(readFileSync(statePath(), 'utf8'), before);
  });

  test('a different history of the same size is a fork', async () => {
    // The same three issuances as on the primary reach the recorded size with other leaves.
    assert.equal(await grow(3), grownSize);
    const before = readFileSync(statePath(), 'utf8');
    const result = await witness(server!.url);
    assert.equal(result.status, 1, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(
        `FORK: the server's checkpoint of size ${grownSize} has root \\S+, but the recorded checkpoint of that size has root \\S+; state left unchanged`,
      ),
    );
    assert.equal(readFileSync(statePath(), 'utf8'), before);
  });

  test('interval mode stops at the first rejection', async () => {
    const result = await witness(server!.url, ['--interval', '0.2']);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stdout, /checking http:\/\/127\.0\.0\.1:\d+ for tenant ward-w/);
    assert.match(result.stdout, /FORK/);
  });

  test('interval mode repeats until SIGTERM', async () => {
    const freshState = join(dir, 'interval-state');
    const child = spawn(
      process.execPath,
      [
        CLI,
        'witness',
        '--url',
        server!.url,
        '--tenant',
        TENANT,
        '--state',
        freshState,
        '--interval',
        '0.2',
      ],
      {
        env: { ...process.env, CDIL_WITNESS_TOKEN: readFileSync(tokenFile, 'utf8') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    const checks = () => stdout.match(/ checking /g)?.length ?? 0;
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no second check in 20 s: ${stdout}`)),
        20_000,
      );
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString('utf8');
        if (checks() >= 2) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(stdout, new RegExp(`recorded checkpoint of size ${grownSize}\\b`));
    assert.match(stdout, /unchanged/);
  });

  test('missing token and bad options are unusable', async () => {
    const noToken = await runCliAsync(
      ['witness', '--url', server!.url, '--tenant', TENANT, '--state', stateDir],
      { CDIL_WITNESS_TOKEN: '' },
    );
    assert.equal(noToken.status, 2);
    assert.match(noToken.stderr, /an auditor token is required/);

    const badUrl = await witness('ftp://127.0.0.1:1');
    assert.equal(badUrl.status, 2);
    assert.match(badUrl.stderr, /--url must start with http:\/\/ or https:\/\//);

    const unreachable = await witness(await closedPortUrl(), [], join(dir, 'unreachable-state'));
    assert.equal(unreachable.status, 2);
    assert.match(
      unreachable.stderr,
      /GET \/tsa\/v1\/tenants\/ward-w\/log-key failed: .*\[WITNESS_UNREACHABLE\]/,
    );

    const corrupt = join(dir, 'corrupt-state');
    mkdirSync(corrupt);
    writeFileSync(join(corrupt, `${TENANT}.json`), '{');
    const unreadable = await witness(server!.url, [], corrupt);
    assert.equal(unreadable.status, 2);
    assert.match(unreadable.stderr, /is not JSON\. Restore it, or remove it to start over/);
  });
  test('unreachable server names the cause', async () => {
    const url = await closedPortUrl();
    const result = await witness(url, [], join(dir, 'refused-state'));
    assert.equal(result.status, 2);
    const port = new URL(url).port;
    assert.match(
      result.stderr,
      new RegExp(`failed: fetch failed \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\)`),
    );
  });

  test('expired token shows the server message', async () => {
    const expiredTokenFile = join(dir, 'expired.token');
    const expired = await server!.app.token('auditor', TENANT, { ttlSeconds: -60 });
    writeFileSync(expiredTokenFile, expired, { mode: 0o600 });
    const result = await runCliAsync([
      'witness',
      '--url',
      server!.url,
      '--tenant',
      TENANT,
      '--token-file',
      expiredTokenFile,
      '--state',
      stateDir,
    ]);
    assert.equal(result.status, 2, result.stdout);
    assert.match(
      result.stderr,
      /GET \/v1\/log\/checkpoint returned status 401 \(UNAUTHENTICATED\): token has expired \[WITNESS_BAD_RESPONSE\]/,
    );
  });

  test('path prefix of --url is kept', async () => {
    const gateway = await startPrefixProxy(() => server!.url, '/cdil');
    try {
      const freshState = join(dir, 'prefix-state');
      for (const url of [`${gateway.url}/cdil`, `${gateway.url}/cdil/`]) {
        const result = await witness(url, [], freshState);
        assert.equal(result.status, 0, result.stderr);
      }
      assert.ok(gateway.paths.length >= 3, gateway.paths.join(' '));
      for (const path of gateway.paths) {
        assert.match(path, /^\/cdil\/v1\//);
      }
      const withQuery = await witness(`${gateway.url}/cdil?tenant=x`, [], freshState);
      assert.equal(withQuery.status, 2);
      assert.match(withQuery.stderr, /--url must not contain a query or fragment/);
    } finally {
      await gateway.close();
    }
  });

  test('a token of another tenant is unusable before any request', async () => {
    const other = 'ward-x';
    await server!.app.services.tenants.create(other);
    const freshState = join(dir, 'other-tenant-state');
    const requestsBefore = proxy.paths.length;
    const result = await runCliAsync([
      'witness',
      '--url',
      proxy.url,
      '--tenant',
      other,
      '--token-file',
      tokenFile,
      '--state',
      freshState,
    ]);
    assert.equal(result.status, 2, result.stdout);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /the token is for tenant ward-w, not --tenant ward-x/);
    assert.match(result.stderr, /\[WITNESS_INVALID_INPUT\]/);
    assert.equal(proxy.paths.length, requestsBefore, 'no request reaches the server');
    assert.equal(existsSync(join(freshState, `${other}.json`)), false);
  });

  test('an opaque token of another tenant is unusable', async () => {
    const other = 'ward-y';
    await server!.app.services.tenants.create(other);
    await server!.app.services.log.publish(other);
    const opaqueTokenFile = join(dir, 'opaque.token');
    writeFileSync(opaqueTokenFile, 'opaque-gateway-token', { mode: 0o600 });
    const freshState = join(dir, 'opaque-token-state');
    // The proxy acts as a gateway that maps the opaque token to a ward-y token.
    proxy.token = await server!.app.token('auditor', other);
    try {
      const result = await runCliAsync([
        'witness',
        '--url',
        proxy.url,
        '--tenant',
        TENANT,
        '--token-file',
        opaqueTokenFile,
        '--state',
        freshState,
      ]);
      assert.equal(result.status, 2, result.stdout);
      assert.equal(result.stdout, '');
      assert.match(
        result.stderr,
        /checkpoint of log cdil\.local\/tenants\/ward-y, not of the log of tenant ward-w/,
      );
      assert.match(result.stderr, /the token is for tenant ward-y/);
    } finally {
      proxy.token = undefined;
    }
    assert.equal(existsSync(join(freshState, `${TENANT}.json`)), false);
  });

  test("another tenant's checkpoint for this token is rejected", async () => {
    const stateBefore = readFileSync(statePath(), 'utf8');
    const otherCheckpoint = await fetch(`${server!.url}/v1/log/checkpoint`, {
      headers: { authorization: `Bearer ${await server!.app.token('auditor', 'ward-y')}` },
    });
    assert.equal(otherCheckpoint.status, 200);
    const otherBody = await otherCheckpoint.text();
    proxy.rewrite = (path, body) => (path === '/v1/log/checkpoint' ? otherBody : body);
    try {
      const result = await witness(proxy.url);
      assert.equal(result.status, 1, result.stderr);
      assert.match(
        result.stdout,
        /INVALID: the server's checkpoint does not verify with the pinned key/,
      );
    } finally {
      proxy.rewrite = undefined;
    }
    assert.equal(readFileSync(statePath(), 'utf8'), stateBefore);
  });
});
