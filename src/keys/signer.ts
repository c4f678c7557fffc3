// The signing interface. Software keys implement it here; an HSM-backed signer implements
// the same interface, so issuance never sees private key material.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';
import { toLowS } from '../core/ecdsa-der.ts';
import { openSecret, sealSecret } from './envelope.ts';

export interface Signer {
  readonly keyId: string;
  /** Signs with ECDSA P-256 / SHA-256 and returns the ASN.1 DER signature in low-S form. */
  sign(data: Uint8Array): Uint8Array;
}

export class SoftwareSigner implements Signer {
  readonly keyId: string;
  readonly #privateKey: KeyObject;

  constructor(keyId: string, privateKey: KeyObject) {
    this.keyId = keyId;
    this.#privateKey = privateKey;
  }

  sign(data: Uint8Array): Uint8Array {
    return toLowS(sign('sha256', data, { key: this.#privateKey, dsaEncoding: 'der' }));
  }

  /**
   * Returns the private key of `signer` when it is a software signer, so that a thread of this
   * process can sign with it: a KeyObject passed to a worker thread is cloned, not exported.
   * Returns undefined for any other signer, whose key never leaves it.
   */
  static keyForThread(signer: Signer): KeyObject | undefined {
    return signer instanceof SoftwareSigner ? signer.#privateKey : undefined;
  }
}

export interface GeneratedKeyPair {
  publicKeyPem: string;
  privateKey: KeyObject;
}

export function generateP256KeyPair(): GeneratedKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), privateKey };
}

function keyAad(tenantId: string, keyId: string): string {
  return `cdil:signing-key:${tenantId}:${keyId}`;
}

/** Encrypts a private key (PKCS#8 DER) for storage. */
export function sealPrivateKey(
  kek: Uint8Array,
  tenantId: string,
  keyId: string,
  privateKey: KeyObject,
): string {
  const der = privateKey.export({ type: 'pkcs8', format: 'der' });
  return sealSecret(kek, der, keyAad(tenantId, keyId));
}

export function openPrivateKey(
  kek: Uint8Array,
  tenantId: string,
  keyId: string,
  sealed: string,
): KeyObject {
  const der = openSecret(kek, sealed, keyAad(tenantId, keyId));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

export function publicKeyPemOf(privateKey: KeyObject): string {
  return createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
}
