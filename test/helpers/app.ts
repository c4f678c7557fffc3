// Builds a real service stack with captured JSON logs, for tests that call the HTTP API through
// app.inject(). It stores data in a temporary SQLite file, or in a new PostgreSQL database
// when DATABASE_URL is set (see database.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { buildServer } from '../../src/server/app.ts';
import { signToken } from '../../src/server/auth.ts';
import type { Role } from '../../src/server/route-table.ts';
import {
  createServices,
  type ServiceOptions,
  type Services,
} from '../../src/services/container.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

export interface TestApp {
  app: FastifyInstance;
  services: Services;
  config: Config;
  dir: string;
  /** The PostgreSQL database in use, or an empty environment under SQLite. */
  database: TestDatabase;
  logs: string[];
  token(roles: Role | Role[], tenantId?: string, extra?: { ttlSeconds?: number }): Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts an app on a new data folder and database. To reopen existing data, pass the earlier
 * app's CDIL_DATA_DIR and `database`; close() then leaves that database in place.
 */
export async function startTestApp(
  env: Record<string, string> = {},
  existing?: TestDatabase,
  serviceOptions: ServiceOptions = {},
): Promise<TestApp> {
  const dir = mkdtempSync(join(tmpdir(), 'cdil-test-'));
  const database = existing ?? (await createTestDatabase());
  const config = loadConfig({
    CDIL_ENV: 'development',
    CDIL_DATA_DIR: dir,
    CDIL_LOG_LEVEL: 'info',
    ...database.env,
    ...env,
  });
  let services: Services;
  try {
    services = await createServices(config, serviceOptions);
  } catch (error) {
    if (existing === undefined) {
      await database.drop();
    }
    throw error;
  }
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(chunk.toString('utf8'));
      callback();
    },
  });
  const app = await buildServer(config, services, { logStream });
  return {
    app,
    services,
    config,
    dir,
    database,
    logs,
    token: (roles, tenantId, extra = {}) =>
      signToken(
        { secret: config.jwtSecret, issuer: config.jwtIssuer, audience: config.jwtAudience },
        {
          subject: 'test-user',
          roles: Array.isArray(roles) ? roles : [roles],
          tenantId,
          ttlSeconds: extra.ttlSeconds ?? 600,
        },
      ),
    close: async () => {
      await app.close();
      await services.close();
      if (existing === undefined) {
        await database.drop();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function issueBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_name: 'scribe-model',
    model_version: '2026.11',
    prompt_version: 'soap-v3',
    governance_policy_version: 'policy-7',
    note_text: 'SUBJECTIVE:,  Patient reports improved breathing. ASSESSMENT:,  COPD, stable.',
    human_reviewed: true,
    human_reviewer_id: 'dr-reviewer-1',
    encounter_id: 'enc-1001',
    patient_reference: 'pat-2002',
    ...overrides,
  };
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}
