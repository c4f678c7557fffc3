// Administrative commands that work on the configured database directly: migrate, tenant
// management (create, list, key rotation and revocation, rate limit), and token issuance for
// local use. Key and limit changes reach running servers as docs/operations.md describes.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import {
  ConfigError,
  describeMissingDataDir,
  loadConfig,
  MAX_RATE_LIMIT_PER_MINUTE,
  type Config,
} from '../../config/config.ts';
import { REVOCATION_REASONS, type RevocationReason } from '../../core/key.ts';
import { ROLES, type Role } from '../../server/route-table.ts';
import { cliAuditContext } from '../../services/audit.ts';
import { AppError } from '../../services/errors.ts';
import type { Services } from '../../services/container.ts';
import type { Store } from '../../storage/store.ts';
import { assertSqliteFolderWritable } from '../sqlite-folder.ts';

async function openServices(options: { migrate?: boolean } = {}): Promise<Services> {
  const { createServices } = await import('../../services/container.ts');
  const config = loadConfig();
  assertSqliteFolderWritable(config);
  return createServices(config, options);
}

export async function withServices<T>(run: (services: Services) => Promise<T>): Promise<T> {
  const services = await openServices();
  try {
    return await run(services);
  } finally {
    await services.close();
  }
}

/**
 * Returns true when the configured database can be read and has no tenant `tenantId`, false
 * when it has the tenant, and undefined when it cannot be opened or read (no database, no
 * schema yet, or an unreachable server). It opens the store read-only, so a missing SQLite
 * file is not created. NOTE: an unreachable PostgreSQL server delays the result by the
 * store's connection timeout (5 s).
 */
async function tenantMissingFromDatabase(
  config: Config,
  tenantId: string,
): Promise<boolean | undefined> {
  const { openStore } = await import('../../storage/open.ts');
  let store: Store;
  try {
    store = openStore(config, { readOnly: true, logger: { warn: () => {} } });
  } catch {
    return undefined;
  }
  try {
    return (await store.getTenant(tenantId)) === undefined;
  } catch {
    return undefined;
  } finally {
    await store.close().catch(() => {});
  }
}

/** Explains why `cdil token` cannot sign: a token from new secrets would fail at the server. */
function describeMissingTokenSecrets(config: Config): string {
  if (!existsSync(config.dataDir)) {
    return describeMissingDataDir(config.dataDir);
  }
  return (
    `development secrets file ${config.secretsFile} does not exist, so a token signed now ` +
    'would not be accepted by the server; start the server once to generate it, restore it ' +
    'from a backup, or set CDIL_JWT_SECRET'
  );
}

