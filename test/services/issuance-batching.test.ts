// How the issuance service groups concurrent requests into append transactions, on the engine
// under test: requests of many tenants share one transaction, and a tenant whose append fails
// does not take the other tenants of its batch down with it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { createServices, type Services } from '../../src/services/container.ts';
import pg from 'pg';
import { openStore } from '../../src/storage/open.ts';
import { PgStore } from '../../src/storage/postgres/pg-store.ts';
import {
  StoreBusyError,
  type AppendGroup,
  type AppendItem,
  type AppendOptions,
  type Sealer,
  type Store,
} from '../../src/storage/store.ts';
import { AppError } from '../../src/services/errors.ts';
import { TsaClient, type TimestampAuthority } from '../../src/services/tsa-client.ts';
import { issueRequest } from '../helpers/bundle.ts';
import { startLocalTsa, type LocalTsa } from '../helpers/tsa.ts';
import { walkChain } from '../helpers/chain.ts';
import {
  TEST_ENGINE,
  createTestDatabase,
  runSql,
  type StorageLocation,
} from '../helpers/database.ts';
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
        return async <T extends AppendItem>(
          groups: readonly AppendGroup<T>[],
          seal: Sealer<T>,
          options?: AppendOptions,
        ) => {
          batches.push(groups.map((group) => group.tenantId));
          await hooks.before?.();
          return target.appendCertificateGroups(groups, seal, options);
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
    },
  });
}

/** A data folder and a database of the engine under test, with the configuration for them. */
interface Fixture {
  location: StorageLocation;
  config: Config;
  /** Drops the database and removes the data folder. */
  remove(): Promise<void>;
}

