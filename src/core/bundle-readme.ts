// README.txt of a defense bundle. Lines starting with "  $ " are shell commands that a test
// runs as written in an unpacked bundle, so the manual steps cannot drift from the format.
// Verifiers compare the text byte for byte with every known text version, so a published
// version must never change: a new text is a new version, and verifiers keep accepting the old
// ones. Bundles that carry a log proof (format v2) get the text with the log files and steps
// added.
import type { Certificate } from './certificate.ts';

/**
 * Versions of the README.txt text. Version 2 adds the step that compares public_key.pem with
 * the tenant's published key set. The exporter writes the latest, and verifiers accept all.
 */
export const BUNDLE_README_VERSIONS = [1, 2] as const;
export type BundleReadmeVersion = (typeof BUNDLE_README_VERSIONS)[number];
export const LATEST_BUNDLE_README_VERSION: BundleReadmeVersion = 2;
/** Newest first, because nearly every bundle being checked carries the latest text. */
const VERSIONS_NEWEST_FIRST = [...BUNDLE_README_VERSIONS].reverse();

const LOG_FILES = `  inclusion_proof.json      the certificate's position and Merkle audit path in the tenant's log
  checkpoint.txt            the signed state (size and root hash) of the log the proof leads to
  log_key.txt               the key that signs the tenant's log checkpoints
`;

const LOG_SECTION = `
The log proof
-------------
inclusion_proof.json shows that canonical_message.json is leaf log_index of the tenant's
append-only Merkle log (RFC 9162) at the size in checkpoint.txt, whose root hash is signed
with the key in log_key.txt. "cdil verify" checks both; pin the tenant's published log key
with --trusted-log-keys so the check does not rely on the key inside this archive. Hashes
in these files are standard base64.
`;

const TIMESTAMP_FILE_LINES: Readonly<Record<string, string>> = {
  'checkpoint_timestamp.tsr':
    '  checkpoint_timestamp.tsr  RFC 3161 timestamp token (DER) over checkpoint.txt\n',
  'certificate_timestamp.tsr':
    '  certificate_timestamp.tsr RFC 3161 timestamp token (DER) over the certificate statement\n',
};

const TIMESTAMP_SECTION = `
Trusted time
------------
The .tsr files are RFC 3161 timestamp tokens from a time-stamping authority (TSA). Check them
with "cdil verify --tsa-roots roots.pem", where roots.pem holds the TSA root certificates you
trust. checkpoint_timestamp.tsr covers the exact bytes of checkpoint.txt, so the checkpoint,
and every certificate it includes, existed at the token's time. By hand:
openssl ts -verify -data checkpoint.txt -in checkpoint_timestamp.tsr -token_in -CAfile roots.pem
`;

/**
 * DER prefix of a P-256 public key in SubjectPublicKeyInfo form with the named curve
 * (id-ecPublicKey, prime256v1) and an uncompressed point. The 64 bytes of x and y follow it.
 */
export const P256_SPKI_PREFIX_HEX = '3059301306072a8648ce3d020106082a8648ce3d03010703420004';

/**
 * The step of version 2 that ties public_key.pem to the tenant, because step 1 checks the
 * signature only against the key inside the archive. The first command prints the DER prefix
 * of the key. It must be the named-curve P-256 prefix, because a key with explicit curve
 * parameters can carry the tenant's x and y with a generator whose private key the forger
 * chose, and "openssl dgst -verify" (OpenSSL 3.0.19) accepts signatures made with such keys.
 * The other two commands print the JWK "x" and "y" (base64url): in that SPKI, the last 64
 * bytes are x then y.
 */
function publishedKeyStep(certificate: Certificate): string {
  return `2. public_key.pem is the tenant's key. Step 1 shows only that the signature matches
   public_key.pem, and anyone can make a key pair. The first command below must print
     ${P256_SPKI_PREFIX_HEX}
   which every P-256 key on the named curve starts with. Any other output means that the
   key carries explicit curve parameters, and such a key can show the tenant's x and y
   without being the tenant's key. Then get the tenant's published key set (JWKS) from the
   tenant, not from this archive. CDIL serves it at this path:
     /v1/tenants/${certificate.tenant_id}/jwks.json
   In it, the key whose "kid" is the signing key id above must have the "x" and "y" values
   that the last two commands below print. It must not have "status": "revoked", and its
   "valid_from" (and "valid_until", if set) must include the "Issued (UTC)" time above.

  $ openssl pkey -pubin -in public_key.pem -outform DER | head -c 27 | od -An -tx1 | tr -d ' \\n'; echo
  $ openssl pkey -pubin -in public_key.pem -outform DER | tail -c 64 | head -c 32 | openssl base64 | tr '+/' '-_' | tr -d '='
  $ openssl pkey -pubin -in public_key.pem -outform DER | tail -c 32 | openssl base64 | tr '+/' '-_' | tr -d '='

`;
}

