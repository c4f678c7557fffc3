// How the issuance service groups concurrent requests into append transactions, on the engine
// under test: requests of many tenants share one transaction, and a tenant whose append fails
// does not take the other tenants of its batch down with it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { createServices, type Services } from '../../src/services/container.ts';
import { openStore } from '../../src/storage/open.ts';
import {
  StoreBusyError,
  type AppendGroup,
  type AppendItem,
  type Sealer,
  type Store,
} from '../../src/storage/store.ts';
import { issueRequest } from '../helpers/bundle.ts';
import { walkChain } from '../helpers/chain.ts';
import { createTestDatabase, runSql, type StorageLocation } from '../helpers/database.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TENANTS = Array.from({ length: 12 }, (_, i) => `batch-t${String(i).padStart(2, '0')}`);
const PER_TENANT = 6;

/** Function run before an append reaches the store. A rejection fails the append. */
type AppendHook = (() => Promise<void>) | undefined;

/**
 * Records the tenants of every multi-tenant append the service makes, and runs `hooks.before`
 * first when one is set.
 */
function recordingStore(store: Store, batches: string[][], hooks: { before: AppendHook }): Store {
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property === 'appendCertificateGroups') {
        return async <T extends AppendItem>(groups: readonly AppendGroup<T>[], seal: Sealer<T>) => {
          batches.push(groups.map((group) => group.tenantId));
          await hooks.before?.();
          return target.appendCertificateGroups(groups, seal);
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
    },
  });
}

describe('issuance batching across tenants', () => {
  let location: StorageLocation;
  let services: Services;
  const batches: string[][] = [];
  const hooks: { before: AppendHook } = { before: undefined };

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cdil-batching-'));
    location = { dir, database: await createTestDatabase() };
    const config = loadConfig({
      CDIL_ENV: 'development',
      CDIL_DATA_DIR: dir,
      CDIL_LOG_LEVEL: 'warn',
      ...location.database.env,
    });
    services = await createServices(config, {
      store: recordingStore(openStore(config), batches, hooks),
    });
    for (const tenant of TENANTS) {
      await services.tenants.create(tenant);
    }
  });

  after(async () => {
    await services.close();
    await location.database.drop();
    rmSync(location.dir, { recursive: true, force: true });
  });

  test('many tenants share one transaction', async () => {
    batches.length = 0;
    const issued = await Promise.all(
      TENANTS.flatMap((tenant) =>
        Array.from({ length: PER_TENANT }, (_, i) =>
          services.issuance.issue(tenant, issueRequest({ encounter_id: `enc-${tenant}-${i}` })),
        ),
      ),
    );
    assert.equal(issued.length, TENANTS.length * PER_TENANT);
    assert.ok(
      batches.length < issued.length,
      `${issued.length} certificates took ${batches.length} transactions`,
    );
    assert.ok(
      batches.some((tenants) => tenants.length > 1),
      'no transaction held more than one tenant',
    );
    for (const tenants of batches) {
      assert.equal(
        new Set(tenants).size,
        tenants.length,
        `a tenant appears twice in ${tenants.join(', ')}`,
      );
    }
    for (const tenant of TENANTS) {
      const chain = await walkChain(services, tenant);
      const mine = issued
        .filter((outcome) => outcome.certificate.tenant_id === tenant)
        .map((outcome) => outcome.certificate.certificate_id);
      assert.deepEqual(new Set(chain), new Set(mine), `chain of ${tenant}`);
    }
  });

  test('failing tenant spares its batch', async () => {
    const [broken, ...healthy] = TENANTS.slice(0, 4) as [string, ...string[]];
    // Without its chain head row, every append for the tenant fails inside the transaction,
    // after the other tenants of the batch were written in it.
    await runSql(location, 'DELETE FROM chain_heads WHERE tenant_id = ?', [broken]);
    batches.length = 0;
    const outcomes = await Promise.allSettled(
      [broken, ...healthy].flatMap((tenant) =>
        Array.from({ length: 3 }, (_, i) =>
          services.issuance.issue(tenant, issueRequest({ encounter_id: `late-${tenant}-${i}` })),
        ),
      ),
    );
    assert.ok(
      batches.some((tenants) => tenants.length > 1 && tenants.includes(broken)),
      `the failing tenant never shared a transaction: ${JSON.stringify(batches)}`,
    );
    for (const [index, outcome] of outcomes.entries()) {
      const tenant = [broken, ...healthy][Math.floor(index / 3)]!;
      if (tenant === broken) {
        assert.ok(outcome.status === 'rejected', `${tenant} request ${index}`);
        assert.match(String(outcome.reason), /no chain head/);
      } else {
        assert.equal(outcome.status, 'fulfilled', `${tenant} request ${index}`);
      }
    }
    for (const tenant of healthy) {
      const chain = await walkChain(services, tenant);
      assert.equal(chain.length, PER_TENANT + 3, `chain of ${tenant}`);
    }
    const stored = await runSql(
      location,
      'SELECT COUNT(*) AS n FROM certificates WHERE tenant_id = ?',
      [broken],
    );
    assert.equal(Number(stored[0]!.n), PER_TENANT, 'the failed appends stored nothing');
  });
  test('busy batch rejects queued requests', async () => {
    const [waiting, other] = TENANTS.slice(4, 6) as [string, string];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered!: () => void;
    const inAppend = new Promise<void>((resolve) => {
      entered = resolve;
    });
    hooks.before = async () => {
      hooks.before = undefined;
      entered();
      await gate;
      throw new StoreBusyError('the write lock was held for too long');
    };
    batches.length = 0;
    const issue = (tenant: string, i: number) =>
      services.issuance.issue(tenant, issueRequest({ encounter_id: `busy-${tenant}-${i}` }));
    const first = Promise.allSettled([issue(waiting, 0)]);
    await inAppend;
    // Queued while the first batch waits: more for its tenant, and some for another tenant.
    const queued = Promise.allSettled([issue(waiting, 1), issue(waiting, 2)]);
    const others = Promise.allSettled([issue(other, 0), issue(other, 1)]);
    await new Promise((resolve) => setImmediate(resolve));
    release();
    const busyCodes = [...(await first), ...(await queued)].map((outcome) =>
      outcome.status === 'rejected' ? (outcome.reason as { code?: string }).code : 'stored',
    );
    assert.deepEqual(busyCodes, ['DATABASE_BUSY', 'DATABASE_BUSY', 'DATABASE_BUSY']);
    assert.ok(
      !batches.slice(1).some((tenants) => tenants.includes(waiting)),
      `the queued requests were appended after the busy batch: ${JSON.stringify(batches)}`,
    );
    const otherOutcomes = (await others).map((outcome) => outcome.status);
    if (services.store.engine === 'sqlite') {
      // One write lock covers the whole database, so every queued request was rejected.
      assert.deepEqual(otherOutcomes, ['rejected', 'rejected']);
    } else {
      // Row locks are per tenant, so the other tenant's requests were appended.
      assert.deepEqual(otherOutcomes, ['fulfilled', 'fulfilled']);
    }
    assert.equal((await walkChain(services, waiting)).length, PER_TENANT);
  });
});
