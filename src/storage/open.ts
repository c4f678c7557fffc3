// Opens the configured storage engine: PostgreSQL when DATABASE_URL is set, SQLite otherwise.
import type { Config } from '../config/config.ts';
import { PgStore } from './postgres/pg-store.ts';
import { SqliteStore } from './sqlite/sqlite-store.ts';
import type { Store, WarningLogger } from './store.ts';

/**
 * Opens the configured store. With `readOnly`, the store changes nothing, every write fails,
 * and a missing SQLite file is an error instead of a new database. `logger` receives the
 * connection failures of a PostgreSQL store instead of process warnings. SQLite logs nothing.
 */
export function openStore(
  config: Pick<
    Config,
    | 'databaseUrl'
    | 'databasePoolSize'
    | 'databaseConnectTimeoutMs'
    | 'databaseQueryTimeoutMs'
    | 'sqlitePath'
  >,
  options: { readOnly?: boolean; logger?: WarningLogger } = {},
): Store {
  const readOnly = options.readOnly ?? false;
  if (config.databaseUrl !== undefined) {
    return new PgStore(config.databaseUrl, {
      poolSize: config.databasePoolSize,
      connectTimeoutMs: config.databaseConnectTimeoutMs,
      queryTimeoutMs: config.databaseQueryTimeoutMs,
      readOnly,
      logger: options.logger,
    });
  }
  return new SqliteStore(config.sqlitePath, { readOnly });
}
