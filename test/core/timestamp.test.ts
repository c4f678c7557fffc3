// Offline verification of RFC 3161 tokens issued by local openssl TSAs. Good tokens are checked
// in both forms, then one alteration or trust problem at a time. Each failure must carry the
// error code that names it, and `openssl ts -verify` must agree where it can judge the token.
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { Certificate, ContentInfo, GeneralName, IssuerAndSerialNumber, SignedData } from 'pkijs';
import { TimestampError, TimestampErrorCode } from '../../src/core/errors.ts';
import type { TrustedRoots } from '../../src/core/timestamp/certificates.ts';
import { buildTimeStampRequest } from '../../src/core/timestamp/request.ts';
import { checkTimestampingUsage, checkTsaName } from '../../src/core/timestamp/signer.ts';
import { parseTimeStampResponse } from '../../src/core/timestamp/token.ts';
import {
  MAX_CLOCK_SKEW_MS,
  TimestampVerifier,
  verifyTimestampToken,
  type TimestampInfo,
} from '../../src/core/timestamp/verify.ts';
import {
  createCertificate,
  startLocalTsa,
  TSA_POLICY,
  verifyWithOpenssl,
  type IssuedResponse,
  type LocalTsa,
} from '../helpers/tsa.ts';

const DATA = new TextEncoder().encode('checkpoint tenant=demo size=42 root=3f1c');
const OTHER_DATA = new TextEncoder().encode('checkpoint tenant=demo size=43 root=3f1c');
const DAY_MS = 24 * 60 * 60 * 1000;
const TSA_NAME_BYTES = new TextEncoder().encode('CDIL Test TSA');

const sha256 = (bytes: Uint8Array) => new Uint8Array(createHash('sha256').update(bytes).digest());

function pemToDer(pem: string): Uint8Array {
  return new Uint8Array(new X509Certificate(pem).raw);
}

function flipped(bytes: Uint8Array, index: number, mask = 0x01): Uint8Array {
  const copy = new Uint8Array(bytes);
  copy[index]! ^= mask;
  return copy;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a state after 32-bit little-endian word steps over bytes 0 to `end` (a multiple of 4). */
function wordState(bytes: Uint8Array, end: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let hash = FNV_OFFSET;
  for (let i = 0; i < end; i += 4) {
    hash = Math.imul(hash ^ view.getInt32(i, true), FNV_PRIME);
  }
  return hash;
}

/** Computes the verifier's cache slot hash: word steps, then one step per remaining byte. */
function slotHash(bytes: Uint8Array): number {
  const wordsEnd = bytes.length - (bytes.length % 4);
  let hash = wordState(bytes, wordsEnd);
  for (let i = wordsEnd; i < bytes.length; i++) {
    hash = Math.imul(hash ^ bytes[i]!, FNV_PRIME);
  }
  return hash >>> 0;
}

/** Inverse of an odd number modulo 2^32, by Newton's iteration. */
function inverseMod32(odd: number): number {
  let inverse = odd;
  for (let i = 0; i < 5; i++) {
    inverse = Math.imul(inverse, 2 - Math.imul(odd, inverse));
  }
  return inverse;
}

/**
 * Returns a copy of `bytes` with the same length and slot hash but other content: one byte is
 * flipped, and the last whole word is then chosen so the hash state after it is unchanged.
 */
function slotHashCollision(bytes: Uint8Array): Uint8Array {
  const lastWord = bytes.length - (bytes.length % 4) - 4;
  const candidate = flipped(bytes, lastWord - 1);
  const stateAfterLastWord = wordState(bytes, lastWord + 4);
  const word =
    Math.imul(stateAfterLastWord, inverseMod32(FNV_PRIME)) ^ wordState(candidate, lastWord);
  new DataView(candidate.buffer).setInt32(lastWord, word, true);
  assert.equal(slotHash(candidate), slotHash(bytes));
  return candidate;
}

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  const index = Buffer.from(haystack).indexOf(Buffer.from(needle), from);
  assert.ok(index >= 0, 'byte pattern not found in token');
  return index;
}

