// The `cdil tenant` and `cdil audit export` commands run as real child processes against the
// database of a test service, and each records the same audit event as the admin API, with the
// local operating system user as its actor.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AuditEvent } from '../../src/core/audit-event.ts';
import type { KeyRevocationSummary, KeyRotationSummary } from '../../src/services/tenants.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { runCli } from '../helpers/cli.ts';

const TENANT = 'north-wing';

describe('cdil tenant audit events', () => {
  let t: TestApp;
  let dir: string;
  let env: Record<string, string>;

  /** Returns the tenant's events with the given action, in log order. */
  const eventsOf = async (tenantId: string, action: string): Promise<AuditEvent[]> => {
    const page = await t.services.audit.list(tenantId, { action }, { limit: 500 });
    return page.items.map((item) => item.event);
  };

  /** Returns the actor hash that a command run by this test's user gets in the tenant's log. */
  const operatorHash = async (tenantId: string): Promise<string> => {
    const keys = await t.services.keyring.get(tenantId);
    assert.ok(keys, `tenant ${tenantId} not found`);
    return keys.hashIdentifier('os_user', userInfo().username);
  };

  /** Checks that the event came from a command run by this test's user. */
  const assertFromOperator = async (event: AuditEvent, tenantId: string): Promise<void> => {
    assert.equal(event.channel, 'cli');
    assert.equal(event.outcome, 'success');
    assert.equal(event.actor_hash, await operatorHash(tenantId));
    assert.deepEqual(event.actor_roles, []);
    assert.equal(event.route, null);
  };

  const run = (args: string[]) => {
    const result = runCli(args, env);
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout) as unknown;
  };

  before(async () => {
    t = await startTestApp({ CDIL_CHECKPOINT_INTERVAL_MS: '0' });
    dir = mkdtempSync(join(tmpdir(), 'cdil-tenant-cli-'));
    env = { CDIL_DATA_DIR: t.dir, CDIL_LOG_LEVEL: 'warn', ...t.database.env };
    await t.services.tenants.create(TENANT);
  });
  after(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('rotate-key records key.rotate', async () => {
    const rotation = run(['tenant', 'rotate-key', TENANT]) as KeyRotationSummary;
    const events = await eventsOf(TENANT, 'key.rotate');
    assert.equal(events.length, 1);
    assert.equal(events[0]!.object_type, 'signing_key');
    assert.equal(events[0]!.object_id, rotation.active_key.key_id);
    await assertFromOperator(events[0]!, TENANT);
  });

  test('revoke-key records key.revoke', async () => {
    const [retired] = (await t.services.tenants.get(TENANT)).keys.filter(
      (key) => key.status !== 'active',
    );
    assert.ok(retired, 'the tenant has a retired key to revoke');
    const revocation = run([
      'tenant',
      'revoke-key',
      TENANT,
      retired.key_id,
      '--reason',
      'superseded',
    ]) as KeyRevocationSummary;
    assert.equal(revocation.revoked_key.key_id, retired.key_id);
    const events = await eventsOf(TENANT, 'key.revoke');
    assert.equal(events.length, 1);
    assert.equal(events[0]!.object_type, 'signing_key');
    assert.equal(events[0]!.object_id, retired.key_id);
    await assertFromOperator(events[0]!, TENANT);
  });

  test('set-rate-limit records tenant.set_rate_limit', async () => {
    run(['tenant', 'set-rate-limit', TENANT, '120']);
    run(['tenant', 'set-rate-limit', TENANT, 'default']);
    const events = await eventsOf(TENANT, 'tenant.set_rate_limit');
    assert.equal(events.length, 2);
    for (const event of events) {
      assert.equal(event.object_type, 'tenant');
      assert.equal(event.object_id, TENANT);
      await assertFromOperator(event, TENANT);
    }
  });

  test('tenant create names the operator', async () => {
    run(['tenant', 'create', 'south-wing']);
    const events = await eventsOf('south-wing', 'tenant.create');
    assert.equal(events.length, 1);
    await assertFromOperator(events[0]!, 'south-wing');
  });

  test('audit export names the operator', async () => {
    const result = runCli(
      ['audit', 'export', '--tenant', TENANT, '--out', join(dir, 'export.jsonl')],
      env,
    );
    assert.equal(result.status, 0, result.stderr);
    const events = await eventsOf(TENANT, 'audit.export');
    assert.equal(events.length, 1);
    await assertFromOperator(events[0]!, TENANT);
  });
});
