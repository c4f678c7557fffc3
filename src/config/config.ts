// Configuration from environment variables, validated once at start-up. Production mode
// refuses to start without its secrets. Development mode generates them on first run into
// a local data folder and prints where they are. No secret has a built-in default.
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_LOCK_TIMEOUT_MS,
  DEFAULT_QUERY_TIMEOUT_MS,
  MAX_CONNECT_TIMEOUT_MS,
  MAX_QUERY_TIMEOUT_MS,
  MIN_CONNECT_TIMEOUT_MS,
  MIN_QUERY_TIMEOUT_MS,
  QUERY_TIMEOUT_MARGIN_MS,
} from '../storage/postgres/timeouts.ts';

export const MIN_JWT_SECRET_BYTES = 32;
export const MAX_WORKERS = 64;
export const DEFAULT_TSA_TIMEOUT_MS = 5000;
export const MAX_TSA_TIMEOUT_MS = 120_000;

/** Settings of the RFC 3161 timestamp authority (TSA). */
export interface TsaConfig {
  /** http or https URL that accepts POST application/timestamp-query. */
  url: string;
  /** Time limit for one timestamp request, in milliseconds. */
  timeoutMs: number;
  /** Absolute path of the PEM file the trusted roots were read from. */
  trustedRootsFile: string;
  /** PEM text of the root CA certificates that TSA certificates must chain to. */
  trustedRoots: string;
}
export const DEFAULT_KEY_CACHE_TTL_MS = 10_000;
export const MAX_KEY_CACHE_TTL_MS = 600_000;
export const DEFAULT_RATE_LIMIT_SYNC_MS = 1_000;
export const MIN_RATE_LIMIT_SYNC_MS = 10;
export const MAX_RATE_LIMIT_SYNC_MS = 60_000;
export const MAX_RATE_LIMIT_PER_MINUTE = 1_000_000_000;

export interface Config {
  mode: 'development' | 'production';
  dataDir: string;
  /** SQLite file used when no PostgreSQL URL is configured. */
  sqlitePath: string;
  /**
   * Whether a SQLite server appends certificates on a thread of its own (CDIL_SQLITE_APPEND_THREAD,
   * default true); unused with PostgreSQL.
   */
  sqliteAppendThread: boolean;
  databaseUrl: string | undefined;
  /** Maximum PostgreSQL connections per process; unused with SQLite. */
  databasePoolSize: number;
  /**
   * Time limit for opening a PostgreSQL connection or waiting for a free pooled one, in ms;
   * unused with SQLite.
   */
  databaseConnectTimeoutMs: number;
  /**
   * Time a PostgreSQL statement may go without a reply before it fails and its connection is
   * closed, in ms; unused with SQLite.
   */
  databaseQueryTimeoutMs: number;
  host: string;
  port: number;
  logLevel: string;
  jwtSecret: Uint8Array;
  jwtIssuer: string | undefined;
  jwtAudience: string | undefined;
  /** Key-encryption key for private keys and tenant secrets at rest (32 bytes). */
  kek: Uint8Array;
  migrateOnStart: boolean;
  /** Number of server processes `cdil serve` runs on the shared port. */
  workers: number;
  /** Maximum request body, in bytes. */
  bodyLimit: number;
  /** How long a process reuses a tenant's keys and settings before reading them again, in ms. */
  keyCacheTtlMs: number;
  /** Default issuance requests per tenant and minute, across all processes; 0 means no limit. */
  rateLimitPerMinute: number;
  /** Interval at which each process adds its counts to the shared counters, in ms. */
  rateLimitSyncMs: number;
  /** Path of the development secrets file, when secrets were generated or loaded from disk. */
  secretsFile: string | undefined;
  secretsGenerated: boolean;
  /**
   * True when development secrets were generated in memory only, because secrets.json is missing
   * and loadConfig was called with `writeSecrets: false`. Nothing signed or sealed with them
   * matches the server's data.
   */
  secretsInMemoryOnly: boolean;
  /** Prefix of each tenant's log origin (`<prefix>/tenants/<tenant id>`). */
  logOrigin: string;
  /** How often each process publishes checkpoints of logs that grew; 0 publishes on demand only. */
  checkpointIntervalMs: number;
  /** Timestamp authority; undefined when TSA_URL is unset. */
  tsa: TsaConfig | undefined;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

/** Decodes a secret given as base64 (standard or url-safe) or hex; returns undefined otherwise. */
function decodeSecret(value: string): Uint8Array | undefined {
  const trimmed = value.trim();
  if (/^[0-9a-fA-F]+$/.test(trimmed) && trimmed.length % 2 === 0) {
    return Buffer.from(trimmed, 'hex');
  }
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    return Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  }
  return undefined;
}

