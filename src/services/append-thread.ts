// The SQLite append thread. One server process spends about half of each issuance in the append
// transaction (sealing, signing, the Merkle log, the commit), which SQLite runs one at a time,
// and the other half in HTTP, validation, PHI screening and hashing. This thread runs the
// appends on a connection of its own, so the two halves use two cores without the lock hand-offs
// of two processes. Items cross to the thread as plain data. The thread seals them with its own
// clock and with the signing keys sent along, which Node clones between threads without exporting.
import { once } from 'node:events';
import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import {
  StoreBusyError,
  StoreFullError,
  StoreUnavailableError,
  type AppendResult,
  type NewAuditEvent,
  type WarningLogger,
} from '../storage/store.ts';
import {
  afterCommit,
  afterFullFailure,
  NO_WRITES,
  type WriteState,
} from '../storage/write-state.ts';
import type { UnsealedMessage } from './seal.ts';

/** One certificate to append, as plain data. */
export interface ThreadItem {
  message: UnsealedMessage;
  timestampToken: string | null;
  idempotencyKey?: string | undefined;
  requestHash?: string | undefined;
  signingKeyId?: string | undefined;
  auditEvent?: NewAuditEvent | undefined;
}

export interface ThreadGroup {
  tenantId: string;
  items: ThreadItem[];
}

/** A signing key the items of one append use, identified by tenant and key id. */
export interface ThreadKey {
  tenantId: string;
  keyId: string;
  key: KeyObject;
}

export interface AppendThreadOptions {
  /** How long an append waits for another connection's write lock. */
  busyTimeoutMs?: number | undefined;
  /** PRAGMA max_page_count of the thread's connection (see SqliteStoreOptions). */
  maxPageCount?: number | undefined;
  /** Receives a line when the thread cannot open the database; process warnings by default. */
  logger?: WarningLogger | undefined;
}

/** The thread's workerData: the options that can be cloned to it, and the database file. */
export interface AppendThreadData extends Omit<AppendThreadOptions, 'logger'> {
  path: string;
}

export type AppendThreadRequest =
  { type: 'append'; id: number; groups: ThreadGroup[]; keys: ThreadKey[] } | { type: 'close' };

/** Kind of store error an append failed with, so that the issuing thread raises the same class. */
export type ThreadErrorKind = 'busy' | 'full' | 'other';

/** A message from the thread: its start, or the outcome of one append. */
export type AppendThreadReply =
  | { type: 'ready' }
  | { type: 'start-failed'; message: string }
  | { type: 'appended'; id: number; results: AppendResult[][]; error?: undefined }
  | {
      type: 'appended';
      id: number;
      results?: undefined;
      error: { kind: ThreadErrorKind; message: string };
    };

/**
 * Raised for the appends sent to a thread that could not open the database. The thread ran none
 * of them, so they can be appended on another connection.
 */
export class AppendThreadStartError extends Error {
  override readonly name = 'AppendThreadStartError';
}

interface Pending {
  resolve: (results: AppendResult[][]) => void;
  reject: (error: Error) => void;
}

/** Time close() gives the thread to close its connection before it is stopped. */
const CLOSE_TIMEOUT_MS = 5_000;

/** Time after a failed start during which available() is false, so no thread is started. */
export const START_RETRY_MS = 10_000;

const processWarnings: WarningLogger = {
  warn: (details, message) => process.emitWarning(`${message} ${JSON.stringify(details)}`),
};

/** Tells whether `error` is a failure to find or load a module, before any of it ran. */
function isLoadFailure(error: Error): boolean {
  const code = (error as { code?: unknown }).code;
  return code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND';
}

export class SqliteAppendThread {
  readonly #data: AppendThreadData;
  readonly #workerUrl: URL;
  readonly #logger: WarningLogger;
  #worker: Worker | undefined;
  /** Whether #worker opened the database. */
  #ready = false;
  /** Time the last thread failed to start; see available(). */
  #startFailedAt: number | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #closed = false;
  /** The last append that failed on a full disk, and the last that committed. */
  #writes: WriteState = NO_WRITES;

  /** `workerUrl` replaces the thread's script, for tests of a thread that fails. */
  constructor(
    path: string,
    options: AppendThreadOptions = {},
    workerUrl = new URL('./append-thread-worker.mjs', import.meta.url),
  ) {
    this.#data = { path, busyTimeoutMs: options.busyTimeoutMs, maxPageCount: options.maxPageCount };
    this.#logger = options.logger ?? processWarnings;
    this.#workerUrl = workerUrl;
  }