/**
 * Renders README.txt in the given text version (the latest by default). Format v1 passes only
 * the certificate. Format v2 also passes the log flag and the timestamp token files present, so
 * the text lists exactly the bundle's files.
 */
export function renderBundleReadme(
  certificate: Certificate,
  withLog = false,
  timestampFiles: readonly string[] = [],
  version: BundleReadmeVersion = LATEST_BUNDLE_README_VERSION,
): string {
  // Version 2 inserts one step after the first, so later steps are numbered one higher.
  const step = (first: number) => (version >= 2 ? first + 1 : first);
  const tokens = [...timestampFiles].sort();
  // Format v2 certificates sign the meaning of the attestation. Texts of v1 certificates stay
  // unchanged.
  const meaning = certificate.attestation_meaning ? `${certificate.attestation_meaning}, ` : '';
  const review = certificate.human_reviewed
    ? `yes, ${meaning}attested at ${certificate.human_attested_at_utc ?? 'an unrecorded time'}`
    : 'no';
  return `CDIL defense bundle
===================

This archive proves that one AI-written clinical note was certified by CDIL and has not
changed since. It holds no note text and no patient identifiers.

  Certificate id     ${certificate.certificate_id}
  Tenant             ${certificate.tenant_id}
  Issued (UTC)       ${certificate.issued_at_utc}
  Model              ${certificate.model_name} ${certificate.model_version}
  Prompt version     ${certificate.prompt_version}
  Governance policy  ${certificate.governance_policy_version}
  Human reviewed     ${review}
  Signing key id     ${certificate.key_id}
  Note SHA-256       ${certificate.note_hash}

Files
-----
  certificate.json          the certificate with its base64 DER signature
  canonical_message.json    the exact bytes that were signed (RFC 8785 canonical JSON)
  signature.der             the same signature as raw ASN.1 DER, for OpenSSL
  public_key.pem            the tenant's public key (EC P-256)
  key.json                  the key's id, tenant, status and validity window
  verification_report.json  CDIL's checks at export, for information; verifiers redo them
  manifest.json             SHA-256 and size of every other file
${withLog ? LOG_FILES : ''}${tokens.map((name) => TIMESTAMP_FILE_LINES[name] ?? '').join('')}
Verify with the CDIL command line tool
--------------------------------------
  cdil verify bundle.zip [--trusted-keys tenant-jwks.json] [--note note.txt]${withLog ? ' [--trusted-log-keys log-key.txt]' : ''}

Exit status 0 means valid, 1 means a check failed (each check is named), 2 means the input
could not be read. Pin the tenant's published key set with --trusted-keys for a check that
does not rely on the key inside this archive.${version >= 2 ? ' Add --require-trusted-keys to make a missing\npin a failure.' : ''}

Verify by hand with OpenSSL
---------------------------
Unpack the archive into an empty folder and run these commands there.

1. The signature covers the signed bytes. Expected output: Verified OK

  $ openssl dgst -sha256 -verify public_key.pem -signature signature.der canonical_message.json

${version >= 2 ? publishedKeyStep(certificate) : ''}${step(2)}. No file was damaged after export. Compare each hash printed here with the "sha256" of the
   same file in manifest.json. The manifest itself is not signed, so it shows accidental
   damage only; "cdil verify" also checks every file against the signed message.

  $ openssl dgst -sha256 -r canonical_message.json certificate.json key.json public_key.pem signature.der verification_report.json README.txt${withLog ? ' inclusion_proof.json checkpoint.txt log_key.txt' : ''}${tokens.map((name) => ` ${name}`).join('')}

${step(3)}. A note in your hands is the certified note. Save its exact text (no added newline) as
   note.txt; the printed hash must equal note_hash in canonical_message.json.

  $ openssl dgst -sha256 -r note.txt

${step(4)}. The values in certificate.json are those in canonical_message.json, which is the file the
   signature covers: compare them field by field, or let "cdil verify" do it.
${withLog ? LOG_SECTION : ''}${tokens.length > 0 ? TIMESTAMP_SECTION : ''}`;
}

/**
 * Returns the README.txt text version that `text` equals exactly, as generated for this
 * certificate and these files, or undefined when it matches no version.
 */
export function bundleReadmeVersionOf(
  text: string,
  certificate: Certificate,
  withLog: boolean,
  timestampFiles: readonly string[],
): BundleReadmeVersion | undefined {
  for (const version of VERSIONS_NEWEST_FIRST) {
    if (text === renderBundleReadme(certificate, withLog, timestampFiles, version)) {
      return version;
    }
  }
  return undefined;
}