interface DevSecrets {
  jwt_secret: string;
  kek: string;
}

/** The development secrets as read from secrets.json, before the fields are checked. */
type StoredDevSecrets = Partial<Record<keyof DevSecrets, unknown>>;

/**
 * Reads secrets.json. Raises ConfigError naming the file when it cannot be read or is not a JSON
 * object. checkDevSecret validates each field when it is used.
 */
function readDevSecrets(file: string): StoredDevSecrets {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError([
      `development secrets file ${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    ]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError([
      `development secrets file ${file} is not valid JSON (${(error as Error).message}); ` +
        'restore it from a backup',
    ]);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError([
      `development secrets file ${file} must contain a JSON object with the fields jwt_secret and kek`,
    ]);
  }
  return parsed;
}

/**
 * Returns one field of secrets.json as text, or undefined after adding a problem that names the
 * file and the field.
 */
function checkDevSecret(
  file: string,
  secrets: StoredDevSecrets,
  field: keyof DevSecrets,
  problems: string[],
): string | undefined {
  const value = secrets[field];
  if (value === undefined) {
    problems.push(
      `development secrets file ${file}: field "${field}" is missing; restore the file from a backup`,
    );
    return undefined;
  }
  if (typeof value !== 'string' || value === '') {
    problems.push(`development secrets file ${file}: field "${field}" must be a string`);
    return undefined;
  }
  return value;
}

/**
 * Reads the development secrets file, creating it (and the data folder) when it is missing.
 * With `write` false a missing file is not created: the secrets returned then exist only in
 * memory, for commands that must leave the data folder as they found it.
 */
function loadOrCreateDevSecrets(
  dataDir: string,
  write: boolean,
): {
  file: string;
  secrets: StoredDevSecrets;
  generated: boolean;
  inMemoryOnly: boolean;
} {
  const file = join(dataDir, 'secrets.json');
  if (existsSync(file)) {
    return { file, secrets: readDevSecrets(file), generated: false, inMemoryOnly: false };
  }
  const secrets: DevSecrets = {
    jwt_secret: randomBytes(32).toString('base64url'),
    kek: randomBytes(32).toString('base64url'),
  };
  if (!write) {
    return { file, secrets, generated: false, inMemoryOnly: true };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  return { file, secrets, generated: true, inMemoryOnly: false };
}

/**
 * Describes a data folder that contains no database or secrets, for the error of a command
 * that needs them. When CDIL_DATA_DIR is unset and a parent of the working folder contains a
 * `.cdil-data` folder, names it, because the likely cause is a command run from a subfolder.
 */
export function describeMissingDataDir(dataDir: string, env: Env = process.env): string {
  const problem = existsSync(dataDir)
    ? `data folder ${dataDir} contains no database`
    : `data folder ${dataDir} does not exist, so it contains no database`;
  let hint = 'set CDIL_DATA_DIR to the folder the server uses';
  if (!env.CDIL_DATA_DIR) {
    let folder = dirname(resolve('.'));
    while (true) {
      const candidate = join(folder, '.cdil-data');
      if (existsSync(candidate)) {
        hint = `run the command in ${folder}, which contains ${candidate}, or ${hint}`;
        break;
      }
      if (dirname(folder) === folder) {
        break;
      }
      folder = dirname(folder);
    }
  }
  return `${problem}; ${hint}`;
}

function parsePort(value: string | undefined, problems: string[]): number {
  if (value === undefined || value === '') {
    return 8080;
  }
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    problems.push(`CDIL_PORT must be an integer from 0 to 65535, got ${JSON.stringify(value)}`);
    return 0;
  }
  return port;
}

/** Parses an optional integer setting within [min, max]; records a problem otherwise. */
function parseInteger(
  name: string,
  value: string | undefined,
  range: { fallback: number; min: number; max: number },
  problems: string[],
): number {
  if (value === undefined || value === '') {
    return range.fallback;
  }
  const parsed = Number(value);
  if (!/^\d+$/.test(value.trim()) || parsed < range.min || parsed > range.max) {
    problems.push(
      `${name} must be an integer from ${range.min} to ${range.max}, got ${JSON.stringify(value)}`,
    );
    return range.fallback;
  }
  return parsed;
}

/**
 * Parses CDIL_DATABASE_QUERY_TIMEOUT_MS. Its minimum keeps it above the PostgreSQL lock timeout,
 * so that a statement waiting for a lock fails with DATABASE_BUSY before the client gives up.
 */
function parseQueryTimeout(value: string | undefined, problems: string[]): number {
  if (value === undefined || value === '') {
    return DEFAULT_QUERY_TIMEOUT_MS;
  }
  const parsed = Number(value);
  if (
    !/^\d+$/.test(value.trim()) ||
    parsed < MIN_QUERY_TIMEOUT_MS ||
    parsed > MAX_QUERY_TIMEOUT_MS
  ) {
    problems.push(
      `CDIL_DATABASE_QUERY_TIMEOUT_MS must be an integer from ${MIN_QUERY_TIMEOUT_MS} to ` +
        `${MAX_QUERY_TIMEOUT_MS} (milliseconds), got ${JSON.stringify(value)}. It must exceed ` +
        `the ${DEFAULT_LOCK_TIMEOUT_MS} ms PostgreSQL lock timeout by at least ` +
        `${QUERY_TIMEOUT_MARGIN_MS} ms, so that a statement waiting for a lock fails with ` +
        'DATABASE_BUSY before the client gives up on it',
    );
    return DEFAULT_QUERY_TIMEOUT_MS;
  }
  return parsed;
}

function parseBoolean(
  name: string,
  value: string | undefined,
  fallback: boolean,
  problems: string[],
): boolean {
  if (value === undefined || value === '') {
    return fallback;
  }
  if (['1', 'true', 'yes'].includes(value.toLowerCase())) {
    return true;
  }
  if (['0', 'false', 'no'].includes(value.toLowerCase())) {
    return false;
  }
  problems.push(`${name} must be true or false, got ${JSON.stringify(value)}`);
  return fallback;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g;

/**
 * Reads the TSA_TRUSTED_ROOTS PEM file and checks that it contains at least one certificate and
 * that each is a CA certificate. Returns the file text, or undefined after adding a problem.
 */
function readTsaTrustedRoots(path: string, problems: string[]): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    problems.push(
      `TSA_TRUSTED_ROOTS file ${path} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
    return undefined;
  }
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) {
    problems.push(`TSA_TRUSTED_ROOTS file ${path} contains no PEM certificate`);
    return undefined;
  }
  const before = problems.length;
  blocks.forEach((block, index) => {
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(block);
    } catch {
      problems.push(
        `TSA_TRUSTED_ROOTS file ${path}: certificate ${index + 1} is not a valid X.509 certificate`,
      );
      return;
    }
    if (!certificate.ca) {
      problems.push(
        `TSA_TRUSTED_ROOTS file ${path}: certificate ${index + 1} (${certificate.subject.replace(/\n/g, ', ')}) ` +
          'is not a CA certificate; list the root CA that issued the TSA certificate',
      );
    }
  });
  return problems.length === before ? text : undefined;
}

