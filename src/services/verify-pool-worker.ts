// Verifies batches of bundles sent by BundleVerifierPool, one message per batch.
import { parentPort } from 'node:worker_threads';
import { verifyBundle } from '../core/bundle.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { BundleError } from '../core/errors.ts';
import type { PoolOutcome, PoolRequest } from './verify-pool.ts';

parentPort!.on('message', (request: PoolRequest) => {
  const outcomes: PoolOutcome[] = request.zips.map((zip) => {
    try {
      return {
        report: verifyBundle(nodeCrypto, zip, {
          trustedKeys: request.trustedKeys,
          trustedLogKeys: request.trustedLogKeys,
          noteText: request.noteText,
        }),
      };
    } catch (error) {
      if (error instanceof BundleError) {
        return { error: { code: error.code, message: error.message } };
      }
      return { error: { code: 'INTERNAL', message: (error as Error).message } };
    }
  });
  parentPort!.postMessage({ id: request.id, outcomes });
});