async function createFixture(prefix: string, env: Record<string, string> = {}): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const location: StorageLocation = { dir, database: await createTestDatabase() };
  const config = loadConfig({
    CDIL_ENV: 'development',
    CDIL_DATA_DIR: dir,
    CDIL_LOG_LEVEL: 'warn',
    ...env,
    ...location.database.env,
  });
  return {
    location,
    config,
    remove: async () => {
      await location.database.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('issuance batching across tenants', () => {
  let fixture: Fixture;
  let location: StorageLocation;
  let services: Services;
  const batches: string[][] = [];
  const hooks: { before: AppendHook } = { before: undefined };

  before(async () => {
    fixture = await createFixture('cdil-batching-');
    location = fixture.location;
    services = await createServices(fixture.config, {
      store: recordingStore(openStore(fixture.config), batches, hooks),
    });
    for (const tenant of TENANTS) {
      await services.tenants.create(tenant);
    }
  });

  after(async () => {
    await services.close();
    await fixture.remove();
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

  test('busy retry stops the tenant retries', async () => {
    const tenants = TENANTS.slice(6, 9);
    let calls = 0;
    hooks.before = () => {
      calls += 1;
      if (calls === 1) {
        return Promise.reject(new Error('the batch failed for a reason of its own'));
      }
      hooks.before = undefined;
      return Promise.reject(new StoreBusyError('the write lock was held for too long'));
    };
    batches.length = 0;
    const outcomes = await Promise.allSettled(
      tenants.map((tenant) =>
        services.issuance.issue(tenant, issueRequest({ encounter_id: `retry-${tenant}` })),
      ),
    );
    hooks.before = undefined;
    assert.ok(
      batches[0]!.length > 1,
      `the first batch held one tenant: ${JSON.stringify(batches)}`,
    );
    // The failed batch, then one tenant alone, which found the database busy; no more attempts.
    assert.equal(batches.length, 2, JSON.stringify(batches));
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      assert.equal((outcome.reason as { code?: string }).code, 'DATABASE_BUSY');
    }
  });
});

/** TSA in front of a local openssl TSA that delays every call after the first `passed` ones. */
class GatedTsa implements TimestampAuthority {
  calls = 0;
  passed = Infinity;
  readonly #client: TsaClient;
  #release!: () => void;
  #gate: Promise<void> = Promise.resolve();

  constructor(client: TsaClient) {
    this.#client = client;
  }

  /** Delays every call after the next `count` until `open` is called. */
  holdAfter(count: number): void {
    this.passed = this.calls + count;
    this.#gate = new Promise((resolve) => {
      this.#release = resolve;
    });
  }

  open(): void {
    this.passed = Infinity;
    this.#release();
  }

  /** Releases the calls waiting now, and delays every later call. */
  step(): void {
    const release = this.#release;
    this.holdAfter(0);
    release();
  }

  async timestamp(data: Uint8Array): Promise<Uint8Array> {
    this.calls += 1;
    if (this.calls > this.passed) {
      await this.#gate;
    }
    return this.#client.timestamp(data);
  }
}

describe('re-signing after a key rotation', () => {
  let fixture: Fixture;
  let location: StorageLocation;
  let tsa: LocalTsa;
  let gated: GatedTsa;
  let services: Services;
  let rotator: Services;

  before(async () => {
    fixture = await createFixture('cdil-resign-', { CDIL_KEY_CACHE_TTL_MS: '600000' });
    location = fixture.location;
    tsa = await startLocalTsa();
    gated = new GatedTsa(
      new TsaClient({ url: tsa.url, timeoutMs: 10_000, trustedRoots: tsa.rootPem }),
    );
    services = await createServices(fixture.config, { tsa: gated });
    // Another process's view of the same database: its rotation leaves the keys cached by
    // `services` stale until an append finds the key no longer active.
    rotator = await createServices(fixture.config, { migrate: false });
    await services.tenants.create('resign-ts', { timestampCertificates: true });
    await services.tenants.create('resign-other');
  });

  after(async () => {
    await rotator.close();
    await services.close();
    await tsa.close();
    await fixture.remove();
  });

  test('endless rotations answer 503', async () => {
    // The issuing process caches the current key, and the rotations below leave it stale.
    await services.keyring.get('resign-ts');
    const chainBefore = await walkChain(services, 'resign-ts');
    await rotator.tenants.rotateKey('resign-ts');
    // The request's own timestamp passes. Each re-signing's timestamp waits at the gate while
    // the key is rotated again, so every append finds its key no longer active.
    gated.holdAfter(1);
    const pending = services.issuance.issue('resign-ts', issueRequest({ encounter_id: 'endless' }));
    const failed = assert.rejects(
      pending,
      (error: unknown) =>
        error instanceof AppError && error.code === 'SIGNING_KEY_CHANGED' && error.status === 503,
    );
    try {
      for (let round = 0; round < 3; round++) {
        while (gated.calls <= gated.passed) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        await rotator.tenants.rotateKey('resign-ts');
        gated.step();
      }
      await failed;
    } finally {
      gated.open();
    }
    assert.deepEqual(await walkChain(services, 'resign-ts'), chainBefore);
  });

  test('slow re-signing spares other tenants', async () => {
    const first = await services.issuance.issue('resign-ts', issueRequest());
    const rotation = await rotator.tenants.rotateKey('resign-ts');
    // The request's own timestamp passes, and the one for its re-signing waits at the gate.
    gated.holdAfter(1);
    const stale = services.issuance.issue('resign-ts', issueRequest({ encounter_id: 'stale' }));
    while (gated.calls <= gated.passed) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const other = await Promise.race([
      services.issuance.issue('resign-other', issueRequest()),
      new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), 5_000)),
    ]);
    gated.open();
    const resigned = await stale;
    assert.notEqual(other, 'timed out', 'the other tenant waited for the re-signing');
    assert.notEqual(first.certificate.key_id, rotation.active_key.key_id);
    assert.equal(resigned.certificate.key_id, rotation.active_key.key_id);
    const [stored] = await runSql(
      location,
      'SELECT timestamp_token FROM certificates WHERE certificate_id = ?',
      [resigned.certificate.certificate_id],
    );
    assert.ok(stored?.timestamp_token, 'the re-signed certificate has no timestamp token');
    assert.equal((await walkChain(services, 'resign-ts')).length, 2);
  });
});

