// `cdil serve`: runs the HTTP service until SIGTERM or SIGINT, then stops accepting
// connections, lets in-flight requests finish and closes the database. With --workers N it
// runs N processes that share the port (node:cluster); the database serializes their chain
// appends, so they need no coordination in memory. Heavy modules load inside the commands, so
// `cdil --help` and `cdil verify` start without loading the server.
import cluster from 'node:cluster';
import { join, sep } from 'node:path';
import type { Command } from 'commander';
import { ConfigError, loadConfig, type Config } from '../../config/config.ts';
import type { Services } from '../../services/container.ts';
import { packageRoot } from '../package-root.ts';
import { assertSqliteFolderWritable } from '../sqlite-folder.ts';

export interface ServeOptions {
  host?: string;
  port?: string;
  workers?: string;
}

export const SHUTDOWN_TIMEOUT_MS = 30_000;

/** Quotes a value for a POSIX shell command line when it contains more than safe characters. */
function shellWord(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * Returns the command that runs cdil from the current folder without a package registry:
 * `npx cdil` in the package folder or below it, where npx finds the package's own bin, else
 * `node` with the absolute path of bin/cdil.mjs. Elsewhere, npx would ask the npm registry for a
 * package named cdil and could install and run whatever is published under that name.
 */
function localCdilCommand(): string {
  const root = packageRoot();
  const cwd = process.cwd();
  if (cwd === root || cwd.startsWith(root + sep)) {
    return 'npx cdil';
  }
  return `node ${shellWord(join(root, 'bin', 'cdil.mjs'))}`;
}

/**
 * Prints where the development server runs and its secrets come from. On a database without
 * tenants it also prints the first commands, written to run in the folder the server was
 * started in, with the same CDIL_DATA_DIR.
 */
function printDevelopmentHints(config: Config, address: string, hasTenants: boolean): void {
  if (config.mode !== 'development') {
    return;
  }
  const lines = [
    '',
    `CDIL development server on ${address} (data in ${config.dataDir})`,
    config.secretsGenerated
      ? `Generated development secrets in ${config.secretsFile} (keep this file private; production mode requires CDIL_JWT_SECRET and CDIL_KEK instead).`
      : `Using development secrets from ${config.secretsFile ?? 'the environment'}.`,
  ];
  if (!hasTenants) {
    const dataDir = process.env.CDIL_DATA_DIR ? `CDIL_DATA_DIR=${shellWord(config.dataDir)} ` : '';
    const cdil = localCdilCommand();
    lines.push(
      `Next steps, in another terminal in ${process.cwd()}:`,
      `  ${dataDir}${cdil} tenant create demo-hospital`,
      `  ${dataDir}${cdil} token --tenant demo-hospital --role clinician`,
    );
  }
  lines.push(`API reference: ${address}/docs`, '');
  process.stderr.write(lines.join('\n') + '\n');
}

/**
 * Returns whether the database has a tenant. Only development mode prints hints, so in
 * production mode it skips the query and returns true. It returns true when the query fails,
 * because a server may start while its PostgreSQL server is unreachable.
 */
async function hasTenants(config: Config, services: Services): Promise<boolean> {
  if (config.mode !== 'development') {
    return true;
  }
  try {
    return (await services.store.listTenants()).length > 0;
  } catch {
    return true;
  }
}

/**
 * Returns a listen error with the setting that avoids it appended: CDIL_PORT or --port for a
 * port in use or one that needs privileges, CDIL_HOST or --host for an address of no local
 * interface. Returns other errors unchanged.
 */
function explainListenError(error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  const hints: Record<string, string> = {
    EADDRINUSE:
      'another process is listening on this port: stop it, or set CDIL_PORT or --port to a free port',
    EACCES: 'this user may not listen on this port: set CDIL_PORT or --port to a port from 1024 up',
    EADDRNOTAVAIL: 'no interface of this machine has this address: set CDIL_HOST or --host',
  };
  if (code === undefined || !(code in hints)) {
    return error;
  }
  return new Error(`${(error as Error).message}; ${hints[code]}`, { cause: error });
}

/** Environment variables that the options of `cdil serve` override, by option. */
const OPTION_SETTINGS = [
  ['--host', 'host', 'CDIL_HOST'],
  ['--port', 'port', 'CDIL_PORT'],
  ['--workers', 'workers', 'CDIL_WORKERS'],
] as const;

/**
 * Loads the configuration with the given options in place of their environment variables. A
 * problem with a value that came from an option names the option, not the variable.
 */
function loadServeConfig(options: ServeOptions): Config {
  const env = { ...process.env };
  for (const [, key, variable] of OPTION_SETTINGS) {
    if (options[key]) {
      env[variable] = options[key];
    }
  }
  try {
    return loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) {
      throw error;
    }
    const problems = error.problems.map((problem) => {
      for (const [option, key, variable] of OPTION_SETTINGS) {
        if (options[key] && problem.startsWith(`${variable} `)) {
          return option + problem.slice(variable.length);
        }
      }
      return problem;
    });
    throw new ConfigError(problems);
  }
}

