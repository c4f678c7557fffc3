// The cryptographic primitives the verification core needs, behind one small interface so the
// core stays free of runtime imports. Node supplies `nodeCrypto` (crypto-node.ts); a browser
// build supplies its own implementation of the same interface.

/** Public part of an EC P-256 key as a JSON Web Key (RFC 7517). */
export interface EcPublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
}

/** An imported public key; opaque to the core. */
export interface PublicKeyHandle {
  readonly jwk: EcPublicJwk;
}

export interface CryptoProvider {
  /**
   * Returns SHA-256 of `data` in a new array. Must not keep a reference to `data`, because
   * callers reuse its memory for the next input as soon as this returns.
   */
  sha256(data: Uint8Array): Uint8Array;
  /**
   * Returns SHA-256 of `data` as lowercase hex. Optional: without it, callers hex-encode the
   * result of `sha256`. A provider may offer it to skip allocating a byte array for the
   * digest, which is a large share of the cost of hashing small inputs.
   */
  sha256Hex?(data: Uint8Array | string): string;
  /** Parses an SPKI PEM holding an EC P-256 public key; throws on anything else. */
  importPublicKeyPem(pem: string): PublicKeyHandle;
  /** Imports an EC P-256 public JWK; throws on anything else. */
  importPublicKeyJwk(jwk: EcPublicJwk): PublicKeyHandle;
  /** Verifies an ECDSA P-256 / SHA-256 signature in ASN.1 DER form over `data`. */
  verifyEcdsaP256(key: PublicKeyHandle, data: Uint8Array, derSignature: Uint8Array): boolean;
  /**
   * Verifies an Ed25519 signature (RFC 8032, 64 bytes) over `data` with a raw 32-byte public
   * key. Returns false for keys or signatures of the wrong length or encoding.
   */
  verifyEd25519(publicKeyRaw: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
}