function parseTsa(env: Env, problems: string[]): TsaConfig | undefined {
  const timeoutMs = Number(env.TSA_TIMEOUT_MS || DEFAULT_TSA_TIMEOUT_MS);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TSA_TIMEOUT_MS) {
    problems.push(
      `TSA_TIMEOUT_MS must be an integer from 1 to ${MAX_TSA_TIMEOUT_MS} (milliseconds), got ${JSON.stringify(env.TSA_TIMEOUT_MS)}`,
    );
  }
  const rootsFile = env.TSA_TRUSTED_ROOTS ? resolve(env.TSA_TRUSTED_ROOTS) : undefined;
  const trustedRoots = rootsFile ? readTsaTrustedRoots(rootsFile, problems) : undefined;
  const url = env.TSA_URL || undefined;
  if (url === undefined) {
    return undefined;
  }
  if (!URL.canParse(url) || !['http:', 'https:'].includes(new URL(url).protocol)) {
    problems.push(`TSA_URL must be an http:// or https:// URL, got ${JSON.stringify(url)}`);
  }
  if (rootsFile === undefined) {
    problems.push(
      'TSA_TRUSTED_ROOTS is required when TSA_URL is set: the path of a PEM file with the root CA certificates of the TSA',
    );
  }
  return {
    url,
    timeoutMs,
    trustedRootsFile: rootsFile ?? '',
    trustedRoots: trustedRoots ?? '',
  };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * Reads and validates the configuration. Throws ConfigError listing every problem at once.
 *
 * Variables: CDIL_ENV (development|production), CDIL_DATA_DIR, CDIL_SQLITE_PATH, DATABASE_URL,
 * CDIL_DATABASE_POOL_SIZE, CDIL_DATABASE_CONNECT_TIMEOUT_MS, CDIL_DATABASE_QUERY_TIMEOUT_MS,
 * CDIL_HOST, CDIL_PORT, CDIL_LOG_LEVEL, CDIL_JWT_SECRET, CDIL_JWT_ISSUER, CDIL_JWT_AUDIENCE,
 * CDIL_KEK, CDIL_MIGRATE_ON_START, CDIL_WORKERS, CDIL_BODY_LIMIT_BYTES, CDIL_LOG_ORIGIN,
 * CDIL_CHECKPOINT_INTERVAL_MS, TSA_URL, TSA_TIMEOUT_MS, TSA_TRUSTED_ROOTS, CDIL_KEY_CACHE_TTL_MS,
 * CDIL_RATE_LIMIT_PER_MINUTE, CDIL_RATE_LIMIT_SYNC_MS, CDIL_SQLITE_APPEND_THREAD. With `writeSecrets` false, development mode
 * does not create a missing secrets file or data folder.
 */
