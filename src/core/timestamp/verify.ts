// Offline verification of RFC 3161 timestamp tokens against configured trusted roots.
// Runtime-neutral: pkijs and asn1js with a WebCrypto implementation (globalThis.crypto in Node
// 20 and in browsers), so the same code runs in the CLI, the server and a browser.
import * as asn1js from 'asn1js';
import {
  CryptoEngine,
  EncapsulatedContentInfo,
  SignedData,
  SignedDataVerifyError,
  type Certificate,
} from 'pkijs';
import { bytesEqual, toHex } from '../encoding.ts';
import { TimestampError, TimestampErrorCode } from '../errors.ts';
import {
  decodeTrustedRoots,
  formatGeneralName,
  formatName,
  parseTrustedRoots,
  type TrustedRoots,
} from './certificates.ts';
import {
  ACCEPTED_DIGEST_OIDS,
  ACCEPTED_SIGNATURE_ALGORITHMS,
  hashAlgorithmByOid,
  OID,
  type HashAlgorithmName,
} from './oids.ts';
import {
  checkSigningCertificateBinding,
  checkTimestampingUsage,
  checkTsaName,
  checkValidityAt,
  findSignerCertificate,
  type SignerCertificate,
} from './signer.ts';
import { parseTimestampToken, type ParsedTimestampToken } from './token.ts';

/**
 * How far a token's genTime may lie ahead of the verifier's clock. Five minutes is the usual
 * allowance for unsynchronized clocks (the Kerberos default, for example).
 */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;
export const DEFAULT_CACHE_SIZE = 1024;

/** Fields of a verified token's TSTInfo, and the subject of its signer. */
export interface TimestampInfo {
  /** Time at which the TSA stamped the imprint. */
  genTime: Date;
  /** TSA-assigned serial number, lowercase hexadecimal without leading zeros. */
  serialNumber: string;
  /** The TSTInfo `tsa` field formatted for display, when the TSA included it. */
  tsaName?: string;
  /** OID of the TSA policy under which the token was issued. */
  policy: string;
  /** Hash algorithm of the message imprint. */
  hashAlgorithm: HashAlgorithmName;
  /** Request nonce echoed by the TSA, lowercase hexadecimal without leading zeros. */
  nonce?: string;
  /** TSTInfo accuracy in milliseconds, when the TSA stated it. */
  accuracyMs?: number;
  /** Subject of the certificate that signed the token, for display. */
  signerSubject: string;
}

/** The timestamped bytes, or their SHA-256 digest when the bytes are not at hand. */
export type TimestampedContent =
  { data: Uint8Array; sha256?: undefined } | { sha256: Uint8Array; data?: undefined };

export type VerifyTimestampOptions = TimestampedContent & {
  trustedRoots: TrustedRoots;
  /** Current time for the genTime plausibility check; defaults to the system clock. */
  now?: Date;
};

/** Cached outcome of the checks that depend only on the token bytes and the trusted roots. */
interface VerifiedToken {
  info: Readonly<TimestampInfo>;
  imprintAlgorithm: HashAlgorithmName;
  imprint: Uint8Array;
}

export interface TimestampVerifierOptions {
  /** Maximum number of verified tokens kept; 0 turns the cache off. */
  cacheSize?: number;
  /** WebCrypto implementation; defaults to globalThis.crypto. */
  crypto?: typeof globalThis.crypto;
}

function integerHex(value: asn1js.Integer): string {
  return toHex(value.valueBlock.valueHexView).replace(/^(00)+(?=.)/, '');
}

function accuracyMs(token: ParsedTimestampToken): number | undefined {
  const accuracy = token.tstInfo.accuracy;
  if (!accuracy) {
    return undefined;
  }
  return (accuracy.seconds ?? 0) * 1000 + (accuracy.millis ?? 0) + (accuracy.micros ?? 0) / 1000;
}

/**
 * Checks the parts of the SignerInfo that pkijs does not restrict: SHA-2 digest and signature
 * algorithms, signed attributes present and a content-type attribute naming id-ct-TSTInfo
 * (RFC 5652 section 11.1 requires it to match the encapsulated content type).
 */
