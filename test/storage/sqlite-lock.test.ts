// Appends on SQLite when another connection, as another process would, holds the write lock:
// the append waits without blocking the event loop and completes once the lock is free.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { createServices, type Services } from '../../src/services/container.ts';
import { issueRequest } from '../helpers/bundle.ts';
import { walkChain } from '../helpers/chain.ts';
import { TEST_ENGINE } from '../helpers/database.ts';

const TENANT = 'lock-t1';
const HOLD_MS = 150;

describe(
  'SQLite append while another connection holds the write lock',
  {
    skip: TEST_ENGINE !== 'sqlite' && 'the write lock is a SQLite file lock',
  },
  () => {
    let dir: string;
    let services: Services;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'cdil-sqlite-lock-'));
      services = await createServices(
        loadConfig({ CDIL_ENV: 'development', CDIL_DATA_DIR: dir, CDIL_LOG_LEVEL: 'warn' }),
      );
      await services.tenants.create(TENANT);
    });

    after(async () => {
      await services.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('waits with the event loop running and appends once the lock is released', async () => {
      const other = new Database(join(dir, 'cdil.sqlite'));
      let ticks = 0;
      const ticker = setInterval(() => {
        ticks += 1;
      }, 10);
      try {
        other.exec('BEGIN IMMEDIATE');
        let settled = false;
        const issued = Promise.all(
          [0, 1, 2].map((i) =>
            services.issuance.issue(TENANT, issueRequest({ encounter_id: `lock-enc-${i}` })),
          ),
        ).finally(() => {
          settled = true;
        });
        await new Promise((resolve) => setTimeout(resolve, HOLD_MS));
        assert.equal(settled, false, 'an append finished while another connection held the lock');
        assert.ok(ticks >= 5, `the event loop ran only ${ticks} timer ticks while waiting`);
        other.exec('COMMIT');
        const outcomes = await issued;
        assert.equal(outcomes.length, 3);
        assert.equal((await walkChain(services, TENANT)).length, 3);
      } finally {
        clearInterval(ticker);
        if (other.inTransaction) {
          other.exec('ROLLBACK');
        }
        other.close();
      }
    });
  },
);
