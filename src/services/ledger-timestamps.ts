// The RFC 3161 checks that whole-ledger verification runs on the stored timestamp tokens. A
// certificate token must cover certificateTimestampInput of the signed certificate, and a
// checkpoint token the exact signed note text, as issuance and log publication request them.
// Both must verify and chain to the TSA roots given. Without roots, tokens are only counted.
import type { SignedMessage } from '../core/certificate.ts';
import { fromBase64, utf8Encode } from '../core/encoding.ts';
import { TimestampError } from '../core/errors.ts';
import { TimestampVerifier } from '../core/timestamp/verify.ts';
import { certificateTimestampInput } from '../core/verify/timestamp-steps.ts';
import type { CertificateRow, CheckpointRow } from '../storage/store.ts';
import type { Clock } from './clock.ts';
import type { FindingList, LedgerFinding } from './ledger-report.ts';

/** A certificate leaf whose signed message parsed, with its stored row. */
export interface TimestampedCertificate {
  row: CertificateRow;
  message: SignedMessage;
}

export class TimestampChecks {
  readonly #roots: readonly Uint8Array[] | undefined;
  readonly #findings: FindingList;
  readonly #clock: Clock;
  /**
   * Every stored token differs, so a cache would only churn. A verifier of its own also keeps
   * the walk from evicting the tokens that the verify endpoint's shared cache holds.
   */
  readonly #verifier = new TimestampVerifier({ cacheSize: 0 });
  /** Tokens verified against the roots, whether they passed or not. */
  checked = 0;
  /** Tokens stored but not verified, because no roots were given. */
  notChecked = 0;

  /** `roots`: the DER TSA root certificates, or undefined to count the tokens unverified. */
  constructor(roots: readonly Uint8Array[] | undefined, findings: FindingList, clock: Clock) {
    this.#roots = roots;
    this.#findings = findings;
    this.#clock = clock;
  }

  /**
   * Verifies the tokens of one page of certificates concurrently, then records the findings in
   * page order, so the report does not depend on which verification finishes first.
   */
  async checkCertificates(certificates: readonly TimestampedCertificate[]): Promise<void> {
    const stamped = certificates.filter(({ row }) => typeof row.timestamp_token === 'string');
    const problems = await Promise.all(
      stamped.map(({ row, message }) =>
        this.#verify(row.timestamp_token!, () => certificateTimestampInput(message)),
      ),
    );
    stamped.forEach(({ row, message }, position) => {
      const problem = problems[position];
      if (problem !== undefined) {
        this.#add({
          subject: 'certificate',
          log_index: row.log_index!,
          certificate_id: row.certificate_id,
          chain_sequence: message.chain_sequence,
          detail: `certificate timestamp token ${problem}`,
        });
      }
    });
  }

  /** Verifies a checkpoint's token, when it has one, against the stored note text. */
  async checkCheckpoint(row: CheckpointRow): Promise<void> {
    if (row.timestamp_token === null) {
      return;
    }
    const problem = await this.#verify(row.timestamp_token, () => utf8Encode(row.note));
    if (problem !== undefined) {
      this.#add({
        subject: 'checkpoint',
        tree_size: row.tree_size,
        detail: `checkpoint timestamp token ${problem}`,
      });
    }
  }

  /** Returns why the stored token does not cover the data, or undefined when it does. */
  async #verify(stored: string, data: () => Uint8Array): Promise<string | undefined> {
    if (this.#roots === undefined) {
      this.notChecked += 1;
      return undefined;
    }
    this.checked += 1;
    const token = fromBase64(stored);
    if (token === undefined) {
      return 'is not valid base64';
    }
    try {
      await this.#verifier.verify(token, {
        data: data(),
        trustedRoots: this.#roots,
        now: this.#clock.now(),
      });
      return undefined;
    } catch (error) {
      if (!(error instanceof TimestampError)) {
        throw error;
      }
      return `is invalid: ${error.message} [${error.code}]`;
    }
  }

  #add(finding: Omit<LedgerFinding, 'kind'>): void {
    this.#findings.add({ kind: 'timestamp_invalid', ...finding });
  }
}