function checkSignerInfo(token: ParsedTimestampToken): void {
  const { signerInfo } = token;
  if (!ACCEPTED_DIGEST_OIDS.has(signerInfo.digestAlgorithm.algorithmId)) {
    throw new TimestampError(
      TimestampErrorCode.ALGORITHM_UNSUPPORTED,
      `SignerInfo digest algorithm ${signerInfo.digestAlgorithm.algorithmId} is not SHA-256, SHA-384 or SHA-512`,
    );
  }
  if (!ACCEPTED_SIGNATURE_ALGORITHMS.has(signerInfo.signatureAlgorithm.algorithmId)) {
    throw new TimestampError(
      TimestampErrorCode.ALGORITHM_UNSUPPORTED,
      `signature algorithm ${signerInfo.signatureAlgorithm.algorithmId} is not ECDSA or RSA with SHA-2`,
    );
  }
  const attributes = signerInfo.signedAttrs?.attributes;
  if (!attributes) {
    throw new TimestampError(
      TimestampErrorCode.MALFORMED,
      'SignerInfo has no signed attributes; an RFC 3161 token signs content-type, message-digest and signing-certificate attributes',
    );
  }
  const contentType = attributes.find((attribute) => attribute.type === OID.contentTypeAttribute);
  const value: unknown = contentType?.values[0];
  if (!(value instanceof asn1js.ObjectIdentifier) || value.getValue() !== OID.tstInfo) {
    throw new TimestampError(
      TimestampErrorCode.MALFORMED,
      'signed content-type attribute is missing or does not name id-ct-TSTInfo',
    );
  }
}

function sameCertificate(a: Certificate, b: Certificate): boolean {
  return bytesEqual(new Uint8Array(a.tbsView), new Uint8Array(b.tbsView));
}

function mapPkijsError(error: unknown): TimestampError {
  // Codes of SignedDataVerifyError in pkijs 3.4: 5 is a failed signer certificate chain, 7 an
  // unsupported digest algorithm. Everything else concerns the signature or the signed data.
  if (error instanceof SignedDataVerifyError) {
    if (error.code === 5) {
      return new TimestampError(
        TimestampErrorCode.CHAIN_UNTRUSTED,
        `TSA certificate does not chain to a trusted root at genTime: ${error.message}`,
        { cause: error },
      );
    }
    if (error.code === 7) {
      return new TimestampError(TimestampErrorCode.ALGORITHM_UNSUPPORTED, error.message, {
        cause: error,
      });
    }
  }
  const message = error instanceof Error ? error.message : String(error);
  return new TimestampError(
    TimestampErrorCode.SIGNATURE_INVALID,
    `token signature check failed: ${message}`,
    { cause: error },
  );
}

/**
 * Verifies the CMS signature and the certificate chain with pkijs `SignedData.verify`
 * (checkChain: true, the trusted roots, checkDate = genTime).
 *
 * pkijs checks the TSTInfo imprint itself when the content type is id-ct-TSTInfo, and for that
 * needs the timestamped bytes, which a caller holding only a digest does not have. The imprint is
 * checked by this module instead, so pkijs gets a copy of the SignedData whose encapsulated
 * content type reads id-data. The signature covers the signed attributes, whose bytes are
 * unchanged, and the content-type attribute was checked against id-ct-TSTInfo before.
 *
 * NOTE: revocation is not checked. The verifier fetches no CRL or OCSP response. pkijs
 * consults only CRLs carried inside the token, and tokens from `openssl ts -reply` carry none.
 */
