// Verifies batches of bundles sent by BundleVerifierPool, one message per batch. With TSA roots
// the timestamp tokens are checked too, which is asynchronous.
import { parentPort } from 'node:worker_threads';
import { verifyBundle, verifyBundleWithTimestamps } from '../core/bundle.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { BundleError } from '../core/errors.ts';
import { encodeJsonValues } from './verify-pool-encoding.ts';
import {
  unpackZips,
  type PoolOutcome,
  type PoolRequest,
  type PoolResponse,
} from './verify-pool.ts';

async function verifyOne(request: PoolRequest, zip: Uint8Array): Promise<PoolOutcome> {
  const options = {
    trustedKeys: request.trustedKeys,
    trustedLogKeys: request.trustedLogKeys,
    requireTrustedKeys: request.requireTrustedKeys,
    noteText: request.noteText,
  };
  try {
    return {
      report:
        request.tsaRoots === undefined && request.requireTimestamps !== true
          ? verifyBundle(nodeCrypto, zip, options)
          : await verifyBundleWithTimestamps(nodeCrypto, zip, {
              ...options,
              tsaRoots: request.tsaRoots,
              requireTimestamps: request.requireTimestamps,
            }),
    };
  } catch (error) {
    if (error instanceof BundleError) {
      return { error: { code: error.code, message: error.message } };
    }
    return { error: { code: 'INTERNAL', message: (error as Error).message } };
  }
}

parentPort!.on('message', (request: PoolRequest) => {
  const zips = unpackZips(request.zipBytes, request.zipLengths);
  void Promise.all(zips.map((zip) => verifyOne(request, zip))).then((outcomes) => {
    const response: PoolResponse = { id: request.id, outcomes: encodeJsonValues(outcomes) };
    parentPort!.postMessage(response, [response.outcomes.codes]);
  });
});
