// CryptoProvider backed by node:crypto, with a cache of imported keys because parsing a PEM
// costs about as much as one signature verification.
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { CryptoProvider, EcPublicJwk, PublicKeyHandle } from './crypto.ts';

interface NodeKeyHandle extends PublicKeyHandle {
  readonly keyObject: KeyObject;
}

const MAX_CACHED_KEYS = 1024;
const keyCache = new Map<string, NodeKeyHandle>();

function toHandle(keyObject: KeyObject): NodeKeyHandle {
  if (
    keyObject.asymmetricKeyType !== 'ec' ||
    keyObject.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
  ) {
    throw new TypeError('public key is not an EC P-256 key');
  }
  const exported = keyObject.export({ format: 'jwk' });
  const jwk: EcPublicJwk = {
    kty: 'EC',
    crv: 'P-256',
    x: String(exported.x),
    y: String(exported.y),
  };
  return { jwk, keyObject };
}

function cached(cacheKey: string, load: () => KeyObject): NodeKeyHandle {
  let handle = keyCache.get(cacheKey);
  if (!handle) {
    handle = toHandle(load());
    if (keyCache.size >= MAX_CACHED_KEYS) {
      keyCache.clear();
    }
    keyCache.set(cacheKey, handle);
  }
  return handle;
}

export const nodeCrypto: CryptoProvider = {
  sha256(data) {
    return createHash('sha256').update(data).digest();
  },
  importPublicKeyPem(pem) {
    return cached(pem, () => createPublicKey({ key: pem, format: 'pem' }));
  },
  importPublicKeyJwk(jwk) {
    return cached(`${jwk.x}.${jwk.y}`, () =>
      createPublicKey({ key: { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y }, format: 'jwk' }),
    );
  },
  verifyEcdsaP256(key, data, derSignature) {
    const { keyObject } = key as NodeKeyHandle;
    try {
      return verify('sha256', data, { key: keyObject, dsaEncoding: 'der' }, derSignature);
    } catch {
      // node:crypto throws on a malformed DER signature; for a verifier that is a failed check.
      return false;
    }
  },
};
