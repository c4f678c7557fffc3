// Per-tenant issuance limits that every process on one database enforces together. Each
// process counts the requests it admits in memory, so no request waits for the database. Every
// CDIL_RATE_LIMIT_SYNC_MS it adds those counts to each tenant's counter row for the current
// one-minute window and reads back the totals of all processes, in one transaction. A request
// is rejected once the last total read plus the requests admitted here since then reach the
// limit.
//
// The price is a bounded overshoot: after the shared total reaches the limit, each process
// keeps admitting until its next sync shows it. All processes together therefore admit at most
// the limit plus, for each process, the requests it admits in one sync interval.
// docs/operations.md states the bound and its exceptions.
import { AppError } from './errors.ts';
import {
  processWarningLogger,
  type RateLimitCount,
  type Store,
  type WarningLogger,
} from '../storage/store.ts';

export const RATE_LIMIT_WINDOW_MS = 60_000;

/** Minimum time between two log lines about repeated sync failures, in ms. */
const FAILURE_LOG_INTERVAL_MS = 60_000;

/** Logger methods the limiter calls; pino and Fastify loggers provide them. */
export interface RateLimitLogger extends WarningLogger {
  info(details: object, message: string): void;
}

/** Sends warnings to process warnings and drops info lines, for commands without a JSON log. */
export const processRateLimitLogger: RateLimitLogger = {
  info: () => undefined,
  warn: (details, message) => processWarningLogger.warn(details, message),
};

export interface RateLimiterOptions {
  /** Requests per tenant and minute when the tenant has no override; 0 means no limit. */
  defaultPerMinute: number;
  syncIntervalMs: number;
  /** Millisecond clock; tests pass their own. */
  now?: () => number;
  /** Receives sync failures and recoveries. Defaults to processRateLimitLogger. */
  logger?: RateLimitLogger;
}

/** This process's counts for one tenant in the current window. */
interface TenantWindow {
  windowStart: number;
  /** Total of all processes at the last sync, including this process's counts added then. */
  syncedTotal: number;
  /** Requests admitted here since the last sync, not yet in the shared counter. */
  unsynced: number;
  /**
   * Requests rejected here since the last sync. The next sync then reads the tenant's total
   * and override, so a raised limit also reaches a process that rejects every request.
   */
  rejected: number;
}

export class RateLimiter {
  readonly #store: Store;
  readonly #defaultPerMinute: number;
  readonly #syncIntervalMs: number;
  readonly #now: () => number;
  readonly #tenants = new Map<string, TenantWindow>();
  /**
   * Each tenant's stored override (null for none) as of its last sync, kept across windows.
   * Until its first sync a tenant is limited by the default.
   */
  readonly #overrides = new Map<string, number | null>();
  readonly #logger: RateLimitLogger;
  #timer: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;
  #prunedBefore = 0;
  #failures = 0;
  #lastFailureLog = 0;
  #closed = false;

  constructor(store: Store, options: RateLimiterOptions) {
    this.#store = store;
    this.#defaultPerMinute = options.defaultPerMinute;
    this.#syncIntervalMs = options.syncIntervalMs;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger ?? processRateLimitLogger;
  }

  /**
   * Counts one request for the tenant, or throws RATE_LIMITED with a Retry-After header when
   * the tenant's limit for the current minute is reached.
   */
  admit(tenantId: string): void {
    const now = this.#now();
    const windowStart = Math.floor(now / RATE_LIMIT_WINDOW_MS) * RATE_LIMIT_WINDOW_MS;
    let state = this.#tenants.get(tenantId);
    if (!state || state.windowStart !== windowStart) {
      state = { windowStart, syncedTotal: 0, unsynced: 0, rejected: 0 };
      this.#tenants.set(tenantId, state);
    }
    const limit = this.#limitOf(tenantId);
    if (limit > 0 && state.syncedTotal + state.unsynced >= limit) {
      state.rejected += 1;
      this.#startTimer();
      const retryAfterSeconds = Math.max(
        1,
        Math.ceil((windowStart + RATE_LIMIT_WINDOW_MS - now) / 1000),
      );
      throw new AppError(
        'RATE_LIMITED',
        `the tenant's limit of ${limit} issuance requests per minute is reached; retry after ${retryAfterSeconds} s`,
        {
          extra: { retry_after_seconds: retryAfterSeconds },
          headers: { 'retry-after': String(retryAfterSeconds) },
        },
      );
    }
    state.unsynced += 1;
    this.#startTimer();
  }

