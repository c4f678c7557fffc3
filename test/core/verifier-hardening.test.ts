// Alterations that keep every hash consistent but would let a bundle claim more than it
// proves: a second valid signature, a key record that disagrees with the key, unreadable
// validity dates and an ambiguous manifest.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BundleFile, prettyJson } from '../../src/core/bundle.ts';
import { isLowS, parseDerSignature, toLowS } from '../../src/core/ecdsa-der.ts';
import { generateP256KeyPair } from '../../src/keys/signer.ts';
import { nodeCrypto } from '../../src/core/crypto-node.ts';
import {
  checksWithStatus,
  createBundleFixture,
  packBundle,
  readJsonFile,
  refreshManifest,
  unpackBundle,
  verifyZip,
  type BundleFixture,
} from '../helpers/bundle.ts';

const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function highS(der: Uint8Array): Buffer {
  const { r, s } = parseDerSignature(der)!;
  const encode = (value: bigint) => {
    let hex = value.toString(16);
    if (hex.length % 2) {
      hex = '0' + hex;
    }
    const bytes = Buffer.from(hex, 'hex');
    return bytes[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
  };
  const rBytes = encode(r);
  const sBytes = encode(P256_ORDER - s);
  const body = Buffer.concat([
    Buffer.from([2, rBytes.length]),
    rBytes,
    Buffer.from([2, sBytes.length]),
    sBytes,
  ]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

describe('verifier hardening', () => {
  let fixture: BundleFixture;
  before(async () => {
    fixture = await createBundleFixture();
  });
  after(() => fixture.close());

  const withKeyRecord = (edit: (key: Record<string, unknown>) => void) => {
    const files = unpackBundle(fixture.zip);
    const key = readJsonFile(files, BundleFile.key);
    edit(key);
    files.set(BundleFile.key, prettyJson(key));
    refreshManifest(files);
    return verifyZip(fixture.dir, packBundle(files), { trustedKeys: undefined });
  };

  test('issued signatures are in low-S form', () => {
    const der = Buffer.from(fixture.certificate.signature, 'base64');
    assert.equal(isLowS(der), true);
    assert.deepEqual(toLowS(der), der);
  });

  test('high-S twin of a valid signature fails the signature check', () => {
    const files = unpackBundle(fixture.zip);
    const twin = highS(Buffer.from(fixture.certificate.signature, 'base64'));
    assert.equal(isLowS(twin), false);
    assert.deepEqual(
      Buffer.from(toLowS(twin)),
      Buffer.from(fixture.certificate.signature, 'base64'),
    );
    const certificate = readJsonFile(files, BundleFile.certificate);
    certificate.signature = twin.toString('base64');
    files.set(BundleFile.certificate, prettyJson(certificate));
    files.set(BundleFile.signature, twin);
    refreshManifest(files);
    const outcome = verifyZip(fixture.dir, packBundle(files));
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['signature']);
  });

  test('key record with another public key fails key binding', () => {
    const other = nodeCrypto.importPublicKeyPem(generateP256KeyPair().publicKeyPem).jwk;
    const outcome = withKeyRecord((key) => {
      key.public_key_jwk = other;
    });
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['key_binding']);
  });

  test('key record with an unreadable validity start fails key validity', () => {
    const outcome = withKeyRecord((key) => {
      key.valid_from = 'long ago';
    });
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['key_validity']);
  });

  test('key record with an unknown status fails key validity', () => {
    const outcome = withKeyRecord((key) => {
      key.status = 'trusted-forever';
    });
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['key_validity']);
  });

  test('manifest listing a file twice fails the manifest check', () => {
    const files = unpackBundle(fixture.zip);
    const manifest = readJsonFile(files, BundleFile.manifest);
    const entries = manifest.files as unknown[];
    manifest.files = [...entries, entries[0]];
    files.set(BundleFile.manifest, prettyJson(manifest));
    const outcome = verifyZip(fixture.dir, packBundle(files));
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['bundle_manifest']);
  });

  test('manifest naming another certificate fails the manifest check', () => {
    const files = unpackBundle(fixture.zip);
    const manifest = readJsonFile(files, BundleFile.manifest);
    manifest.certificate_id = '00000000-0000-4000-8000-000000000000';
    files.set(BundleFile.manifest, prettyJson(manifest));
    const outcome = verifyZip(fixture.dir, packBundle(files));
    assert.equal(outcome.exitCode, 1);
    assert.deepEqual(checksWithStatus(outcome.report, 'fail'), ['bundle_manifest']);
  });
});