  /**
   * Returns whether appends can be sent: false once closed, and for START_RETRY_MS after a thread
   * failed to start, during which the caller appends on its own connection instead.
   */
  available(): boolean {
    return (
      !this.#closed &&
      (this.#startFailedAt === undefined || Date.now() - this.#startFailedAt >= START_RETRY_MS)
    );
  }

  /**
   * Starts the thread, on the first append, so that commands that issue nothing start none. A
   * thread that stopped is replaced on the next append, so one crash fails only the appends that
   * were in it.
   */
  #start(): Worker {
    const worker = new Worker(this.#workerUrl, { workerData: this.#data });
    // An idle thread does not hold the process open; one with appends in it does (see append).
    worker.unref();
    this.#ready = false;
    worker.on('message', (reply: AppendThreadReply) => {
      if (reply.type === 'ready') {
        this.#ready = true;
        this.#startFailedAt = undefined;
      } else if (reply.type === 'start-failed') {
        this.#failStart(worker, reply.message, 'could not open the database');
      } else {
        this.#settle(reply);
      }
    });
    worker.on('error', (error) => this.#lose(worker, error));
    worker.on('exit', (code) => {
      this.#lose(worker, new Error(`the SQLite append thread exited with code ${code}`));
    });
    this.#worker = worker;
    return worker;
  }

  /**
   * Rejects the appends sent to a thread that could not start with AppendThreadStartError, since
   * it ran none of them, and starts no thread for START_RETRY_MS. `what` names the step that
   * failed.
   */
  #failStart(worker: Worker, message: string, what: string): void {
    if (this.#worker !== worker) {
      return;
    }
    this.#worker = undefined;
    this.#startFailedAt = Date.now();
    this.#logger.warn(
      { path: this.#data.path, error: message, retryInMs: START_RETRY_MS },
      `the SQLite append thread ${what}; appending on the main thread meanwhile`,
    );
    this.#rejectAll(new AppendThreadStartError(`the SQLite append thread ${what}: ${message}`));
  }

  /** Rejects every append waiting for a reply with `error`. */
  #rejectAll(error: Error): void {
    for (const pending of this.#pending.values()) {
      pending.reject(error);
    }
    this.#pending.clear();
  }

  #settle(reply: Extract<AppendThreadReply, { type: 'appended' }>): void {
    const pending = this.#pending.get(reply.id);
    if (pending === undefined) {
      return;
    }
    this.#pending.delete(reply.id);
    if (this.#pending.size === 0) {
      this.#worker?.unref();
    }
    if (reply.error === undefined) {
      this.#writes = afterCommit();
      pending.resolve(reply.results);
      return;
    }
    const { kind, message } = reply.error;
    if (kind === 'full') {
      this.#writes = afterFullFailure(this.#writes);
    }
    pending.reject(
      kind === 'busy'
        ? new StoreBusyError(message)
        : kind === 'full'
          ? new StoreFullError(message)
          : new Error(message),
    );
  }

  /**
   * Rejects every append sent to a thread that stopped. An append may have committed before
   * the thread stopped, so they fail as after a lost database connection, and a client retries
   * with its Idempotency-Key. A thread that stopped before it opened the database also delays
   * the next start, as a failed start does.
   */
  #lose(worker: Worker, cause: Error): void {
    if (this.#worker !== worker) {
      return;
    }
    if (!this.#ready && isLoadFailure(cause)) {
      // The thread's code did not load, so none of it ran.
      this.#failStart(worker, cause.message, 'could not load its code');
      return;
    }
    this.#worker = undefined;
    if (!this.#ready && !this.#closed) {
      this.#startFailedAt = Date.now();
      this.#logger.warn(
        { path: this.#data.path, error: cause.message, retryInMs: START_RETRY_MS },
        'the SQLite append thread stopped before it opened the database; appending on the main thread meanwhile',
      );
    }
    this.#rejectAll(
      new StoreUnavailableError(`the SQLite append thread stopped: ${cause.message}`, { cause }),
    );
  }

  /**
   * Appends the groups in one transaction, as SqliteStore.appendCertificateGroups does. Raises
   * StoreBusyError, StoreFullError, StoreUnavailableError when the thread stopped, or an Error
   * with the message of any other failure.
   */
  append(groups: ThreadGroup[], keys: ThreadKey[]): Promise<AppendResult[][]> {
    if (this.#closed) {
      return Promise.reject(new StoreUnavailableError('the SQLite append thread is closed'));
    }
    const worker = this.#worker ?? this.#start();
    const id = this.#nextId++;
    if (this.#pending.size === 0) {
      worker.ref();
    }
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const request: AppendThreadRequest = { type: 'append', id, groups, keys };
      worker.postMessage(request);
    });
  }

  /** Returns the last full-disk failure and the last commit of the thread's appends. */
  writeState(): WriteState {
    return this.#writes;
  }

  /** Lets the thread close its connection, and stops it if it has not after a few seconds. */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    if (worker === undefined) {
      return;
    }
    const exited = once(worker, 'exit');
    worker.postMessage({ type: 'close' } satisfies AppendThreadRequest);
    const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
