// `cdil serve`: runs the HTTP service until SIGTERM or SIGINT, then stops accepting
// connections, lets in-flight requests finish and closes the database.
import type { Command } from 'commander';
import { loadConfig, type Config } from '../../config/config.ts';
import { buildServer } from '../../server/app.ts';
import { createServices } from '../../services/container.ts';

export interface ServeOptions {
  host?: string;
  port?: string;
}

export const SHUTDOWN_TIMEOUT_MS = 30_000;

function printDevelopmentHints(config: Config, address: string): void {
  if (config.mode !== 'development') {
    return;
  }
  const lines = [
    '',
    `CDIL development server on ${address} (data in ${config.dataDir})`,
    config.secretsGenerated
      ? `Generated development secrets in ${config.secretsFile} (keep this file private; production mode requires CDIL_JWT_SECRET and CDIL_KEK instead).`
      : `Using development secrets from ${config.secretsFile ?? 'the environment'}.`,
    'Next steps:',
    '  cdil tenant create demo-hospital',
    '  cdil token --tenant demo-hospital --role clinician',
    `  API reference: ${address}/docs`,
    '',
  ];
  process.stderr.write(lines.join('\n') + '\n');
}

export async function runServe(options: ServeOptions): Promise<void> {
  const env = { ...process.env };
  if (options.host) {
    env.CDIL_HOST = options.host;
  }
  if (options.port) {
    env.CDIL_PORT = options.port;
  }
  const config = loadConfig(env);
  const services = await createServices(config);
  const app = await buildServer(config, services);
  if (services.migration && services.migration.applied.length > 0) {
    app.log.info(
      { applied: services.migration.applied, schemaVersion: services.migration.current },
      'migrations applied',
    );
  }
  const address = await app.listen({ host: config.host, port: config.port });
  printDevelopmentHints(config, address);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      return;
    }
    stopping = true;
    app.log.info({ signal }, 'shutting down: finishing in-flight requests');
    const timer = setTimeout(() => {
      app.log.error({ timeoutMs: SHUTDOWN_TIMEOUT_MS }, 'shutdown timed out; exiting');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    // Node closes idle keep-alive connections once, when closing starts; connections whose
    // in-flight request finishes later would otherwise stay open until their keep-alive
    // timeout and hold the shutdown.
    const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
    app
      .close()
      .finally(() => clearInterval(sweep))
      .then(() => services.close())
      .then(() => {
        app.log.info('shutdown complete');
        process.exitCode = 0;
      })
      .catch((error: unknown) => {
        app.log.error({ err: error }, 'shutdown failed');
        process.exitCode = 1;
      });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('Run the HTTP API (configuration from CDIL_* environment variables; see README)')
    .option('--host <host>', 'interface to listen on (default CDIL_HOST or 127.0.0.1)')
    .option('--port <port>', 'TCP port (default CDIL_PORT or 8080)')
    .action(runServe);
}
