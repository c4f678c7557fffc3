// SQLite databases in a folder this user cannot write. SQLite creates -wal and -shm files beside
// a WAL-mode database, and reads one only with a -shm file, so such a folder stops writers
// with a message that names it, and read-only commands read a private copy. SQLite's
// `immutable=1` URI parameter would skip the -shm file, but better-sqlite3 12 builds SQLite with
// SQLITE_USE_URI=0 and opens files without SQLITE_OPEN_URI, so a URI filename is taken as a
// plain file name.
import {
  accessSync,
  chmodSync,
  constants,
  copyFileSync,
  existsSync,
  mkdtempSync,
  rmSync,
  statfsSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { ConfigError, type Config } from '../config/config.ts';

/** SQLite error codes of a read-only open that could not create the -wal or -shm file. */
const SIDE_FILE_ERRORS = new Set([
  'SQLITE_CANTOPEN',
  'SQLITE_READONLY_CANTINIT',
  'SQLITE_READONLY_DIRECTORY',
]);

/**
 * Returns whether `error` is SQLite failing to create the -wal or -shm file of `path` because
 * this user cannot write the database's folder.
 */
export function isUnwritableFolderError(error: unknown, path: string): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && SIDE_FILE_ERRORS.has(code) && !folderWritable(dirname(path));
}

/** Returns whether this process may create files in `folder`. */
export function folderWritable(folder: string): boolean {
  try {
    accessSync(folder, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Raises ConfigError when the folder of the configured SQLite database exists but this user
 * cannot create files in it. SQLite would fail later with "attempt to write a readonly
 * database", which names no folder. PostgreSQL and a folder still to be created pass.
 */
export function assertSqliteFolderWritable(
  config: Pick<Config, 'databaseUrl' | 'sqlitePath'>,
): void {
  if (config.databaseUrl !== undefined) {
    return;
  }
  const folder = dirname(config.sqlitePath);
  if (!existsSync(folder) || folderWritable(folder)) {
    return;
  }
  const user = process.getuid === undefined ? 'this user' : `this user (uid ${process.getuid()})`;
  throw new ConfigError([
    `folder ${folder} of the SQLite database is not writable by ${user}, and SQLite must ` +
      "create the database's -wal and -shm files there to write to it; make the folder " +
      'writable for this user, or set CDIL_DATA_DIR to a writable folder. The read-only ' +
      'commands `cdil ledger verify` and `cdil tenant list` read the database as it is',
  ]);
}

export interface SqliteSnapshot {
  /** Path of the copied database file. */
  path: string;
  /** Time the copy was started. */
  copiedAt: Date;
  /** Bytes copied: the database file and its -wal file. */
  bytes: number;
  /** Deletes the copy. It runs at process exit and on SIGINT or SIGTERM too. */
  remove(): void;
}

interface FileState {
  path: string;
  size: number;
  mtimeMs: number;
}

function stateOf(path: string): FileState | undefined {
  if (!existsSync(path)) {
    return undefined;
  }
  const stat = statSync(path);
  return { path, size: stat.size, mtimeMs: stat.mtimeMs };
}

function sameState(before: FileState | undefined, after: FileState | undefined): boolean {
  return before?.size === after?.size && before?.mtimeMs === after?.mtimeMs;
}

/**
 * Deletes `folder` at process exit, and on SIGINT or SIGTERM before the signal ends the process.
 * Returns a function that deletes it at once and removes the handlers.
 */
function removeOnExit(folder: string): () => void {
  const remove = () => rmSync(folder, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals) => {
    cleanUp();
    process.kill(process.pid, signal);
  };
  const cleanUp = () => {
    process.removeListener('exit', remove);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    remove();
  };
  process.once('exit', remove);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return cleanUp;
}

/**
 * Copies the SQLite database `path` and its -wal file into a new private folder under the
 * system temporary folder (TMPDIR) and returns the copy. Raises when the temporary folder lacks
 * the space, or when the database or its -wal file changed during the copy or a -shm file
 * appeared, which means that a process that can write the folder opened the database.
 */
export function copySqliteSnapshot(path: string): SqliteSnapshot {
  const originals = [path, `${path}-wal`];
  const before = originals.map(stateOf);
  const shmExisted = existsSync(`${path}-shm`);
  const bytes = before.reduce((total, state) => total + (state?.size ?? 0), 0);
  const folder = mkdtempSync(join(tmpdir(), 'cdil-snapshot-'));
  const remove = removeOnExit(folder);
  try {
    const space = statfsSync(folder);
    const available = space.bavail * space.bsize;
    if (available < bytes) {
      throw new Error(
        `the temporary folder ${tmpdir()} has ${available} bytes free, but the copy of ` +
          `${path} needs ${bytes}; set TMPDIR to a folder with more space`,
      );
    }
    const copiedAt = new Date();
    for (const state of before) {
      if (state !== undefined) {
        const copy = join(folder, basename(state.path));
        copyFileSync(state.path, copy);
        // The copy contains sealed keys and keyed hashes, as the original does. The folder
        // from mkdtemp is private too (mode 0700).
        chmodSync(copy, 0o600);
      }
    }
    const after = originals.map(stateOf);
    const changed = before.some((state, index) => !sameState(state, after[index]));
    if (changed || existsSync(`${path}-shm`) !== shmExisted) {
      throw new Error(
        `${path} changed while it was copied, so a process that can write ${dirname(path)} ` +
          'is using it; run the command again, or run it as a user who can write that folder',
      );
    }
    return { path: join(folder, basename(path)), copiedAt, bytes, remove };
  } catch (error) {
    remove();
    throw error;
  }
}