  #limitOf(tenantId: string): number {
    return this.#overrides.get(tenantId) ?? this.#defaultPerMinute;
  }

  #startTimer(): void {
    if (this.#timer === undefined && !this.#closed) {
      // A tick while a sync runs is skipped, so a slow database does not queue syncs.
      this.#timer = setInterval(() => {
        if (this.#syncing === undefined) {
          void this.sync();
        }
      }, this.#syncIntervalMs);
      this.#timer.unref();
    }
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /**
   * Adds this process's counts to the shared counters and reads back each tenant's total and
   * override. The timer calls it; tests call it directly. A call while a sync runs waits for
   * it and then runs its own, so the result reflects everything stored before the call.
   */
  async sync(): Promise<void> {
    while (this.#syncing !== undefined) {
      await this.#syncing;
    }
    this.#syncing = this.#syncOnce().finally(() => {
      this.#syncing = undefined;
    });
    return this.#syncing;
  }

  async #syncOnce(): Promise<void> {
    const now = this.#now();
    const windowStart = Math.floor(now / RATE_LIMIT_WINDOW_MS) * RATE_LIMIT_WINDOW_MS;
    const sent = new Map<string, { admitted: number; rejected: number }>();
    const counts: RateLimitCount[] = [];
    for (const [tenantId, state] of this.#tenants) {
      if (state.windowStart !== windowStart) {
        // Counts of an ended window no longer limit anything, so they are dropped.
        this.#tenants.delete(tenantId);
        continue;
      }
      if (state.unsynced === 0 && state.rejected === 0) {
        continue;
      }
      sent.set(tenantId, { admitted: state.unsynced, rejected: state.rejected });
      // A tenant known to have no limit is only read, to pick up a new override. Before its
      // first sync the override is unknown, so its counts are written even when the default
      // is no limit: otherwise requests admitted then would be missing from the total.
      const unlimited = this.#overrides.has(tenantId) && this.#limitOf(tenantId) === 0;
      counts.push({ tenantId, count: unlimited ? 0 : state.unsynced });
    }
    if (this.#tenants.size === 0) {
      this.#stopTimer();
    }
    try {
      if (counts.length > 0) {
        const totals = await this.#store.syncRateLimitCounters(
          new Date(windowStart).toISOString(),
          counts,
        );
        const found = new Set<string>();
        for (const total of totals) {
          found.add(total.tenantId);
          this.#overrides.set(total.tenantId, total.limitPerMinute);
          const state = this.#tenants.get(total.tenantId);
          const synced = sent.get(total.tenantId);
          if (state?.windowStart === windowStart && synced) {
            state.syncedTotal = total.total;
            state.unsynced -= synced.admitted;
            state.rejected -= synced.rejected;
          }
        }
        for (const tenantId of sent.keys()) {
          if (!found.has(tenantId)) {
            this.#tenants.delete(tenantId);
            this.#overrides.delete(tenantId);
          }
        }
        // Only a process that counts requests prunes, so one that admitted none, such as a
        // command on a read-only database, never writes.
        await this.#prune(windowStart);
      }
      this.#recordSuccess();
    } catch (error) {
      this.#recordFailure(error, counts.length);
    }
  }

  /** Deletes counter rows older than the previous window, once per window and process. */
  async #prune(windowStart: number): Promise<void> {
    const before = windowStart - RATE_LIMIT_WINDOW_MS;
    if (before <= this.#prunedBefore) {
      return;
    }
    this.#prunedBefore = before;
    await this.#store.pruneRateLimitCounters(new Date(before).toISOString());
  }

  #recordSuccess(): void {
    if (this.#failures > 0) {
      this.#logger.info({ failures: this.#failures }, 'rate-limit counter sync recovered');
      this.#failures = 0;
    }
  }

  #recordFailure(error: unknown, tenants: number): void {
    this.#failures += 1;
    const now = this.#now();
    if (this.#failures === 1 || now - this.#lastFailureLog >= FAILURE_LOG_INTERVAL_MS) {
      this.#lastFailureLog = now;
      this.#logger.warn(
        { err: error, failures: this.#failures, tenants },
        'rate-limit counter sync failed; counting locally and retrying at the next interval',
      );
    }
  }

  /** Stops the timer and adds the last unsynced counts to the shared counters. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopTimer();
    await this.sync();
  }
}
