// Reading, verifying and exporting certificates. Every lookup is scoped by the tenant from the
// caller's token; a certificate of another tenant is reported exactly like a missing one.
import { buildBundleFiles, BundleFile, LogBundleFile, type Evidence } from '../core/bundle.ts';
import type { Certificate } from '../core/certificate.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { fromBase64, toBase64, utf8Decode, utf8Encode } from '../core/encoding.ts';
import type { TrustedRoots } from '../core/timestamp/certificates.ts';
import { timestampChecks } from '../core/verify/timestamp-steps.ts';
import { toPublishedJwk } from '../core/key.ts';
import { verifyEvidence, type VerificationReport } from '../core/verify/verify.ts';
import { writeDeterministicZip } from '../core/zip.ts';
import type { CertificateFilter, CertificateRow, Store } from '../storage/store.ts';
import { AppError } from './errors.ts';
import { certificateFromRow, checkWellFormed } from './issuance.ts';
import { toKeyDescriptor } from './keyring.ts';
import type { TransparencyLog } from './transparency-log.ts';

export const MAX_QUERY_LIMIT = 500;
export const DEFAULT_QUERY_LIMIT = 50;

export interface QueryPage {
  items: Certificate[];
  next_cursor: string | null;
}

export interface EvidenceBundleJson {
  format: 'cdil.evidence-bundle.v2';
  certificate: Certificate;
  canonical_message: string;
  signature_der_base64: string;
  public_key_pem: string;
  key: Evidence['key'];
  verification_report: VerificationReport;
  /** The certificate's place in the tenant's log: inclusion proof, checkpoint and log key. */
  log: { inclusion_proof: unknown; checkpoint: string; log_key: string };
  /** RFC 3161 tokens, base64 DER: over the checkpoint text and the certificate statement. */
  timestamps: { checkpoint: string | null; certificate: string | null };
  manifest: unknown;
}

function encodeCursor(sequence: number, filter: CertificateFilter): string {
  return Buffer.from(JSON.stringify({ s: sequence, f: filter })).toString('base64url');
}

function decodeCursor(cursor: string, filter: CertificateFilter): number {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as {
      s?: unknown;
      f?: unknown;
    };
    if (typeof parsed.s === 'number' && Number.isSafeInteger(parsed.s) && parsed.s >= 0) {
      if (JSON.stringify(parsed.f) !== JSON.stringify(filter)) {
        throw new Error('filter changed');
      }
      return parsed.s;
    }
  } catch {
    // Fall through to the validation error below.
  }
  throw new AppError('VALIDATION_FAILED', 'cursor is invalid or was issued for different filters', {
    details: [
      {
        field: 'cursor',
        rule: 'format',
        message: 'use next_cursor from the previous page with the same filters',
      },
    ],
  });
}

export class CertificateService {
  readonly #store: Store;
  readonly #log: TransparencyLog;

  readonly #tsaRoots: TrustedRoots | undefined;

  /** `tsaRoots`: roots that timestamp tokens must chain to; without them those checks are skipped. */
  constructor(store: Store, log: TransparencyLog, tsaRoots?: TrustedRoots) {
    this.#store = store;
    this.#log = log;
    this.#tsaRoots = tsaRoots;
  }