async function rejects(
  promise: Promise<unknown>,
  code: TimestampErrorCode,
): Promise<TimestampError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TimestampError, `expected TimestampError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected ${code}, but the token verified`);
}

/** Posts a TimeStampReq to a TSA over HTTP and returns the raw TimeStampResp. */
async function requestResponse(tsa: LocalTsa, data: Uint8Array): Promise<Uint8Array> {
  const request = buildTimeStampRequest({
    sha256: sha256(data),
    nonce: new Uint8Array([1, 2, 3, 4]),
    certReq: true,
  });
  const response = await fetch(tsa.url, {
    method: 'POST',
    headers: { 'content-type': 'application/timestamp-query' },
    body: request,
  });
  assert.equal(response.status, 200);
  return new Uint8Array(await response.arrayBuffer());
}

/** Re-encodes a token with pkijs after `edit` changes its SignedData. */
function rebuildToken(token: Uint8Array, edit: (signedData: SignedData) => void): Uint8Array {
  const contentInfo = ContentInfo.fromBER(token);
  const signedData = new SignedData({ schema: contentInfo.content });
  edit(signedData);
  const rebuilt = new ContentInfo({
    contentType: contentInfo.contentType,
    content: signedData.toSchema(true),
  });
  return new Uint8Array(rebuilt.toSchema().toBER());
}

