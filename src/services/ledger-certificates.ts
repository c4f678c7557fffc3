// The checks whole-ledger verification runs on each certificate leaf: the signed message is
// well formed and signed by the tenant key it names, the stored columns equal the signed
// values, the chain hash recomputes, and the certificate is at its chain position.
import { ChainOrderCheck, type ChainPlacement } from '../core/chain-order.ts';
import { chainHashInputOf, computeChainHash, type SignedMessage } from '../core/certificate.ts';
import type { PublicKeyHandle } from '../core/crypto.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { utf8Encode } from '../core/encoding.ts';
import { VerificationError } from '../core/errors.ts';
import { parseSignedMessage } from '../core/verify/message.ts';
import { verifySignature } from '../core/verify/steps.ts';
import type { CertificateRow, SigningKeyRow } from '../storage/store.ts';
import type { FindingList } from './ledger-report.ts';

/** Columns that place a certificate in the chain, so a difference there is a reordering. */
const CHAIN_POSITION_COLUMNS = new Set(['chain_sequence', 'chain_hash', 'previous_hash']);

/** Stored certificate columns that repeat a signed field, paired with that field. */
function columnPairs(
  row: CertificateRow,
  message: SignedMessage,
): [column: string, stored: unknown, signed: unknown][] {
  return [
    ['certificate_id', row.certificate_id, message.certificate_id],
    ['tenant_id', row.tenant_id, message.tenant_id],
    ['chain_sequence', row.chain_sequence, message.chain_sequence],
    ['chain_hash', row.chain_hash, message.chain_hash],
    ['previous_hash', row.previous_hash, message.previous_hash],
    ['issued_at_utc', row.issued_at_utc, message.issued_at_utc],
    ['key_id', row.key_id, message.key_id],
    ['model_version', row.model_version, message.model_version],
    ['governance_policy_version', row.governance_policy_version, message.governance_policy_version],
    ['human_reviewed', row.human_reviewed, message.human_reviewed],
  ];
}

/** Facts the leaf walk found about a certificate's leaf. */
export interface CertificateLeaf {
  row: CertificateRow;
  /** Whether a level-0 node is stored at the row's log index. */
  nodeStored: boolean;
  /** Whether the leaf hash of the stored signed bytes equals that node. */
  leafMatchesNode: boolean;
}

export class CertificateChecks {
  readonly #tenantId: string;
  readonly #keys = new Map<string, PublicKeyHandle | undefined>();
  readonly #findings: FindingList;
  readonly #chain: ChainOrderCheck;

  constructor(
    tenantId: string,
    keys: readonly SigningKeyRow[],
    findings: FindingList,
    maxTracked: number,
  ) {
    this.#tenantId = tenantId;
    this.#findings = findings;
    this.#chain = new ChainOrderCheck(maxTracked);
    // NOTE: The keys come from the database under check, so a key row added there verifies the
    // certificates it signed. Only a comparison with a key set kept elsewhere detects that.
    for (const key of keys) {
      let handle: PublicKeyHandle | undefined;
      try {
        handle = nodeCrypto.importPublicKeyPem(key.public_key_pem);
      } catch {
        // A stored key that cannot be read verifies nothing, so certificates naming it are reported.
        handle = undefined;
      }
      this.#keys.set(key.key_id, handle);
    }
  }

