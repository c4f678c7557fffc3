// Administrative commands that work on the configured database directly: migrate, tenant
// create/list, and token issuance for local use.
import type { Command } from 'commander';
import { loadConfig } from '../../config/config.ts';
import { ROLES, type Role } from '../../server/route-table.ts';
import { CLI_CONTEXT } from '../../services/audit.ts';
import type { Services } from '../../services/container.ts';

async function openServices(options: { migrate?: boolean } = {}): Promise<Services> {
  const { createServices } = await import('../../services/container.ts');
  return createServices(loadConfig(), options);
}

export async function withServices<T>(run: (services: Services) => Promise<T>): Promise<T> {
  const services = await openServices();
  try {
    return await run(services);
  } finally {
    await services.close();
  }
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
    .action(async (id: string, options: { phiPolicy: string }) => {
      if (options.phiPolicy !== 'flag' && options.phiPolicy !== 'reject') {
        throw new Error(
          `--phi-policy must be flag or reject, got ${JSON.stringify(options.phiPolicy)}`,
        );
      }
      const policy = options.phiPolicy;
      const created = await withServices((services) =>
        services.tenants.create(id, { phiPolicy: policy }, CLI_CONTEXT),
      );
      console.log(JSON.stringify(created, null, 2));
    });
  tenant
    .command('list')
    .description('List tenants and their keys')
    .action(async () => {
      const tenants = await withServices((services) => services.tenants.list());
      console.log(JSON.stringify(tenants, null, 2));
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
      const config = loadConfig();
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
    });
}