export async function runServe(options: ServeOptions): Promise<void> {
  const config = loadServeConfig(options);
  assertSqliteFolderWritable(config);
  if (config.workers > 1 && cluster.isPrimary) {
    await runPrimary(config, config.workers);
    return;
  }
  await runWorker(config);
}

/** Runs one HTTP server process: the whole service, or one worker of a cluster. */
async function runWorker(config: Config): Promise<void> {
  const { createServices } = await import('../../services/container.ts');
  const { buildServer } = await import('../../server/app.ts');
  const services = await createServices(config, cluster.isWorker ? { migrate: false } : {});
  const app = await buildServer(config, services);
  if (services.migration && services.migration.applied.length > 0) {
    app.log.info(
      { applied: services.migration.applied, schemaVersion: services.migration.current },
      'migrations applied',
    );
  }
  let address: string;
  try {
    address = await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await app.close();
    await services.close();
    // A worker's IPC channel would keep it alive after the error. Worker.disconnect closes it
    // and, unlike process.disconnect, does not make the worker exit with 0 before the error
    // is printed. The primary then stops, because no worker could listen.
    cluster.worker?.disconnect();
    throw explainListenError(error);
  }
  if (cluster.isPrimary) {
    printDevelopmentHints(config, address, await hasTenants(config, services));
  }

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
        // A cluster worker's IPC channel would keep it alive; closing it lets the process end.
        if (cluster.isWorker && process.connected) {
          process.disconnect();
        }
      })
      .catch((error: unknown) => {
        app.log.error({ err: error }, 'shutdown failed');
        process.exitCode = 1;
      });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

/**
 * Applies migrations once, then forks the workers and restarts any that dies until a
 * shutdown signal arrives, which is passed on to every worker.
 */
async function runPrimary(config: Config, workers: number): Promise<void> {
  const [{ pino }, { createServices }, { LogDestination }] = await Promise.all([
    import('pino'),
    import('../../services/container.ts'),
    import('../../server/log-destination.ts'),
  ]);
  const log = pino({ level: config.logLevel }, new LogDestination(1));
  const services = await createServices(config, { migrate: true });
  if (services.migration && services.migration.applied.length > 0) {
    log.info({ applied: services.migration.applied }, 'migrations applied');
  }
  let tenantsExist: boolean;
  try {
    tenantsExist = await hasTenants(config, services);
  } finally {
    await services.close();
  }

  let stopping = false;
  let listening = false;
  cluster.on('listening', (_worker, address) => {
    if (!listening) {
      listening = true;
      const host = address.address === '::' || !address.address ? config.host : address.address;
      printDevelopmentHints(config, `http://${host}:${address.port}`, tenantsExist);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        log.info('all workers stopped');
      }
      return;
    }
    if (!listening) {
      // A worker that fails before any worker listens, for example on a port in use, would
      // fail the same way again, so replacing it would loop. The worker printed its error.
      log.error(
        { workerPid: worker.process.pid, code, signal },
        'worker exited before the server listened; stopping',
      );
      stopping = true;
      process.exitCode = 1;
      for (const other of Object.values(cluster.workers ?? {})) {
        other?.process.kill('SIGTERM');
      }
      return;
    }
    log.error(
      { workerPid: worker.process.pid, code, signal },
      'worker exited; starting a replacement',
    );
    cluster.fork({ CDIL_MIGRATE_ON_START: 'false' });
  });
  for (let i = 0; i < workers; i++) {
    cluster.fork({ CDIL_MIGRATE_ON_START: 'false' });
  }
  log.info({ workers }, 'cluster started');

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      return;
    }
    stopping = true;
    log.info({ signal }, 'shutting down workers');
    for (const worker of Object.values(cluster.workers ?? {})) {
      worker?.process.kill(signal);
    }
    const exitCodes: number[] = [];
    cluster.on('exit', (_worker, code) => {
      exitCodes.push(code);
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        process.exitCode = exitCodes.every((exit) => exit === 0) ? 0 : 1;
      }
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'Run the HTTP API (configuration from CDIL_* environment variables; see docs/operations.md)',
    )
    .option('--host <host>', 'interface to listen on (default CDIL_HOST or 127.0.0.1)')
    .option('--port <port>', 'TCP port (default CDIL_PORT or 8080)')
    .option(
      '--workers <n>',
      'number of server processes sharing the port (default CDIL_WORKERS or 1)',
    )
    .action(runServe);
}
