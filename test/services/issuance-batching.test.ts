// How the issuance service groups concurrent requests into append transactions, on the engine
// under test: requests of many tenants share one transaction, and a tenant whose append fails
// does not take the other tenants of its batch down with it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { createServices, type Services } from '../../src/services/container.ts';
import { openStore } from '../../src/storage/open.ts';
import type { AppendGroup, AppendItem, Sealer, Store } from '../../src/storage/store.ts';
import { issueRequest } from '../helpers/bundle.ts';
import { walkChain } from '../helpers/chain.ts';
import { createTestDatabase, runSql, type StorageLocation } from '../helpers/database.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TENANTS = Array.from({ length: 12 }, (_, i) => `batch-t${String(i).padStart(2, '0')}`);
const PER_TENANT = 6;

/** Records the tenants of every multi-tenant append the service makes. */
function recordingStore(store: Store, batches: string[][]): Store {
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property === 'appendCertificateGroups') {
        return <T extends AppendItem>(groups: readonly AppendGroup<T>[], seal: Sealer<T>) => {
          batches.push(groups.map((group) => group.tenantId));
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
      store: recordingStore(openStore(config), batches),
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
});