async function verifySignatureAndChain(
  token: ParsedTimestampToken,
  signer: SignerCertificate,
  roots: Certificate[],
  engine: CryptoEngine,
): Promise<void> {
  const original = token.signedData;
  const view = new SignedData({
    version: original.version,
    digestAlgorithms: original.digestAlgorithms,
    encapContentInfo: new EncapsulatedContentInfo({
      eContentType: OID.data,
      eContent: original.encapContentInfo.eContent,
    }),
    certificates: original.certificates,
    crls: original.crls,
    signerInfos: original.signerInfos,
  });
  let result;
  try {
    result = await view.verify(
      {
        signer: 0,
        checkChain: true,
        trustedCerts: roots,
        checkDate: token.tstInfo.genTime,
        extendedMode: true,
      },
      engine,
    );
  } catch (error) {
    throw mapPkijsError(error);
  }
  if (result.signatureVerified !== true) {
    throw new TimestampError(
      TimestampErrorCode.SIGNATURE_INVALID,
      'token signature does not verify with the signer certificate',
    );
  }
  // The chain pkijs validated must start at the certificate checked above and end at one of
  // the trusted roots. Anything else means that pkijs picked a different certificate.
  const path = result.certificatePath;
  const leaf = path[0];
  const anchor = path[path.length - 1];
  if (
    !result.signerCertificate ||
    !sameCertificate(result.signerCertificate, signer.certificate) ||
    !leaf ||
    !sameCertificate(leaf, signer.certificate) ||
    !anchor ||
    !roots.some((root) => sameCertificate(root, anchor))
  ) {
    throw new TimestampError(
      TimestampErrorCode.CHAIN_UNTRUSTED,
      'validated certificate path does not lead from the signer certificate to a trusted root',
    );
  }
}

function readInfo(token: ParsedTimestampToken, signer: SignerCertificate): VerifiedToken {
  const { tstInfo } = token;
  const imprintOid = tstInfo.messageImprint.hashAlgorithm.algorithmId;
  const hash = hashAlgorithmByOid(imprintOid);
  if (!hash || !ACCEPTED_DIGEST_OIDS.has(imprintOid)) {
    throw new TimestampError(
      TimestampErrorCode.ALGORITHM_UNSUPPORTED,
      `message imprint algorithm ${imprintOid} is not SHA-256, SHA-384 or SHA-512`,
    );
  }

  const imprint = tstInfo.messageImprint.hashedMessage.valueBlock.valueHexView;
  if (imprint.length !== hash.length) {
    throw new TimestampError(
      TimestampErrorCode.MALFORMED,
      `message imprint has ${imprint.length} bytes, but ${hash.name} has ${hash.length}`,
    );
  }

  const critical = tstInfo.extensions?.find((extension) => extension.critical);
  if (critical) {
    throw new TimestampError(
      TimestampErrorCode.MALFORMED,
      `TSTInfo has critical extension ${critical.extnID}, which this verifier does not know`,
    );
  }

  const info: TimestampInfo = {
    genTime: tstInfo.genTime,
    serialNumber: integerHex(tstInfo.serialNumber),
    policy: tstInfo.policy,
    hashAlgorithm: hash.name,
    signerSubject: formatName(signer.certificate.subject),
  };
  if (tstInfo.tsa) {
    info.tsaName = formatGeneralName(tstInfo.tsa);
  }
  if (tstInfo.nonce) {
    info.nonce = integerHex(tstInfo.nonce);
  }
  const accuracy = accuracyMs(token);
  if (accuracy !== undefined) {
    info.accuracyMs = accuracy;
  }
  return {
    info: Object.freeze(info),
    imprintAlgorithm: hash.name,
    imprint: new Uint8Array(imprint),
  };
}

/**
 * Runs every check that depends only on the token and the roots, in a fixed order. Any other
 * exception from pkijs or asn1js on crafted input is reported as TIMESTAMP_MALFORMED, so a
 * caller sees one error type for every rejected token.
 */
async function verifyToken(
  input: Uint8Array,
  rootDers: Uint8Array[],
  engine: CryptoEngine,
): Promise<VerifiedToken> {
  try {
    return await runChecks(input, rootDers, engine);
  } catch (error) {
    if (error instanceof TimestampError) {
      throw error;
    }
    const message = error instanceof Error ? error.message : String(error);
    throw new TimestampError(TimestampErrorCode.MALFORMED, `token cannot be read: ${message}`, {
      cause: error,
    });
  }
}

async function runChecks(
  input: Uint8Array,
  rootDers: Uint8Array[],
  engine: CryptoEngine,
): Promise<VerifiedToken> {
  const roots = parseTrustedRoots(rootDers);
  const token = parseTimestampToken(input);
  const signer = await findSignerCertificate(token, engine);
  const verified = readInfo(token, signer);
  checkSignerInfo(token);
  await checkSigningCertificateBinding(token.signerInfo, signer, engine);
  checkTsaName(token.tstInfo.tsa, signer.certificate);
  checkTimestampingUsage(signer.certificate);
  checkValidityAt(signer.certificate, token.tstInfo.genTime);
  await verifySignatureAndChain(token, signer, roots, engine);
  return verified;
}

