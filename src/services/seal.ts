// Sealing: places a prepared certificate at its position in the tenant's chain and signs it.
// Runs inside the append transaction, on the thread that runs it: the issuing thread, or the
// SQLite append thread (src/services/append-thread.ts).
import {
  computeChainHash,
  chainHashInputOf,
  signedBytes,
  type SignedMessage,
} from '../core/certificate.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { toBase64, utf8Decode } from '../core/encoding.ts';
import type { Signer } from '../keys/signer.ts';
import type { CertificateRow, ChainLink } from '../storage/store.ts';

/** The signed fields that are known before the certificate's place in the chain. */
export type UnsealedMessage = Omit<
  SignedMessage,
  'chain_sequence' | 'previous_hash' | 'chain_hash' | 'server_timestamp'
>;

/**
 * Places a certificate at `link` in its chain: computes the chain hash, signs the canonical
 * message with `signer` and returns the row to store.
 */
export function sealCertificate(
  unsealed: UnsealedMessage,
  link: ChainLink,
  serverTimestamp: string,
  signer: Signer,
): CertificateRow {
  const partial = {
    ...unsealed,
    chain_sequence: link.sequence,
    previous_hash: link.previousHash,
    server_timestamp: serverTimestamp,
    chain_hash: '',
  };
  const message: SignedMessage = {
    ...partial,
    chain_hash: computeChainHash(nodeCrypto, chainHashInputOf(partial)),
  };
  const bytes = signedBytes(message);
  const signature = toBase64(signer.sign(bytes));
  return {
    tenant_id: message.tenant_id,
    chain_sequence: message.chain_sequence,
    certificate_id: message.certificate_id,
    issued_at_utc: message.issued_at_utc,
    model_version: message.model_version,
    governance_policy_version: message.governance_policy_version,
    human_reviewed: message.human_reviewed,
    chain_hash: message.chain_hash,
    previous_hash: message.previous_hash,
    key_id: message.key_id,
    signed_message: utf8Decode(bytes),
    signature,
  };
}
