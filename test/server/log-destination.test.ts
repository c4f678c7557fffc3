// A failed log write never stops the service: lines are dropped and counted, the count is
// logged when writing works again, and a full destination is waited for a bounded time.
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { buildServer } from '../../src/server/app.ts';
import { LogDestination } from '../../src/server/log-destination.ts';
import { createServices } from '../../src/services/container.ts';
import { createTestDatabase } from '../helpers/database.ts';

function failure(code: string): Error {
  return Object.assign(new Error(`write failed: ${code}`), { code });
}

/** Returns a writer that fails with `code` for the first `failures` calls, then records its input. */
function flakyWriter(failures: number, code = 'ENOSPC') {
  const written: string[] = [];
  let calls = 0;
  return {
    written,
    write: (_fd: number, data: Uint8Array): number => {
      calls += 1;
      if (calls <= failures) {
        throw failure(code);
      }
      written.push(Buffer.from(data).toString('utf8'));
      return data.length;
    },
  };
}

test('a full disk drops lines without throwing', () => {
  const fd = openSync('/dev/full', 'w');
  try {
    const notices: string[] = [];
    const destination = new LogDestination(fd, { notice: (text) => notices.push(text) });
    for (let i = 0; i < 5; i++) {
      assert.equal(destination.write(`{"msg":"line ${i}"}\n`), true);
    }
    assert.equal(destination.dropped, 5);
    assert.equal(notices.length, 1);
    assert.match(notices[0]!, /writing the log failed \(ENOSPC\)/);
  } finally {
    closeSync(fd);
  }
});

test('dropped lines are counted once writing works', () => {
  const writer = flakyWriter(3);
  const destination = new LogDestination(1, {
    write: writer.write,
    notice: () => undefined,
    now: () => 1234,
  });
  for (let i = 0; i < 4; i++) {
    destination.write(`{"msg":"line ${i}"}\n`);
  }
  assert.equal(destination.dropped, 0);
  assert.equal(writer.written.length, 2);
  assert.deepEqual(JSON.parse(writer.written[0]!), {
    level: 40,
    time: 1234,
    msg: '3 log lines were dropped because writing the log failed (ENOSPC)',
  });
  assert.equal(writer.written[1], '{"msg":"line 3"}\n');
});

test('a full pipe is waited for', () => {
  const writer = flakyWriter(2, 'EAGAIN');
  const destination = new LogDestination(1, { write: writer.write, notice: () => undefined });
  destination.write('{"msg":"kept"}\n');
  assert.equal(destination.dropped, 0);
  assert.deepEqual(writer.written, ['{"msg":"kept"}\n']);
});

test('a report after a partial line starts a new line', () => {
  let calls = 0;
  const written: string[] = [];
  const destination = new LogDestination(1, {
    notice: () => undefined,
    write: (_fd, data) => {
      calls += 1;
      if (calls === 1) {
        written.push(Buffer.from(data.subarray(0, 4)).toString('utf8'));
        return 4;
      }
      if (calls === 2) {
        throw failure('EIO');
      }
      written.push(Buffer.from(data).toString('utf8'));
      return data.length;
    },
  });
  destination.write('{"msg":"cut"}\n');
  destination.write('{"msg":"next"}\n');
  assert.equal(written[0], '{"ms');
  assert.match(written[1]!, /^\n\{"level":40,.*1 log lines were dropped .*\(EIO\)"\}\n$/);
  assert.equal(written[2], '{"msg":"next"}\n');
});

test('the server answers while its log disk is full', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cdil-log-full-'));
  const database = await createTestDatabase();
  const fd = openSync('/dev/full', 'w');
  const notices: string[] = [];
  const config = loadConfig({
    CDIL_ENV: 'development',
    CDIL_DATA_DIR: dir,
    CDIL_LOG_LEVEL: 'info',
    ...database.env,
  });
  const services = await createServices(config);
  const destination = new LogDestination(fd, { notice: (text) => notices.push(text) });
  const app = await buildServer(config, services, { logStream: destination });
  try {
    for (let i = 0; i < 3; i++) {
      const response = await app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(response.statusCode, 200);
    }
    assert.ok(destination.dropped >= 3, `dropped ${destination.dropped} lines`);
    assert.equal(notices.length, 1);
    assert.match(notices[0]!, /writing the log failed \(ENOSPC\)/);
  } finally {
    await app.close();
    await services.close();
    await database.drop();
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});
