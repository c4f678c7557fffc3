// The RFC 3161 client against local TSAs and misbehaving servers on 127.0.0.1: a good exchange,
// then each failure that the client must report with its own error code.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as asn1js from 'asn1js';
import { TimeStampReq } from 'pkijs';
import { loadConfig } from '../../src/config/config.ts';
import { TimestampError, TimestampErrorCode } from '../../src/core/errors.ts';
import { OID } from '../../src/core/timestamp/oids.ts';
import { verifyTimestampToken } from '../../src/core/timestamp/verify.ts';
import {
  createTimestampAuthority,
  MAX_TSA_RESPONSE_BYTES,
  TsaClient,
  TsaError,
  TsaErrorCode,
} from '../../src/services/tsa-client.ts';
import {
  closedPortUrl,
  startLocalTsa,
  startReplayServer,
  startSilentServer,
  startStallingServer,
  verifyWithOpenssl,
  type CannedResponse,
  type LocalTsa,
} from '../helpers/tsa.ts';

const DATA = new TextEncoder().encode('checkpoint tenant=demo size=7 root=9ab0');

async function rejects(promise: Promise<unknown>, code: TsaErrorCode): Promise<TsaError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TsaError, `expected TsaError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected ${code}, but the request succeeded`);
}

describe('TSA client', () => {
  let tsa: LocalTsa;
  let untrusted: LocalTsa;
  const client = (url: string, timeoutMs = 5000) =>
    new TsaClient({ url, timeoutMs, trustedRoots: tsa.rootPem });

  before(async () => {
    [tsa, untrusted] = await Promise.all([startLocalTsa(), startLocalTsa()]);
  });
  after(async () => {
    await Promise.all([tsa.close(), untrusted.close()]);
  });

  test('client returns verified token', async () => {
    const before = tsa.requestCount;
    const token = await client(tsa.url).timestamp(DATA);
    assert.equal(tsa.requestCount, before + 1);
    // A bare TimeStampToken is a ContentInfo, whose first field is the content type OID.
    const root = asn1js.fromBER(token).result as asn1js.Sequence;
    assert.ok(root.valueBlock.value[0] instanceof asn1js.ObjectIdentifier);
    const info = await verifyTimestampToken(token, { data: DATA, trustedRoots: tsa.rootPem });
    assert.equal(info.hashAlgorithm, 'SHA-256');
    assert.equal(await verifyWithOpenssl(tsa, token, DATA, { tokenIn: true }), true);
  });

  test('request carries imprint, nonce and certReq', async () => {
    const requests: { body: Uint8Array; contentType: string | null }[] = [];
    const recordingFetch: typeof fetch = async (input, init) => {
      const headers = new Headers(init?.headers);
      requests.push({
        body: new Uint8Array(init?.body as Uint8Array),
        contentType: headers.get('content-type'),
      });
      return fetch(input, init);
    };
    const recording = new TsaClient({
      url: tsa.url,
      trustedRoots: tsa.rootPem,
      fetch: recordingFetch,
    });
    await recording.timestamp(DATA);
    await recording.timestamp(DATA);

    assert.equal(requests.length, 2);
    const parsed = requests.map(({ body }) => TimeStampReq.fromBER(body));
    for (const [index, request] of parsed.entries()) {
      assert.equal(requests[index]!.contentType, 'application/timestamp-query');
      assert.equal(request.version, 1);
      assert.equal(request.certReq, true);
      assert.equal(request.messageImprint.hashAlgorithm.algorithmId, OID.sha256);
      assert.deepEqual(
        Buffer.from(request.messageImprint.hashedMessage.valueBlock.valueHexView),
        createHash('sha256').update(DATA).digest(),
      );
      assert.ok(request.nonce, 'nonce present');
      assert.ok(request.nonce.toBigInt() > 0n, 'nonce is positive');
    }
    assert.notEqual(parsed[0]!.nonce!.toBigInt(), parsed[1]!.nonce!.toBigInt());
  });

  test('TSA down gives unreachable', async () => {
    const url = await closedPortUrl();
    const error = await rejects(client(url).timestamp(DATA), TsaErrorCode.UNREACHABLE);
    assert.match(error.message, /ECONNREFUSED/);
    assert.ok(error.message.includes(url), error.message);
  });

  test('slow TSA gives timeout', async () => {
    const silent = await startSilentServer();
    try {
      const started = Date.now();
      const error = await rejects(client(silent.url, 300).timestamp(DATA), TsaErrorCode.TIMEOUT);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 250, `gave up after ${elapsed} ms`);
      assert.ok(elapsed < 5000, `gave up after ${elapsed} ms`);
      assert.match(error.message, /timed out after 300 ms/);
    } finally {
      await silent.close();
    }
  });

  test('stalled response body gives timeout', async () => {
    const stalling = await startStallingServer();
    try {
      const error = await rejects(client(stalling.url, 300).timestamp(DATA), TsaErrorCode.TIMEOUT);
      assert.match(error.message, /timed out after 300 ms/);
    } finally {
      await stalling.close();
    }
  });

  test('replayed response fails nonce check', async () => {
    // A real response for the same data, but to an earlier request with another nonce.
    const recorded = await tsa.issue(DATA);
    const replay = await startReplayServer({ body: recorded.response });
    try {
      const error = await rejects(client(replay.url).timestamp(DATA), TsaErrorCode.INVALID_TOKEN);
      assert.match(error.message, /nonce/);
    } finally {
      await replay.close();
    }
  });

  test('untrusted TSA gives invalid token', async () => {
    const error = await rejects(client(untrusted.url).timestamp(DATA), TsaErrorCode.INVALID_TOKEN);
    assert.ok(error.cause instanceof TimestampError);
    assert.equal(error.cause.code, TimestampErrorCode.CHAIN_UNTRUSTED);
  });

  test('rejecting TSA gives rejected', async () => {
    const rejecting = await startLocalTsa({ acceptedDigests: ['sha512'] });
    try {
      const error = await rejects(
        new TsaClient({ url: rejecting.url, trustedRoots: rejecting.rootPem }).timestamp(DATA),
        TsaErrorCode.REJECTED,
      );
      assert.match(error.message, /status rejection/);
      assert.match(error.message, /badAlg/);
    } finally {
      await rejecting.close();
    }
  });

  test('bad HTTP responses are reported', async () => {
    const cases: [string, CannedResponse, TsaErrorCode, RegExp][] = [
      ['server error', { status: 503, body: new Uint8Array(0) }, TsaErrorCode.REJECTED, /HTTP 503/],
      [
        'redirect',
        { status: 302, headers: { location: 'http://127.0.0.1:9/other' }, body: new Uint8Array(0) },
        TsaErrorCode.REJECTED,
        /redirecting to http:\/\/127\.0\.0\.1:9\/other/,
      ],
      [
        'wrong content type',
        { headers: { 'content-type': 'text/html' }, body: new TextEncoder().encode('<html>') },
        TsaErrorCode.INVALID_RESPONSE,
        /text\/html/,
      ],
      [
        'not DER',
        { body: new TextEncoder().encode('not a response') },
        TsaErrorCode.INVALID_RESPONSE,
        /not a DER TimeStampResp/,
      ],
      [
        'too large',
        { body: new Uint8Array(MAX_TSA_RESPONSE_BYTES + 1) },
        TsaErrorCode.INVALID_RESPONSE,
        /larger than/,
      ],
    ];
    for (const [name, canned, code, message] of cases) {
      const server = await startReplayServer(canned);
      try {
        const error = await rejects(client(server.url).timestamp(DATA), code);
        assert.match(error.message, message, name);
      } finally {
        await server.close();
      }
    }
  });

  test('non-HTTP URL is rejected', () => {
    assert.throws(
      () => new TsaClient({ url: 'file:///etc/passwd', trustedRoots: tsa.rootPem }),
      /http or https/,
    );
  });

  test('configured client timestamps', async () => {
    const rootsFile = join(tsa.dir, 'configured-roots.pem');
    writeFileSync(rootsFile, untrusted.rootPem + tsa.rootPem);
    const config = loadConfig({
      CDIL_ENV: 'production',
      CDIL_JWT_SECRET: Buffer.alloc(32, 1).toString('base64'),
      CDIL_KEK: Buffer.alloc(32, 2).toString('base64'),
      TSA_URL: tsa.url,
      TSA_TIMEOUT_MS: '2000',
      TSA_TRUSTED_ROOTS: rootsFile,
    });
    const authority = createTimestampAuthority(config.tsa);
    assert.ok(authority, 'TSA_URL set gives a client');
    const token = await authority.timestamp(DATA);
    await verifyTimestampToken(token, { data: DATA, trustedRoots: tsa.rootPem });
    assert.equal(createTimestampAuthority(undefined), undefined);
  });
});