/** A verified token in the cache, with what is needed to confirm a lookup exactly. */
interface CacheEntry {
  /** Copy of the token bytes, compared in full on every lookup. */
  token: Uint8Array;
  verified: Promise<VerifiedToken>;
  /** Copy of the last data whose digest equalled the imprint, so repeated data is not hashed. */
  matchedData?: Uint8Array;
}

/** Distinct trusted-root inputs remembered by one verifier before their ids are forgotten. */
const MAX_ROOTS_IDS = 64;

/**
 * Returns a 32-bit FNV-1a-style hash of `bytes`, taken over little-endian 32-bit words and then
 * the remaining bytes, which is about twice as fast as one byte per step. It only picks a
 * cache slot: a lookup also compares the token bytes in full, so a collision costs a
 * verification, never a wrong result.
 */
function slotHash(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const wordsEnd = bytes.length - (bytes.length % 4);
  let hash = 0x811c9dc5;
  let i = 0;
  for (; i < wordsEnd; i += 4) {
    hash = Math.imul(hash ^ view.getInt32(i, true), 0x01000193);
  }
  for (; i < bytes.length; i++) {
    hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
  }
  return hash >>> 0;
}

/** Writes trusted roots given as bytes or a list as text that is equal only for equal input. */
function rootsText(roots: TrustedRoots): string {
  const items = typeof roots === 'string' || roots instanceof Uint8Array ? [roots] : roots;
  let text = '';
  for (const item of items) {
    if (typeof item === 'string') {
      text += `s${item.length}:${item}`;
    } else {
      // The length prefixes keep item boundaries unambiguous.
      text += `b${item.length}:`;
      for (let offset = 0; offset < item.length; offset += 4096) {
        text += String.fromCharCode(...item.subarray(offset, offset + 4096));
      }
    }
  }
  return text;
}

/**
 * Verifies RFC 3161 timestamp tokens offline and caches the outcome of the expensive checks
 * (signature and chain). Many bundles share one checkpoint token, so repeated calls with the
 * same token and roots skip them. A cache entry is found by an id of the exact trusted-roots
 * input and a 32-bit hash of the token, then confirmed by comparing the token bytes in full, so
 * no other token or roots can hit it. The imprint and genTime checks run on every call. The
 * imprint digest is skipped only when the data equals, byte for byte, data that matched this
 * token before. Failures are never cached.
 */
export class TimestampVerifier {
  readonly #engine: CryptoEngine;
  readonly #cacheSize: number;
  readonly #cache = new Map<string, CacheEntry>();
  /** Ids of trusted roots given as one PEM string, by that string. */
  readonly #pemRootsIds = new Map<string, number>();
  /** Ids of trusted roots given in any other form, by rootsText. */
  readonly #otherRootsIds = new Map<string, number>();
  /** Next roots id. Ids are never reused, so a forgotten id cannot lead to a stale entry. */
  #nextRootsId = 0;
  #hits = 0;
  #misses = 0;

  constructor(options: TimestampVerifierOptions = {}) {
    const webCrypto = options.crypto ?? globalThis.crypto;
    this.#engine = new CryptoEngine({ name: 'webcrypto', crypto: webCrypto });
    this.#cacheSize = options.cacheSize ?? DEFAULT_CACHE_SIZE;
  }

  /** Number of verifications served from the cache (hits) and of those that ran every check. */
  get cacheStats(): { hits: number; misses: number; size: number } {
    return { hits: this.#hits, misses: this.#misses, size: this.#cache.size };
  }

  /**
   * Verifies a DER TimeStampToken (CMS ContentInfo) or a DER TimeStampResp containing one, and
   * returns what it states. Throws TimestampError whose code names the check that failed.
   */
  async verify(token: Uint8Array, options: VerifyTimestampOptions): Promise<TimestampInfo> {
    const { verified, entry } = await this.#verifyCached(token, options.trustedRoots);
    await this.#checkImprint(verified, options, entry);
    const now = options.now ?? new Date();
    const genTime = verified.info.genTime;
    if (genTime.getTime() > now.getTime() + MAX_CLOCK_SKEW_MS) {
      throw new TimestampError(
        TimestampErrorCode.GENTIME_IN_FUTURE,
        `token genTime ${genTime.toISOString()} is more than ${MAX_CLOCK_SKEW_MS / 60_000} minutes after the current time ${now.toISOString()}`,
      );
    }
    return { ...verified.info, genTime: new Date(genTime) };
  }

  async #digest(algorithm: HashAlgorithmName, data: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await this.#engine.digest({ name: algorithm }, data));
  }