describe('timestamp token verification', () => {
  let tsa: LocalTsa;
  let untrusted: LocalTsa;
  let issued: IssuedResponse;
  const verifier = new TimestampVerifier({ cacheSize: 0 });
  const verify = (token: Uint8Array, roots?: string) =>
    verifier.verify(token, { data: DATA, trustedRoots: roots ?? tsa.rootPem });

  before(async () => {
    [tsa, untrusted] = await Promise.all([startLocalTsa(), startLocalTsa()]);
    issued = await tsa.issue(DATA);
  });
  after(async () => {
    await Promise.all([tsa.close(), untrusted.close()]);
  });

  test('real token verifies with its fields', async () => {
    const info = await verify(issued.token);
    const now = Date.now();
    assert.ok(Math.abs(info.genTime.getTime() - now) < 10 * 60_000, info.genTime.toISOString());
    assert.equal(info.policy, TSA_POLICY);
    assert.equal(info.hashAlgorithm, 'SHA-256');
    assert.match(info.serialNumber, /^[0-9a-f]+$/);
    assert.equal(info.tsaName, 'CN=CDIL Test TSA, O=CDIL Test');
    assert.equal(info.signerSubject, 'CN=CDIL Test TSA, O=CDIL Test');
    assert.equal(info.accuracyMs, 1000);
    assert.match(info.nonce ?? '', /^[0-9a-f]+$/);
  });

  test('response and token forms agree', async () => {
    const fromToken = await verify(issued.token);
    const fromResponse = await verify(issued.response);
    assert.deepEqual(fromResponse, fromToken);
  });

  test('SHA-256 digest verifies like data', async () => {
    const info = await verifier.verify(issued.token, {
      sha256: sha256(DATA),
      trustedRoots: tsa.rootPem,
    });
    assert.deepEqual(info, await verify(issued.token));
  });

  test('openssl agrees on good token', async () => {
    assert.equal(await verifyWithOpenssl(tsa, issued.token, DATA, { tokenIn: true }), true);
    assert.equal(await verifyWithOpenssl(tsa, issued.response, DATA, { tokenIn: false }), true);
  });

  test('imprint of other data fails', async () => {
    await rejects(
      verifier.verify(issued.token, { data: OTHER_DATA, trustedRoots: tsa.rootPem }),
      TimestampErrorCode.IMPRINT_MISMATCH,
    );
    await rejects(
      verifier.verify(issued.token, { sha256: sha256(OTHER_DATA), trustedRoots: tsa.rootPem }),
      TimestampErrorCode.IMPRINT_MISMATCH,
    );
    assert.equal(await verifyWithOpenssl(tsa, issued.token, OTHER_DATA, { tokenIn: true }), false);
  });

  test('untrusted TSA fails chain check', async () => {
    const foreign = await untrusted.issue(DATA);
    // The same token is valid under its own root, so only the trust decision differs.
    await verify(foreign.token, untrusted.rootPem);
    const error = await rejects(verify(foreign.token), TimestampErrorCode.CHAIN_UNTRUSTED);
    assert.match(error.message, /trusted root/);
    const opensslVerdict = await verifyWithOpenssl(untrusted, foreign.token, DATA, {
      tokenIn: true,
      rootPemPath: tsa.rootPemPath,
    });
    assert.equal(opensslVerdict, false);
  });

  test('issuer matched by name only fails', async () => {
    // Without an authority key identifier, pkijs looks for issuers by name, and the trusted
    // root has the same name as the token's own root. Only the signature check can distinguish them.
    const byName = await startLocalTsa({ authorityKeyIdentifier: false });
    try {
      const foreign = await byName.issue(DATA);
      await verify(foreign.token, byName.rootPem);
      await rejects(verify(foreign.token), TimestampErrorCode.CHAIN_UNTRUSTED);
    } finally {
      await byName.close();
    }
  });

  test('flipped signature byte fails', async () => {
    // openssl writes no unsigned attributes, so the token ends with the ECDSA s value.
    const altered = flipped(issued.token, issued.token.length - 1);
    await rejects(verify(altered), TimestampErrorCode.SIGNATURE_INVALID);
    assert.equal(await verifyWithOpenssl(tsa, altered, DATA, { tokenIn: true }), false);
  });

  test('flipped TSTInfo serial byte fails', async () => {
    // The serial number INTEGER follows the 32-byte imprint directly.
    const serialStart = indexOfBytes(issued.token, sha256(DATA)) + 32;
    assert.equal(issued.token[serialStart], 0x02, 'serial number INTEGER tag');
    const lastSerialByte = serialStart + 1 + issued.token[serialStart + 1]!;
    const altered = flipped(issued.token, lastSerialByte);
    await rejects(verify(altered), TimestampErrorCode.SIGNATURE_INVALID);
    assert.equal(await verifyWithOpenssl(tsa, altered, DATA, { tokenIn: true }), false);
  });

  test('flipped imprint byte fails', async () => {
    const altered = flipped(issued.token, indexOfBytes(issued.token, sha256(DATA)) + 5);
    await rejects(verify(altered), TimestampErrorCode.SIGNATURE_INVALID);
  });

  test('flipped signer certificate byte fails', async () => {
    const publicKey = new X509Certificate(tsa.tsaCertificatePem).publicKey.export({
      type: 'spki',
      format: 'der',
    });
    const keyStart = indexOfBytes(issued.token, new Uint8Array(publicKey));
    const altered = flipped(issued.token, keyStart + publicKey.length - 3);
    const error = await rejects(verify(altered), TimestampErrorCode.SIGNER_MISMATCH);
    assert.match(error.message, /ESS signing-certificate/);
    assert.equal(await verifyWithOpenssl(tsa, altered, DATA, { tokenIn: true }), false);

    const certificateStart = indexOfBytes(issued.token, pemToDer(tsa.tsaCertificatePem));
    const subjectByte = indexOfBytes(issued.token, TSA_NAME_BYTES, certificateStart);
    const subjectError = await rejects(
      verify(flipped(issued.token, subjectByte)),
      TimestampErrorCode.SIGNER_MISMATCH,
    );
    assert.match(subjectError.message, /ESS signing-certificate/);
  });

  test('certificate for same key fails', async () => {
    // A second certificate from the same root for the same key: the signature and the chain
    // are valid with it, so only the ESS signing-certificate binding rejects the swap.
    const sibling = Certificate.fromBER(pemToDer(await tsa.issueSiblingCertificate()));
    const original = Certificate.fromBER(pemToDer(tsa.tsaCertificatePem));
    const swap = (signedData: SignedData, replacement: Certificate) => {
      signedData.certificates = signedData.certificates!.map((certificate) =>
        certificate instanceof Certificate &&
        certificate.serialNumber.isEqual(original.serialNumber)
          ? replacement
          : certificate,
      );
      signedData.signerInfos[0]!.sid = new IssuerAndSerialNumber({
        issuer: replacement.issuer,
        serialNumber: replacement.serialNumber,
      });
    };

    const reencoded = rebuildToken(issued.token, (signedData) => swap(signedData, original));
    await verify(reencoded);
    const swapped = rebuildToken(issued.token, (signedData) => swap(signedData, sibling));
    const error = await rejects(verify(swapped), TimestampErrorCode.SIGNER_MISMATCH);
    assert.match(error.message, /SHA-256 hash in the ESS signing-certificate attribute/);
  });

  test('ESS v1 token verifies', async () => {
    const sha1Tsa = await startLocalTsa({ essCertIdAlgorithm: 'sha1' });
    try {
      const token = (await sha1Tsa.issue(DATA)).token;
      const info = await verify(token, sha1Tsa.rootPem);
      assert.equal(info.policy, TSA_POLICY);
      const altered = flipped(
        token,
        indexOfBytes(token, new TextEncoder().encode('CDIL Test TSA')),
      );
      await rejects(verify(altered, sha1Tsa.rootPem), TimestampErrorCode.SIGNER_MISMATCH);
    } finally {
      await sha1Tsa.close();
    }
  });

  test('expired TSA certificate fails', async () => {
    const expired = await startLocalTsa({
      tsaNotBefore: new Date('2020-01-01T00:00:00Z'),
      tsaNotAfter: new Date('2021-01-01T00:00:00Z'),
    });
    try {
      const token = (await expired.issue(DATA)).token;
      const error = await rejects(
        verify(token, expired.rootPem),
        TimestampErrorCode.SIGNER_NOT_VALID,
      );
      assert.match(error.message, /2021-01-01T00:00:00.000Z/);
      assert.equal(await verifyWithOpenssl(expired, token, DATA, { tokenIn: true }), false);
    } finally {
      await expired.close();
    }
  });

  test('not-yet-valid TSA certificate fails', async () => {
    const early = await startLocalTsa({
      tsaNotBefore: new Date(Date.now() + DAY_MS),
      tsaNotAfter: new Date(Date.now() + 30 * DAY_MS),
    });
    try {
      const token = (await early.issue(DATA)).token;
      await rejects(verify(token, early.rootPem), TimestampErrorCode.SIGNER_NOT_VALID);
      assert.equal(await verifyWithOpenssl(early, token, DATA, { tokenIn: true }), false);
    } finally {
      await early.close();
    }
  });

  test('genTime after now fails', async () => {
    const { genTime } = await verify(issued.token);
    const options = { data: DATA, trustedRoots: tsa.rootPem };
    const justInside = new Date(genTime.getTime() - MAX_CLOCK_SKEW_MS + 1000);
    await verifier.verify(issued.token, { ...options, now: justInside });
    const tooEarly = new Date(genTime.getTime() - MAX_CLOCK_SKEW_MS - 1000);
    await rejects(
      verifier.verify(issued.token, { ...options, now: tooEarly }),
      TimestampErrorCode.GENTIME_IN_FUTURE,
    );
  });

  test('rejected response is not granted', async () => {
    const rejecting = await startLocalTsa({ acceptedDigests: ['sha512'] });
    try {
      const response = await requestResponse(rejecting, DATA);
      const parsed = parseTimeStampResponse(response);
      assert.equal(parsed.statusName, 'rejection');
      assert.deepEqual(parsed.failureInfo, ['badAlg']);
      assert.equal(parsed.token, undefined);
      const error = await rejects(verify(response), TimestampErrorCode.NOT_GRANTED);
      assert.match(error.message, /rejection/);
    } finally {
      await rejecting.close();
    }
  });

  test('malformed inputs are rejected', async () => {
    const cases: [string, Uint8Array][] = [
      ['empty', new Uint8Array(0)],
      ['not DER', new TextEncoder().encode('not a token')],
      ['truncated', issued.token.subarray(0, issued.token.length - 10)],
      ['trailing byte', Buffer.concat([issued.token, Buffer.from([0])])],
      ['outer length shortened', flipped(issued.token, 2)],
      ['certificate', pemToDer(tsa.tsaCertificatePem)],
    ];
    for (const [name, input] of cases) {
      const error = await verify(input).then(
        () => assert.fail(`${name}: verified`),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof TimestampError, `${name}: ${String(error)}`);
      assert.equal(error.code, TimestampErrorCode.MALFORMED, `${name}: ${error.message}`);
    }
  });

  test('any flipped bit rejects or changes nothing', async () => {
    // Some bytes are neither signed nor used: the SignedData version, the digest algorithm list
    // and the copy of the root certificate. Flipping one of them may leave the token valid, but
    // it must then state exactly the same as before.
    const expected = await verify(issued.token);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: issued.token.length - 1 }),
        fc.integer({ min: 0, max: 7 }),
        async (index, bit) => {
          let info: TimestampInfo;
          try {
            info = await verify(flipped(issued.token, index, 1 << bit));
          } catch (error) {
            assert.ok(error instanceof TimestampError, `byte ${index}: ${String(error)}`);
            return;
          }
          assert.deepEqual(info, expected, `byte ${index} bit ${bit}`);
        },
      ),
      { numRuns: 60 },
    );
  });

  test('trusted roots accept PEM and DER', async () => {
    const rootDer = pemToDer(tsa.rootPem);
    const forms: [string, TrustedRoots][] = [
      ['DER', rootDer],
      ['PEM bytes', new TextEncoder().encode(tsa.rootPem)],
      ['list', [untrusted.rootPem, rootDer]],
      ['PEM bundle', untrusted.rootPem + tsa.rootPem],
    ];
    for (const [name, trustedRoots] of forms) {
      const info = await verifier.verify(issued.token, { data: DATA, trustedRoots });
      assert.equal(info.policy, TSA_POLICY, name);
    }
  });

  test('invalid trusted roots are rejected', async () => {
    const cases: [string, TrustedRoots][] = [
      ['empty list', []],
      ['no PEM block', 'hello'],
      ['TSA certificate', tsa.tsaCertificatePem],
      ['bad base64', '-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n'],
    ];
    for (const [name, trustedRoots] of cases) {
      const error = await verifier.verify(issued.token, { data: DATA, trustedRoots }).then(
        () => assert.fail(`${name}: verified`),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof TimestampError, name);
      assert.equal(
        error.code,
        TimestampErrorCode.TRUSTED_ROOTS_INVALID,
        `${name}: ${error.message}`,
      );
    }
  });

  test('shared verifier verifies tokens', async () => {
    const info = await verifyTimestampToken(issued.token, {
      data: DATA,
      trustedRoots: tsa.rootPem,
    });
    assert.equal(info.policy, TSA_POLICY);
  });
});

