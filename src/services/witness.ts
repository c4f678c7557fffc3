// A witness for one tenant's log: it keeps the last checkpoint it verified in a state file and
// accepts a newer checkpoint from the server only when a consistency proof shows that the newer
// tree extends the recorded one. It rejects a checkpoint smaller than the recorded one (a
// rollback), one of the same size with another root (a fork), one that the pinned log key did
// not sign, and a proof that does not verify. A rejection leaves the state file unchanged.
//
// The log key is pinned on first contact (trust on first use) or given explicitly, and stored
// in the state file. Later runs never fetch it again, so a server that changes its key cannot
// make the witness accept its checkpoints.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import {
  formatVerifierKey,
  openCheckpoint,
  parseVerifierKey,
  type Checkpoint,
  type NoteVerifierKey,
} from '../core/checkpoint.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { bytesEqual, fromBase64, toBase64, toHex } from '../core/encoding.ts';
import { NoteError } from '../core/errors.ts';
import { verifyConsistency } from '../core/merkle.ts';
import { tenantOriginSuffix } from '../core/verify/log-steps.ts';
import { TENANT_ID_PATTERN } from './tenants.ts';

export const WITNESS_STATE_FORMAT = 'cdil.witness-state.v1';
/** Default time limit for one HTTP request, in milliseconds. */
export const DEFAULT_WITNESS_TIMEOUT_MS = 10_000;
/** Largest response body the witness accepts, in bytes. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

/** The witness's record of one tenant's log, stored as JSON in `<state dir>/<tenant>.json`. */
export interface WitnessState {
  format: typeof WITNESS_STATE_FORMAT;
  tenant_id: string;
  /** Log origin, which is also the key name of the checkpoint signatures. */
  origin: string;
  /** Pinned signed-note verifier key of the log. */
  log_key: string;
  /** Tree size of the last verified checkpoint. */
  size: number;
  /** Root hash of the last verified checkpoint, base64. */
  root: string;
  /** The last verified checkpoint, as the signed note. */
  note: string;
  verified_at: string;
}

/**
 * - `first_contact`: no checkpoint was recorded, and the server's is now recorded.
 * - `unchanged`: the server's checkpoint equals the recorded one.
 * - `grown`: a consistency proof showed that the server's larger tree extends the recorded one.
 * - `rollback`: the server's checkpoint is smaller than the recorded one.
 * - `fork`: the server's checkpoint has the recorded size but another root.
 * - `invalid_checkpoint`: the checkpoint is not signed by the pinned key, names another log, or
 *   differs from the size and root the response states.
 * - `inconsistent`: the consistency proof from the recorded size does not verify.
 */
export type WitnessStatus =
  | 'first_contact'
  | 'unchanged'
  | 'grown'
  | 'rollback'
  | 'fork'
  | 'invalid_checkpoint'
  | 'inconsistent';

/** Statuses for which the witness records nothing and reports a failure. */
export const REJECTED_STATUSES: readonly WitnessStatus[] = [
  'rollback',
  'fork',
  'invalid_checkpoint',
  'inconsistent',
];

export interface WitnessOutcome {
  status: WitnessStatus;
  /** Output lines saying what was verified and what was decided. */
  lines: string[];
  /** The state after the run: the new record, or the unchanged one. */
  state: WitnessState | undefined;
}

export const WitnessErrorCode = {
  /** The server did not respond, timed out, or the connection failed. */
  UNREACHABLE: 'WITNESS_UNREACHABLE',
  /** The server responded with an unexpected status or body. */
  BAD_RESPONSE: 'WITNESS_BAD_RESPONSE',
  /** The state file or an option is invalid. */
  INVALID_INPUT: 'WITNESS_INVALID_INPUT',
} as const;
export type WitnessErrorCode = (typeof WitnessErrorCode)[keyof typeof WitnessErrorCode];

