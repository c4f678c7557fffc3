// Opens the configured storage engine.
import type { Config } from '../config/config.ts';
import { SqliteStore } from './sqlite/sqlite-store.ts';
import type { Store } from './store.ts';

export function openStore(config: Pick<Config, 'databaseUrl' | 'sqlitePath'>): Store {
  if (config.databaseUrl !== undefined) {
    // NOTE: the PostgreSQL engine is not built yet; fail loudly instead of using SQLite.
    throw new Error('DATABASE_URL is set, but this build supports only the embedded SQLite engine');
  }
  return new SqliteStore(config.sqlitePath);
}
