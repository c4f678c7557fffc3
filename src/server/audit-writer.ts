// Writes the audit events of rejected requests without letting a busy or unavailable database
// delay the response. A write that fails because the database could not take it is retried
// with backoff for a bounded time, and every event that is not written leaves an error line
// in the structured log instead.
import type { AuditAction, AuditReason } from '../core/audit-event.ts';
import {
  AuditEventExistsError,
  StoreBusyError,
  StoreFullError,
  StoreUnavailableError,
} from '../storage/store.ts';

/** Timing and size limits of the background audit writes. */
export interface AuditWritePolicy {
  /**
   * Maximum time a rejection waits for its audit event before its response is sent, in ms. The
   * write goes on in the background after that. Rejections caused by the database do not wait.
   */
  rejectionWaitMs: number;
  /** Pause before the first retry of a failed write, in ms. It doubles after each retry. */
  firstRetryDelayMs: number;
  /** Maximum pause between two retries, in ms. */
  maxRetryDelayMs: number;
  /** Time after the rejection when no further retry of its event starts, in ms. */
  retryPeriodMs: number;
  /** Maximum number of events being written or waiting for a retry. Further events are dropped. */
  maxPending: number;
  /** Maximum time a shutdown waits for the events still pending, in ms. */
  shutdownWaitMs: number;
}

/** The limits `cdil serve` uses; docs/operations.md describes them. */
export const DEFAULT_AUDIT_WRITE_POLICY: Readonly<AuditWritePolicy> = {
  rejectionWaitMs: 1_000,
  firstRetryDelayMs: 500,
  maxRetryDelayMs: 30_000,
  retryPeriodMs: 10 * 60_000,
  maxPending: 10_000,
  shutdownWaitMs: 5_000,
};

/** One audit event captured when a request was rejected, with everything needed to store it. */
export interface AuditWrite {
  tenantId: string;
  requestId: string;
  action: AuditAction;
  reason: AuditReason;
  /** Tries once to store the event. Every try stores the same event, time and event id. */
  attempt(): Promise<void>;
  /**
   * Returns whether an earlier try stored the event although it failed, as a try does whose
   * COMMIT succeeded but whose reply was lost. Writes that cannot tell leave it out.
   */
  isStored?(): Promise<boolean>;
}

/** The pino or Fastify logger methods the writer uses. */
export interface AuditWriteLogger {
  warn(details: object, message: string): void;
  error(details: object, message: string): void;
}

/** Reason an event was not written, as logged in the `failure` field. */
export type AuditWriteFailure =
  'not_retryable' | 'retry_period_ended' | 'too_many_pending' | 'shutdown';

/**
 * Returns whether the database could not take the write (busy, unreachable or out of space), so
 * that a later try may succeed.
 */
export function isRetryableStoreError(error: unknown): boolean {
  return (
    error instanceof StoreBusyError ||
    error instanceof StoreUnavailableError ||
    error instanceof StoreFullError
  );
}

interface PendingWrite {
  write: AuditWrite;
  /** Set once the event is stored or reported as not written, so it is reported once. */
  settled: boolean;
  /** Set after the first failed try, while the event waits for or runs a retry. */
  retrying: boolean;
  /** Ends the pause before the next retry early, at shutdown. */
  wake?: (() => void) | undefined;
}

export class BackgroundAuditWriter {
  readonly #log: AuditWriteLogger;
  readonly #policy: AuditWritePolicy;
  readonly #pending = new Set<PendingWrite>();
  readonly #idleWaiters: (() => void)[] = [];
  /** Number of events that failed a try and are not yet settled, to warn when retries start. */
  #retrying = 0;
  #stopped = false;

  constructor(log: AuditWriteLogger, policy: Partial<AuditWritePolicy> = {}) {
    this.#log = log;
    this.#policy = { ...DEFAULT_AUDIT_WRITE_POLICY, ...policy };
  }

  get policy(): Readonly<AuditWritePolicy> {
    return this.#policy;
  }

