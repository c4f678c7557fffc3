// Opens the configured database read-only for commands that only read, such as `cdil ledger
// verify` and `cdil tenant list`. They never migrate and never create a database, data folder or
// secrets file, so a command run in the wrong folder fails instead of reading an empty database.
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError, describeMissingDataDir, type Config } from '../config/config.ts';
import type { Store } from '../storage/store.ts';
import { copySqliteSnapshot, isUnwritableFolderError } from './sqlite-folder.ts';

/** Writes a line for the user on stderr, where it stays apart from a report on stdout. */
function writeNotice(text: string): void {
  process.stderr.write(`${text}\n`);
}

/**
 * Opens the configured database read-only. A SQLite database in a folder this user cannot
 * write is read from a private copy, which `notice` announces. Raises when the SQLite file is
 * missing, or when the schema is older or newer than this version of cdil reads.
 */
export async function openReadOnlyStore(
  config: Config,
  env: Record<string, string | undefined> = process.env,
  notice: (text: string) => void = writeNotice,
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
  const { openStore } = await import('../storage/open.ts');
  const store = openStore(config, { readOnly: true });
  try {
    await checkSchema(store);
    return store;
  } catch (error) {
    await store.close();
    if (config.databaseUrl !== undefined || !isUnwritableFolderError(error, config.sqlitePath)) {
      throw error;
    }
  }
  return openSnapshot(config, notice);
}

/** Raises unless the store's schema is the one this version of cdil reads. */
async function checkSchema(store: Store): Promise<void> {
  const { LATEST_SCHEMA_VERSION, assertSchemaSupported } = await import('../storage/migrations.ts');
  const version = await store.schemaVersion();
  assertSchemaSupported(version);
  if (version < LATEST_SCHEMA_VERSION) {
    throw new Error(
      `database schema version ${version} is older than version ${LATEST_SCHEMA_VERSION}, ` +
        'which this cdil reads; run `cdil migrate` first, then run this command again',
    );
  }
}

/**
 * Opens a private copy of the SQLite database read-only. Closing the store deletes the copy.
 * The copy takes the time and temporary space of the database and its -wal file.
 */
async function openSnapshot(config: Config, notice: (text: string) => void): Promise<Store> {
  const { openStore } = await import('../storage/open.ts');
  const snapshot = copySqliteSnapshot(config.sqlitePath);
  let store: Store | undefined;
  try {
    store = openStore({ ...config, sqlitePath: snapshot.path }, { readOnly: true });
    await checkSchema(store);
  } catch (error) {
    await store?.close();
    snapshot.remove();
    throw error;
  }
  const close = store.close.bind(store);
  store.close = async () => {
    try {
      await close();
    } finally {
      snapshot.remove();
    }
  };
  notice(
    `note: ${dirname(config.sqlitePath)} is not writable by this user, and SQLite must create ` +
      "the database's -shm file there to read it. This command reads a snapshot instead: a " +
      `private copy of ${config.sqlitePath} (${snapshot.bytes} bytes) made at ` +
      `${snapshot.copiedAt.toISOString()}, which no writer can change meanwhile, so changes ` +
      'written after that time are not included. The copy is deleted when the command ends.',
  );
  return store;
}
