// Opens the configured database read-only for commands that only read, such as `cdil ledger
// verify` and `cdil tenant list`. They never migrate and never create a database, data folder or
// secrets file, so a command run in the wrong folder fails instead of reading an empty database.
import { existsSync } from 'node:fs';
import { ConfigError, describeMissingDataDir, type Config } from '../config/config.ts';
import type { Store } from '../storage/store.ts';

/**
 * Opens the configured database read-only. Raises when the SQLite file is missing, or when the
 * schema is older or newer than this version of cdil reads.
 */
export async function openReadOnlyStore(
  config: Config,
  env: Record<string, string | undefined> = process.env,
): Promise<Store> {
  if (config.databaseUrl === undefined && !existsSync(config.sqlitePath)) {
    const where = env.CDIL_SQLITE_PATH
      ? 'set CDIL_SQLITE_PATH to an existing database file'
      : describeMissingDataDir(config.dataDir, env);
    // A configuration error like a missing secrets file, so `cdil tenant list` exits 78 as
    // `cdil token` does. `cdil ledger verify` reports it as unusable input (exit 2).
    throw new ConfigError([
      `database file ${config.sqlitePath} does not exist: ${where}, set DATABASE_URL, ` +
        'or run `cdil migrate` to create an empty database',
    ]);
  }
  const [{ openStore }, { LATEST_SCHEMA_VERSION, assertSchemaSupported }] = await Promise.all([
    import('../storage/open.ts'),
    import('../storage/migrations.ts'),
  ]);
  const store = openStore(config, { readOnly: true });
  try {
    const version = await store.schemaVersion();
    assertSchemaSupported(version);
    if (version < LATEST_SCHEMA_VERSION) {
      throw new Error(
        `database schema version ${version} is older than version ${LATEST_SCHEMA_VERSION}, ` +
          'which this cdil reads; run `cdil migrate` first, then run this command again',
      );
    }
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}
