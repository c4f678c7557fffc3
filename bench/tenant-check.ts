// Measures what the auth hook's tenant-existence check adds to each request of a tenant-scoped
// route: the hook runs on the issuance route's access entry with a cached token, once with the
// service's Keyring.tenantExists and once with a check that does nothing. The tenant is in the
// store, so after the first call the check reads its in-process set and no query is made.
//
// Run: node --import tsx bench/tenant-check.ts [--calls 1000000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { FastifyReply, FastifyRequest } from 'fastify';

import { loadConfig } from '../src/config/config.ts';
import { makeAuthHook, signToken, TokenVerifier } from '../src/server/auth.ts';
import { ROUTES } from '../src/server/route-table.ts';
import { createServices } from '../src/services/container.ts';
import { benchEnv, machineLine } from './issuance.ts';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '1000000' } } });
const calls = Number(values.calls);

const dataDir = mkdtempSync(join(tmpdir(), 'cdil-bench-tenant-check-'));
const config = loadConfig(benchEnv(dataDir));
const services = await createServices(config, { migrate: true });
try {
  await services.tenants.create('bench-tenant');
  const authOptions = {
    secret: config.jwtSecret,
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
  };
  const token = await signToken(authOptions, {
    subject: 'bench',
    roles: ['clinician'],
    tenantId: 'bench-tenant',
    ttlSeconds: 600,
  });
  const request = {
    routeOptions: { config: { access: ROUTES.issue } },
    headers: { authorization: `Bearer ${token}` },
  } as unknown as FastifyRequest;
  const reply = {} as FastifyReply;

  const hooks = {
    'no tenant check': makeAuthHook(new TokenVerifier(authOptions), () => Promise.resolve(true)),
    'Keyring.tenantExists': makeAuthHook(new TokenVerifier(authOptions), (tenantId) =>
      services.keyring.tenantExists(tenantId),
    ),
  };
  console.log(`${machineLine()}; ${calls} calls per row, best of 5 alternating rounds`);
  const best = new Map<string, number>();
  for (const hook of Object.values(hooks)) {
    await hook(request, reply); // fills the token cache and the tenant set
  }
  for (let round = 0; round < 5; round++) {
    for (const [name, hook] of Object.entries(hooks)) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < calls; i++) {
        await hook(request, reply);
      }
      const nanoseconds = Number(process.hrtime.bigint() - start) / calls;
      best.set(name, Math.min(best.get(name) ?? Infinity, nanoseconds));
    }
  }
  for (const [name, nanoseconds] of best) {
    console.log(`${name.padEnd(22)} ${nanoseconds.toFixed(0)} ns per request`);
  }
} finally {
  await services.close();
  rmSync(dataDir, { recursive: true, force: true });
}