/** The witness could not run, so it neither accepted nor rejected a checkpoint. */
export class WitnessError extends Error {
  override readonly name = 'WitnessError';
  readonly code: WitnessErrorCode;
  constructor(code: WitnessErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export interface WitnessOptions {
  /** Base URL of the CDIL server, `http://` or `https://`. */
  url: string;
  tenantId: string;
  /** Bearer token with the auditor role for the tenant. */
  token: string;
  /** Folder of the state files. */
  stateDir: string;
  /** Verifier key to pin on first contact instead of fetching the server's. */
  logKey?: string | undefined;
  timeoutMs?: number | undefined;
  /** Clock for `verified_at`. Defaults to the system time. */
  now?: (() => Date) | undefined;
}

const TENANT_ID_RE = new RegExp(TENANT_ID_PATTERN);
const TENANT_IN_ORIGIN = /\/tenants\/([^/]+)$/;

/**
 * Raises INVALID_INPUT when the token's tenant_id claim names another tenant, and returns the
 * claim. The server reads the tenant from that claim, so it would return the other tenant's
 * checkpoint. The claim is decoded without verifying the token, which only the server can do.
 * Returns undefined for a token that is not a JWT or has no tenant_id claim.
 */
function checkTokenTenant(token: string, tenantId: string): string | undefined {
  let claim: unknown;
  try {
    claim = decodeJwt(token).tenant_id;
  } catch {
    return undefined;
  }
  if (typeof claim !== 'string') {
    return undefined;
  }
  if (claim !== tenantId) {
    throw invalidInput(
      `the token is for tenant ${claim}, not --tenant ${tenantId}; give an auditor token of tenant ${tenantId}`,
    );
  }
  return claim;
}

/**
 * Raises INVALID_INPUT when the signed note, not yet verified, is the checkpoint of another
 * tenant's log. Used only for a token without a readable tenant claim. The server took the
 * tenant from that token, so the token is for the other tenant. With a token of this tenant,
 * such a checkpoint is the server's fault and is rejected as an invalid checkpoint.
 */
function checkCheckpointOrigin(note: string, tenantId: string): void {
  const origin = note.slice(0, Math.max(0, note.indexOf('\n')));
  if (origin.endsWith(tenantOriginSuffix(tenantId))) {
    return;
  }
  const otherTenant = TENANT_IN_ORIGIN.exec(origin)?.[1];
  if (otherTenant !== undefined) {
    throw invalidInput(
      `GET /v1/log/checkpoint returned the checkpoint of log ${origin}, not of the log of tenant ${tenantId}, ` +
        `so the token is for tenant ${otherTenant}; give an auditor token of tenant ${tenantId}`,
    );
  }
}

export function stateFilePath(stateDir: string, tenantId: string): string {
  return join(stateDir, `${tenantId}.json`);
}

function invalidInput(message: string, cause?: unknown): WitnessError {
  return new WitnessError(WitnessErrorCode.INVALID_INPUT, message, { cause });
}

function badResponse(message: string): WitnessError {
  return new WitnessError(WitnessErrorCode.BAD_RESPONSE, message);
}

/** Reads and validates the state file, or returns undefined when there is none. */
export function readWitnessState(path: string, tenantId: string): WitnessState | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return undefined;
    }
    throw invalidInput(`cannot read state file ${path}: ${(error as Error).message}`, error);
  }
  let state: WitnessState;
  try {
    state = JSON.parse(text) as WitnessState;
  } catch (error) {
    throw invalidInput(
      `state file ${path} is not JSON. Restore it, or remove it to start over`,
      error,
    );
  }
  const valid =
    typeof state === 'object' &&
    state !== null &&
    state.format === WITNESS_STATE_FORMAT &&
    state.tenant_id === tenantId &&
    typeof state.origin === 'string' &&
    typeof state.log_key === 'string' &&
    Number.isSafeInteger(state.size) &&
    state.size >= 0 &&
    typeof state.note === 'string' &&
    fromBase64(String(state.root))?.length === 32;
  if (!valid) {
    throw invalidInput(
      `state file ${path} is not a ${WITNESS_STATE_FORMAT} record of tenant ${tenantId}. Restore it, or remove it to start over`,
    );
  }
  return state;
}

