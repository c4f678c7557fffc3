// Signed checkpoints of a transparency log, in two C2SP text formats: tlog-checkpoint
// (https://c2sp.org/tlog-checkpoint) for the body and signed-note (https://c2sp.org/signed-note)
// for the Ed25519 signature lines under it. A checkpoint of a 5-leaf tree:
//
//   example.com/cdil/hospital-a
//   5
//   Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=
//
//   — example.com/cdil/hospital-a <base64 of the 4-byte key id and the 64-byte signature>
//
// The lines are the origin, the tree size in decimal, the base64 root hash, optional extension
// lines, a blank line and one line per signature, each ending in a newline. No private key
// enters the core: signNote takes a signing function, and services sign with node:crypto.
import type { CryptoProvider } from './crypto.ts';
import { fromBase64, toBase64, toHex, utf8Encode } from './encoding.ts';
import { NoteError, NoteErrorCode } from './errors.ts';
import { HASH_LENGTH } from './merkle.ts';

/**
 * Default maximum note size in UTF-8 bytes. The signed-note spec requires verifiers to accept
 * at least 16 signatures, and 16 post-quantum signature lines of about 6.7 KB each fit.
 */
export const MAX_NOTE_BYTES = 128 * 1024;

/** Default maximum number of signature lines. The signed-note spec requires at least 16. */
export const MAX_NOTE_SIGNATURES = 64;

/** Signature type byte of Ed25519 in signed-note key ids and verifier keys. */
const ED25519_SIGNATURE_TYPE = 0x01;
const ED25519_PUBLIC_KEY_LENGTH = 32;
const KEY_ID_LENGTH = 4;
/** Em dash (U+2014) and a space. */
const SIGNATURE_LINE_PREFIX = '\u2014 ';

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
// ignoreBOM keeps a leading U+FEFF in the text, so the verified text is exactly the bytes given.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Checkpoint body fields. */
export interface Checkpoint {
  /** Log identity, for example `example.com/cdil/hospital-a`. */
  origin: string;
  /** Number of leaves. */
  size: number;
  /** RFC 9162 root hash of the tree at `size` leaves. */
  rootHash: Uint8Array;
  /** Optional opaque lines after the root hash, each non-empty. */
  extensions: readonly string[];
}

/** A trusted Ed25519 note key, as createVerifierKey and parseVerifierKey build it. */
export interface NoteVerifierKey {
  readonly name: string;
  /** First 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), as 8 lowercase hex digits. */
  readonly keyId: string;
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
}

/** Signs a message with Ed25519 and returns the 64-byte signature. */
export type NoteSignFunction = (message: Uint8Array) => Uint8Array;

/** Key name and key id of a signature line. */
export interface NoteSignatureId {
  keyName: string;
  keyId: string;
}

/** A note whose signature by at least one trusted key verified. */
export interface OpenedNote {
  /** The signed text, including its final newline. */
  body: string;
  /** The trusted keys whose signatures verified, each listed once. */
  verifiedBy: NoteVerifierKey[];
  /** Signature lines by keys not among the trusted keys, which were not checked. */
  unknownSignatures: NoteSignatureId[];
}

/** A checkpoint whose note signature by at least one trusted key verified. */
export interface OpenedCheckpoint {
  checkpoint: Checkpoint;
  verifiedBy: NoteVerifierKey[];
  unknownSignatures: NoteSignatureId[];
}

/** Size limits applied before any signature is checked. */
export interface NoteLimits {
  /** Maximum note size in UTF-8 bytes (default MAX_NOTE_BYTES). */
  maxBytes?: number;
  /** Maximum number of signature lines (default MAX_NOTE_SIGNATURES). */
  maxSignatures?: number;
}

interface ParsedSignature extends NoteSignatureId {
  signature: Uint8Array;
}

/** Quotes untrusted text for an error message, shortened to 40 characters. */
function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}

/**
 * Raises NoteError with `code` unless `text` has a UTF-8 encoding and no ASCII control
 * character other than newline, as signed-note requires of the whole note.
 */
