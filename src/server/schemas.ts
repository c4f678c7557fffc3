// Request and response schemas. They validate requests (unknown fields are rejected) and
// generate the OpenAPI document served at /docs.
import { Type, type Static } from 'typebox';
import { ATTESTATION_MEANINGS } from '../core/certificate.ts';
import { CHECK_NAMES } from '../core/verify/verify.ts';
import { MAX_RATE_LIMIT_PER_MINUTE } from '../config/config.ts';
import { REVOCATION_REASONS } from '../core/key.ts';
import { MAX_QUERY_LIMIT } from '../services/certificates.ts';
import { TENANT_ID_PATTERN } from '../services/tenants.ts';

export const FIELD_LIMITS = {
  model_name: 128,
  model_version: 64,
  prompt_version: 64,
  governance_policy_version: 64,
  note_text: 200_000,
  human_reviewer_id: 128,
  encounter_id: 128,
  patient_reference: 128,
  idempotency_key: 128,
} as const;

const PATTERN_MESSAGES = new Map<string, string>();

/**
 * Returns a string schema checked by `pattern`. A value that fails it is reported with
 * `message`, a rule in words, because Ajv would quote the regular expression.
 */
export function patternString(
  pattern: string,
  message: string,
  options: { minLength?: number; maxLength?: number; description?: string } = {},
) {
  const known = PATTERN_MESSAGES.get(pattern);
  if (known !== undefined && known !== message) {
    throw new Error(`pattern ${pattern} already has the message "${known}"`);
  }
  PATTERN_MESSAGES.set(pattern, message);
  return Type.String({ ...options, pattern });
}

/** Returns the message registered by patternString for `pattern`, or undefined. */
export function patternMessage(pattern: unknown): string | undefined {
  return typeof pattern === 'string' ? PATTERN_MESSAGES.get(pattern) : undefined;
}

const text = (max: number, description: string) =>
  Type.String({ minLength: 1, maxLength: max, description });

/** Class items for the noncharacters U+nFFFE and U+nFFFF of the supplementary planes 1 to 16. */
const PLANE_END_NONCHARACTERS = Array.from({ length: 16 }, (_, index) => {
  const plane = (index + 1).toString(16);
  return `\\u{${plane}fffe}\\u{${plane}ffff}`;
}).join('');

/**
 * Characters that short fields may not contain, as a regular expression character class for the
 * u flag: controls (Cc), format characters (Cf, which include zero-width characters,
 * bidirectional marks and tag characters), U+2028, U+2029, noncharacters and lone surrogates.
 * Short fields are shown to people in reports, bundle READMEs and terminals. These characters
 * could hide, reorder or break the text shown, or make two values that look the same differ.
 */
const NOT_DISPLAYABLE_CLASS =
  '\\p{Cc}\\p{Cf}\\u2028\\u2029\\ufdd0-\\ufdef\\ufffe\\uffff' +
  PLANE_END_NONCHARACTERS +
  '\\ud800-\\udfff';

/** Pattern of the short fields. Ajv compiles patterns with the u flag, which \p{Cc} needs. */
export const PRINTABLE_PATTERN = `^[^${NOT_DISPLAYABLE_CLASS}]+$`;

const NOT_DISPLAYABLE = new RegExp(`[${NOT_DISPLAYABLE_CLASS}]`, 'u');

const DISPLAY_RULE =
  'The field is shown to people, so it may not contain control characters, format characters, line or paragraph separators, noncharacters or lone surrogates';

function kindOf(character: string): string {
  const code = character.codePointAt(0)!;
  if (/\p{Cc}/u.test(character)) {
    return 'a control character';
  }
  if (/\p{Cf}/u.test(character)) {
    return 'a format character';
  }
  if (code === 0x2028) {
    return 'a line separator';
  }
  if (code === 0x2029) {
    return 'a paragraph separator';
  }
  return code >= 0xd800 && code <= 0xdfff ? 'a lone surrogate' : 'a noncharacter';
}

/**
 * Describes why `value` fails PRINTABLE_PATTERN, naming its first character that is not
 * allowed, such as "must not contain U+200D, a format character".
 */
export function describeNotDisplayable(value: unknown): string {
  const found = typeof value === 'string' ? NOT_DISPLAYABLE.exec(value) : null;
  if (found === null) {
    return `must not contain such characters. ${DISPLAY_RULE}`;
  }
  const code = found[0].codePointAt(0)!;
  const name = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  return `must not contain ${name}, ${kindOf(found[0])}. ${DISPLAY_RULE}`;
}

