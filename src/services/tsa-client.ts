// RFC 3161 client: requests a timestamp token over HTTP (RFC 3161 section 3.4) and returns it
// only after checking that it belongs to this request and verifies against the trusted roots.
import { randomBytes } from 'node:crypto';
import { DEFAULT_TSA_TIMEOUT_MS, type TsaConfig } from '../config/config.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { bytesEqual, toHex } from '../core/encoding.ts';
import { TimestampError } from '../core/errors.ts';
import type { TrustedRoots } from '../core/timestamp/certificates.ts';
import { OID } from '../core/timestamp/oids.ts';
import { buildTimeStampRequest } from '../core/timestamp/request.ts';
import { parseTimestampToken, parseTimeStampResponse } from '../core/timestamp/token.ts';
import { defaultTimestampVerifier, type TimestampVerifier } from '../core/timestamp/verify.ts';

/** A source of RFC 3161 timestamps; tests substitute their own. */
export interface TimestampAuthority {
  /** Timestamps `data` and returns the DER TimeStampToken (a CMS ContentInfo). */
  timestamp(data: Uint8Array): Promise<Uint8Array>;
}

export const TsaErrorCode = {
  UNREACHABLE: 'TSA_UNREACHABLE',
  TIMEOUT: 'TSA_TIMEOUT',
  REJECTED: 'TSA_REJECTED',
  INVALID_RESPONSE: 'TSA_INVALID_RESPONSE',
  INVALID_TOKEN: 'TSA_INVALID_TOKEN',
} as const;
export type TsaErrorCode = (typeof TsaErrorCode)[keyof typeof TsaErrorCode];

/**
 * A timestamp request failed. UNREACHABLE and TIMEOUT are worth a retry, REJECTED and
 * INVALID_RESPONSE usually mean a wrong URL, and INVALID_TOKEN means the TSA is not trusted.
 */
export class TsaError extends Error {
  override readonly name = 'TsaError';
  readonly code: TsaErrorCode;
  readonly url: string;
  constructor(code: TsaErrorCode, url: string, message: string, options?: { cause?: unknown }) {
    super(`${message} (TSA ${url})`, options);
    this.code = code;
    this.url = url;
  }
}

/** Largest response read; a token with a certificate chain is a few kilobytes. */
export const MAX_TSA_RESPONSE_BYTES = 1024 * 1024;
const NONCE_BYTES = 8;
/** RFC 3161 section 3.4 media type, and the older name some TSAs still send. */
const REPLY_CONTENT_TYPES = ['application/timestamp-reply', 'application/timestamp-response'];

export interface TsaClientOptions {
  /** http or https URL that accepts POST application/timestamp-query. */
  url: string;
  /** Limit for the whole exchange, connection to last response byte, in milliseconds. */
  timeoutMs?: number;
  trustedRoots: TrustedRoots;
  verifier?: TimestampVerifier;
  /** Replaces the global fetch, for tests. */
  fetch?: typeof fetch;
}

/** Tells whether fetch or a body read failed because AbortSignal.timeout fired. */
function isTimeout(error: unknown): boolean {
  return error instanceof Error && error.name === 'TimeoutError';
}

function describeNetworkError(error: unknown): string {
  const cause =
    error instanceof Error ? (error.cause as { code?: string; message?: string }) : undefined;
  return cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
}