export function registerAdminCommands(program: Command): void {
  program
    .command('migrate')
    .description('Apply pending database migrations (forward-only; safe to run again)')
    .action(async () => {
      const services = await openServices({ migrate: true });
      const report = services.migration!;
      await services.close();
      console.log(
        report.applied.length > 0
          ? `applied ${report.applied.length} migration(s): ${report.applied.join('; ')}; schema version ${report.current}`
          : `schema is up to date (version ${report.current})`,
      );
    });

  const tenant = program.command('tenant').description('Manage tenants');
  tenant
    .command('create')
    .description('Provision a tenant with its own signing key and identifier-hashing secret')
    .argument('<id>', 'tenant id: 2-63 characters of a-z, 0-9 and -')
    .option(
      '--phi-policy <policy>',
      'flag (report findings) or reject (refuse notes with PHI)',
      'flag',
    )
    .option(
      '--timestamp-policy <policy>',
      'best_effort (retry a failed RFC 3161 timestamp later) or required (fail the request)',
      'best_effort',
    )
    .option('--timestamp-certificates', 'timestamp each certificate, besides the log checkpoints')
    .action(
      async (
        id: string,
        options: { phiPolicy: string; timestampPolicy: string; timestampCertificates?: boolean },
      ) => {
        if (options.phiPolicy !== 'flag' && options.phiPolicy !== 'reject') {
          throw new Error(
            `--phi-policy must be flag or reject, got ${JSON.stringify(options.phiPolicy)}`,
          );
        }
        if (options.timestampPolicy !== 'best_effort' && options.timestampPolicy !== 'required') {
          throw new Error(
            `--timestamp-policy must be best_effort or required, got ${JSON.stringify(options.timestampPolicy)}`,
          );
        }
        const policy = options.phiPolicy;
        const timestampPolicy = options.timestampPolicy;
        const created = await withServices((services) =>
          services.tenants.create(
            id,
            {
              phiPolicy: policy,
              timestampPolicy,
              timestampCertificates: options.timestampCertificates === true,
            },
            cliAuditContext(),
          ),
        );
        console.log(JSON.stringify(created, null, 2));
      },
    );
  tenant
    .command('list')
    .description('List tenants and their keys')
    .action(async () => {
      const config = loadConfig(process.env, { writeSecrets: false });
      const [{ createServices }, { openReadOnlyStore }] = await Promise.all([
        import('../../services/container.ts'),
        import('../read-only-store.ts'),
      ]);
      const store = await openReadOnlyStore(config);
      const services = await createServices(config, { store, migrate: false });
      try {
        console.log(JSON.stringify(await services.tenants.list(), null, 2));
      } finally {
        await services.close();
      }
    });
  tenant
    .command('rotate-key')
    .description(
      "Replace the tenant's active signing key with a new one; the old key is retired and keeps verifying what it signed",
    )
    .argument('<id>', 'tenant id')
    .action(async (id: string) => {
      const rotation = await withServices((services) =>
        services.tenants.rotateKey(id, cliAuditContext()),
      );
      console.log(JSON.stringify(rotation, null, 2));
    });
  tenant
    .command('revoke-key')
    .description(
      'Revoke a signing key: every certificate it signed fails verification from then on',
    )
    .argument('<id>', 'tenant id')
    .argument('<key-id>', 'key id (kid in the JWKS)')
    .requiredOption('--reason <reason>', `revocation reason: ${REVOCATION_REASONS.join(', ')}`)
    .option('--rotate', 'required to revoke the active key: a new key becomes active at once')
    // A key id is a base64url thumbprint, and about one in 64 starts with "-". Commander would
    // take such an id for an option; this lets it through as the argument it is. A misspelled
    // option then fails as an extra argument instead.
    .allowUnknownOption()
    .action(async (id: string, keyId: string, options: { reason: string; rotate?: boolean }) => {
      if (!REVOCATION_REASONS.includes(options.reason as RevocationReason)) {
        throw new Error(
          `--reason must be one of ${REVOCATION_REASONS.join(', ')}, got ${JSON.stringify(options.reason)}`,
        );
      }
      const reason = options.reason as RevocationReason;
      const revocation = await withServices((services) =>
        services.tenants.revokeKey(
          id,
          keyId,
          { reason, rotate: options.rotate === true },
          cliAuditContext(),
        ),
      ).catch((error: unknown) => {
        // The service writes this message for the HTTP API, whose request field is "rotate".
        if (error instanceof AppError && error.code === 'KEY_ACTIVE') {
          throw new Error(
            `key ${keyId} is the active signing key of tenant ${id}; add --rotate to revoke it and switch to a new key in one step`,
            { cause: error },
          );
        }
        throw error;
      });
      console.log(JSON.stringify(revocation, null, 2));
    });
  tenant
    .command('set-rate-limit')
    .description(
      "Set the tenant's issuance limit per minute across all server processes, overriding CDIL_RATE_LIMIT_PER_MINUTE",
    )
    .argument('<id>', 'tenant id')
    .argument('<limit>', 'requests per minute, 0 for no limit, or "default" to remove the override')
    .action(async (id: string, limitText: string) => {
      const limit = limitText === 'default' ? null : Number(limitText);
      if (
        limit !== null &&
        (!/^\d+$/.test(limitText) || limit < 0 || limit > MAX_RATE_LIMIT_PER_MINUTE)
      ) {
        throw new Error(
          `limit must be an integer from 0 to ${MAX_RATE_LIMIT_PER_MINUTE} or "default", got ${JSON.stringify(limitText)}`,
        );
      }
      const updated = await withServices((services) =>
        services.tenants.setRateLimit(id, limit, cliAuditContext()),
      );
      console.log(JSON.stringify(updated, null, 2));
    });

  program
    .command('token')
    .description(
      'Print an HS256 bearer token signed with the configured secret (for local use and tests)',
    )
    .option('--tenant <id>', 'tenant the token acts for (required for every role except admin)')
    .requiredOption('--role <role...>', `one or more of ${ROLES.join(', ')}`)
    .option('--subject <sub>', 'token subject (user or service id)', 'cdil-cli')
    .option('--ttl <seconds>', 'lifetime in seconds', '3600')
    .action(async (options: { tenant?: string; role: string[]; subject: string; ttl: string }) => {
      const unknown = options.role.filter((role) => !ROLES.includes(role as Role));
      if (unknown.length > 0) {
        throw new Error(`unknown role ${unknown.join(', ')}; use ${ROLES.join(', ')}`);
      }
      const ttl = Number(options.ttl);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 31 * 24 * 3600) {
        throw new Error('--ttl must be an integer number of seconds from 1 to 2678400 (31 days)');
      }
      if (options.role.some((role) => role !== 'admin') && options.tenant === undefined) {
        throw new Error('--tenant is required for clinician, auditor and analyst tokens');
      }
      const config = loadConfig(process.env, { writeSecrets: false });
      if (config.secretsInMemoryOnly) {
        throw new ConfigError([describeMissingTokenSecrets(config)]);
      }
      const { signToken } = await import('../../server/auth.ts');
      const token = await signToken(
        { secret: config.jwtSecret, issuer: config.jwtIssuer, audience: config.jwtAudience },
        {
          subject: options.subject,
          roles: options.role as Role[],
          tenantId: options.tenant,
          ttlSeconds: ttl,
        },
      );
      console.log(token);
      // The token is printed in any case, because a token issuer may have no database.
      if (
        options.tenant !== undefined &&
        (await tenantMissingFromDatabase(config, options.tenant)) === true
      ) {
        console.error(
          `warning: tenant ${options.tenant} does not exist in the configured database; ` +
            'tenant-scoped requests with this token fail with 404 TENANT_NOT_FOUND. ' +
            'Create it with "cdil tenant create" or check the tenant id.',
        );
      }
    });
}
