// Conversion of certificate rows as both engines return them (human_reviewed as 0 or 1, BIGINT
// columns as numbers or strings) to the engine-neutral CertificateRow.
import type { CertificateRow } from './store.ts';

export interface RawCertificate extends Omit<CertificateRow, 'human_reviewed'> {
  human_reviewed: number;
}

export function toCertificate(raw: RawCertificate | undefined): CertificateRow | undefined {
  return raw
    ? {
        ...raw,
        chain_sequence: Number(raw.chain_sequence),
        human_reviewed: raw.human_reviewed === 1,
        log_index:
          raw.log_index === null || raw.log_index === undefined ? null : Number(raw.log_index),
      }
    : undefined;
}
