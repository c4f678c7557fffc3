// The one error handler. It turns every failure into the documented JSON error body, maps
// framework errors to registry codes, and makes sure no request content reaches a response or
// a log line: JSON parse errors in Node quote the input, so their text is replaced.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { auditReasonOf } from '../services/audit.ts';
import { AppError, fromStoreError, type ErrorCode, type FieldProblem } from '../services/errors.ts';
import type { AuditWrite, BackgroundAuditWriter } from './audit-writer.ts';
import { describeNotDisplayable, patternMessage, PRINTABLE_PATTERN } from './schemas.ts';

export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    request_id: string;
    details?: readonly FieldProblem[];
    [key: string]: unknown;
  };
}

interface AjvIssue {
  instancePath: string;
  schemaPath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/**
 * Replaces the issues of an anyOf whose failed branches are all constants (a union of
 * literals) with one enum issue. Ajv reports such a union as "must be equal to constant" once
 * per branch, which names none of the allowed values.
 */
function mergeConstantAlternatives(issues: readonly AjvIssue[]): AjvIssue[] {
  const merged: AjvIssue[] = [];
  for (const issue of issues) {
    if (issue.keyword === 'anyOf') {
      const branchPrefix = `${issue.schemaPath}/`;
      let start = merged.length;
      while (start > 0 && merged[start - 1]!.schemaPath.startsWith(branchPrefix)) {
        start -= 1;
      }
      const branches = merged.slice(start);
      const allConstants = branches.every(
        (branch) => branch.keyword === 'const' && branch.instancePath === issue.instancePath,
      );
      if (branches.length > 0 && allConstants) {
        merged.splice(start, branches.length, {
          instancePath: issue.instancePath,
          schemaPath: issue.schemaPath,
          keyword: 'enum',
          params: { allowedValues: branches.map((branch) => branch.params.allowedValue) },
        });
        continue;
      }
    }
    merged.push(issue);
  }
  return merged;
}

function fieldOf(issue: AjvIssue): string {
  const path = issue.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const child =
    (issue.params.missingProperty as string | undefined) ??
    (issue.params.additionalProperty as string | undefined);
  if (child !== undefined) {
    return path ? `${path}.${child}` : child;
  }
  return path || '(body)';
}

/** Returns the value at a JSON Pointer such as /notes/0/text, or undefined. */
function valueAt(root: unknown, pointer: string): unknown {
  let value = root;
  for (const token of pointer.split('/').slice(1)) {
    if (value === null || typeof value !== 'object') {
      return undefined;
    }
    const key = token.replace(/~1/g, '/').replace(/~0/g, '~');
    value = Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
  }
  return value;
}

/** Describes an issue. `validated` is the body, query, params or headers that failed. */
function describe(issue: AjvIssue, validated: unknown): string {
  if (issue.keyword === 'pattern' && issue.params.pattern === PRINTABLE_PATTERN) {
    return describeNotDisplayable(valueAt(validated, issue.instancePath));
  }
  const patternRule =
    issue.keyword === 'pattern' ? patternMessage(issue.params.pattern) : undefined;
  if (patternRule !== undefined) {
    return patternRule;
  }
  if (issue.keyword === 'enum' && Array.isArray(issue.params.allowedValues)) {
    return `must be one of ${issue.params.allowedValues.join(', ')}`;
  }
  if (issue.keyword === 'additionalProperties') {
    return 'is not a known field';
  }
  if (issue.keyword === 'required') {
    return 'is required';
  }
  return issue.message ?? `fails rule ${issue.keyword}`;
}

const MAX_DETAILS = 20;

/** Returns the part of a request that Fastify validated in `context`. */
function validatedPart(request: FastifyRequest, context: string): unknown {
  switch (context) {
    case 'body':
      return request.body;
    case 'querystring':
      return request.query;
    case 'params':
      return request.params;
    case 'headers':
      return request.headers;
    default:
      return undefined;
  }
}

function fromValidation(error: FastifyError, request: FastifyRequest | undefined): AppError {
  const issues = mergeConstantAlternatives(error.validation ?? []);
  const where = error.validationContext ?? 'body';
  const validated = request === undefined ? undefined : validatedPart(request, where);
  // A body with thousands of bad fields would otherwise get an error body many times its size.
  const details = issues.slice(0, MAX_DETAILS).map((issue) => ({
    field: fieldOf(issue),
    rule: issue.keyword,
    message: describe(issue, validated),
  }));
  const first = details[0];
  const more = issues.length > details.length ? ` (and ${issues.length - 1} more problems)` : '';
  // A field name other than a plain dotted path, such as an empty key, is shown quoted.
  const fieldText =
    first && /^[\w.-]+$/.test(first.field) ? first.field : JSON.stringify(first?.field);
  const message = first
    ? `${where} field ${fieldText} ${first.message}${more}`
    : `${where} is invalid`;
  return new AppError('VALIDATION_FAILED', message, { details });
}

const FRAMEWORK_CODES: Record<string, [ErrorCode, string]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: ['BODY_NOT_JSON', 'request body is not valid JSON'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [
    'BODY_NOT_JSON',
    'request body is empty but content-type is application/json',
  ],
  FST_ERR_CTP_BODY_TOO_LARGE: [
    'PAYLOAD_TOO_LARGE',
    'request body is larger than the configured limit',
  ],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [
    'UNSUPPORTED_MEDIA_TYPE',
    'send the request body as application/json',
  ],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [
    'VALIDATION_FAILED',
    'content-length does not match the body',
  ],
};

/**
 * Converts any error to an AppError. With the request, a validation message can name what
 * failed in the value, such as the character that a display field may not contain.
 */
export function toAppError(error: unknown, request?: FastifyRequest): AppError {
  if (error instanceof AppError) {
    return error;
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    return fromValidation(fastifyError, request);
  }
  const mapped = fastifyError.code ? FRAMEWORK_CODES[fastifyError.code] : undefined;
  if (mapped) {
    return new AppError(mapped[0], mapped[1]);
  }
  // A busy or full database stored nothing, so the client may retry, whichever route made the
  // write. After a failed connection the message explains how to retry an issuance.
  const storeFailure = fromStoreError(error);
  if (storeFailure !== undefined) {
    return storeFailure;
  }
  if (error instanceof SyntaxError || fastifyError.statusCode === 400) {
    return new AppError('BODY_NOT_JSON', 'request body could not be parsed');
  }
  return new AppError(
    'INTERNAL',
    'internal error; the request id identifies it in the service logs',
    { cause: error },
  );
}

/**
 * Returns an error naming a header that failed validation because the request sent it more
 * than once, or undefined. Node joins the values of a repeated header with ", ", and the joined
 * value then fails the header's pattern with a message about its characters.
 */
function repeatedHeaderError(error: unknown, request: FastifyRequest): AppError | undefined {
  const fastifyError = error as FastifyError;
  if (fastifyError.validationContext !== 'headers' || !fastifyError.validation) {
    return undefined;
  }
  const failed = new Set(fastifyError.validation.map((issue) => fieldOf(issue)));
  const counts = new Map<string, number>();
  const raw = request.raw.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (failed.has(name)) {
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
  }
  for (const [name, count] of counts) {
    if (count > 1) {
      const message = `was sent ${count} times; send one ${name} header`;
      return new AppError('VALIDATION_FAILED', `headers field ${name} ${message}`, {
        details: [{ field: name, rule: 'single', message }],
      });
    }
  }
  return undefined;
}

/** Converts any error of a request to an AppError, naming a header sent more than once. */
function requestError(error: unknown, request: FastifyRequest): AppError {
  return repeatedHeaderError(error, request) ?? toAppError(error, request);
}

export function errorBody(error: AppError, requestId: string): ErrorBody {
  const body: ErrorBody = {
    error: { code: error.code, message: error.message, request_id: requestId },
  };
  if (error.details) {
    body.error.details = error.details;
  }
  if (error.extra) {
    Object.assign(body.error, error.extra);
  }
  return body;
}

/** Captures the audit event of a rejected or failed request, or returns undefined for none. */
export type RejectionAuditPreparer = (
  request: FastifyRequest,
  error: AppError,
) => AuditWrite | undefined;

function logRejection(error: unknown, appError: AppError, request: FastifyRequest): void {
  const status = appError.status;
  const reason = auditReasonOf(appError.code);
  if (status >= 500) {
    // Only our own code builds messages that reach this line; causes are logged with their
    // stack for the operator and never returned to the client.
    request.log.error({ err: error, code: appError.code, reason }, 'request failed');
  } else {
    request.log.info({ code: appError.code, status, reason }, 'request rejected');
  }
}

/**
 * Codes of errors raised because the database could not take a write. Recording such a
 * rejection needs the same database, so the response is sent without waiting for the audit
 * event, which is written in the background.
 */
const STORE_UNAVAILABLE_CODES: ReadonlySet<ErrorCode> = new Set([
  'DATABASE_BUSY',
  'DATABASE_UNAVAILABLE',
  'STORAGE_FULL',
]);

/** Resolves after `ms` or when `promise` settles, whichever comes first. */
async function waitAtMost(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      promise,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Builds the error handler. With `prepareRejection` it records each rejection in the audit
 * trail through `writer`. It waits up to the writer's rejectionWaitMs for the event before it
 * sends the error, or not at all for the codes in STORE_UNAVAILABLE_CODES. The writer goes on
 * in the background and logs an event it could not write. The original error is still sent,
 * because a rejected request changed nothing.
 */
export function makeErrorHandler(
  prepareRejection?: RejectionAuditPreparer,
  writer?: BackgroundAuditWriter,
) {
  return async (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const appError = requestError(error, request);
    logRejection(error, appError, request);
    const write = writer ? prepareRejection?.(request, appError) : undefined;
    if (write && writer) {
      const written = writer.submit(write);
      if (!STORE_UNAVAILABLE_CODES.has(appError.code)) {
        await waitAtMost(written, writer.policy.rejectionWaitMs);
      }
    }
    if (appError.headers) {
      void reply.headers(appError.headers);
    }
    return reply
      .code(appError.status)
      .type('application/json')
      .send(errorBody(appError, String(request.id)));
  };
}

export function handleError(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const appError = requestError(error, request);
  logRejection(error, appError, request);
  if (appError.headers) {
    void reply.headers(appError.headers);
  }
  void reply
    .code(appError.status)
    .type('application/json')
    .send(errorBody(appError, String(request.id)));
}

export function handleNotFound(request: FastifyRequest, reply: FastifyReply): void {
  handleError(
    // The path is not repeated: a mistyped URL may carry an identifier.
    new AppError('NOT_FOUND', `no ${request.method} route matches this path; see /docs`),
    request,
    reply,
  );
}