  /**
   * Runs every certificate check on one leaf and records the findings. Returns the parsed
   * signed message, or undefined when it is malformed.
   */
  check(leaf: CertificateLeaf): SignedMessage | undefined {
    const { row } = leaf;
    const where = { log_index: row.log_index!, certificate_id: row.certificate_id };
    let message: SignedMessage;
    try {
      message = parseSignedMessage(utf8Encode(row.signed_message));
    } catch (error) {
      if (!(error instanceof VerificationError)) {
        throw error;
      }
      this.#findings.add({
        kind: 'edited',
        subject: 'certificate',
        ...where,
        detail: `signed message is malformed: ${error.message}`,
      });
      // The stored sequence keeps this certificate's place from being reported as deleted.
      this.#chain.markPresent(row.chain_sequence);
      this.#checkLeafNode(leaf, 'in_order');
      return undefined;
    }
    const authentic = this.#checkSignature(row, message);
    this.#checkColumns(row, message);
    if (computeChainHash(nodeCrypto, chainHashInputOf(message)) !== message.chain_hash) {
      this.#findings.add({
        kind: 'edited',
        subject: 'certificate',
        ...where,
        chain_sequence: message.chain_sequence,
        detail: 'signed chain_hash does not recompute from the signed fields',
      });
    }
    const placement = this.#chain.place({
      logIndex: row.log_index!,
      sequence: message.chain_sequence,
      previousHash: message.previous_hash,
      chainHash: message.chain_hash,
      leafMatchesNode: leaf.leafMatchesNode,
      authentic,
    });
    if (placement === 'out_of_order') {
      this.#findings.add({
        kind: 'reordered',
        subject: 'certificate',
        ...where,
        chain_sequence: message.chain_sequence,
        detail: `certificate with chain sequence ${message.chain_sequence} is out of chain order at this log index`,
      });
    } else if (placement === 'link_broken') {
      this.#findings.add({
        kind: 'reordered',
        subject: 'certificate',
        ...where,
        chain_sequence: message.chain_sequence,
        detail:
          'signed previous_hash is not the chain hash of the certificate before it in the log',
      });
    }
    this.#checkLeafNode(leaf, placement);
    return message;
  }

  /** Reports the chain sequences that no certificate in the log carries. */
  finish(): { truncated: boolean } {
    const result = this.#chain.finish();
    for (const gap of result.missing) {
      this.#findings.add({
        kind: 'deleted',
        subject: 'certificate',
        chain_sequence: gap.first,
        ...(gap.count > 1 ? { count: gap.count } : {}),
        log_index: gap.foundAtLogIndex,
        detail:
          gap.count > 1
            ? `chain sequences ${gap.first} to ${gap.first + gap.count - 1} are missing before this log index`
            : `chain sequence ${gap.first} is missing before this log index`,
      });
    }
    return { truncated: result.truncated };
  }

  #checkSignature(row: CertificateRow, message: SignedMessage): boolean {
    const where = { log_index: row.log_index!, certificate_id: row.certificate_id };
    const key = this.#keys.get(message.key_id);
    if (key === undefined) {
      this.#findings.add({
        kind: 'signature_invalid',
        subject: 'certificate',
        ...where,
        detail: this.#keys.has(message.key_id)
          ? `stored public key ${message.key_id} is not a readable P-256 key`
          : `signed key_id ${message.key_id} is not a key of tenant ${this.#tenantId}`,
      });
      return false;
    }
    try {
      verifySignature(nodeCrypto, key, utf8Encode(row.signed_message), row.signature);
      return true;
    } catch (error) {
      if (!(error instanceof VerificationError)) {
        throw error;
      }
      this.#findings.add({
        kind: 'signature_invalid',
        subject: 'certificate',
        ...where,
        detail: error.message,
      });
      return false;
    }
  }

  #checkColumns(row: CertificateRow, message: SignedMessage): void {
    const differing = columnPairs(row, message)
      .filter(([, stored, signed]) => stored !== signed)
      .map(([column]) => column);
    const position = differing.filter((column) => CHAIN_POSITION_COLUMNS.has(column));
    const other = differing.filter((column) => !CHAIN_POSITION_COLUMNS.has(column));
    const where = {
      log_index: row.log_index!,
      certificate_id: row.certificate_id,
      chain_sequence: message.chain_sequence,
    };
    if (position.length > 0) {
      this.#findings.add({
        kind: 'reordered',
        subject: 'certificate',
        ...where,
        fields: position,
        detail: `stored chain position differs from the signed one: ${position.join(', ')}`,
      });
    }
    if (other.length > 0) {
      this.#findings.add({
        kind: 'edited',
        subject: 'certificate',
        ...where,
        fields: other,
        detail: `stored columns differ from the signed message: ${other.join(', ')}`,
      });
    }
  }

  /**
   * Reports a leaf whose bytes do not hash to the stored level-0 node, unless the chain check
   * already reported the certificate as moved, which explains the difference.
   */
  #checkLeafNode(leaf: CertificateLeaf, placement: ChainPlacement): void {
    if (!leaf.nodeStored || leaf.leafMatchesNode || placement === 'out_of_order') {
      return;
    }
    this.#findings.add({
      kind: 'edited',
      subject: 'certificate',
      log_index: leaf.row.log_index!,
      certificate_id: leaf.row.certificate_id,
      detail: 'leaf hash of the stored signed message differs from the stored level-0 node',
    });
  }
}
