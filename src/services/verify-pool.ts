// Verifies many defense bundles in parallel on worker threads, for auditors who check a large
// export at once. Each worker runs the same core verifier as `cdil verify`. Bundles are sent
// in batches packed into one transferred buffer, and reports come back with each distinct
// string sent once per batch, so message passing stays small next to the signature checks.
// Each worker takes the next batch when it finishes one, so no worker waits while another
// still has a backlog.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Jwks } from '../core/key.ts';
import type { VerificationReport } from '../core/verify/verify.ts';
import { decodeJsonValues, type EncodedValues } from './verify-pool-encoding.ts';

export interface PoolRequest {
  id: number;
  /** The batch's bundles back to back, transferred to the worker instead of copied. */
  zipBytes: ArrayBuffer;
  /** Length in bytes of each bundle in zipBytes, in order. */
  zipLengths: number[];
  trustedKeys?: Jwks | undefined;
  trustedLogKeys?: readonly string[] | undefined;
  requireTrustedKeys?: boolean | undefined;
  tsaRoots?: string | undefined;
  requireTimestamps?: boolean | undefined;
  noteText?: Uint8Array | string | undefined;
}

/** A report, or the reason the input was not a usable bundle. */
export type PoolOutcome =
  | { report: VerificationReport; error?: undefined }
  | { report?: undefined; error: { code: string; message: string } };

export interface PoolResponse {
  id: number;
  /**
   * The PoolOutcome array, encoded by encodeJsonValues. Reports contain only strings, booleans
   * and null, so the decoded outcomes equal the worker's. A structured clone of the same
   * objects costs the main thread about 14 µs per report to deserialize, and JSON text about
   * 7.7 µs to receive and parse, against about 2.4 µs to receive and decode (Node 20.20).
   */
  outcomes: EncodedValues;
}

export interface VerifyManyOptions {
  trustedKeys?: Jwks | undefined;
  trustedLogKeys?: readonly string[] | undefined;
  /** Fails bundles whose signing key, or log key when they have log evidence, is not pinned. */
  requireTrustedKeys?: boolean | undefined;
  /** PEM text of the TSA roots; timestamp tokens are checked when given. */
  tsaRoots?: string | undefined;
  /** Fails bundles without a checkpoint timestamp token. */
  requireTimestamps?: boolean | undefined;
  noteText?: Uint8Array | string | undefined;
  /** Maximum number of bundles per message to a worker. */
  batchSize?: number;
}

export const DEFAULT_BATCH_SIZE = 64;

/**
 * Minimum number of batches per worker thread, when there are enough bundles. Smaller batches
 * near the end keep all workers busy until the last one finishes.
 */
const BATCHES_PER_THREAD = 4;

/**
 * Batches sent to one worker before it replies. With two, the worker starts its next batch
 * while its previous result travels back and is parsed, instead of waiting for the main thread.
 */
const BATCHES_IN_FLIGHT_PER_THREAD = 2;

/** Copies the bundles back to back into one new buffer, which can be transferred. */
function packZips(zips: readonly Uint8Array[]): { zipBytes: ArrayBuffer; zipLengths: number[] } {
  let total = 0;
  for (const zip of zips) {
    total += zip.length;
  }
  // Every byte is written below, so the buffer skips zero-filling. allocUnsafeSlow gives it an
  // ArrayBuffer of its own, which can be transferred, where allocUnsafe may share Node's pool.
  const packed = Buffer.allocUnsafeSlow(total);
  let offset = 0;
  for (const zip of zips) {
    packed.set(zip, offset);
    offset += zip.length;
  }
  return { zipBytes: packed.buffer, zipLengths: zips.map((zip) => zip.length) };
}

/** Returns views of the bundles that packZips wrote. */
export function unpackZips(zipBytes: ArrayBuffer, zipLengths: readonly number[]): Uint8Array[] {
  const zips: Uint8Array[] = [];
  let offset = 0;
  for (const length of zipLengths) {
    zips.push(new Uint8Array(zipBytes, offset, length));
    offset += length;
  }
  return zips;
}