  /** Returns the id of this exact trusted-roots input, the same for every call with equal input. */
  #rootsId(roots: TrustedRoots): number {
    const [ids, key] =
      typeof roots === 'string'
        ? [this.#pemRootsIds, roots]
        : [this.#otherRootsIds, rootsText(roots)];
    let id = ids.get(key);
    if (id === undefined) {
      if (ids.size >= MAX_ROOTS_IDS) {
        ids.clear();
      }
      id = this.#nextRootsId++;
      ids.set(key, id);
    }
    return id;
  }

  async #verifyCached(
    token: Uint8Array,
    roots: TrustedRoots,
  ): Promise<{ verified: VerifiedToken; entry?: CacheEntry }> {
    if (this.#cacheSize <= 0) {
      this.#misses++;
      return { verified: await verifyToken(token, decodeTrustedRoots(roots), this.#engine) };
    }
    const key = `${this.#rootsId(roots)}:${token.length}:${slotHash(token)}`;
    const cached = this.#cache.get(key);
    if (cached && bytesEqual(cached.token, token)) {
      this.#hits++;
      // Re-insert so the Map's insertion order is least recently used first.
      this.#cache.delete(key);
      this.#cache.set(key, cached);
      return { verified: await cached.verified, entry: cached };
    }
    this.#misses++;
    // Roots are decoded only here: a hit means this exact input was decoded before.
    const pending = verifyToken(token, decodeTrustedRoots(roots), this.#engine);
    if (cached) {
      // Another token has this slot. It stays, so a token made to collide with a cached one
      // cannot evict it, and this one is verified without being cached.
      return { verified: await pending };
    }
    // new Uint8Array copies; Buffer.prototype.slice would return a view of the caller's bytes.
    const entry: CacheEntry = { token: new Uint8Array(token), verified: pending };
    this.#cache.set(key, entry);
    if (this.#cache.size > this.#cacheSize) {
      const oldest = this.#cache.keys().next().value as string;
      this.#cache.delete(oldest);
    }
    pending.catch(() => {
      if (this.#cache.get(key) === entry) {
        this.#cache.delete(key);
      }
    });
    return { verified: await pending, entry };
  }

  async #checkImprint(
    verified: VerifiedToken,
    content: TimestampedContent,
    entry: CacheEntry | undefined,
  ): Promise<void> {
    let digest: Uint8Array;
    if (content.sha256 !== undefined) {
      if (verified.imprintAlgorithm !== 'SHA-256') {
        throw new TimestampError(
          TimestampErrorCode.IMPRINT_MISMATCH,
          `token imprint uses ${verified.imprintAlgorithm}, so a SHA-256 digest cannot be compared; pass the timestamped data instead`,
        );
      }
      digest = content.sha256;
    } else {
      if (entry?.matchedData && bytesEqual(entry.matchedData, content.data)) {
        return;
      }
      digest = await this.#digest(verified.imprintAlgorithm, content.data);
    }
    if (!bytesEqual(digest, verified.imprint)) {
      throw new TimestampError(
        TimestampErrorCode.IMPRINT_MISMATCH,
        `token message imprint (${verified.imprintAlgorithm}) does not match the timestamped data`,
      );
    }
    if (entry && content.data !== undefined) {
      entry.matchedData = new Uint8Array(content.data);
    }
  }
}

/** Shared verifier with the default cache size, used by verifyTimestampToken. */
export const defaultTimestampVerifier = new TimestampVerifier();

/**
 * Verifies a DER TimeStampToken or TimeStampResp offline with the shared cached verifier; see
 * TimestampVerifier.verify.
 */
export function verifyTimestampToken(
  token: Uint8Array,
  options: VerifyTimestampOptions,
): Promise<TimestampInfo> {
  return defaultTimestampVerifier.verify(token, options);
}