describe('timestamp verification cache', () => {
  let tsa: LocalTsa;
  let untrusted: LocalTsa;
  let first: IssuedResponse;
  let second: IssuedResponse;

  before(async () => {
    [tsa, untrusted] = await Promise.all([startLocalTsa(), startLocalTsa()]);
    first = await tsa.issue(DATA);
    second = await tsa.issue(OTHER_DATA);
  });
  after(async () => {
    await Promise.all([tsa.close(), untrusted.close()]);
  });

  test('repeat verification hits cache', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    const options = { data: DATA, trustedRoots: tsa.rootPem };
    const cold = await verifier.verify(first.token, options);
    cold.genTime.setTime(0);
    const warm = await verifier.verify(first.token, options);
    assert.deepEqual(verifier.cacheStats, { hits: 1, misses: 1, size: 1 });
    assert.notEqual(warm.genTime.getTime(), 0, 'cached result is not shared with callers');
  });

  test('concurrent verifications share work', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    const options = { data: DATA, trustedRoots: tsa.rootPem };
    await Promise.all([1, 2, 3, 4].map(() => verifier.verify(first.token, options)));
    assert.equal(verifier.cacheStats.misses, 1);
    assert.equal(verifier.cacheStats.hits, 3);
  });

  test('cache hit still checks imprint', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    await verifier.verify(first.token, { data: DATA, trustedRoots: tsa.rootPem });
    await rejects(
      verifier.verify(first.token, { data: OTHER_DATA, trustedRoots: tsa.rootPem }),
      TimestampErrorCode.IMPRINT_MISMATCH,
    );
    assert.equal(verifier.cacheStats.hits, 1);
  });

  test('cache keeps trusted roots apart', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    await verifier.verify(first.token, { data: DATA, trustedRoots: tsa.rootPem });
    await rejects(
      verifier.verify(first.token, { data: DATA, trustedRoots: untrusted.rootPem }),
      TimestampErrorCode.CHAIN_UNTRUSTED,
    );
    assert.equal(verifier.cacheStats.hits, 0);
  });

  test('token with the same hash misses cache', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    const options = { data: DATA, trustedRoots: tsa.rootPem };
    await verifier.verify(first.token, options);
    const colliding = slotHashCollision(first.token);
    assert.notDeepEqual(colliding, first.token);
    await assert.rejects(verifier.verify(colliding, options), TimestampError);
    assert.equal(verifier.cacheStats.hits, 0);
    assert.equal(verifier.cacheStats.misses, 2);
    // The colliding token did not evict the cached one.
    await verifier.verify(first.token, options);
    assert.equal(verifier.cacheStats.hits, 1);
  });

  test('token changed in place misses cache', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    const options = { data: DATA, trustedRoots: tsa.rootPem };
    // A Buffer, whose slice() is a view, so a cache that kept a slice would change with it.
    const token = Buffer.from(first.token);
    await verifier.verify(token, options);
    // Same hash, so only the full comparison with a real copy can distinguish the two tokens.
    token.set(slotHashCollision(first.token));
    await assert.rejects(verifier.verify(token, options), TimestampError);
    assert.equal(verifier.cacheStats.hits, 0);
  });

  test('data changed in place is hashed again', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    const data = Buffer.from(DATA);
    await verifier.verify(first.token, { data, trustedRoots: tsa.rootPem });
    await verifier.verify(first.token, { data, trustedRoots: tsa.rootPem });
    data.set(OTHER_DATA);
    await rejects(
      verifier.verify(first.token, { data, trustedRoots: tsa.rootPem }),
      TimestampErrorCode.IMPRINT_MISMATCH,
    );
    assert.equal(verifier.cacheStats.hits, 2);
  });

  test('roots list changed in place misses cache', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    const roots = [tsa.rootPem];
    await verifier.verify(first.token, { data: DATA, trustedRoots: roots });
    roots[0] = untrusted.rootPem;
    await rejects(
      verifier.verify(first.token, { data: DATA, trustedRoots: roots }),
      TimestampErrorCode.CHAIN_UNTRUSTED,
    );
    assert.equal(verifier.cacheStats.hits, 0);
  });

  test('DER roots are keyed by content', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    const trusted = pemToDer(tsa.rootPem);
    await verifier.verify(first.token, { data: DATA, trustedRoots: trusted });
    await verifier.verify(first.token, { data: DATA, trustedRoots: trusted.slice() });
    assert.equal(verifier.cacheStats.hits, 1);
    await rejects(
      verifier.verify(first.token, { data: DATA, trustedRoots: pemToDer(untrusted.rootPem) }),
      TimestampErrorCode.CHAIN_UNTRUSTED,
    );
    assert.equal(verifier.cacheStats.hits, 1);
  });

  test('failures are not cached', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 8 });
    const altered = flipped(first.token, first.token.length - 1);
    const options = { data: DATA, trustedRoots: tsa.rootPem };
    await rejects(verifier.verify(altered, options), TimestampErrorCode.SIGNATURE_INVALID);
    await rejects(verifier.verify(altered, options), TimestampErrorCode.SIGNATURE_INVALID);
    assert.deepEqual(verifier.cacheStats, { hits: 0, misses: 2, size: 0 });
  });

  test('cache evicts least recently used', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 1 });
    const roots = tsa.rootPem;
    await verifier.verify(first.token, { data: DATA, trustedRoots: roots });
    await verifier.verify(second.token, { data: OTHER_DATA, trustedRoots: roots });
    await verifier.verify(first.token, { data: DATA, trustedRoots: roots });
    assert.deepEqual(verifier.cacheStats, { hits: 0, misses: 3, size: 1 });
  });

  test('cache size zero disables cache', async () => {
    const verifier = new TimestampVerifier({ cacheSize: 0 });
    const options = { data: DATA, trustedRoots: tsa.rootPem };
    await verifier.verify(first.token, options);
    await verifier.verify(first.token, options);
    assert.deepEqual(verifier.cacheStats, { hits: 0, misses: 2, size: 0 });
  });
});