const label = (max: number, description: string) =>
  Type.String({ minLength: 1, maxLength: max, pattern: PRINTABLE_PATTERN, description });

export const IssueBody = Type.Object(
  {
    model_name: label(FIELD_LIMITS.model_name, 'Name of the AI model that wrote the note'),
    model_version: label(FIELD_LIMITS.model_version, 'Version of that model'),
    prompt_version: label(FIELD_LIMITS.prompt_version, 'Version of the prompt template'),
    governance_policy_version: label(
      FIELD_LIMITS.governance_policy_version,
      'Governance policy in force',
    ),
    note_text: text(FIELD_LIMITS.note_text, 'Final note text; hashed, never stored'),
    human_reviewed: Type.Boolean({ description: 'Whether a clinician reviewed the note' }),
    human_reviewer_id: Type.Optional(
      label(
        FIELD_LIMITS.human_reviewer_id,
        'Reviewer identifier; required when human_reviewed is true, rejected when false; stored only as a keyed hash',
      ),
    ),
    attestation_meaning: Type.Optional(
      Type.Union(
        ATTESTATION_MEANINGS.map((meaning) => Type.Literal(meaning)),
        {
          description:
            'Meaning of the reviewer attestation, signed into the certificate; only with human_reviewed true, default reviewed_and_approved',
        },
      ),
    ),
    encounter_id: label(
      FIELD_LIMITS.encounter_id,
      'Encounter identifier; stored only as a keyed hash',
    ),
    patient_reference: label(
      FIELD_LIMITS.patient_reference,
      'Patient reference; stored only as a keyed hash',
    ),
  },
  { additionalProperties: false },
);
export type IssueBody = Static<typeof IssueBody>;

export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    patternString(
      '^[\\x21-\\x7e]+$',
      'must contain only printable ASCII characters, without spaces',
      {
        minLength: 1,
        maxLength: FIELD_LIMITS.idempotency_key,
      },
    ),
  ),
});

const nullableString = Type.Union([Type.String(), Type.Null()]);

export const CertificateSchema = Type.Object(
  {
    attestation_meaning: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description: 'Meaning of the human attestation (format v2 on); null without review',
      }),
    ),
    certificate_id: Type.String(),
    chain_hash: Type.String(),
    chain_sequence: Type.Integer(),
    encounter_id_hash: Type.String(),
    format_version: Type.String(),
    governance_policy_hash: Type.String(),
    governance_policy_version: Type.String(),
    human_attested_at_utc: nullableString,
    human_reviewed: Type.Boolean(),
    human_reviewer_id_hash: nullableString,
    issued_at_utc: Type.String(),
    key_id: Type.String(),
    model_name: Type.String(),
    model_version: Type.String(),
    nonce: Type.String(),
    note_hash: Type.String(),
    patient_hash: Type.String(),
    previous_hash: nullableString,
    prompt_version: Type.String(),
    server_timestamp: Type.String(),
    tenant_id: Type.String(),
    signature: Type.String({ description: 'Base64 of the ASN.1 DER ECDSA signature' }),
    signature_algorithm: Type.String(),
  },
  { $id: 'Certificate' },
);

const PhiFindings = Type.Array(Type.Object({ kind: Type.String(), count: Type.Integer() }));

export const IssueResponse = Type.Object({
  certificate: Type.Ref('Certificate'),
  replayed: Type.Boolean(),
  phi_screening: Type.Object({ policy: Type.String(), findings: PhiFindings }),
});

export const CertificateIdParams = Type.Object({
  certificate_id: Type.String({ minLength: 1, maxLength: 64 }),
});

const QueryFilter = Type.Object(
  {
    issued_from: Type.Optional(
      Type.String({ format: 'date-time', description: 'Inclusive lower bound (UTC)' }),
    ),
    issued_to: Type.Optional(
      Type.String({ format: 'date-time', description: 'Exclusive upper bound (UTC)' }),
    ),
    model_version: Type.Optional(
      Type.String({ minLength: 1, maxLength: FIELD_LIMITS.model_version }),
    ),
    governance_policy_version: Type.Optional(
      Type.String({ minLength: 1, maxLength: FIELD_LIMITS.governance_policy_version }),
    ),
    human_reviewed: Type.Optional(Type.Boolean()),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_QUERY_LIMIT, description: 'Page size' }),
    ),
    cursor: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1024,
        description: 'next_cursor of the previous page',
      }),
    ),
  },
  { additionalProperties: false },
);

