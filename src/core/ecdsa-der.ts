// ECDSA signature encoding rules. An ECDSA signature (r, s) and (r, n - s) verify alike, so
// without a rule a third party could turn one valid signature into a second valid one. CDIL
// signs with s in the lower half of the group order (as Bitcoin's BIP 62 and many HSMs do)
// and verifiers reject the upper half, so each certificate has exactly one valid signature.

/** Order n of the P-256 group (SEC 2, section 2.4.2). */
const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const HALF_ORDER = P256_ORDER >> 1n;

interface DerSignature {
  r: bigint;
  s: bigint;
}

function readInteger(der: Uint8Array, offset: number): { value: bigint; next: number } | undefined {
  if (der[offset] !== 0x02) {
    return undefined;
  }
  const length = der[offset + 1];
  if (length === undefined || length === 0 || length > 33 || offset + 2 + length > der.length) {
    return undefined;
  }
  let value = 0n;
  for (let i = 0; i < length; i++) {
    value = (value << 8n) | BigInt(der[offset + 2 + i]!);
  }
  return { value, next: offset + 2 + length };
}

/** Parses a DER `SEQUENCE { INTEGER r, INTEGER s }` with short-form lengths; undefined otherwise. */
export function parseDerSignature(der: Uint8Array): DerSignature | undefined {
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2) {
    return undefined;
  }
  const r = readInteger(der, 2);
  const s = r && readInteger(der, r.next);
  if (!r || !s || s.next !== der.length) {
    return undefined;
  }
  return { r: r.value, s: s.value };
}

function encodeInteger(value: bigint): number[] {
  const bytes: number[] = [];
  for (let rest = value; rest > 0n; rest >>= 8n) {
    bytes.unshift(Number(rest & 0xffn));
  }
  if (bytes.length === 0 || bytes[0]! >= 0x80) {
    bytes.unshift(0);
  }
  return [0x02, bytes.length, ...bytes];
}

export function isLowS(der: Uint8Array): boolean {
  const signature = parseDerSignature(der);
  return signature !== undefined && signature.s >= 1n && signature.s <= HALF_ORDER;
}

/** Returns the low-S form of a P-256 DER signature; the input when it is already low-S. */
export function toLowS(der: Uint8Array): Uint8Array {
  const signature = parseDerSignature(der);
  if (!signature) {
    throw new TypeError('not a DER ECDSA signature');
  }
  if (signature.s <= HALF_ORDER) {
    return der;
  }
  const body = [...encodeInteger(signature.r), ...encodeInteger(P256_ORDER - signature.s)];
  return Uint8Array.from([0x30, body.length, ...body]);
}
