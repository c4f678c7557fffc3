// Verifies many defense bundles in parallel on worker threads, for auditors who check a large
// export at once. Each worker runs the same core verifier as `cdil verify`; bundles are sent
// in batches so message passing stays small next to the signature checks.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Jwks } from '../core/key.ts';
import type { VerificationReport } from '../core/verify/verify.ts';

export interface PoolRequest {
  id: number;
  zips: Uint8Array[];
  trustedKeys?: Jwks | undefined;
  trustedLogKeys?: readonly string[] | undefined;
  tsaRoots?: string | undefined;
  requireTimestamps?: boolean | undefined;
  noteText?: Uint8Array | string | undefined;
}

/** A report, or the reason the input was not a usable bundle. */
export type PoolOutcome =
  | { report: VerificationReport; error?: undefined }
  | { report?: undefined; error: { code: string; message: string } };

interface PoolResponse {
  id: number;
  outcomes: PoolOutcome[];
}

export interface VerifyManyOptions {
  trustedKeys?: Jwks | undefined;
  trustedLogKeys?: readonly string[] | undefined;
  /** PEM text of the TSA roots; timestamp tokens are checked when given. */
  tsaRoots?: string | undefined;
  /** Fails bundles without a checkpoint timestamp token. */
  requireTimestamps?: boolean | undefined;
  noteText?: Uint8Array | string | undefined;
  /** Bundles per message to a worker. */
  batchSize?: number;
}

export const DEFAULT_BATCH_SIZE = 64;

export function defaultThreadCount(): number {
  return Math.max(1, availableParallelism());
}

export class BundleVerifierPool {
  readonly #workers: Worker[];
  readonly #pending = new Map<number, (outcomes: PoolOutcome[]) => void>();
  #nextId = 0;
  #nextWorker = 0;
  #failure: Error | undefined;

  constructor(threads: number = defaultThreadCount()) {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new TypeError('threads must be a positive integer');
    }
    this.#workers = Array.from({ length: threads }, () => {
      const worker = new Worker(new URL('./verify-pool-worker.mjs', import.meta.url));
      worker.on('message', (response: PoolResponse) => {
        this.#pending.get(response.id)?.(response.outcomes);
        this.#pending.delete(response.id);
      });
      worker.on('error', (error) => {
        this.#failure = error;
      });
      return worker;
    });
  }

  get threads(): number {
    return this.#workers.length;
  }

  /** Verifies every bundle and returns the outcomes in input order. */
  async verifyMany(zips: Uint8Array[], options: VerifyManyOptions = {}): Promise<PoolOutcome[]> {
    const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    const batches: Promise<PoolOutcome[]>[] = [];
    for (let start = 0; start < zips.length; start += batchSize) {
      batches.push(this.#send(zips.slice(start, start + batchSize), options));
    }
    return (await Promise.all(batches)).flat();
  }

  #send(zips: Uint8Array[], options: VerifyManyOptions): Promise<PoolOutcome[]> {
    if (this.#failure) {
      return Promise.reject(this.#failure);
    }
    const id = this.#nextId++;
    const worker = this.#workers[this.#nextWorker++ % this.#workers.length]!;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      const request: PoolRequest = {
        id,
        zips,
        trustedKeys: options.trustedKeys,
        trustedLogKeys: options.trustedLogKeys,
        tsaRoots: options.tsaRoots,
        requireTimestamps: options.requireTimestamps,
        noteText: options.noteText,
      };
      worker.postMessage(request);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((worker) => worker.terminate()));
  }
}