/**
 * Writes the state file atomically: a new file with mode 0600 in the same folder, flushed to
 * disk, then renamed over the old one, so a crash leaves either the old or the new record.
 */
export function writeWitnessState(path: string, state: WitnessState): void {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const descriptor = openSync(temporary, 'wx', 0o600);
  try {
    writeSync(descriptor, `${JSON.stringify(state, null, 2)}\n`);
    fsyncSync(descriptor);
  } catch (error) {
    closeSync(descriptor);
    rmSync(temporary, { force: true });
    throw error;
  }
  closeSync(descriptor);
  renameSync(temporary, path);
}

/** Reads a response body of at most MAX_RESPONSE_BYTES as UTF-8 text. */
async function readBody(response: Response, path: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (response.body) {
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      total += chunk.value.length;
      if (total > MAX_RESPONSE_BYTES) {
        await reader.cancel();
        throw badResponse(`GET ${path} returned more than ${MAX_RESPONSE_BYTES} bytes`);
      }
      chunks.push(chunk.value);
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Maximum length of a server error message quoted in a witness error, in characters. */
const MAX_QUOTED_MESSAGE = 300;

/**
 * Describes why fetch failed. Node's fetch raises "fetch failed" and keeps the reason, such as
 * `connect ECONNREFUSED 127.0.0.1:8080`, in `cause`. A connection tried on several addresses
 * has an AggregateError there, with one error per address and an empty message.
 */
function describeFetchFailure(error: unknown, timeoutMs: number): string {
  if ((error as Error).name === 'TimeoutError') {
    return `timed out after ${timeoutMs} ms`;
  }
  const message = (error as Error).message;
  const cause = (error as { cause?: unknown }).cause;
  if (!(cause instanceof Error)) {
    return message;
  }
  const reasons =
    cause instanceof AggregateError && cause.message === ''
      ? cause.errors.map((each: unknown) => String((each as Error).message ?? each))
      : [cause.message];
  return `${message} (${reasons.join('; ')})`;
}

/** Returns the `error.code` and `error.message` of a CDIL error body, quoted for an error. */
function describeErrorBody(parsed: unknown): string {
  const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  let text = typeof error?.code === 'string' ? ` (${error.code})` : '';
  if (typeof error?.message === 'string') {
    const message =
      error.message.length > MAX_QUOTED_MESSAGE
        ? `${error.message.slice(0, MAX_QUOTED_MESSAGE)}…`
        : error.message;
    text += `: ${message}`;
  }
  return text;
}

/** Fetches JSON from the server, raising WitnessError for every failure. */
async function fetchJson(
  url: URL,
  token: string | undefined,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  let status: number;
  let body: string;
  try {
    const response = await fetch(url, {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      redirect: 'error',
      signal: AbortSignal.timeout(timeoutMs),
    });
    status = response.status;
    body = await readBody(response, url.pathname);
  } catch (error) {
    if (error instanceof WitnessError) {
      throw error;
    }
    const reason = describeFetchFailure(error, timeoutMs);
    throw new WitnessError(WitnessErrorCode.UNREACHABLE, `GET ${url.pathname} failed: ${reason}`, {
      cause: error,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  if (status !== 200) {
    throw badResponse(`GET ${url.pathname} returned status ${status}${describeErrorBody(parsed)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw badResponse(`GET ${url.pathname} did not return a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** Runs one witness check of the tenant's latest checkpoint. */
export async function runWitness(options: WitnessOptions): Promise<WitnessOutcome> {
  const { tenantId } = options;
  if (!TENANT_ID_RE.test(tenantId)) {
    throw invalidInput(`tenant id ${JSON.stringify(tenantId)} must match ${TENANT_ID_PATTERN}`);
  }
  let base: URL;
  try {
    base = new URL(options.url);
  } catch (error) {
    throw invalidInput(`--url ${JSON.stringify(options.url)} is not a URL`, error);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw invalidInput(`--url must start with http:// or https://, got ${base.protocol}`);
  }
  if (base.search !== '' || base.hash !== '') {
    throw invalidInput(
      `--url must not contain a query or fragment, got ${JSON.stringify(options.url)}; give the base URL of the server`,
    );
  }
  const tokenTenant = checkTokenTenant(options.token, tenantId);
  const timeoutMs = options.timeoutMs ?? DEFAULT_WITNESS_TIMEOUT_MS;
  // Routes resolve against the base URL with a final slash, so a server behind a path prefix
  // (http://host/cdil) is reached at http://host/cdil/v1/... and not at the host's root.
  const prefix = base.pathname.endsWith('/') ? base.href : `${base.href}/`;
  const endpoint = (path: string) => new URL(path.replace(/^\//, ''), prefix);
  const now = options.now ?? (() => new Date());

  mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
  const path = stateFilePath(options.stateDir, tenantId);
  const recorded = readWitnessState(path, tenantId);
  const lines: string[] = [];

  const key = await pinnedKey(options, recorded, endpoint, timeoutMs, lines);
  const response = await fetchJson(endpoint('/v1/log/checkpoint'), options.token, timeoutMs);
  const rejected = (status: WitnessStatus, line: string): WitnessOutcome => ({
    status,
    lines: [...lines, `${line}; state left unchanged`],
    state: recorded,
  });

  if (typeof response.checkpoint !== 'string') {
    throw badResponse('GET /v1/log/checkpoint returned no checkpoint text');
  }
  if (tokenTenant === undefined) {
    checkCheckpointOrigin(response.checkpoint, tenantId);
  }
  let checkpoint: Checkpoint;
  try {
    checkpoint = openCheckpoint(nodeCrypto, response.checkpoint, [key], key.name).checkpoint;
  } catch (error) {
    if (!(error instanceof NoteError)) {
      throw error;
    }
    return rejected(
      'invalid_checkpoint',
      `INVALID: the server's checkpoint does not verify with the pinned key ${key.name}+${key.keyId}: ${error.message} [${error.code}]`,
    );
  }
  if (response.tree_size !== checkpoint.size || response.root_hash !== toHex(checkpoint.rootHash)) {
    return rejected(
      'invalid_checkpoint',
      `INVALID: the response states size ${String(response.tree_size)} and root ${String(response.root_hash)}, but the signed checkpoint has size ${checkpoint.size} and root ${toHex(checkpoint.rootHash)}`,
    );
  }
  const root = toBase64(checkpoint.rootHash);
  lines.push(
    `verified checkpoint of size ${checkpoint.size}, root ${root}, signed by ${key.name}+${key.keyId}`,
  );
  const record = (): WitnessState => {
    const state: WitnessState = {
      format: WITNESS_STATE_FORMAT,
      tenant_id: tenantId,
      origin: key.name,
      log_key: formatVerifierKey(key),
      size: checkpoint.size,
      root,
      note: String(response.checkpoint),
      verified_at: now().toISOString(),
    };
    writeWitnessState(path, state);
    lines.push(`recorded checkpoint of size ${checkpoint.size} in ${path}`);
    return state;
  };

  if (recorded === undefined) {
    const state = record();
    return { status: 'first_contact', lines, state };
  }
  if (checkpoint.size < recorded.size) {
    return rejected(
      'rollback',
      `ROLLBACK: the server's checkpoint has size ${checkpoint.size}, smaller than the recorded size ${recorded.size}`,
    );
  }
  const recordedRoot = fromBase64(recorded.root)!;
  if (checkpoint.size === recorded.size) {
    if (bytesEqual(recordedRoot, checkpoint.rootHash)) {
      lines.push(`unchanged: the checkpoint equals the one recorded at ${recorded.verified_at}`);
      return { status: 'unchanged', lines, state: recorded };
    }
    return rejected(
      'fork',
      `FORK: the server's checkpoint of size ${checkpoint.size} has root ${root}, but the recorded checkpoint of that size has root ${recorded.root}`,
    );
  }

  const proof = await fetchProof(
    endpoint,
    options.token,
    timeoutMs,
    recorded.size,
    checkpoint.size,
  );
  if (
    proof === undefined ||
    !verifyConsistency(
      nodeCrypto,
      recorded.size,
      checkpoint.size,
      recordedRoot,
      checkpoint.rootHash,
      proof,
    )
  ) {
    return rejected(
      'inconsistent',
      `INCONSISTENT: the consistency proof from size ${recorded.size} to ${checkpoint.size} does not verify, so the server's tree does not extend the recorded one or the proof was altered`,
    );
  }
  lines.push(
    `verified consistency proof from size ${recorded.size} to ${checkpoint.size} (${proof.length} hashes)`,
  );
  const state = record();
  return { status: 'grown', lines, state };
}

/** Returns the pinned key: from the state file, from the options, or fetched on first contact. */
async function pinnedKey(
  options: WitnessOptions,
  recorded: WitnessState | undefined,
  endpoint: (path: string) => URL,
  timeoutMs: number,
  lines: string[],
): Promise<NoteVerifierKey> {
  const parse = (text: string, source: string): NoteVerifierKey => {
    let key: NoteVerifierKey;
    try {
      key = parseVerifierKey(nodeCrypto, text);
    } catch (error) {
      throw invalidInput(
        `${source} is not a signed-note verifier key: ${(error as Error).message}`,
        error,
      );
    }
    if (!key.name.endsWith(tenantOriginSuffix(options.tenantId))) {
      throw invalidInput(
        `${source} names log ${key.name}, which is not the log of tenant ${options.tenantId}`,
      );
    }
    return key;
  };
  if (recorded !== undefined) {
    const key = parse(recorded.log_key, 'the log key in the state file');
    if (
      options.logKey !== undefined &&
      formatVerifierKey(parse(options.logKey, '--log-key')) !== recorded.log_key
    ) {
      throw invalidInput(
        'the log key pinned in the state file differs from --log-key. Remove the state file to pin another key',
      );
    }
    return key;
  }
  if (options.logKey !== undefined) {
    const key = parse(options.logKey, '--log-key');
    lines.push(`pinned log key ${key.name}+${key.keyId} from --log-key`);
    return key;
  }
  const response = await fetchJson(
    endpoint(`/v1/tenants/${options.tenantId}/log-key`),
    undefined,
    timeoutMs,
  );
  if (typeof response.verifier_key !== 'string') {
    throw badResponse('GET /v1/tenants/{tenant_id}/log-key returned no verifier_key');
  }
  const key = parse(response.verifier_key, 'the server log key');
  lines.push(`pinned log key ${key.name}+${key.keyId} on first contact (trust on first use)`);
  return key;
}

/** Fetches the consistency proof, or returns undefined when the response is not a proof. */
async function fetchProof(
  endpoint: (path: string) => URL,
  token: string,
  timeoutMs: number,
  fromSize: number,
  toSize: number,
): Promise<Uint8Array[] | undefined> {
  const url = endpoint('/v1/log/consistency-proof');
  url.searchParams.set('from', String(fromSize));
  url.searchParams.set('to', String(toSize));
  const response = await fetchJson(url, token, timeoutMs);
  if (
    response.from_size !== fromSize ||
    response.to_size !== toSize ||
    !Array.isArray(response.proof)
  ) {
    return undefined;
  }
  const hashes: Uint8Array[] = [];
  for (const element of response.proof as unknown[]) {
    const hash = typeof element === 'string' ? fromBase64(element) : undefined;
    if (hash === undefined) {
      return undefined;
    }
    hashes.push(hash);
  }
  return hashes;
}
