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
} from '../storage/store.ts';
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
}

export interface AppendThreadData extends AppendThreadOptions {
  path: string;
}

export type AppendThreadRequest =
  { type: 'append'; id: number; groups: ThreadGroup[]; keys: ThreadKey[] } | { type: 'close' };

/** Kind of store error an append failed with, so that the issuing thread raises the same class. */
export type ThreadErrorKind = 'busy' | 'full' | 'other';

export type AppendThreadReply =
  | { id: number; results: AppendResult[][]; error?: undefined }
  | { id: number; results?: undefined; error: { kind: ThreadErrorKind; message: string } };

interface Pending {
  resolve: (results: AppendResult[][]) => void;
  reject: (error: Error) => void;
}

/** Time close() gives the thread to close its connection before it is stopped. */
const CLOSE_TIMEOUT_MS = 5_000;

export class SqliteAppendThread {
  readonly #data: AppendThreadData;
  readonly #workerUrl: URL;
  #worker: Worker | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #closed = false;
  /** Time of the last append that failed on a full disk, cleared by one that commits. */
  #storageFullAt: number | undefined;
  /** Time of the last append that committed. */
  #committedAt = 0;

  /** `workerUrl` replaces the thread's script, for tests of a thread that fails. */
  constructor(
    path: string,
    options: AppendThreadOptions = {},
    workerUrl = new URL('./append-thread-worker.mjs', import.meta.url),
  ) {
    this.#data = { path, ...options };
    this.#workerUrl = workerUrl;
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
    worker.on('message', (reply: AppendThreadReply) => this.#settle(reply));
    worker.on('error', (error) => this.#lose(worker, error));
    worker.on('exit', (code) => {
      this.#lose(worker, new Error(`the SQLite append thread exited with code ${code}`));
    });
    this.#worker = worker;
    return worker;
  }

  #settle(reply: AppendThreadReply): void {
    const pending = this.#pending.get(reply.id);
    if (pending === undefined) {
      return;
    }
    this.#pending.delete(reply.id);
    if (this.#pending.size === 0) {
      this.#worker?.unref();
    }
    if (reply.error === undefined) {
      this.#storageFullAt = undefined;
      this.#committedAt = Date.now();
      pending.resolve(reply.results);
      return;
    }
    const { kind, message } = reply.error;
    if (kind === 'full') {
      this.#storageFullAt = Date.now();
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
   * with its Idempotency-Key.
   */
  #lose(worker: Worker, cause: Error): void {
    if (this.#worker !== worker) {
      return;
    }
    this.#worker = undefined;
    const error = new StoreUnavailableError(`the SQLite append thread stopped: ${cause.message}`, {
      cause,
    });
    for (const pending of this.#pending.values()) {
      pending.reject(error);
    }
    this.#pending.clear();
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

  /**
   * Combines the thread's full-disk state with that of the process's other connection, whose
   * last failure is `otherFailedAt`: the latest failure counts unless an append committed after
   * it.
   */
  lastStorageFullFailure(otherFailedAt: number | undefined): number | undefined {
    if (this.#storageFullAt !== undefined) {
      return Math.max(this.#storageFullAt, otherFailedAt ?? 0);
    }
    return otherFailedAt !== undefined && otherFailedAt > this.#committedAt
      ? otherFailedAt
      : undefined;
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
