// Ed25519 signing keys for signed-note tests. The core only verifies signatures, so signing
// with a private key happens here, as it does in services, through node:crypto.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';

export interface Ed25519TestKey {
  /** Raw 32-byte public key. */
  publicKey: Uint8Array;
  /** Signs with the private key and returns the 64-byte signature. */
  readonly sign: (message: Uint8Array) => Uint8Array;
}

/** PKCS#8 DER header of an Ed25519 private key; the 32-byte seed follows it (RFC 8410). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function toTestKey(privateKey: KeyObject): Ed25519TestKey {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  return {
    publicKey: new Uint8Array(Buffer.from(String(jwk.x), 'base64url')),
    sign: (message) => new Uint8Array(sign(null, message, privateKey)),
  };
}

export function generateEd25519Key(): Ed25519TestKey {
  return toTestKey(generateKeyPairSync('ed25519').privateKey);
}

/** Builds the key of a fixed 32-byte seed, such as an RFC 8032 test vector's secret key. */
export function ed25519KeyFromSeed(seed: Uint8Array): Ed25519TestKey {
  const der = Buffer.concat([PKCS8_ED25519_PREFIX, seed]);
  return toTestKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
}