function checkNoteText(text: string, label: string, code: NoteErrorCode): void {
  if (LONE_SURROGATE.test(text)) {
    throw new NoteError(code, `${label} contains a lone UTF-16 surrogate, which has no UTF-8 form`);
  }
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x20 && unit !== 0x0a) {
      const codePoint = unit.toString(16).padStart(4, '0').toUpperCase();
      throw new NoteError(
        code,
        `${label} contains control character U+${codePoint} at offset ${i}; only newline is allowed`,
      );
    }
  }
}

/** Key names must be non-empty, without Unicode white space or plus signs. */
function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name);
}

/** Decodes standard base64 only in its canonical form, so each value has one encoding. */
function decodeCanonicalBase64(text: string): Uint8Array | undefined {
  const bytes = fromBase64(text);
  return bytes !== undefined && toBase64(bytes) === text ? bytes : undefined;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint body.

/** Formats a checkpoint body. Raises NoteError CHECKPOINT_MALFORMED for an invalid field. */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  const { origin, size, rootHash, extensions } = checkpoint;
  const fail = (message: string) => new NoteError(NoteErrorCode.CHECKPOINT_MALFORMED, message);
  if (origin.length === 0 || origin.includes('\n')) {
    throw fail('checkpoint origin must be one non-empty line');
  }
  if (!Number.isSafeInteger(size) || size < 0) {
    throw fail(`checkpoint tree size must be an integer from 0 to 2^53 - 1, got ${size}`);
  }
  if (rootHash.length !== HASH_LENGTH) {
    throw fail(`checkpoint root hash must be ${HASH_LENGTH} bytes, got ${rootHash.length}`);
  }
  extensions.forEach((line, i) => {
    if (line.length === 0 || line.includes('\n')) {
      throw fail(`checkpoint extension line ${i + 1} must be one non-empty line`);
    }
  });
  const body = [origin, String(size), toBase64(rootHash), ...extensions].join('\n') + '\n';
  checkNoteText(body, 'checkpoint', NoteErrorCode.CHECKPOINT_MALFORMED);
  return body;
}

/**
 * Parses a checkpoint body strictly: at least three non-empty lines, a tree size without
 * leading zeros up to 2^53 - 1, and a root hash in canonical base64 of 32 bytes. Raises
 * NoteError CHECKPOINT_MALFORMED naming the first problem.
 */
export function parseCheckpoint(body: string): Checkpoint {
  const fail = (message: string) => new NoteError(NoteErrorCode.CHECKPOINT_MALFORMED, message);
  checkNoteText(body, 'checkpoint', NoteErrorCode.CHECKPOINT_MALFORMED);
  if (!body.endsWith('\n')) {
    throw fail('checkpoint must end with a newline');
  }

  const lines = body.slice(0, -1).split('\n');
  if (lines.length < 3) {
    throw fail(
      `checkpoint has ${lines.length} lines, but origin, tree size and root hash are required`,
    );
  }
  const emptyLine = lines.indexOf('');
  if (emptyLine >= 0) {
    throw fail(`checkpoint line ${emptyLine + 1} is empty`);
  }

  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string];
  if (!/^(?:0|[1-9][0-9]*)$/.test(sizeText)) {
    throw fail(`checkpoint tree size ${quote(sizeText)} is not a decimal without leading zeros`);
  }
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) {
    throw fail(`checkpoint tree size ${quote(sizeText)} exceeds the supported maximum 2^53 - 1`);
  }

  const rootHash = decodeCanonicalBase64(rootText);
  if (rootHash?.length !== HASH_LENGTH) {
    throw fail(
      `checkpoint root hash ${quote(rootText)} is not the canonical base64 of ${HASH_LENGTH} bytes`,
    );
  }
  return { origin, size, rootHash, extensions };
}

// ---------------------------------------------------------------------------------------------
// Keys.

