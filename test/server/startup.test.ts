// Building the HTTP server must not print process warnings, such as deprecation notices from a
// dependency, which operators would otherwise see on every start.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestApp } from '../helpers/app.ts';

test('server start emits no process warnings', async () => {
  const warnings: string[] = [];
  const collect = (warning: Error) => {
    warnings.push(`${warning.name}: ${warning.message}`);
  };
  process.on('warning', collect);
  try {
    const t = await startTestApp();
    try {
      await t.app.ready();
      const health = await t.app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(health.statusCode, 200);
    } finally {
      await t.close();
    }
    // Warnings are emitted on the next tick of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', collect);
  }
  assert.deepEqual(warnings, []);
});
