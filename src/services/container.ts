// Wires the services to one store. Edges (HTTP server, CLI) build this once and call only it.
import { rmSync } from 'node:fs';
import { ConfigError, type Config } from '../config/config.ts';
import { assertSchemaSupported } from '../storage/migrations.ts';
import { openStore } from '../storage/open.ts';
import { StoreUnavailableError, type MigrationReport, type Store } from '../storage/store.ts';
import { KeyEncryptionError, openSecret } from '../keys/envelope.ts';
import { loadDefaultRuleset } from '../scoring/ruleset.ts';
import { AuditTrail } from './audit.ts';
import { AuditExporter } from './audit-export.ts';
import { CertificateService } from './certificates.ts';
import { systemClock, type Clock } from './clock.ts';
import { DashboardService } from './dashboard.ts';
import { SqliteAppendThread } from './append-thread.ts';
import { SqliteStore } from '../storage/sqlite/sqlite-store.ts';
import { lastFullFailure } from '../storage/write-state.ts';
import { IssuanceService } from './issuance.ts';
import { Keyring, tenantHmacAad } from './keyring.ts';
import { RateLimiter, processRateLimitLogger, type RateLimitLogger } from './rate-limiter.ts';
import { LedgerVerifier } from './ledger.ts';
import { ShadowAssumptions } from './shadow-assumptions.ts';
import { ShadowService } from './shadow.ts';
import { TenantService } from './tenants.ts';
import { TransparencyLog } from './transparency-log.ts';
import { createTimestampAuthority, type TimestampAuthority } from './tsa-client.ts';

export interface Services {
  store: Store;
  keyring: Keyring;
  rateLimiter: RateLimiter;
  tenants: TenantService;
  issuance: IssuanceService;
  certificates: CertificateService;
  shadow: ShadowService;
  dashboard: DashboardService;
  log: TransparencyLog;
  ledger: LedgerVerifier;
  audit: AuditTrail;
  auditExport: AuditExporter;
  migration: MigrationReport | undefined;
  /** Time of the last write that failed on a full disk, on any connection of this process. */
  lastStorageFullFailure(): number | undefined;
  /**
   * Sends the warnings of the rate limiter, and of the store when createServices opened it, to
   * `logger` instead of process warnings. The server attaches its JSON log this way.
   */
  useLogger(logger: RateLimitLogger): void;
  /** Adds the last rate-limit counts to the shared counters, then closes the store. */
  close(): Promise<void>;
}

/**
 * Forwards log lines to a target logger that can be replaced later, because the store and the
 * rate limiter are built before the server creates its logger. It starts with process warnings.
 */
class ForwardingLogger implements RateLimitLogger {
  #target: RateLimitLogger = processRateLimitLogger;

  attach(target: RateLimitLogger): void {
    this.#target = target;
  }

  info(details: object, message: string): void {
    this.#target.info(details, message);
  }

  warn(details: object, message: string): void {
    this.#target.warn(details, message);
  }
}

export interface ServiceOptions {
  store?: Store;
  clock?: Clock;
  /**
   * Overrides config.migrateOnStart. False also skips the start-up checks of the schema version,
   * of new secrets and of the key-encryption key, for callers that ran them already, such as
   * cluster workers.
   */
  migrate?: boolean;
  /** Replaces the TSA client built from config.tsa. */
  tsa?: TimestampAuthority;
  /** Reports a best-effort timestamp that failed and will be retried. */
  onTimestampFailure?: (error: unknown, context: Record<string, unknown>) => void;
}

/** Returns the store's schema version, or undefined when the database cannot be reached. */
async function readSchemaVersionIfReachable(store: Store): Promise<number | undefined> {
  try {
    return await store.schemaVersion();
  } catch (error) {
    if (error instanceof StoreUnavailableError) {
      return undefined;
    }
    throw error;
  }
}

/**
 * Raises ConfigError, after removing the secrets file that loadConfig just generated, when the
 * database already has a schema. Its tenant keys are sealed with the key-encryption key of the
 * lost secrets file, so with new secrets every signing and token check would fail.
 */
async function rejectNewSecretsForExistingData(config: Config, store: Store): Promise<void> {
  const version = await readSchemaVersionIfReachable(store);
  if (version === undefined || version === 0 || config.secretsFile === undefined) {
    return;
  }
  rmSync(config.secretsFile, { force: true });
  const database =
    config.databaseUrl === undefined
      ? `database ${config.sqlitePath}`
      : 'PostgreSQL database in DATABASE_URL';
  throw new ConfigError([
    `development secrets file ${config.secretsFile} is missing, but the ${database} already ` +
      `contains data (schema version ${version}) whose keys are sealed with the key-encryption ` +
      'key in that file; restore secrets.json from a backup or set CDIL_JWT_SECRET and CDIL_KEK. ' +
      'New secrets were not kept, because they would make every tenant key unusable',
  ]);
}

