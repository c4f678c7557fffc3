// BackgroundAuditWriter with scripted writes: which failures are retried, how long, how many
// events may wait, and what is logged for each event that is not written.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  BackgroundAuditWriter,
  type AuditWrite,
  type AuditWritePolicy,
} from '../../src/server/audit-writer.ts';
import {
  AuditEventExistsError,
  StoreBusyError,
  StoreUnavailableError,
} from '../../src/storage/store.ts';

interface LoggedLine {
  level: 'warn' | 'error';
  details: Record<string, unknown>;
  message: string;
}

function captureLog(): {
  lines: LoggedLine[];
  log: ConstructorParameters<typeof BackgroundAuditWriter>[0];
} {
  const lines: LoggedLine[] = [];
  return {
    lines,
    log: {
      warn: (details, message) =>
        lines.push({ level: 'warn', details: details as Record<string, unknown>, message }),
      error: (details, message) =>
        lines.push({ level: 'error', details: details as Record<string, unknown>, message }),
    },
  };
}

const FAST: Partial<AuditWritePolicy> = {
  firstRetryDelayMs: 10,
  maxRetryDelayMs: 40,
  retryPeriodMs: 2_000,
  shutdownWaitMs: 200,
};

/** Returns a write whose tries fail with `failures` in turn and then succeed. */
function scriptedWrite(
  requestId: string,
  failures: Error[],
): AuditWrite & { attempts: number; stored: boolean } {
  const write = {
    tenantId: 't1',
    requestId,
    action: 'request.failed' as const,
    reason: 'unavailable' as const,
    attempts: 0,
    stored: false,
    attempt: () => {
      write.attempts += 1;
      const failure = failures.shift();
      if (failure !== undefined) {
        return Promise.reject(failure);
      }
      write.stored = true;
      return Promise.resolve();
    },
  };
  return write;
}

/**
 * Returns a scripted write whose first try commits but loses its reply, so that each retry finds
 * the event id taken. `checks` are the results of isStored in turn: a boolean, or an error.
 */
function lostReplyWrite(
  requestId: string,
  checks: (boolean | Error)[],
): AuditWrite & { attempts: number; checks: number } {
  const write = {
    tenantId: 't1',
    requestId,
    action: 'request.failed' as const,
    reason: 'unavailable' as const,
    attempts: 0,
    checks: 0,
    attempt: () => {
      write.attempts += 1;
      return Promise.reject(
        write.attempts === 1
          ? new StoreUnavailableError('Connection terminated unexpectedly')
          : new AuditEventExistsError('event id is stored'),
      );
    },
    isStored: () => {
      write.checks += 1;
      const next = checks.shift() ?? false;
      return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
    },
  };
  return write;
}

function notWrittenLines(lines: LoggedLine[]): LoggedLine[] {
  return lines.filter(
    (line) => line.message === 'audit event of a rejected request was not written',
  );
}