export function defaultThreadCount(): number {
  return Math.max(1, availableParallelism());
}

export class BundleVerifierPool {
  readonly #workers: Worker[];
  readonly #pending = new Map<
    number,
    { worker: Worker; resolve: (outcomes: PoolOutcome[]) => void; reject: (error: Error) => void }
  >();
  #closing = false;
  #nextId = 0;
  #failure: Error | undefined;

  /** `workerUrl` replaces the worker script, for tests of a worker that fails. */
  constructor(
    threads: number = defaultThreadCount(),
    workerUrl = new URL('./verify-pool-worker.mjs', import.meta.url),
  ) {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new TypeError('threads must be a positive integer');
    }
    this.#workers = Array.from({ length: threads }, () => {
      const worker = new Worker(workerUrl);
      worker.on('message', (response: PoolResponse) => {
        this.#pending
          .get(response.id)
          ?.resolve(decodeJsonValues(response.outcomes) as PoolOutcome[]);
        this.#pending.delete(response.id);
      });
      worker.on('error', (error) => {
        this.#fail(worker, error);
      });
      worker.on('exit', (code) => {
        if (!this.#closing) {
          this.#fail(worker, new Error(`verifier worker thread exited with code ${code}`));
        }
      });
      return worker;
    });
  }

  get threads(): number {
    return this.#workers.length;
  }

  /** Verifies every bundle and returns the outcomes in input order. */
  async verifyMany(zips: Uint8Array[], options: VerifyManyOptions = {}): Promise<PoolOutcome[]> {
    const maxBatchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    const minBatches = this.#workers.length * BATCHES_PER_THREAD;
    const batchSize = Math.max(1, Math.min(maxBatchSize, Math.ceil(zips.length / minBatches)));
    const batches: Uint8Array[][] = [];
    for (let start = 0; start < zips.length; start += batchSize) {
      batches.push(zips.slice(start, start + batchSize));
    }
    const outcomes = new Array<PoolOutcome[]>(batches.length);
    let next = 0;
    // Each sender takes the next batch when its previous one returns, so the workers stay
    // equally busy even when some bundles take longer than others.
    const drain = async (worker: Worker): Promise<void> => {
      while (next < batches.length) {
        const index = next++;
        outcomes[index] = await this.#send(worker, batches[index]!, options);
      }
    };
    const senders: Promise<void>[] = [];
    for (const worker of this.#workers) {
      for (let i = 0; i < BATCHES_IN_FLIGHT_PER_THREAD; i++) {
        senders.push(drain(worker));
      }
    }
    await Promise.all(senders);
    return outcomes.flat();
  }

  /**
   * Marks the pool as failed and rejects every batch still waiting on `worker`, so verifyMany
   * raises instead of waiting forever for a worker that crashed.
   */
  #fail(worker: Worker, error: Error): void {
    this.#failure ??= error;
    for (const [id, entry] of this.#pending) {
      if (entry.worker === worker) {
        this.#pending.delete(id);
        entry.reject(error);
      }
    }
  }

  #send(worker: Worker, zips: Uint8Array[], options: VerifyManyOptions): Promise<PoolOutcome[]> {
    if (this.#failure) {
      return Promise.reject(this.#failure);
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { worker, resolve, reject });
      const { zipBytes, zipLengths } = packZips(zips);
      const request: PoolRequest = {
        id,
        zipBytes,
        zipLengths,
        trustedKeys: options.trustedKeys,
        trustedLogKeys: options.trustedLogKeys,
        requireTrustedKeys: options.requireTrustedKeys,
        tsaRoots: options.tsaRoots,
        requireTimestamps: options.requireTimestamps,
        noteText: options.noteText,
      };
      worker.postMessage(request, [zipBytes]);
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    await Promise.all(this.#workers.map((worker) => worker.terminate()));
  }
}
