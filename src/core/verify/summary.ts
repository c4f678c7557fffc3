// Plain-language summary of a verification report, written for a compliance officer rather
// than a cryptographer.
import type { SignedMessage } from '../certificate.ts';
import type { CheckName, VerificationReport } from './verify.ts';

const FAILURE_MEANING: Record<CheckName, string> = {
  bundle_manifest: 'One or more files in the bundle were changed, added or removed after export.',
  message_format:
    'The signed record is damaged or in an unknown format, so nothing in it can be relied on.',
  certificate_fields: 'The certificate shows values that differ from what was signed.',
  key_binding: 'The public key supplied is not the key the certificate names.',
  signature: 'The signed record was changed after signing, or it was not signed with this key.',
  key_validity: 'The signing key was not valid when the certificate says it was issued.',
  trusted_key:
    'The signing key is not one of the keys you chose to trust, or no key set was given although one was required.',
  chain_hash:
    'The chain fields were changed, so the certificate no longer fits its place in the ledger.',
  chain_link: "The certificate does not link to the previous entry of the tenant's ledger.",
  note_hash: 'The note text supplied is not the note that was certified.',
  log_checkpoint:
    "The signed state of the tenant's log is forged, altered, signed by a key you do not trust, or not checked against pinned log keys although that was required.",
  log_inclusion:
    "The certificate is not provably part of the tenant's log: it or its proof was changed.",
  checkpoint_timestamp:
    'The trusted timestamp of the log state is forged, altered or from a time authority you do not trust.',
  certificate_timestamp:
    'The trusted timestamp of the certificate is forged, altered or from a time authority you do not trust.',
};

export function summarize(report: VerificationReport, message: SignedMessage | undefined): string {
  const id = report.certificate_id ?? '(unknown id)';
  const failed = report.checks.filter((check) => check.status === 'fail');
  if (!report.valid || !message) {
    const lines = [
      `Certificate ${id} is NOT valid: ${failed.length} of ${report.checks.length} checks failed.`,
    ];
    for (const check of failed) {
      lines.push(`${check.check}: ${FAILURE_MEANING[check.check]}`);
    }
    return lines.join(' ');
  }
  const meaning = message.attestation_meaning
    ? ` with the meaning ${message.attestation_meaning.replaceAll('_', ' ')}`
    : '';
  const reviewed = message.human_reviewed
    ? `a human reviewer attested it${meaning} at ${message.human_attested_at_utc ?? 'an unrecorded time'}`
    : 'no human review was recorded';
  const parts = [
    `Certificate ${id} is valid.`,
    `It was issued at ${message.issued_at_utc} for tenant ${message.tenant_id}, signed with key ${message.key_id},` +
      ` for a note written with model ${message.model_name} ${message.model_version}` +
      ` under governance policy ${message.governance_policy_version}; ${reviewed}.`,
    'None of these details has changed since signing.',
  ];
  const note = report.checks.find((check) => check.check === 'note_hash');
  if (note?.status === 'pass') {
    parts.push('The note text supplied is exactly the certified note.');
  }
  const inclusion = report.checks.find((check) => check.check === 'log_inclusion');
  if (inclusion?.status === 'pass') {
    const checkpoint = report.checks.find((check) => check.check === 'log_checkpoint');
    parts.push(
      checkpoint?.detail.includes('a pinned log key')
        ? "It is recorded in the tenant's append-only log, so it cannot have been removed or replaced without detection."
        : "It is recorded in a log whose key came with the evidence; pin the tenant's log key to prove it is the tenant's append-only log.",
    );
  }
  const trusted = report.checks.find((check) => check.check === 'trusted_key');
  if (trusted?.status === 'skipped') {
    parts.push(
      'The key was taken from the evidence itself; pin the tenant key set for independent proof.',
    );
  }
  return parts.join(' ');
}
