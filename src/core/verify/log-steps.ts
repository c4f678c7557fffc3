// Verification steps for a certificate's place in its tenant's Merkle log: the checkpoint is
// signed by the tenant's log key, and the inclusion proof leads from the certificate's signed
// bytes to the checkpoint's root.
import {
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  type Checkpoint,
  type NoteVerifierKey,
} from '../checkpoint.ts';
import type { CryptoProvider } from '../crypto.ts';
import { VerificationError } from '../errors.ts';
import { leafHash, verifyInclusion } from '../merkle.ts';

/** The log evidence a bundle (format v2) carries. */
export interface LogEvidence {
  logIndex: number;
  treeSize: number;
  /** Audit path, leaf to root. */
  proof: Uint8Array[];
  /** Signed checkpoint note text. */
  checkpoint: string;
  /** Verifier key of the log, as shipped with the evidence. */
  logKey: string;
}

/** A verified checkpoint and the given keys whose signatures on it verified. */
interface VerifiedCheckpoint {
  checkpoint: Checkpoint;
  signers: readonly NoteVerifierKey[];
}

const MAX_CACHED_CHECKPOINTS = 256;
const openedCheckpoints = new Map<string, VerifiedCheckpoint | VerificationError>();

/** Verifies a checkpoint note with the given keys; returns the failure instead of throwing. */
function openCheckpointWith(
  crypto: CryptoProvider,
  note: string,
  keyTexts: readonly string[],
  pinned: boolean,
): VerifiedCheckpoint | VerificationError {
  try {
    return openCheckpointOrThrow(crypto, note, keyTexts, pinned);
  } catch (error) {
    if (error instanceof VerificationError) {
      return error;
    }
    throw error;
  }
}

function openCheckpointOrThrow(
  crypto: CryptoProvider,
  note: string,
  keyTexts: readonly string[],
  pinned: boolean,
): VerifiedCheckpoint {
  const verifiers = [];
  for (const text of keyTexts) {
    try {
      verifiers.push(parseVerifierKey(crypto, text));
    } catch (error) {
      throw new VerificationError(
        'CHECKPOINT_INVALID',
        `log key is not a signed-note verifier key: ${(error as Error).message}`,
      );
    }
  }
  let body: string;
  let signers: NoteVerifierKey[];
  try {
    ({ body, verifiedBy: signers } = openNote(crypto, note, verifiers));
  } catch (error) {
    throw new VerificationError(
      'CHECKPOINT_INVALID',
      pinned
        ? `checkpoint is not signed by a trusted log key: ${(error as Error).message}`
        : `checkpoint is not signed by the log key in the evidence: ${(error as Error).message}`,
    );
  }
  let checkpoint: Checkpoint;
  try {
    checkpoint = parseCheckpoint(body);
  } catch (error) {
    throw new VerificationError(
      'CHECKPOINT_INVALID',
      `checkpoint text is malformed: ${(error as Error).message}`,
    );
  }
  return { checkpoint, signers };
}

/**
 * Opens a checkpoint note with the given verifier keys and caches the outcome, because bundles
 * exported together share one checkpoint. `pinned` selects the failure message.
 */
function openCheckpointCached(
  crypto: CryptoProvider,
  note: string,
  keyTexts: readonly string[],
  pinned: boolean,
): VerifiedCheckpoint | VerificationError {
  // The flag is part of the key because the failure message depends on it.
  const cacheKey = `${pinned ? 'pinned' : 'shipped'}\n${keyTexts.join('\n')}\n\n${note}`;
  let opened = openedCheckpoints.get(cacheKey);
  if (!opened) {
    opened = openCheckpointWith(crypto, note, keyTexts, pinned);
    if (openedCheckpoints.size >= MAX_CACHED_CHECKPOINTS) {
      openedCheckpoints.clear();
    }
    openedCheckpoints.set(cacheKey, opened);
  }
  return opened;
}

/**
 * Returns the keys whose signatures on the checkpoint verified: some of `trustedLogKeys` when
 * given, else the key shipped in the evidence. Empty when the checkpoint does not verify, which
 * verifyLogCheckpoint reports. Uses the same cache as verifyLogCheckpoint, so calling both
 * checks each signature once.
 */
export function checkpointSigners(
  crypto: CryptoProvider,
  evidence: LogEvidence,
  trustedLogKeys: readonly string[] | undefined,
): readonly NoteVerifierKey[] {
  const opened = openCheckpointCached(
    crypto,
    evidence.checkpoint,
    trustedLogKeys ?? [evidence.logKey],
    trustedLogKeys !== undefined,
  );
  return opened instanceof VerificationError ? [] : opened.signers;
}

/** Origin suffix that ties a log to one tenant, so one tenant's proof cannot vouch for another's. */
export function tenantOriginSuffix(tenantId: string): string {
  return `/tenants/${tenantId}`;
}

/**
 * Checks the checkpoint signature with the pinned log keys when given, otherwise with the key
 * shipped in the evidence, and that the checkpoint is the log of the certificate's tenant.
 */
export function verifyLogCheckpoint(
  crypto: CryptoProvider,
  evidence: LogEvidence,
  tenantId: string,
  trustedLogKeys: readonly string[] | undefined,
): { detail: string; checkpoint: Checkpoint } {
  const opened = openCheckpointCached(
    crypto,
    evidence.checkpoint,
    trustedLogKeys ?? [evidence.logKey],
    trustedLogKeys !== undefined,
  );
  if (opened instanceof VerificationError) {
    throw opened;
  }
  const { checkpoint } = opened;
  if (!checkpoint.origin.endsWith(tenantOriginSuffix(tenantId))) {
    throw new VerificationError(
      'CHECKPOINT_INVALID',
      `checkpoint is for log ${checkpoint.origin}, not the log of tenant ${tenantId}`,
    );
  }
  if (checkpoint.size !== evidence.treeSize) {
    throw new VerificationError(
      'CHECKPOINT_INVALID',
      `checkpoint has size ${checkpoint.size} but the proof is for size ${evidence.treeSize}`,
    );
  }
  const source = trustedLogKeys ? 'a pinned log key' : 'the log key in the evidence';
  return {
    detail: `checkpoint of ${checkpoint.origin} at size ${checkpoint.size} is signed by ${source}`,
    checkpoint,
  };
}

/** Checks that the certificate's signed bytes are leaf `logIndex` of the checkpoint's tree. */
export function verifyLogInclusion(
  crypto: CryptoProvider,
  signedBytes: Uint8Array,
  evidence: LogEvidence,
  checkpoint: Checkpoint,
): string {
  const leaf = leafHash(crypto, signedBytes);
  if (
    !verifyInclusion(
      crypto,
      leaf,
      evidence.logIndex,
      checkpoint.size,
      evidence.proof,
      checkpoint.rootHash,
    )
  ) {
    throw new VerificationError(
      'INCLUSION_PROOF_INVALID',
      `the inclusion proof does not lead from this certificate, as leaf ${evidence.logIndex}, to the checkpoint root`,
    );
  }
  return `certificate is leaf ${evidence.logIndex} of ${checkpoint.size} in the signed log (${evidence.proof.length} proof hashes)`;
}