/** Computes the signed-note key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4]. */
export function noteKeyId(crypto: CryptoProvider, keyName: string, publicKey: Uint8Array): string {
  const name = utf8Encode(keyName);
  const input = new Uint8Array(name.length + 2 + publicKey.length);
  input.set(name, 0);
  input[name.length] = 0x0a;
  input[name.length + 1] = ED25519_SIGNATURE_TYPE;
  input.set(publicKey, name.length + 2);
  return toHex(crypto.sha256(input).subarray(0, KEY_ID_LENGTH));
}

/** Builds a verifier key. Raises NoteError VERIFIER_KEY_INVALID for a bad name or key length. */
export function createVerifierKey(
  crypto: CryptoProvider,
  keyName: string,
  publicKey: Uint8Array,
): NoteVerifierKey {
  if (!isValidKeyName(keyName)) {
    throw new NoteError(
      NoteErrorCode.VERIFIER_KEY_INVALID,
      `key name ${quote(keyName)} must be non-empty and contain no white space or "+"`,
    );
  }
  if (publicKey.length !== ED25519_PUBLIC_KEY_LENGTH) {
    throw new NoteError(
      NoteErrorCode.VERIFIER_KEY_INVALID,
      `an Ed25519 public key has ${ED25519_PUBLIC_KEY_LENGTH} bytes, got ${publicKey.length}`,
    );
  }
  return {
    name: keyName,
    keyId: noteKeyId(crypto, keyName, publicKey),
    publicKey: Uint8Array.from(publicKey),
  };
}

/** Formats a verifier key as `<name>+<8 hex digits key id>+<base64(0x01 || public key)>`. */
export function formatVerifierKey(key: NoteVerifierKey): string {
  const encoded = new Uint8Array(1 + key.publicKey.length);
  encoded[0] = ED25519_SIGNATURE_TYPE;
  encoded.set(key.publicKey, 1);
  return `${key.name}+${key.keyId}+${toBase64(encoded)}`;
}

/**
 * Parses a verifier key in the form that formatVerifierKey writes and checks that its key id
 * matches the name and key. Only Ed25519 keys (type 0x01) are supported. Raises NoteError
 * VERIFIER_KEY_INVALID.
 */
export function parseVerifierKey(crypto: CryptoProvider, text: string): NoteVerifierKey {
  const fail = (message: string) => new NoteError(NoteErrorCode.VERIFIER_KEY_INVALID, message);
  // The name and the key id contain no "+", but the base64 key material may.
  const firstPlus = text.indexOf('+');
  const secondPlus = text.indexOf('+', firstPlus + 1);
  if (firstPlus < 0 || secondPlus < 0) {
    throw fail('verifier key must have the form <name>+<8 hex digits key id>+<base64 key>');
  }
  const name = text.slice(0, firstPlus);
  const keyIdText = text.slice(firstPlus + 1, secondPlus);
  const keyText = text.slice(secondPlus + 1);
  if (!/^[0-9a-fA-F]{8}$/.test(keyIdText)) {
    throw fail(`verifier key id ${quote(keyIdText)} is not 8 hex digits`);
  }
  const encoded = decodeCanonicalBase64(keyText);
  if (encoded === undefined || encoded.length === 0) {
    throw fail('verifier key material is not canonical standard base64');
  }
  if (encoded[0] !== ED25519_SIGNATURE_TYPE) {
    throw fail(`verifier key type 0x${toHex(encoded.subarray(0, 1))} is not Ed25519 (0x01)`);
  }
  const key = createVerifierKey(crypto, name, encoded.subarray(1));
  if (key.keyId !== keyIdText.toLowerCase()) {
    throw fail(`verifier key id ${keyIdText} does not match ${key.keyId}, computed from its key`);
  }
  return key;
}

// ---------------------------------------------------------------------------------------------
// Signed notes.