/** Reads a response body, stopping with an error once it exceeds `limit` bytes. */
async function readLimited(response: Response, limit: number): Promise<Uint8Array | undefined> {
  if (!response.body) {
    return new Uint8Array(0);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > limit) {
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Requests RFC 3161 timestamps from one TSA over HTTP. Each request carries a SHA-256 imprint,
 * a random 64-bit nonce and certReq=true, so that the token contains the TSA certificate and
 * can be verified offline later.
 */
export class TsaClient implements TimestampAuthority {
  readonly #url: string;
  readonly #timeoutMs: number;
  readonly #trustedRoots: TrustedRoots;
  readonly #verifier: TimestampVerifier;
  readonly #fetch: typeof fetch;

  constructor(options: TsaClientOptions) {
    const url = new URL(options.url);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`TSA URL must use http or https, got ${options.url}`);
    }
    this.#url = url.toString();
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TSA_TIMEOUT_MS;
    this.#trustedRoots = options.trustedRoots;
    this.#verifier = options.verifier ?? defaultTimestampVerifier;
    this.#fetch = options.fetch ?? fetch;
  }

  async timestamp(data: Uint8Array): Promise<Uint8Array> {
    const digest = nodeCrypto.sha256(data);
    const nonce = randomBytes(NONCE_BYTES);
    const request = buildTimeStampRequest({ sha256: digest, nonce, certReq: true });
    const body = await this.#post(request);
    const tokenDer = this.#readGrantedToken(body);
    this.#checkMatchesRequest(tokenDer, digest, nonce);
    try {
      await this.#verifier.verify(tokenDer, { sha256: digest, trustedRoots: this.#trustedRoots });
    } catch (error) {
      if (error instanceof TimestampError) {
        throw new TsaError(
          TsaErrorCode.INVALID_TOKEN,
          this.#url,
          `TSA token failed verification (${error.code}): ${error.message}`,
          { cause: error },
        );
      }
      throw error;
    }
    return tokenDer;
  }

  /** Sends the query and returns the response body; network and HTTP failures become TsaErrors. */
  async #post(request: Uint8Array): Promise<Uint8Array> {
    const signal = AbortSignal.timeout(this.#timeoutMs);
    const timedOut = (error: unknown) =>
      new TsaError(
        TsaErrorCode.TIMEOUT,
        this.#url,
        `TSA request timed out after ${this.#timeoutMs} ms`,
        {
          cause: error,
        },
      );
    let response: Response;
    try {
      response = await this.#fetch(this.#url, {
        method: 'POST',
        headers: {
          'content-type': 'application/timestamp-query',
          accept: REPLY_CONTENT_TYPES[0]!,
        },
        body: request,
        signal,
        // A redirect would send the query to a host that the configuration does not name.
        redirect: 'manual',
      });
    } catch (error) {
      if (isTimeout(error)) {
        throw timedOut(error);
      }
      throw new TsaError(
        TsaErrorCode.UNREACHABLE,
        this.#url,
        `TSA request failed: ${describeNetworkError(error)}`,
        { cause: error },
      );
    }

    if (response.status !== 200) {
      await response.body?.cancel().catch(() => undefined);
      const location = response.headers.get('location');
      const redirect = location ? ` redirecting to ${location}; set TSA_URL to the final URL` : '';
      throw new TsaError(
        TsaErrorCode.REJECTED,
        this.#url,
        `TSA returned HTTP ${response.status}${redirect}`,
      );
    }
    const contentType = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
    if (!REPLY_CONTENT_TYPES.includes(contentType.toLowerCase())) {
      await response.body?.cancel().catch(() => undefined);
      throw new TsaError(
        TsaErrorCode.INVALID_RESPONSE,
        this.#url,
        `TSA response has content type "${contentType}", expected application/timestamp-reply`,
      );
    }
    let body: Uint8Array | undefined;
    try {
      body = await readLimited(response, MAX_TSA_RESPONSE_BYTES);
    } catch (error) {
      if (isTimeout(error)) {
        throw timedOut(error);
      }
      throw new TsaError(
        TsaErrorCode.UNREACHABLE,
        this.#url,
        `reading the TSA response failed: ${describeNetworkError(error)}`,
        { cause: error },
      );
    }
    if (body === undefined) {
      throw new TsaError(
        TsaErrorCode.INVALID_RESPONSE,
        this.#url,
        `TSA response is larger than ${MAX_TSA_RESPONSE_BYTES} bytes`,
      );
    }
    return body;
  }

  #readGrantedToken(body: Uint8Array): Uint8Array {
    let response;
    try {
      response = parseTimeStampResponse(body);
    } catch (error) {
      throw new TsaError(
        TsaErrorCode.INVALID_RESPONSE,
        this.#url,
        `TSA response is not a DER TimeStampResp: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (response.status !== 0 && response.status !== 1) {
      const details = [...response.statusText, ...response.failureInfo];
      throw new TsaError(
        TsaErrorCode.REJECTED,
        this.#url,
        `TSA rejected the request with status ${response.statusName}` +
          (details.length > 0 ? `: ${details.join('; ')}` : ''),
      );
    }
    if (response.token === undefined) {
      throw new TsaError(
        TsaErrorCode.INVALID_RESPONSE,
        this.#url,
        `TSA response has status ${response.statusName} but contains no token`,
      );
    }
    return response.token;
  }

  /** Checks that the token echoes this request's nonce and imprint, so it is not a replay. */
  #checkMatchesRequest(tokenDer: Uint8Array, digest: Uint8Array, nonce: Uint8Array): void {
    let token;
    try {
      token = parseTimestampToken(tokenDer);
    } catch (error) {
      throw new TsaError(
        TsaErrorCode.INVALID_TOKEN,
        this.#url,
        `TSA token cannot be parsed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const { tstInfo } = token;
    const expectedNonce = BigInt('0x' + toHex(nonce));
    const receivedNonce = tstInfo.nonce ? tstInfo.nonce.toBigInt() : undefined;
    if (receivedNonce !== expectedNonce) {
      throw new TsaError(
        TsaErrorCode.INVALID_TOKEN,
        this.#url,
        `TSA token nonce ${receivedNonce === undefined ? 'is missing' : `0x${receivedNonce.toString(16)}`}, ` +
          `expected 0x${expectedNonce.toString(16)}; the response is a replay or belongs to another request`,
      );
    }
    const imprint = tstInfo.messageImprint;
    if (
      imprint.hashAlgorithm.algorithmId !== OID.sha256 ||
      !bytesEqual(imprint.hashedMessage.valueBlock.valueHexView, digest)
    ) {
      throw new TsaError(
        TsaErrorCode.INVALID_TOKEN,
        this.#url,
        'TSA token message imprint is not the SHA-256 of the data that was sent',
      );
    }
  }
}

/** Creates a client for the configured TSA, or returns undefined when TSA_URL is not set. */
export function createTimestampAuthority(config: TsaConfig | undefined): TsaClient | undefined {
  if (!config) {
    return undefined;
  }
  return new TsaClient({
    url: config.url,
    timeoutMs: config.timeoutMs,
    trustedRoots: config.trustedRoots,
  });
}