describe(
  'issuance with one tenant held by another transaction',
  { skip: TEST_ENGINE !== 'postgres' && 'row locks per tenant exist on PostgreSQL only' },
  () => {
    let fixture: Fixture;
    let location: StorageLocation;
    let services: Services;
    const batches: string[][] = [];

    before(async () => {
      fixture = await createFixture('cdil-held-');
      location = fixture.location;
      const store = new PgStore(location.database.url!, { lockTimeoutMs: 1_500 });
      services = await createServices(fixture.config, {
        store: recordingStore(store, batches, { before: undefined }),
      });
      for (const tenant of ['held-t0', 'held-t1', 'held-t2']) {
        await services.tenants.create(tenant);
        // With the keys cached, requests sent together reach the queue together.
        await services.keyring.get(tenant);
      }
    });

    after(async () => {
      await services.close();
      await fixture.remove();
    });

    test('held tenant spares the others', async () => {
      const rival = new pg.Client({ connectionString: location.database.url });
      await rival.connect();
      try {
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'held-t0' FOR UPDATE");
        const issue = (tenant: string, i: number) =>
          services.issuance.issue(tenant, issueRequest({ encounter_id: `held-${tenant}-${i}` }));
        const started = Date.now();
        const sent = [0, 1, 2].flatMap((i) =>
          ['held-t0', 'held-t1', 'held-t2'].map((tenant) => issue(tenant, i)),
        );
        const held = Promise.allSettled(sent.filter((_, index) => index % 3 === 0));
        const others = await Promise.all(sent.filter((_, index) => index % 3 !== 0));
        const othersElapsed = Date.now() - started;
        const heldOutcomes = await held;
        const heldElapsed = Date.now() - started;
        assert.equal(others.length, 6);
        assert.ok(
          othersElapsed < 1_500,
          `the other tenants waited ${othersElapsed} ms for the held tenant's lock`,
        );
        assert.ok(
          batches.some((tenants) => tenants.length > 1 && tenants.includes('held-t0')),
          `the held tenant never shared a batch: ${JSON.stringify(batches)}`,
        );
        for (const outcome of heldOutcomes) {
          assert.equal(outcome.status, 'rejected');
          assert.equal((outcome.reason as { code?: string }).code, 'DATABASE_BUSY');
        }
        // One lock timeout, not one per attempt.
        assert.ok(heldElapsed < 4_000, `the held tenant was answered after ${heldElapsed} ms`);
      } finally {
        await rival.query('ROLLBACK');
        await rival.end();
      }
      const after = await services.issuance.issue('held-t0', issueRequest());
      assert.equal(after.certificate.tenant_id, 'held-t0');
      assert.equal((await walkChain(services, 'held-t0')).length, 1);
      assert.equal((await walkChain(services, 'held-t1')).length, 3);
    });

    test('held tenant alone spares later requests', async () => {
      const rival = new pg.Client({ connectionString: location.database.url });
      await rival.connect();
      try {
        await rival.query('BEGIN');
        await rival.query("SELECT 1 FROM chain_heads WHERE tenant_id = 'held-t0' FOR UPDATE");
        // The held tenant's request goes out first and alone, so its batch holds only that tenant.
        const held = services.issuance
          .issue('held-t0', issueRequest({ encounter_id: 'held-alone' }))
          .then(
            () => 'stored',
            (error: { code?: string }) => error.code,
          );
        await new Promise((resolve) => setTimeout(resolve, 50));
        const started = Date.now();
        const others = await Promise.all(
          ['held-t1', 'held-t2'].map((tenant) =>
            services.issuance.issue(tenant, issueRequest({ encounter_id: 'after-held' })),
          ),
        );
        const othersElapsed = Date.now() - started;
        assert.equal(others.length, 2);
        // Without leaving the held tenant out, they would wait the 1,500 ms lock timeout.
        assert.ok(
          othersElapsed < 1_000,
          `later requests waited ${othersElapsed} ms behind the held tenant`,
        );
        assert.equal(await held, 'DATABASE_BUSY');
      } finally {
        await rival.query('ROLLBACK');
        await rival.end();
      }
      assert.equal((await walkChain(services, 'held-t0')).length, 1);
    });
  },
);