  /** Number of events being written or waiting for a retry. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Starts writing the event. The returned promise settles when the event is stored or given
   * up, and never rejects: failures are logged here.
   */
  submit(write: AuditWrite): Promise<void> {
    if (this.#stopped) {
      this.#reportNotWritten(write, 'shutdown');
      return Promise.resolve();
    }
    if (this.#pending.size >= this.#policy.maxPending) {
      this.#reportNotWritten(write, 'too_many_pending');
      return Promise.resolve();
    }
    const entry: PendingWrite = { write, settled: false, retrying: false };
    this.#pending.add(entry);
    return this.#run(entry).finally(() => {
      this.#pending.delete(entry);
      if (entry.retrying) {
        this.#retrying -= 1;
      }
      if (this.#pending.size === 0) {
        for (const resolve of this.#idleWaiters.splice(0)) {
          resolve();
        }
      }
    });
  }

  /**
   * Waits up to `timeoutMs` (the policy's shutdownWaitMs by default) for every pending event,
   * then stops retrying and logs each event still pending as not written. Returns how many
   * were not written. A try already running at that moment cannot be cancelled and may still
   * store its event after it was logged as not written.
   */
  async drain(timeoutMs = this.#policy.shutdownWaitMs): Promise<number> {
    if (this.#pending.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#idleWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    this.#stopped = true;
    let notWritten = 0;
    for (const entry of this.#pending) {
      if (!entry.settled) {
        entry.settled = true;
        notWritten += 1;
        this.#reportNotWritten(entry.write, 'shutdown');
      }
      entry.wake?.();
    }
    if (notWritten > 0) {
      this.#log.error(
        { notWritten, timeoutMs },
        'shutdown: audit events of rejected requests were not written',
      );
    }
    return notWritten;
  }

  async #run(entry: PendingWrite): Promise<void> {
    const started = Date.now();
    let delay = this.#policy.firstRetryDelayMs;
    for (let attempt = 1; ; attempt++) {
      let failure: unknown;
      try {
        await entry.write.attempt();
        entry.settled = true;
        return;
      } catch (error) {
        failure = error;
      }
      if (entry.settled) {
        // Already reported as not written at shutdown.
        return;
      }
      if (attempt > 1 && failure instanceof AuditEventExistsError) {
        const checked = await this.#checkStoredEarlier(entry.write, failure);
        failure = checked.failure;
        if (entry.settled) {
          // Reported as not written at shutdown while the check ran.
          return;
        }
        if (checked.stored) {
          entry.settled = true;
          this.#reportStoredEarlier(entry.write, failure, attempt);
          return;
        }
      }
      if (!isRetryableStoreError(failure)) {
        entry.settled = true;
        this.#reportNotWritten(entry.write, 'not_retryable', failure, attempt);
        return;
      }
      if (Date.now() - started + delay > this.#policy.retryPeriodMs) {
        entry.settled = true;
        this.#reportNotWritten(entry.write, 'retry_period_ended', failure, attempt);
        return;
      }
      await this.#pause(entry, delay, failure);
      if (entry.settled) {
        return;
      }
      delay = Math.min(delay * 2, this.#policy.maxRetryDelayMs);
    }
  }

  /**
   * Asks the write whether an earlier try stored its event, after a retry failed because the
   * event id was taken. An earlier try may have committed and lost its reply. Returns whether
   * it did, and the failure to handle otherwise: `failure`, or the check's own error.
   */
  async #checkStoredEarlier(
    write: AuditWrite,
    failure: AuditEventExistsError,
  ): Promise<{ stored: boolean; failure: unknown }> {
    if (write.isStored === undefined) {
      return { stored: false, failure };
    }
    try {
      return { stored: await write.isStored(), failure };
    } catch (error) {
      return { stored: false, failure: error };
    }
  }

  /** Waits `delayMs` before the next retry, or until shutdown stops the retries. */
  async #pause(entry: PendingWrite, delayMs: number, failure: unknown): Promise<void> {
    if (!entry.retrying) {
      entry.retrying = true;
      this.#retrying += 1;
      if (this.#retrying === 1) {
        // One line when retries start, not one per event and try.
        this.#log.warn(
          { err: failure, pending: this.#pending.size, retryDelayMs: delayMs },
          'audit event write failed because the database is busy, unavailable or full; retrying in the background',
        );
      }
    }
    try {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        entry.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    } finally {
      entry.wake = undefined;
    }
  }

  #reportStoredEarlier(write: AuditWrite, error: unknown, attempts: number): void {
    this.#log.warn(
      {
        tenantId: write.tenantId,
        requestId: write.requestId,
        action: write.action,
        attempts,
        err: error,
      },
      'audit event of a rejected request was already stored by an earlier try whose reply was lost',
    );
  }

  #reportNotWritten(
    write: AuditWrite,
    failure: AuditWriteFailure,
    error?: unknown,
    attempts?: number,
  ): void {
    // The ids, action and reason name the event without any request content.
    this.#log.error(
      {
        tenantId: write.tenantId,
        requestId: write.requestId,
        action: write.action,
        reason: write.reason,
        failure,
        attempts,
        err: error,
      },
      'audit event of a rejected request was not written',
    );
  }
}
