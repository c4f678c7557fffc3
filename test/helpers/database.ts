// Test databases for the engine under test. Without DATABASE_URL the service uses a SQLite
// file in the test's data folder. With DATABASE_URL (npm run test:pg) every caller gets its
// own new PostgreSQL database on that server, dropped again by drop(), so test files running
// in parallel never see each other's rows.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { numberPlaceholders } from '../../src/storage/postgres/pg-store.ts';

/** Server URL from the environment; its database is used only for CREATE and DROP DATABASE. */
export const POSTGRES_URL = process.env.DATABASE_URL || undefined;
export const TEST_ENGINE: 'sqlite' | 'postgres' = POSTGRES_URL ? 'postgres' : 'sqlite';

export interface TestDatabase {
  /** Environment entries that point the service at this database; empty for SQLite. */
  env: Record<string, string>;
  /** PostgreSQL URL of this database; undefined for SQLite. */
  url: string | undefined;
  drop(): Promise<void>;
}

async function runAdmin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Creates an empty database under PostgreSQL; under SQLite returns an empty environment. */
export async function createTestDatabase(): Promise<TestDatabase> {
  if (POSTGRES_URL === undefined) {
    return { env: {}, url: undefined, drop: () => Promise.resolve() };
  }
  const name = `cdil_test_${process.pid}_${randomBytes(6).toString('hex')}`;
  await runAdmin(`CREATE DATABASE ${name}`);
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    env: { DATABASE_URL: url.toString() },
    url: url.toString(),
    drop: async () => {
      if (!dropped) {
        dropped = true;
        await runAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }
    },
  };
}

/** Where a test service keeps its data: the SQLite data folder or the PostgreSQL database. */
export interface StorageLocation {
  dir: string;
  database: TestDatabase;
}

/**
 * Runs one SQL statement with `?` placeholders directly against the test database, bypassing
 * the service, and returns its rows.
 */
export async function runSql(
  location: StorageLocation,
  sql: string,
  params: (string | number | null)[] = [],
): Promise<Record<string, unknown>[]> {
  if (location.database.url === undefined) {
    const db = new Database(join(location.dir, 'cdil.sqlite'));
    try {
      const statement = db.prepare(sql);
      if (statement.reader) {
        return statement.all(...params) as Record<string, unknown>[];
      }
      statement.run(...params);
      return [];
    } finally {
      db.close();
    }
  }
  const client = new pg.Client({ connectionString: location.database.url });
  await client.connect();
  try {
    const result = await client.query(numberPlaceholders(sql), params);
    return result.rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

/**
 * Waits until at least `sessions` sessions of the PostgreSQL test database wait for a lock,
 * polling every 25 ms for up to 5 s.
 */
export async function waitForLockWait(location: StorageLocation, sessions = 1): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const waiting = await runSql(
      location,
      "SELECT 1 AS waiting FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    );
    if (waiting.length >= sessions) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`fewer than ${sessions} sessions waited for a lock within 5 s`);
}

/**
 * Copies the test database as a backup and returns the copy, which a later app can open with
 * its `env`. SQLite: `VACUUM INTO` a new file in the data folder, which is safe while the
 * service runs. PostgreSQL: `CREATE DATABASE ... TEMPLATE`, which fails while any session is
 * connected to the source, so stop the service first.
 */
export async function copyTestDatabase(location: StorageLocation): Promise<TestDatabase> {
  if (location.database.url === undefined) {
    const path = join(location.dir, `backup-${randomBytes(6).toString('hex')}.sqlite`);
    await runSql(location, `VACUUM INTO '${path}'`);
    return {
      env: { CDIL_SQLITE_PATH: path },
      url: undefined,
      drop: () => {
        for (const suffix of ['', '-wal', '-shm']) {
          rmSync(`${path}${suffix}`, { force: true });
        }
        return Promise.resolve();
      },
    };
  }
  const source = new URL(location.database.url).pathname.slice(1);
  const name = `cdil_test_${process.pid}_${randomBytes(6).toString('hex')}`;
  await runAdmin(`CREATE DATABASE ${name} TEMPLATE ${source}`);
  const url = new URL(location.database.url);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    env: { DATABASE_URL: url.toString() },
    url: url.toString(),
    drop: async () => {
      if (!dropped) {
        dropped = true;
        await runAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }
    },
  };
}

export interface StoredData {
  /** A file name, or `postgres:<table>` for a PostgreSQL table. */
  name: string;
  bytes: Buffer;
}

/**
 * Returns everything the service stored, to scan for text that must never be at rest. SQLite:
 * the raw bytes of the database file and its WAL and shared-memory files (close the store
 * first, so the WAL is checkpointed). PostgreSQL: the text form of every row of every table.
 */
export async function readStoredData(location: StorageLocation): Promise<StoredData[]> {
  if (location.database.url === undefined) {
    return readdirSync(location.dir)
      .filter((name) => name.startsWith('cdil.sqlite'))
      .map((name) => ({ name, bytes: readFileSync(join(location.dir, name)) }));
  }
  const tables = await runSql(
    location,
    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
  );
  const stored: StoredData[] = [];
  for (const { tablename } of tables) {
    const rows = await runSql(location, `SELECT t::text AS row_text FROM "${String(tablename)}" t`);
    const text = rows.map((row) => String(row.row_text)).join('\n');
    stored.push({ name: `postgres:${String(tablename)}`, bytes: Buffer.from(text, 'utf8') });
  }
  return stored;
}

/**
 * Returns the rows of every table as sorted text, by table name, to compare a database before
 * and after a command that must not write. Covers both engines, unlike the file bytes.
 */
export async function readAllRows(location: StorageLocation): Promise<Record<string, string[]>> {
  const tables =
    location.database.url === undefined
      ? await runSql(location, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      : await runSql(
          location,
          "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
        );
  const rowsByTable: Record<string, string[]> = {};
  for (const { name } of tables) {
    const table = String(name);
    const rows =
      location.database.url === undefined
        ? (await runSql(location, `SELECT * FROM "${table}"`)).map((row) => JSON.stringify(row))
        : (await runSql(location, `SELECT t::text AS row_text FROM "${table}" t`)).map((row) =>
            String(row.row_text),
          );
    rowsByTable[table] = rows.sort();
  }
  return rowsByTable;
}
