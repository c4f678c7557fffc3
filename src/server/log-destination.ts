// The destination of the service's JSON log lines, standard output by default. A failed write must never
// stop the service. pino's default destination (sonic-boom) retried a write that failed with
// ENOSPC in an endless loop, so a full disk under the log froze the server, and it crashed on an
// unhandled 'error' event once space came back. This destination drops a line it cannot write,
// counts it, and reports the count once writing works again.
import { writeSync } from 'node:fs';

/** Pause between tries while the destination is full (EAGAIN), as for a non-blocking pipe. */
const FULL_RETRY_MS = 10;

/** Total time one line may wait for a full destination before it is dropped. */
const FULL_WAIT_LIMIT_MS = 1000;

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function sleep(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' ? code : String(error);
}

export interface LogDestinationOptions {
  /** Writes bytes to the descriptor and returns how many were written; fs.writeSync by default. */
  write?: (fd: number, data: Uint8Array) => number;
  /** Receives a one-line notice when lines start being dropped; writes to stderr by default. */
  notice?: (text: string) => void;
  /** Current time in ms, for the log line that reports dropped lines. */
  now?: () => number;
}

/** A pino destination that writes each line synchronously to a file descriptor. */
export class LogDestination {
  readonly #fd: number;
  readonly #write: (fd: number, data: Uint8Array) => number;
  readonly #notice: (text: string) => void;
  readonly #now: () => number;
  #dropped = 0;
  #lastError = '';
  /** Whether a failed write left part of a line, so the next output starts a new line. */
  #midLine = false;

  constructor(fd: number, options: LogDestinationOptions = {}) {
    this.#fd = fd;
    this.#write = options.write ?? ((target, data) => writeSync(target, data));
    this.#notice =
      options.notice ??
      ((text) => {
        try {
          writeSync(2, `${text}\n`);
        } catch {
          // stderr may sit on the same full disk; the count is reported later in the log.
        }
      });
    this.#now = options.now ?? Date.now;
  }

  /** Lines dropped since the last successful write. */
  get dropped(): number {
    return this.#dropped;
  }

  write(line: string): boolean {
    if (this.#dropped > 0) {
      const prefix = this.#midLine ? '\n' : '';
      const report = JSON.stringify({
        level: 40,
        time: this.#now(),
        msg: `${this.#dropped} log lines were dropped because writing the log failed (${this.#lastError})`,
      });
      if (!this.#writeAll(Buffer.from(`${prefix}${report}\n`))) {
        this.#dropped += 1;
        return true;
      }
      this.#dropped = 0;
    }
    if (!this.#writeAll(Buffer.from(line))) {
      if (this.#dropped === 0) {
        this.#notice(
          `cdil: writing the log failed (${this.#lastError}); lines are dropped until it works again`,
        );
      }
      this.#dropped += 1;
    }
    return true;
  }

  /** Writes all of `data`, waiting a bounded time while the destination is full. */
  #writeAll(data: Uint8Array): boolean {
    let offset = 0;
    let waited = 0;
    while (offset < data.length) {
      try {
        offset += this.#write(this.#fd, data.subarray(offset));
      } catch (error) {
        this.#lastError = errorCode(error);
        const full = this.#lastError === 'EAGAIN' || this.#lastError === 'EBUSY';
        if (full && waited < FULL_WAIT_LIMIT_MS) {
          sleep(FULL_RETRY_MS);
          waited += FULL_RETRY_MS;
          continue;
        }
        this.#midLine ||= offset > 0;
        return false;
      }
    }
    this.#midLine = false;
    return true;
  }
}