/** The certificate query's filters; a request without a body lists every certificate. */
export const QueryBody = Type.Union([QueryFilter, Type.Null()]);
export type QueryBody = Static<typeof QueryBody>;

export const QueryResponse = Type.Object({
  items: Type.Array(Type.Ref('Certificate')),
  next_cursor: nullableString,
});

export const VerifyBody = Type.Union([
  Type.Object(
    {
      note_text: Type.Optional(
        text(FIELD_LIMITS.note_text, 'Note text to compare with the certified note'),
      ),
    },
    { additionalProperties: false },
  ),
  Type.Null(),
]);

export const VerificationReportSchema = Type.Object(
  {
    format: Type.String(),
    valid: Type.Boolean(),
    certificate_id: nullableString,
    tenant_id: nullableString,
    key_id: nullableString,
    key_pinned: Type.Optional(
      Type.Boolean({ description: 'whether the signing key was compared with a pinned key set' }),
    ),
    log_key_pinned: Type.Optional(
      Type.Union([Type.Boolean(), Type.Null()], {
        description:
          'whether the log checkpoint was verified with pinned log keys; null without log evidence',
      }),
    ),
    checks: Type.Array(
      Type.Object({
        check: Type.Union(CHECK_NAMES.map((name) => Type.Literal(name))),
        status: Type.Union([Type.Literal('pass'), Type.Literal('fail'), Type.Literal('skipped')]),
        code: Type.Optional(Type.String()),
        detail: Type.String(),
      }),
    ),
    summary: Type.String(),
    verified_at: Type.Optional(Type.String()),
  },
  { $id: 'VerificationReport' },
);

export const TenantIdParams = Type.Object({
  tenant_id: Type.String({ minLength: 1, maxLength: 63 }),
});

export const CreateTenantBody = Type.Object(
  {
    tenant_id: patternString(
      TENANT_ID_PATTERN,
      'must be 2 to 63 lower-case letters, digits and hyphens, starting with a letter or digit',
    ),
    phi_policy: Type.Optional(Type.Union([Type.Literal('flag'), Type.Literal('reject')])),
    timestamp_policy: Type.Optional(
      Type.Union([Type.Literal('best_effort'), Type.Literal('required')], {
        description:
          'required: a timestamp the TSA cannot give fails the request; best_effort (default): it is retried later',
      }),
    ),
    timestamp_certificates: Type.Optional(
      Type.Boolean({
        description: 'timestamp each certificate at issuance, besides the log checkpoints',
      }),
    ),
  },
  { additionalProperties: false },
);
export type CreateTenantBody = Static<typeof CreateTenantBody>;

export const KeyParams = Type.Object({
  tenant_id: Type.String({ minLength: 1, maxLength: 63 }),
  key_id: patternString('^[A-Za-z0-9_-]+$', 'must contain only letters, digits, - and _', {
    minLength: 1,
    maxLength: 64,
    description: 'RFC 7638 JWK thumbprint of the key, base64url',
  }),
});

export const RevokeKeyBody = Type.Object(
  {
    reason: Type.Union(
      REVOCATION_REASONS.map((reason) => Type.Literal(reason)),
      { description: 'RFC 5280 revocation reason, in snake case' },
    ),
    rotate: Type.Optional(
      Type.Boolean({
        description:
          'Required to revoke the active key: a new key becomes active in the same transaction',
      }),
    ),
  },
  { additionalProperties: false },
);
export type RevokeKeyBody = Static<typeof RevokeKeyBody>;

export const RateLimitBody = Type.Object(
  {
    requests_per_minute: Type.Union([
      Type.Integer({
        minimum: 0,
        maximum: MAX_RATE_LIMIT_PER_MINUTE,
        description: 'Issuance requests per minute across all processes; 0 means no limit',
      }),
      Type.Null({ description: 'Use CDIL_RATE_LIMIT_PER_MINUTE' }),
    ]),
  },
  { additionalProperties: false },
);
export type RateLimitBody = Static<typeof RateLimitBody>;

export const ErrorSchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String(),
      message: Type.String(),
      request_id: Type.String(),
      details: Type.Optional(
        Type.Array(
          Type.Object({ field: Type.String(), rule: Type.String(), message: Type.String() }),
        ),
      ),
    }),
  },
  { $id: 'Error' },
);