describe('TSA signer certificate rules', () => {
  const usageCases: [string, string[], boolean][] = [
    ['critical timeStamping', ['extendedKeyUsage = critical, timeStamping'], true],
    ['no extended key usage', [], false],
    ['non-critical timeStamping', ['extendedKeyUsage = timeStamping'], false],
    ['extra purpose', ['extendedKeyUsage = critical, timeStamping, serverAuth'], false],
    [
      'key usage without signing',
      ['extendedKeyUsage = critical, timeStamping', 'keyUsage = critical, keyEncipherment'],
      false,
    ],
    [
      'key usage nonRepudiation',
      ['extendedKeyUsage = critical, timeStamping', 'keyUsage = critical, nonRepudiation'],
      true,
    ],
  ];
  for (const [name, extensions, allowed] of usageCases) {
    test(`signer usage: ${name}`, async () => {
      const pem = await createCertificate('/CN=usage test', extensions);
      const certificate = Certificate.fromBER(pemToDer(pem));
      if (allowed) {
        checkTimestampingUsage(certificate);
      } else {
        assert.throws(
          () => checkTimestampingUsage(certificate),
          (error: unknown) =>
            error instanceof TimestampError && error.code === TimestampErrorCode.SIGNER_NOT_TSA,
        );
      }
    });
  }

  test('TSA name must match signer', async () => {
    const signer = Certificate.fromBER(
      pemToDer(await createCertificate('/O=CDIL Test/CN=Signer', [])),
    );
    const other = Certificate.fromBER(
      pemToDer(await createCertificate('/O=CDIL Test/CN=Other', [])),
    );
    checkTsaName(undefined, signer);
    checkTsaName(new GeneralName({ type: 4, value: signer.subject }), signer);
    assert.throws(
      () => checkTsaName(new GeneralName({ type: 4, value: other.subject }), signer),
      (error: unknown) =>
        error instanceof TimestampError &&
        error.code === TimestampErrorCode.SIGNER_MISMATCH &&
        /CN=Other/.test(error.message),
    );
    const dnsName = new GeneralName({ type: 2, value: 'tsa.example' });
    assert.throws(() => checkTsaName(dnsName, signer), TimestampError);
  });

  test('TSA name may match subjectAltName', async () => {
    const signer = Certificate.fromBER(
      pemToDer(await createCertificate('/CN=Signer', ['subjectAltName = DNS:tsa.example'])),
    );
    checkTsaName(new GeneralName({ type: 2, value: 'tsa.example' }), signer);
    assert.throws(
      () => checkTsaName(new GeneralName({ type: 2, value: 'other.example' }), signer),
      TimestampError,
    );
  });
});
