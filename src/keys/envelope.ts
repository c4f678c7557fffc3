// Envelope encryption of secrets at rest: AES-256-GCM under the key-encryption key (KEK),
// with associated data naming what the secret is for, so a ciphertext copied into another
// tenant's row or another column fails to decrypt.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class KeyEncryptionError extends Error {
  override readonly name = 'KeyEncryptionError';
}

function checkKek(kek: Uint8Array): void {
  if (kek.length !== 32) {
    throw new TypeError(`key-encryption key must be 32 bytes, got ${kek.length}`);
  }
}

/** Encrypts `plaintext`; the result is `v1.<iv>.<tag>.<ciphertext>` in base64url parts. */
export function sealSecret(kek: Uint8Array, plaintext: Uint8Array, associatedData: string): string {
  checkKek(kek);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', kek, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(associatedData, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const tag = cipher.getAuthTag();
  return [VERSION, iv, tag, ciphertext]
    .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
    .join('.');
}

/** Decrypts a value made by sealSecret; throws KeyEncryptionError on a wrong KEK, AAD or any change. */
export function openSecret(kek: Uint8Array, sealed: string, associatedData: string): Buffer {
  checkKek(kek);
  const parts = sealed.split('.');
  if (parts.length !== 4 || parts[0] !== VERSION) {
    throw new KeyEncryptionError('sealed secret has an unknown format');
  }
  const [, iv, tag, ciphertext] = parts.map((part) => Buffer.from(part, 'base64url')) as [
    Buffer,
    Buffer,
    Buffer,
    Buffer,
  ];
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch (error) {
    throw new KeyEncryptionError(
      `cannot decrypt secret for ${associatedData}: wrong key-encryption key or altered data`,
      { cause: error },
    );
  }
}