function signatureLine(keyName: string, keyId: string, signature: Uint8Array): string {
  const encoded = new Uint8Array(KEY_ID_LENGTH + signature.length);
  for (let i = 0; i < KEY_ID_LENGTH; i++) {
    encoded[i] = parseInt(keyId.slice(2 * i, 2 * i + 2), 16);
  }
  encoded.set(signature, KEY_ID_LENGTH);
  return `${SIGNATURE_LINE_PREFIX}${keyName} ${toBase64(encoded)}\n`;
}

/**
 * Signs a note body (text ending in a newline) with Ed25519 and returns the signed note. The
 * signature from `sign` must verify with `publicKey`, which catches a mismatched key pair
 * before the note is published. Raises NoteError MALFORMED for an invalid body,
 * VERIFIER_KEY_INVALID for an invalid name or key and SIGNATURE_INVALID for a bad signature.
 */
export function signNote(
  crypto: CryptoProvider,
  body: string,
  keyName: string,
  sign: NoteSignFunction,
  publicKey: Uint8Array,
): string {
  checkNoteText(body, 'note text', NoteErrorCode.MALFORMED);
  if (!body.endsWith('\n')) {
    throw new NoteError(NoteErrorCode.MALFORMED, 'note text must end with a newline');
  }
  const key = createVerifierKey(crypto, keyName, publicKey);
  const message = utf8Encode(body);
  const signature = sign(message);
  if (!crypto.verifyEd25519(key.publicKey, message, signature)) {
    throw new NoteError(
      NoteErrorCode.SIGNATURE_INVALID,
      `signature from the signing function does not verify with key ${key.name}+${key.keyId}`,
    );
  }
  return `${body}\n${signatureLine(key.name, key.keyId, signature)}`;
}

function decodeNote(note: string | Uint8Array, maxBytes: number): string {
  const tooLarge = () =>
    new NoteError(NoteErrorCode.TOO_LARGE, `note is larger than the limit of ${maxBytes} bytes`);
  if (typeof note === 'string') {
    // A string has at least as many UTF-8 bytes as UTF-16 code units, so a long string is
    // rejected before it is encoded.
    if (note.length > maxBytes || utf8Encode(note).length > maxBytes) {
      throw tooLarge();
    }
    return note;
  }
  if (!(note instanceof Uint8Array)) {
    throw new NoteError(NoteErrorCode.MALFORMED, 'note must be a string or a Uint8Array');
  }
  if (note.length > maxBytes) {
    throw tooLarge();
  }
  try {
    return strictUtf8.decode(note);
  } catch (error) {
    throw new NoteError(NoteErrorCode.MALFORMED, 'note is not valid UTF-8', { cause: error });
  }
}

function parseSignatureLine(line: string, lineNumber: number): ParsedSignature {
  const fail = (problem: string) =>
    new NoteError(NoteErrorCode.MALFORMED, `signature line ${lineNumber} ${problem}`);
  if (!line.startsWith(SIGNATURE_LINE_PREFIX)) {
    throw fail('does not start with an em dash (U+2014) and a space');
  }
  const fields = line.slice(SIGNATURE_LINE_PREFIX.length).split(' ');
  if (fields.length !== 2) {
    throw fail('must contain a key name and a base64 signature separated by one space');
  }
  const [keyName, encodedText] = fields as [string, string];
  if (!isValidKeyName(keyName)) {
    throw fail(`has key name ${quote(keyName)}, which is empty or contains white space or "+"`);
  }
  const encoded = decodeCanonicalBase64(encodedText);
  if (encoded === undefined || encoded.length <= KEY_ID_LENGTH) {
    throw fail('does not contain a canonical base64 key id followed by a signature');
  }
  return {
    keyName,
    keyId: toHex(encoded.subarray(0, KEY_ID_LENGTH)),
    signature: encoded.subarray(KEY_ID_LENGTH),
  };
}

/**
 * Parses a signed note, verifies the signatures of the trusted `verifiers` and returns the
 * signed text. Only a signature line whose key name and key id both match a trusted key is
 * checked. Other lines are listed in unknownSignatures and otherwise ignored, as signed-note
 * requires. Raises NoteError with code TOO_LARGE over the limits, MALFORMED for a note that
 * breaks the format, SIGNATURE_INVALID when a trusted key's signature fails, and NOT_VERIFIED
 * when no trusted key signed the note.
 */
