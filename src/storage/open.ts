// Opens the configured storage engine: PostgreSQL when DATABASE_URL is set, SQLite otherwise.
import type { Config } from '../config/config.ts';
import { PgStore } from './postgres/pg-store.ts';
import { SqliteStore } from './sqlite/sqlite-store.ts';
import type { Store } from './store.ts';

export function openStore(
  config: Pick<Config, 'databaseUrl' | 'databasePoolSize' | 'sqlitePath'>,
): Store {
  if (config.databaseUrl !== undefined) {
    return new PgStore(config.databaseUrl, { poolSize: config.databasePoolSize });
  }
  return new SqliteStore(config.sqlitePath);
}
