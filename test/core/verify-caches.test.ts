// The verifier caches values derived from a tenant key (its canonical PEM and its thumbprint),
// because a bundle set usually shares one key. These tests warm each cache with one key and
// then check that a key differing in a single coordinate, or a bundle with the same key but
// other signed content, gets its own result.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { BundleFile, prettyJson, verifyBundle } from '../../src/core/bundle.ts';
import { jwkThumbprint } from '../../src/core/certificate.ts';
import type { EcPublicJwk } from '../../src/core/crypto.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import { p256PublicKeyPem } from '../../src/core/key.ts';
import {
  checksWithStatus,
  createBundleFixture,
  packBundle,
  readJsonFile,
  refreshManifest,
  unpackBundle,
  type BundleFixture,
} from '../helpers/bundle.ts';

function generateJwk(): EcPublicJwk {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const { x, y } = publicKey.export({ format: 'jwk' });
  return { kty: 'EC', crv: 'P-256', x: x!, y: y! };
}

/** Builds the SPKI PEM of a P-256 point without the code under test. */
function expectedPem(jwk: EcPublicJwk): string {
  const prefix = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
  const der = Buffer.concat([
    prefix,
    Buffer.from([0x04]),
    Buffer.from(jwk.x, 'base64url'),
    Buffer.from(jwk.y, 'base64url'),
  ]);
  const lines = der.toString('base64').match(/.{1,64}/g)!;
  return `-----BEGIN PUBLIC KEY-----\n${lines.join('\n')}\n-----END PUBLIC KEY-----\n`;
}

/** Computes the RFC 7638 thumbprint without the code under test. */
function expectedThumbprint(jwk: EcPublicJwk): string {
  const members = `{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}","y":"${jwk.y}"}`;
  return createHash('sha256').update(members).digest('base64url');
}

describe('key caches', () => {
  const first = generateJwk();
  const second = generateJwk();
  // Keys that share one coordinate with `first`, or have its coordinates swapped.
  const variants: [string, EcPublicJwk][] = [
    ['first key', first],
    ['second key', second],
    ['first x with second y', { ...first, y: second.y }],
    ['second x with first y', { ...first, x: second.x }],
    ['coordinates swapped', { ...first, x: first.y, y: first.x }],
  ];

  test('PEM of each key after a warm cache', () => {
    for (let pass = 0; pass < 2; pass++) {
      for (const [label, jwk] of variants) {
        assert.equal(p256PublicKeyPem(jwk), expectedPem(jwk), `${label}, pass ${pass}`);
      }
    }
  });

  test('PEM of invalid coordinates is undefined', () => {
    p256PublicKeyPem(first);
    assert.equal(p256PublicKeyPem({ ...first, y: first.y.slice(1) }), undefined);
    assert.equal(p256PublicKeyPem({ ...first, x: `${first.x}.` }), undefined);
  });

  test('thumbprint of each key after a warm cache', () => {
    for (let pass = 0; pass < 2; pass++) {
      for (const [label, jwk] of variants) {
        assert.equal(
          jwkThumbprint(nodeCrypto, jwk),
          expectedThumbprint(jwk),
          `${label}, pass ${pass}`,
        );
      }
    }
  });

  test('thumbprint depends on crv and kty', () => {
    const thumbprint = jwkThumbprint(nodeCrypto, first);
    const otherCurve = { ...first, crv: 'P-384' } as unknown as EcPublicJwk;
    const otherType = { ...first, kty: 'OKP' } as unknown as EcPublicJwk;
    assert.notEqual(jwkThumbprint(nodeCrypto, otherCurve), thumbprint);
    assert.equal(jwkThumbprint(nodeCrypto, otherCurve), expectedThumbprint(otherCurve));
    assert.notEqual(jwkThumbprint(nodeCrypto, otherType), thumbprint);
  });
});

describe('bundle checks after a warm key cache', () => {
  let fixture: BundleFixture;
  before(async () => {
    fixture = await createBundleFixture();
  });
  after(() => fixture.close());

  const verifyFiles = (files: Map<string, Uint8Array>) => {
    refreshManifest(files);
    return verifyBundle(nodeCrypto, packBundle(files), { trustedKeys: fixture.jwks });
  };

  test('same public key with another signature fails', () => {
    assert.equal(verifyBundle(nodeCrypto, fixture.zip, { trustedKeys: fixture.jwks }).valid, true);
    const files = unpackBundle(fixture.zip);
    const der = Buffer.from(files.get(BundleFile.signature)!);
    // The last byte belongs to s, so the DER stays well-formed and only the value changes.
    der[der.length - 1]! ^= 0x01;
    const certificate = readJsonFile(files, BundleFile.certificate);
    certificate.signature = der.toString('base64');
    files.set(BundleFile.certificate, prettyJson(certificate));
    files.set(BundleFile.signature, der);
    const report = verifyFiles(files);
    assert.equal(report.valid, false);
    assert.deepEqual(checksWithStatus(report, 'fail'), ['signature']);
  });

  test('same public key with another message fails', () => {
    assert.equal(verifyBundle(nodeCrypto, fixture.zip, { trustedKeys: fixture.jwks }).valid, true);
    const files = unpackBundle(fixture.zip);
    const message = Buffer.from(files.get(BundleFile.canonicalMessage)!).toString('utf8');
    files.set(BundleFile.canonicalMessage, Buffer.from(message.replace('2026.11', '2026.12')));
    const report = verifyFiles(files);
    assert.equal(report.valid, false);
    assert.ok(checksWithStatus(report, 'fail').includes('signature'));
  });

  test('PEM of another key fails the key binding', () => {
    assert.equal(verifyBundle(nodeCrypto, fixture.zip, { trustedKeys: fixture.jwks }).valid, true);
    const files = unpackBundle(fixture.zip);
    files.set(BundleFile.publicKey, Buffer.from(expectedPem(generateJwk())));
    const report = verifyFiles(files);
    assert.equal(report.valid, false);
    const failed = checksWithStatus(report, 'fail');
    assert.ok(failed.includes('key_binding'), failed.join(', '));
    assert.ok(failed.includes('signature'), failed.join(', '));
  });

  test('PEM of the same key in another layout fails', () => {
    assert.equal(verifyBundle(nodeCrypto, fixture.zip, { trustedKeys: fixture.jwks }).valid, true);
    const files = unpackBundle(fixture.zip);
    const pem = Buffer.from(files.get(BundleFile.publicKey)!).toString('utf8');
    files.set(BundleFile.publicKey, Buffer.from(pem.replace(/\n$/, '\r\n')));
    const report = verifyFiles(files);
    assert.equal(report.valid, false);
    assert.deepEqual(checksWithStatus(report, 'fail'), ['bundle_manifest']);
  });
});
