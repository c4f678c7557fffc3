// Measures the CPU time that a SQLite store spends while one of its writes waits for the write
// lock. A second connection, as another process would, holds the lock with BEGIN IMMEDIATE for
// --hold-ms. The store's write (Store.setTenantRateLimit) retries until the lock is free. The
// script reports this process's CPU time over the wait (process.cpuUsage, user plus system) as a
// fraction of one core.
//
// Run: node --import tsx bench/sqlite-lock-wait.ts [--hold-ms 3000] [--runs 3]
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { SqliteStore } from '../src/storage/sqlite/sqlite-store.ts';

const { values } = parseArgs({
  options: {
    'hold-ms': { type: 'string', default: '3000' },
    runs: { type: 'string', default: '3' },
  },
});
const holdMs = Number(values['hold-ms']);
const runs = Number(values.runs);

function cpuMs(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Returns the CPU time, in ms, of this process while a write waits `holdMs` for the lock. */
async function waitingCpuMs(path: string): Promise<{ cpu: number; elapsed: number }> {
  const store = new SqliteStore(path, { busyTimeoutMs: holdMs + 10_000 });
  await store.migrate();
  const other = new Database(path);
  try {
    other.exec('BEGIN IMMEDIATE');
    const release = sleep(holdMs).then(() => other.exec('COMMIT'));
    const started = performance.now();
    const before = process.cpuUsage();
    await store.setTenantRateLimit('no-such-tenant', 10);
    const cpu = cpuMs(process.cpuUsage(before));
    const elapsed = performance.now() - started;
    await release;
    return { cpu, elapsed };
  } finally {
    other.close();
    await store.close();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'cdil-lock-wait-'));
try {
  for (let run = 1; run <= runs; run++) {
    const { cpu, elapsed } = await waitingCpuMs(join(dir, `run-${run}.sqlite`));
    console.log(
      `run ${run}: waited ${elapsed.toFixed(0)} ms, CPU ${cpu.toFixed(1)} ms, ` +
        `${(cpu / elapsed).toFixed(3)} of a core`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