/**
 * Raises ConfigError when the key-encryption key cannot open the sealed identifier secret of the
 * first tenant. With a wrong key the service would start and report ready, then fail every
 * issuance with 500. An empty database is not checked.
 */
async function assertKekOpensTenantSecrets(config: Config, store: Store): Promise<void> {
  // Called right after the migrations succeeded, so the database is reachable.
  const [tenant] = await store.listTenants();
  if (tenant === undefined) {
    return;
  }
  try {
    openSecret(config.kek, tenant.hmac_secret_sealed, tenantHmacAad(tenant.tenant_id));
  } catch (error) {
    if (!(error instanceof KeyEncryptionError)) {
      throw error;
    }
    const source =
      config.secretsFile === undefined ? 'CDIL_KEK' : `CDIL_KEK or kek in ${config.secretsFile}`;
    throw new ConfigError([
      `the key-encryption key (${source}) does not open the sealed secrets of tenant ` +
        `${tenant.tenant_id}, so no tenant key could be used; set the key the database was ` +
        'created with',
    ]);
  }
}

/**
 * Configs whose generated secrets were already checked against the database. A config keeps
 * secretsGenerated after its first use, when the database has data made with those very
 * secrets, so a second createServices with it must not check (and remove the file) again.
 */
const secretsChecked = new WeakSet<Config>();

export async function createServices(
  config: Config,
  options: ServiceOptions = {},
): Promise<Services> {
  const logger = new ForwardingLogger();
  const store = options.store ?? openStore(config, { logger });
  const clock = options.clock ?? systemClock;
  const migrate = options.migrate ?? config.migrateOnStart;
  let migration: MigrationReport | undefined;
  try {
    if (config.secretsGenerated && options.migrate !== false && !secretsChecked.has(config)) {
      await rejectNewSecretsForExistingData(config, store);
      secretsChecked.add(config);
    }
    if (migrate) {
      migration = await store.migrate();
      await assertKekOpensTenantSecrets(config, store);
    } else if (options.migrate === undefined) {
      // NOTE: a server started while its database is unreachable skips this check, so that it
      // can start and respond with 503 until the database is back.
      const version = await readSchemaVersionIfReachable(store);
      assertSchemaSupported(version ?? 0);
    }
  } catch (error) {
    if (options.store === undefined) {
      await store.close();
    }
    throw error;
  }
  // The thread seals with the system clock, so a test that pins the clock appends without it.
  const appendThread =
    store instanceof SqliteStore &&
    config.sqliteAppendThread &&
    options.store === undefined &&
    options.clock === undefined &&
    config.sqlitePath !== ':memory:'
      ? { thread: new SqliteAppendThread(config.sqlitePath, { logger }), store }
      : undefined;
  const keyring = new Keyring(store, config.kek, { ttlMs: config.keyCacheTtlMs });
  const rateLimiter = new RateLimiter(store, {
    defaultPerMinute: config.rateLimitPerMinute,
    syncIntervalMs: config.rateLimitSyncMs,
    now: () => clock.now().getTime(),
    logger,
  });
  const tsa = options.tsa ?? createTimestampAuthority(config.tsa);
  const log = new TransparencyLog({
    store,
    kek: config.kek,
    clock,
    originPrefix: config.logOrigin,
    tsa,
    onTimestampFailure: options.onTimestampFailure,
  });
  const certificates = new CertificateService(store, log, config.tsa?.trustedRoots);
  const audit = new AuditTrail(store, keyring, clock);
  const ruleset = loadDefaultRuleset();
  const shadow = new ShadowService({
    store,
    keyring,
    certificates,
    assumptions: new ShadowAssumptions(store, ruleset, clock),
    ruleset,
    clock,
  });
  return {
    store,
    keyring,
    rateLimiter,
    tenants: new TenantService(store, config.kek, clock, keyring, log, audit),
    issuance: new IssuanceService(store, keyring, clock, rateLimiter, tsa, appendThread?.thread),
    certificates,
    shadow,
    dashboard: new DashboardService({ store, certificates, shadow, ruleset, clock }),
    log,
    ledger: new LedgerVerifier(store, clock, config.tsa?.trustedRoots),
    audit,
    auditExport: new AuditExporter(store, log, clock),
    migration,
    lastStorageFullFailure: () =>
      appendThread === undefined
        ? store.lastStorageFullFailure()
        : lastFullFailure([appendThread.thread.writeState(), appendThread.store.writeState()]),
    useLogger: (target) => logger.attach(target),
    close: async () => {
      try {
        await rateLimiter.close();
      } finally {
        try {
          await appendThread?.thread.close();
        } finally {
          await store.close();
        }
      }
    },
  };
}