export function openNote(
  crypto: CryptoProvider,
  note: string | Uint8Array,
  verifiers: readonly NoteVerifierKey[],
  limits: NoteLimits = {},
): OpenedNote {
  const maxBytes = limits.maxBytes ?? MAX_NOTE_BYTES;
  const maxSignatures = limits.maxSignatures ?? MAX_NOTE_SIGNATURES;
  const text = decodeNote(note, maxBytes);
  checkNoteText(text, 'note', NoteErrorCode.MALFORMED);
  if (!text.endsWith('\n')) {
    throw new NoteError(NoteErrorCode.MALFORMED, 'note must end with a newline');
  }
  // The last blank line separates the text from the signatures, and the text keeps its final
  // newline.
  const separator = text.lastIndexOf('\n\n');
  if (separator < 0) {
    throw new NoteError(NoteErrorCode.MALFORMED, 'note has no blank line before its signatures');
  }
  const body = text.slice(0, separator + 1);
  const signatureBlock = text.slice(separator + 2);
  if (signatureBlock.length === 0) {
    throw new NoteError(NoteErrorCode.MALFORMED, 'note has no signature lines');
  }
  const lines = signatureBlock.slice(0, -1).split('\n');
  if (lines.length > maxSignatures) {
    throw new NoteError(
      NoteErrorCode.TOO_LARGE,
      `note has ${lines.length} signature lines, more than the limit of ${maxSignatures}`,
    );
  }
  const signatures = lines.map((line, i) => parseSignatureLine(line, i + 1));

  const message = utf8Encode(body);
  const verifiedBy: NoteVerifierKey[] = [];
  const unknownSignatures: NoteSignatureId[] = [];
  for (const { keyName, keyId, signature } of signatures) {
    const key = verifiers.find(
      (candidate) => candidate.name === keyName && candidate.keyId === keyId,
    );
    if (key === undefined) {
      unknownSignatures.push({ keyName, keyId });
      continue;
    }
    if (!crypto.verifyEd25519(key.publicKey, message, signature)) {
      throw new NoteError(
        NoteErrorCode.SIGNATURE_INVALID,
        `signature by trusted key ${key.name}+${key.keyId} does not verify: the note text was ` +
          'altered or the signature was made with another key',
      );
    }
    if (!verifiedBy.includes(key)) {
      verifiedBy.push(key);
    }
  }
  if (verifiedBy.length === 0) {
    const signers = signatures.map((signature) => `${signature.keyName}+${signature.keyId}`);
    throw new NoteError(
      NoteErrorCode.NOT_VERIFIED,
      `note is not signed by any of the ${verifiers.length} trusted keys; its signature lines ` +
        `name ${signers.join(', ')}`,
    );
  }
  return { body, verifiedBy, unknownSignatures };
}

/**
 * Opens a signed checkpoint: verifies the note with openNote, parses the body with
 * parseCheckpoint and checks that the origin is `expectedOrigin`, so that a checkpoint of one
 * log is never accepted for another log signed by the same key. Raises the errors of both
 * functions and NoteError ORIGIN_MISMATCH.
 */
export function openCheckpoint(
  crypto: CryptoProvider,
  note: string | Uint8Array,
  verifiers: readonly NoteVerifierKey[],
  expectedOrigin: string,
  limits: NoteLimits = {},
): OpenedCheckpoint {
  const { body, verifiedBy, unknownSignatures } = openNote(crypto, note, verifiers, limits);
  const checkpoint = parseCheckpoint(body);
  if (checkpoint.origin !== expectedOrigin) {
    throw new NoteError(
      NoteErrorCode.ORIGIN_MISMATCH,
      `checkpoint origin ${quote(checkpoint.origin)} is not the expected ${quote(expectedOrigin)}`,
    );
  }
  return { checkpoint, verifiedBy, unknownSignatures };
}