  async #row(tenantId: string, certificateId: string): Promise<CertificateRow> {
    const row = await this.#store.getCertificate(tenantId, certificateId);
    if (!row) {
      throw new AppError('CERTIFICATE_NOT_FOUND', 'certificate not found');
    }
    return row;
  }

  async get(tenantId: string, certificateId: string): Promise<Certificate> {
    return certificateFromRow(await this.#row(tenantId, certificateId));
  }

  async query(
    tenantId: string,
    filter: CertificateFilter,
    options: { cursor?: string | undefined; limit?: number | undefined },
  ): Promise<QueryPage> {
    const limit = options.limit ?? DEFAULT_QUERY_LIMIT;
    const after = options.cursor === undefined ? 0 : decodeCursor(options.cursor, filter);
    const rows = await this.#store.queryCertificates(tenantId, filter, after, limit + 1);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      items: page.map(certificateFromRow),
      next_cursor: rows.length > limit && last ? encodeCursor(last.chain_sequence, filter) : null,
    };
  }

  /** Verifies a stored certificate against the tenant's key set and stored predecessor. */
  async verify(
    tenantId: string,
    certificateId: string,
    noteText?: string,
  ): Promise<VerificationReport> {
    checkWellFormed({ note_text: noteText });
    const row = await this.#row(tenantId, certificateId);
    return (await this.#evidence(tenantId, row, noteText)).report;
  }

  async #evidence(tenantId: string, row: CertificateRow, noteText?: string): Promise<Evidence> {
    const keys = await this.#store.listKeys(tenantId);
    const keyRow = keys.find((key) => key.key_id === row.key_id);
    if (!keyRow) {
      throw new Error(
        `certificate ${row.certificate_id} names key ${row.key_id}, which tenant ${tenantId} does not hold`,
      );
    }
    const predecessor =
      row.chain_sequence > 1
        ? await this.#store.getCertificateBySequence(tenantId, row.chain_sequence - 1)
        : null;
    const certificate = certificateFromRow(row);
    const key = toKeyDescriptor(keyRow);
    const signed = utf8Encode(row.signed_message);
    const { log, checkpointTimestamp } = await this.#log.evidenceFor(tenantId, row);
    const certificateTimestamp =
      row.timestamp_token === null || row.timestamp_token === undefined
        ? undefined
        : fromBase64(row.timestamp_token);
    const timestamps = await timestampChecks(
      {
        checkpointToken: checkpointTimestamp,
        checkpoint: utf8Encode(log.checkpoint),
        certificateToken: certificateTimestamp,
        certificate: row.timestamp_token ? certificate : undefined,
      },
      this.#tsaRoots,
    );
    const report = verifyEvidence(nodeCrypto, {
      log,
      timestamps,
      trustedLogKeys: [log.logKey],
      certificate: certificate as unknown as Record<string, unknown>,
      signedBytes: signed,
      publicKeyPem: keyRow.public_key_pem,
      key,
      predecessor: predecessor
        ? { chain_sequence: predecessor.chain_sequence, chain_hash: predecessor.chain_hash }
        : null,
      noteText,
      trustedKeys: { keys: keys.map((k) => toPublishedJwk(toKeyDescriptor(k))) },
    });
    return {
      certificate,
      signedBytes: signed,
      publicKeyPem: keyRow.public_key_pem,
      key,
      report,
      log,
      timestamps: { checkpoint: checkpointTimestamp, certificate: certificateTimestamp },
    };
  }

  /** Builds the defense bundle ZIP; the same certificate always gives the same bytes. */
  async defenseBundle(
    tenantId: string,
    certificateId: string,
  ): Promise<{ zip: Uint8Array; report: VerificationReport }> {
    const evidence = await this.#evidence(tenantId, await this.#row(tenantId, certificateId));
    return {
      zip: writeDeterministicZip(buildBundleFiles(nodeCrypto, evidence)),
      report: evidence.report,
    };
  }

  async evidenceBundle(tenantId: string, certificateId: string): Promise<EvidenceBundleJson> {
    const evidence = await this.#evidence(tenantId, await this.#row(tenantId, certificateId));
    const files = buildBundleFiles(nodeCrypto, evidence);
    return {
      format: 'cdil.evidence-bundle.v2',
      certificate: evidence.certificate,
      canonical_message: utf8Decode(evidence.signedBytes),
      signature_der_base64: toBase64(files.get(BundleFile.signature)!),
      public_key_pem: evidence.publicKeyPem,
      key: evidence.key,
      verification_report: evidence.report,
      log: {
        inclusion_proof: JSON.parse(utf8Decode(files.get(LogBundleFile.inclusionProof)!)),
        checkpoint: utf8Decode(files.get(LogBundleFile.checkpoint)!),
        log_key: utf8Decode(files.get(LogBundleFile.logKey)!),
      },
      timestamps: {
        checkpoint: evidence.timestamps?.checkpoint
          ? toBase64(evidence.timestamps.checkpoint)
          : null,
        certificate: evidence.timestamps?.certificate
          ? toBase64(evidence.timestamps.certificate)
          : null,
      },
      manifest: JSON.parse(utf8Decode(files.get(BundleFile.manifest)!)),
    };
  }
}