describe('BackgroundAuditWriter', () => {
  test('retries busy and unavailable errors', async () => {
    const { lines, log } = captureLog();
    const writer = new BackgroundAuditWriter(log, FAST);
    const write = scriptedWrite('r1', [
      new StoreBusyError('locked'),
      new StoreUnavailableError('connection refused'),
      new StoreBusyError('locked'),
    ]);
    await writer.submit(write);
    assert.equal(write.attempts, 4);
    assert.equal(write.stored, true);
    assert.equal(writer.pending, 0);
    assert.equal(notWrittenLines(lines).length, 0);
    const warnings = lines.filter((line) => line.level === 'warn');
    assert.equal(warnings.length, 1, 'one warning when retries start, not one per try');
  });

  test('other errors are not retried', async () => {
    const { lines, log } = captureLog();
    const writer = new BackgroundAuditWriter(log, FAST);
    const write = scriptedWrite('r2', [new Error('constraint failed')]);
    await writer.submit(write);
    assert.equal(write.attempts, 1);
    assert.equal(write.stored, false);
    const [line, ...rest] = notWrittenLines(lines);
    assert.equal(rest.length, 0);
    assert.equal(line?.level, 'error');
    assert.equal(line?.details.failure, 'not_retryable');
    assert.equal(line?.details.tenantId, 't1');
    assert.equal(line?.details.requestId, 'r2');
    assert.equal(line?.details.action, 'request.failed');
    assert.equal(line?.details.reason, 'unavailable');
  });

  test('retry finding its own event stored', async () => {
    const { lines, log } = captureLog();
    const writer = new BackgroundAuditWriter(log, FAST);
    const write = lostReplyWrite('r-lost', [true]);
    await writer.submit(write);
    assert.equal(write.attempts, 2);
    assert.equal(write.checks, 1);
    assert.equal(notWrittenLines(lines).length, 0);
    const stored = lines.filter((line) => /stored by an earlier try/.test(line.message));
    assert.equal(stored.length, 1);
    assert.equal(stored[0]?.level, 'warn');
    assert.equal(stored[0]?.details.requestId, 'r-lost');
    assert.equal(stored[0]?.details.tenantId, 't1');
    assert.equal(stored[0]?.details.attempts, 2);
    assert.equal(writer.pending, 0);
  });

  test('retry finding another event stored', async () => {
    const { lines, log } = captureLog();
    const writer = new BackgroundAuditWriter(log, FAST);
    const write = lostReplyWrite('r-other', [false]);
    await writer.submit(write);
    assert.equal(write.attempts, 2);
    const [line, ...rest] = notWrittenLines(lines);
    assert.equal(rest.length, 0);
    assert.equal(line?.details.failure, 'not_retryable');
    assert.ok(line?.details.err instanceof AuditEventExistsError);
    assert.equal(line?.details.attempts, 2);
  });

  test('failed stored check is retried', async () => {
    const { lines, log } = captureLog();
    const writer = new BackgroundAuditWriter(log, FAST);
    const write = lostReplyWrite('r-check', [new StoreBusyError('locked'), true]);
    await writer.submit(write);
    assert.equal(write.attempts, 3);
    assert.equal(write.checks, 2);
    assert.equal(notWrittenLines(lines).length, 0);
  });

  test('duplicate on the first try is not checked', async () => {
    const { lines, log } = captureLog();
    const writer = new BackgroundAuditWriter(log, FAST);
    let checks = 0;
    const write = {
      ...scriptedWrite('r-first', [new AuditEventExistsError('event id is stored')]),
      isStored: () => {
        checks += 1;
        return Promise.resolve(true);
      },
    };
    await writer.submit(write);
    assert.equal(checks, 0);
    const [line] = notWrittenLines(lines);
    assert.equal(line?.details.failure, 'not_retryable');
  });

  test('retries stop after the retry period', async () => {
    const { lines, log } = captureLog();
    const writer = new BackgroundAuditWriter(log, { ...FAST, retryPeriodMs: 150 });
    const write = scriptedWrite(
      'r3',
      Array.from({ length: 1_000 }, () => new StoreBusyError('locked')),
    );
    const started = Date.now();
    await writer.submit(write);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 2_000, `gave up after ${elapsed} ms`);
    assert.ok(write.attempts >= 2, `tried ${write.attempts} times`);
    assert.equal(write.stored, false);
    const [line] = notWrittenLines(lines);
    assert.equal(line?.details.failure, 'retry_period_ended');
    assert.equal(line?.details.attempts, write.attempts);
  });

  test('events beyond maxPending are dropped', async () => {
    const { lines, log } = captureLog();
    const writer = new BackgroundAuditWriter(log, { ...FAST, maxPending: 2 });
    const blocked = [0, 1].map((i) => scriptedWrite(`held-${i}`, [new StoreBusyError('locked')]));
    const settlements = blocked.map((write) => writer.submit(write));
    const dropped = scriptedWrite('dropped', []);
    await writer.submit(dropped);
    assert.equal(dropped.attempts, 0);
    const [line] = notWrittenLines(lines);
    assert.equal(line?.details.failure, 'too_many_pending');
    assert.equal(line?.details.requestId, 'dropped');
    await Promise.all(settlements);
    assert.ok(blocked.every((write) => write.stored));
  });

  test('drain gives up pending events after its timeout', async () => {
    const { lines, log } = captureLog();
    const writer = new BackgroundAuditWriter(log, FAST);
    const stuck = scriptedWrite(
      'stuck',
      Array.from({ length: 10_000 }, () => new StoreUnavailableError('connection refused')),
    );
    const quick = scriptedWrite('quick', []);
    const settled = Promise.all([writer.submit(stuck), writer.submit(quick)]);
    const started = Date.now();
    const notWritten = await writer.drain();
    const elapsed = Date.now() - started;
    assert.equal(notWritten, 1);
    assert.ok(elapsed >= 150, `drain returned after ${elapsed} ms`);
    assert.ok(elapsed < 2_000, `drain returned after ${elapsed} ms`);
    await settled;
    assert.equal(quick.stored, true);
    const attemptsAtDrain = stuck.attempts;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(stuck.attempts, attemptsAtDrain, 'retries went on after the drain');
    const [line, ...rest] = notWrittenLines(lines);
    assert.equal(rest.length, 0);
    assert.equal(line?.details.failure, 'shutdown');
    assert.equal(line?.details.requestId, 'stuck');
    const summary = lines.find((entry) => /were not written/.test(entry.message));
    assert.equal(summary?.details.notWritten, 1);
  });

  test('drain returns at once when nothing is pending', async () => {
    const { log } = captureLog();
    const writer = new BackgroundAuditWriter(log, { shutdownWaitMs: 60_000 });
    const started = Date.now();
    assert.equal(await writer.drain(), 0);
    assert.ok(Date.now() - started < 1_000);
  });
});
