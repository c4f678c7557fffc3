import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { KeyEncryptionError, openSecret, sealSecret } from '../src/keys/envelope.ts';
import {
  generateP256KeyPair,
  openPrivateKey,
  publicKeyPemOf,
  sealPrivateKey,
} from '../src/keys/signer.ts';

test('sealed secret opens with the same KEK and purpose', () => {
  const kek = randomBytes(32);
  const sealed = sealSecret(kek, Buffer.from('secret bytes'), 'purpose-a');
  assert.equal(openSecret(kek, sealed, 'purpose-a').toString(), 'secret bytes');
  assert.ok(!sealed.includes(Buffer.from('secret bytes').toString('base64url')));
});

test('sealed secret fails under another KEK', () => {
  const sealed = sealSecret(randomBytes(32), Buffer.from('x'), 'purpose-a');
  assert.throws(() => openSecret(randomBytes(32), sealed, 'purpose-a'), KeyEncryptionError);
});

test('sealed secret fails under another purpose', () => {
  const kek = randomBytes(32);
  const sealed = sealSecret(kek, Buffer.from('x'), 'tenant-a');
  assert.throws(() => openSecret(kek, sealed, 'tenant-b'), KeyEncryptionError);
});

test('altered ciphertext is detected', () => {
  const kek = randomBytes(32);
  const sealed = sealSecret(kek, Buffer.from('some longer secret value'), 'p');
  const parts = sealed.split('.');
  const body = Buffer.from(parts[3]!, 'base64url');
  body[0] = body[0]! ^ 1;
  parts[3] = body.toString('base64url');
  assert.throws(() => openSecret(kek, parts.join('.'), 'p'), KeyEncryptionError);
});

test('private key round-trips only for its own tenant and key id', () => {
  const kek = randomBytes(32);
  const { privateKey, publicKeyPem } = generateP256KeyPair();
  const sealed = sealPrivateKey(kek, 'alice', 'kid-1', privateKey);
  assert.equal(publicKeyPemOf(openPrivateKey(kek, 'alice', 'kid-1', sealed)), publicKeyPem);
  assert.throws(() => openPrivateKey(kek, 'bob', 'kid-1', sealed), KeyEncryptionError);
});