export function loadConfig(
  env: Env = process.env,
  options: { writeSecrets?: boolean } = {},
): Config {
  const problems: string[] = [];
  const modeValue = env.CDIL_ENV ?? 'development';
  if (modeValue !== 'development' && modeValue !== 'production') {
    problems.push(`CDIL_ENV must be development or production, got ${JSON.stringify(modeValue)}`);
  }
  const mode = modeValue === 'production' ? 'production' : 'development';
  const dataDir = resolve(env.CDIL_DATA_DIR || '.cdil-data');
  const logLevel = env.CDIL_LOG_LEVEL || 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(
      `CDIL_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`,
    );
  }
  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }
  const databasePoolSize = Number(env.CDIL_DATABASE_POOL_SIZE || 10);
  if (!Number.isInteger(databasePoolSize) || databasePoolSize < 1 || databasePoolSize > 1000) {
    problems.push(
      `CDIL_DATABASE_POOL_SIZE must be an integer from 1 to 1000, got ${JSON.stringify(env.CDIL_DATABASE_POOL_SIZE)}`,
    );
  }
  const databaseConnectTimeoutMs = parseInteger(
    'CDIL_DATABASE_CONNECT_TIMEOUT_MS',
    env.CDIL_DATABASE_CONNECT_TIMEOUT_MS,
    {
      fallback: DEFAULT_CONNECT_TIMEOUT_MS,
      min: MIN_CONNECT_TIMEOUT_MS,
      max: MAX_CONNECT_TIMEOUT_MS,
    },
    problems,
  );
  const databaseQueryTimeoutMs = parseQueryTimeout(env.CDIL_DATABASE_QUERY_TIMEOUT_MS, problems);

  let jwtSecretText = env.CDIL_JWT_SECRET;
  let kekText = env.CDIL_KEK;
  let secretsFile: string | undefined;
  let secretsGenerated = false;
  let secretsInMemoryOnly = false;
  let jwtSecretSource = 'CDIL_JWT_SECRET';
  let kekSource = 'CDIL_KEK';
  if (mode === 'production') {
    if (!jwtSecretText) {
      problems.push('CDIL_JWT_SECRET is required in production mode');
    }
    if (!kekText) {
      problems.push('CDIL_KEK is required in production mode (32 bytes, base64 or hex)');
    }
  } else if (!jwtSecretText || !kekText) {
    const dev = loadOrCreateDevSecrets(dataDir, options.writeSecrets ?? true);
    secretsFile = dev.file;
    secretsGenerated = dev.generated;
    secretsInMemoryOnly = dev.inMemoryOnly;
    if (!jwtSecretText) {
      jwtSecretText = checkDevSecret(dev.file, dev.secrets, 'jwt_secret', problems);
      jwtSecretSource = `development secrets file ${dev.file}: field "jwt_secret"`;
    }
    if (!kekText) {
      kekText = checkDevSecret(dev.file, dev.secrets, 'kek', problems);
      kekSource = `development secrets file ${dev.file}: field "kek"`;
    }
  }

  const jwtSecret = jwtSecretText ? decodeSecret(jwtSecretText) : undefined;
  if (jwtSecretText && (!jwtSecret || jwtSecret.length < MIN_JWT_SECRET_BYTES)) {
    problems.push(
      `${jwtSecretSource} must be base64 or hex of at least ${MIN_JWT_SECRET_BYTES} bytes`,
    );
  }
  const kek = kekText ? decodeSecret(kekText) : undefined;
  if (kekText && (!kek || kek.length !== 32)) {
    problems.push(`${kekSource} must be base64 or hex of exactly 32 bytes`);
  }
  const bodyLimit = Number(env.CDIL_BODY_LIMIT_BYTES || 1024 * 1024);
  if (!Number.isInteger(bodyLimit) || bodyLimit < 1024) {
    problems.push('CDIL_BODY_LIMIT_BYTES must be an integer of at least 1024');
  }
  const port = parsePort(env.CDIL_PORT ?? env.PORT, problems);
  const workers = Number(env.CDIL_WORKERS || 1);
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) {
    problems.push(`CDIL_WORKERS must be an integer from 1 to ${MAX_WORKERS}`);
  }
  const keyCacheTtlMs = parseInteger(
    'CDIL_KEY_CACHE_TTL_MS',
    env.CDIL_KEY_CACHE_TTL_MS,
    { fallback: DEFAULT_KEY_CACHE_TTL_MS, min: 0, max: MAX_KEY_CACHE_TTL_MS },
    problems,
  );
  const rateLimitPerMinute = parseInteger(
    'CDIL_RATE_LIMIT_PER_MINUTE',
    env.CDIL_RATE_LIMIT_PER_MINUTE,
    { fallback: 0, min: 0, max: MAX_RATE_LIMIT_PER_MINUTE },
    problems,
  );
  const rateLimitSyncMs = parseInteger(
    'CDIL_RATE_LIMIT_SYNC_MS',
    env.CDIL_RATE_LIMIT_SYNC_MS,
    {
      fallback: DEFAULT_RATE_LIMIT_SYNC_MS,
      min: MIN_RATE_LIMIT_SYNC_MS,
      max: MAX_RATE_LIMIT_SYNC_MS,
    },
    problems,
  );
  const migrateOnStart = parseBoolean(
    'CDIL_MIGRATE_ON_START',
    env.CDIL_MIGRATE_ON_START,
    true,
    problems,
  );
  const sqliteAppendThread = parseBoolean(
    'CDIL_SQLITE_APPEND_THREAD',
    env.CDIL_SQLITE_APPEND_THREAD,
    true,
    problems,
  );
  const logOrigin = env.CDIL_LOG_ORIGIN || 'cdil.local';
  if (!/^[A-Za-z0-9][A-Za-z0-9.:/_-]{0,199}$/.test(logOrigin) || logOrigin.endsWith('/')) {
    problems.push(
      'CDIL_LOG_ORIGIN must be a host-like name (letters, digits, . : / _ -), without a trailing /',
    );
  }
  const checkpointIntervalMs = Number(env.CDIL_CHECKPOINT_INTERVAL_MS || 10_000);
  if (
    !Number.isInteger(checkpointIntervalMs) ||
    (checkpointIntervalMs !== 0 && checkpointIntervalMs < 100) ||
    checkpointIntervalMs > 86_400_000
  ) {
    problems.push(
      'CDIL_CHECKPOINT_INTERVAL_MS must be 0 (on demand only) or an integer from 100 to 86400000',
    );
  }
  const tsa = parseTsa(env, problems);

  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return {
    mode,
    dataDir,
    sqlitePath: resolve(env.CDIL_SQLITE_PATH || join(dataDir, 'cdil.sqlite')),
    sqliteAppendThread,
    databaseUrl,
    databasePoolSize,
    databaseConnectTimeoutMs,
    databaseQueryTimeoutMs,
    host: env.CDIL_HOST || '127.0.0.1',
    port,
    logLevel,
    jwtSecret: jwtSecret!,
    jwtIssuer: env.CDIL_JWT_ISSUER || undefined,
    jwtAudience: env.CDIL_JWT_AUDIENCE || undefined,
    kek: kek!,
    migrateOnStart,
    workers,
    bodyLimit,
    keyCacheTtlMs,
    rateLimitPerMinute,
    rateLimitSyncMs,
    secretsFile,
    secretsGenerated,
    secretsInMemoryOnly,
    logOrigin,
    checkpointIntervalMs,
    tsa,
  };
}
